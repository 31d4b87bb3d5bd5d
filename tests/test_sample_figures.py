"""scripts/sample_figures.py: the generated block of docs/method.md (markers, replacement, rendering)."""
from __future__ import annotations

import importlib.util

import pytest

from tvb_tasks.config import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("sample_figures", PROJECT_ROOT / "scripts" / "sample_figures.py")
sf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sf)


def _figs(res: int, km: float) -> dict:
    return {"resolution_m": res,
            "key": {"terrestrial_corridors_km": km, "terrestrial_corridors_existing_km": 1.0,
                    "terrestrial_corridors_to_restore_km": 2.0, "terrestrial_corridors_to_create_km": km - 3.0},
            "sum_by_st": {"forest": {"existing": 1.0, "to_restore": 2.0, "to_create": km - 3.0,
                                     "n": {"existing": 1, "to_restore": 1, "to_create": 2}}},
            "stretch_sum": {"existing": 1.0, "to_restore": 2.0, "to_create": km - 3.0},
            "missing": {"n": 1, "km": 0.5, "existing": 0.0, "to_restore": 0.5, "to_create": 0.0},
            "downgraded": 0,
            "points": {"all": 3, "sites": 2, "terrestrial": {"road": 1, "railway": 0, "canal": 0}, "bridges": 1,
                       "culverts": 1, "culverts_off_corridor": 1, "reservoir": 0, "by_severity": {2: 1, 3: 1, 4: 1},
                       "missing_link": 1},
            "fractures": {"A21": 1}, "vigilance": 4, "areas": {"ha": 10.0, "median_width_m": 200.0},
            "meff": {"forest": {"habitat_ha": 5.0, "n_patches": 2, "meff_cut_ha": 1.0, "meff_cbc_ha": 1.0}},
            "connectivity": {"forest": {"n_nodes": 2, "n_links": 1, "n_components": 1}}}


def test_the_block_renders_each_release_as_a_column_and_replaces_the_markers():
    block = sf.render([_figs(25, 10.0), _figs(10, 9.0)])
    assert block.startswith(sf.BEGIN) and block.endswith(sf.END)
    assert "| figure | 25 m | 10 m |" in block
    assert "| terrestrial corridors, dissolved (km) | 10.0 | 9.0 |" in block
    assert "| points de vigilance (roads of importance 4, severity 2) | 4 | 4 |" in block
    text = f"intro\n{sf.BEGIN}\nold figures\n{sf.END}\nrest"
    assert sf.replace_block(text, block) == f"intro\n{block}\nrest"
    with pytest.raises(ValueError, match="markers"):
        sf.replace_block("no markers here", block)


def test_method_page_holds_the_generated_block():
    text = sf.METHOD_MD.read_text(encoding="utf-8")
    assert text.count(sf.BEGIN) == 1 and text.count(sf.END) == 1

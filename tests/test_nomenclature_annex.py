"""docs/method.md Annex A is what scripts/nomenclature_annex.py generates from config/nomenclatures/ (no drift),
and the nomenclatures' rules are cover-first with the classes issue 12 added (known answers per code)."""
from __future__ import annotations

import importlib.util

import pytest

from tvb_tasks.config import PROJECT_ROOT, load_territory, nomenclature_definition

_spec = importlib.util.spec_from_file_location("nomenclature_annex", PROJECT_ROOT / "scripts" / "nomenclature_annex.py")
annex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(annex)


def test_method_md_annex_is_the_generated_one():
    assert annex.current_annex() == annex.annex(), \
        "docs/method.md Annex A is stale: run `python scripts/nomenclature_annex.py --write`"


@pytest.mark.parametrize("nom, code, expected", [
    ("ocs2d", "CS4.1.3", "wet_forest"),        # wet woods: forest and wetland habitat
    ("ocs2d", "US1.3.2", "extraction"),        # terrils still worked are not habitat
    ("ocs2d", "CS6.1.1", "grassland"),
    ("ocs_ge", "CS2.1.1.1", "forest"),
    ("ocs_ge", "US1.3", "extraction"),
    ("ocs_ge", "CS2.2.1", "grassland"),
    ("clc", "141", "nature_en_ville"),         # green urban areas
    ("clc", "142", "nature_en_ville"),         # sport and leisure facilities
    ("clc", "131", "extraction"),
])
def test_codes_get_the_cover_first_class(nom, code, expected):
    table = annex.classes(nom).set_index("code")
    assert table.loc[code, "class"] == expected


@pytest.mark.parametrize("nom", annex.NOMENCLATURES)
def test_every_rule_class_is_a_class_of_the_call_territory(nom):
    classes = set(load_territory("call").landuse.classes)
    _, data = nomenclature_definition(nom)
    assert {r["class"] for r in data["rules"]} <= classes


def test_a_vegetated_cover_in_an_urban_usage_is_nature_en_ville_and_a_wood_stays_a_wood():
    import geopandas as gpd

    from tvb_tasks.config import LanduseConfig
    from tvb_tasks.layers.landuse import classify_landuse

    for nom, rows in {"ocs2d": [("CS6.1.1", "US3.1.1", "nature_en_ville"), ("CS4.1.1", "US3.1.1", "forest"),
                                ("CS1.1.1", "US5.1.1", "artificial")],
                      "ocs_ge": [("CS2.2.1", "US3", "nature_en_ville"), ("CS2.1.1.1", "US5", "forest"),
                                 ("CS1.1.1.1", "US5", "artificial"), ("CS2.2.1", "US1.1", "farmland")]}.items():
        _, data = nomenclature_definition(nom)
        cfg = LanduseConfig(code_columns=data["code_columns"],
                            classes={c: {"label": c} for c in {r["class"] for r in data["rules"]}
                                     | {data["default_class"]}},
                            rules=data["rules"], default_class=data["default_class"])
        gdf = gpd.GeoDataFrame({"code_cs": [r[0] for r in rows], "code_us": [r[1] for r in rows]})
        assert classify_landuse(gdf, cfg)["class"].tolist() == [r[2] for r in rows], nom

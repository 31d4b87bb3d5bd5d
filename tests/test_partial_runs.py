"""A run of some sous-trames (``tvb run --sous-trames``, the trigger form's choice) computes, for each chosen
sous-trame, exactly the layers a full run computes: the territory-wide inputs (class raster with every sous-trame's
extra habitat sources, the protected areas' reservoir assignment, the computation extent) do not depend on the
choice; only the set of sous-trames computed and published does (``Territory.computed_sous_trames``)."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from tvb_tasks.layers import engine
from tvb_tasks.pipeline import PipelineError, effective_territory

CHOSEN = ["forest", "wetland"]


@pytest.fixture(scope="module")
def territories():
    """``(full, partial)`` CALL at 100 m: every sous-trame, and forest + wetland."""
    return (effective_territory("call", resolution_m=100),
            effective_territory("call", resolution_m=100, sous_trames=["wetland", "forest"]))


def test_a_partial_run_keeps_every_definition_and_restricts_what_it_computes(territories):
    full, partial = territories
    assert partial.sous_trames == full.sous_trames and partial.friction == full.friction
    assert partial.fiches == full.fiches and partial.landuse_overlays == full.landuse_overlays
    assert partial.run_sous_trames == CHOSEN and list(partial.computed_sous_trames) == CHOSEN    # YAML order
    assert full.run_sous_trames is None and list(full.computed_sous_trames) == list(full.sous_trames)
    assert partial.terrestrial_sous_trames == ["forest"] and partial.wet_sous_trames == ["wetland"]
    assert partial.analysis_buffer_m() == full.analysis_buffer_m()


def test_the_configuration_hash_tells_a_partial_run_from_a_full_one(territories):
    """A partial release is never "unchanged" for a full run nor the other way round; choosing every sous-trame is
    a full run."""
    full, partial = territories
    assert partial.config_hash() != full.config_hash()
    assert partial.config_hash(exclude_resolution=True) != full.config_hash(exclude_resolution=True)
    every = effective_territory("call", resolution_m=100, sous_trames=list(reversed(list(full.sous_trames))))
    assert every.run_sous_trames is None and every.config_hash() == full.config_hash()
    assert effective_territory("call", resolution_m=100, sous_trames=["forest"]).config_hash() \
        != partial.config_hash()
    with pytest.raises(PipelineError, match="unknown sous-trames"):
        effective_territory("call", sous_trames=["forest", "desert"])


def test_the_recorded_configuration_of_a_partial_run_validates_again_with_its_choice(territories):
    from tvb_tasks.config import ConfigError, Territory
    from tvb_tasks.pipeline import territory_from_run

    _, partial = territories
    config = partial.model_dump(mode="json", by_alias=True)
    again = territory_from_run({"territory": "call", "config": config, "config_hash": partial.config_hash()})
    assert list(again.computed_sous_trames) == CHOSEN and again.config_hash() == partial.config_hash()
    with pytest.raises((ConfigError, ValueError), match="unknown sous-trame 'desert'"):
        Territory.model_validate({**config, "run_sous_trames": ["forest", "desert"]})


def test_a_territory_file_cannot_choose_the_sous_trames_a_run_computes(tmp_path):
    from tvb_tasks.config import PROJECT_ROOT, ConfigError, load_territory

    text = (PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8")
    path = tmp_path / "call.yaml"
    path.write_text(text + "run_sous_trames: [forest]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'run_sous_trames' is a run parameter"):
        load_territory(path)


def _raster(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_the_territory_wide_inputs_do_not_depend_on_the_chosen_sous_trames(territories, call_sample):
    """The class raster (mining's terrils and cavaliers burned in) and the protected areas' reservoir assignment are
    those of a full run (with the reduced territory of old, 497 class cells differed at 100 m and two protected areas lost a
    sous-trame)."""
    full, partial = territories
    inputs = call_sample[1]
    a = engine._context(full, inputs)
    a_classes, a_always = a.classes_raster.copy(), dict(a.always)
    b = engine._context(partial, inputs)
    assert b.grid.shape == a_classes.shape
    assert np.array_equal(b.classes_raster, a_classes)
    assert b.always == a_always


def test_forest_of_a_partial_run_is_the_forest_of_a_full_run(territories, call_sample, tmp_path):
    """Friction, cost and corridors of forest from a run of forest + wetland equal a full run's (CALL, 100 m,
    untiled; with the reduced territory of old, 273 friction and 898 cost cells and one corridor differed)."""
    full, partial = territories
    inputs = call_sample[1]
    a = engine.compute_sous_trame(full, inputs, "forest", tmp_path / "full")
    b = engine.compute_sous_trame(partial, inputs, "forest", tmp_path / "partial")
    for name in ("friction", "cost"):
        np.testing.assert_array_equal(_raster(b["files"][name]), _raster(a["files"][name]), err_msg=name)
    ca, cb = gpd.read_parquet(a["files"]["corridors"]), gpd.read_parquet(b["files"]["corridors"])
    assert len(ca) > 0
    assert ca.drop(columns="geometry").equals(cb.drop(columns="geometry"))
    assert ca.geometry.geom_equals_exact(cb.geometry, tolerance=0).all()
    assert a["counts"] == b["counts"]


@pytest.mark.integration          # a whole `tvb run` of the bundled sample
@pytest.mark.slow
def test_a_partial_run_publishes_the_chosen_sous_trames_as_a_full_run_computes_them(territories, call_sample,
                                                                                      tmp_path, monkeypatch, capsys):
    """``tvb run --sous-trames forest,wetland`` at 100 m: the release's forest rasters are a full run's, and its
    layers, rasters, indicators, fiches, web map and QGIS project name the chosen sous-trames only."""
    import json
    import sqlite3

    from tvb_tasks.cli import main as tvb

    full, partial = territories
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "store"
    assert tvb(["run", "--territory", "call", "--store", str(store), "--sous-trames", "forest,wetland",
                "--resolution", "100"]) == 0
    rid = capsys.readouterr().out.split("published release ")[1].split()[0]
    release = store / "releases" / "call" / rid
    assert json.loads((release / "manifest.json").read_text())["config_hash"] == partial.config_hash()
    assert sorted(p.name for p in (release / "rasters").glob("*.tif")) == [
        "cost_forest.tif", "cost_wetland.tif", "friction_forest.tif", "friction_wetland.tif"]
    reference = engine.compute_sous_trame(full, call_sample[1], "forest", tmp_path / "reference")
    for name in ("friction", "cost"):
        np.testing.assert_array_equal(_raster(release / "rasters" / f"{name}_forest.tif"),
                                      _raster(reference["files"][name]), err_msg=name)
    with sqlite3.connect(release / "tvb.gpkg") as con:
        for layer in ("reservoirs", "relays", "corridors"):
            values = {r[0] for r in con.execute(f"SELECT DISTINCT sous_trame FROM {layer}")}
            assert values and values <= set(CHOSEN), layer
    indicators = json.loads((release / "indicators" / "indicators.json").read_text())
    assert [r["sous_trame"] for r in indicators["details"]["sous_trames"]] == CHOSEN
    assert sorted(p.stem for p in (release / "report" / "fiches").glob("fiche_*.html")) == [
        "fiche_forest", "fiche_wetland"]
    others = [full.sous_trames[st].label for st in full.sous_trames if st not in CHOSEN]
    for page in (release / "web" / "index.html", release / "report" / "index.html",
                 release / "report" / "fiches" / "index.html", release / "qgis" / "tvb.qgs"):
        text = page.read_text(encoding="utf-8")
        assert full.sous_trames["forest"].label in text and not any(label in text for label in others), page

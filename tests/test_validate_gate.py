"""Validation gate (GX 1.x): suites load complete, custom geo expectations block bad inputs, warnings don't block.

Inputs are small GeoDataFrames in EPSG:2154 around a 10 km box used as the territory outline (the boundary source
of the CALL configuration is pointed at it). One GX context serves the whole module (GX is slow to import).
"""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, Polygon, box

from helpers.yamlio import dump_yaml, load_yaml

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from tvb_tasks.config import PROJECT_ROOT, ConfigError, load_territory
from tvb_tasks.config_sections import ValidationSettings
from tvb_tasks.validate import (
    SuiteLoadError,
    ValidationFailed,
    list_suites,
    load_suite,
    raise_for_critical,
    release_summary,
    repair_geometries,
    validate_outputs,
    validate_source,
    validate_sources,
)
from tvb_tasks.validate import suites as suites_mod

X0, Y0 = 650_000.0, 7_030_000.0
TERRITORY = box(X0, Y0, X0 + 10_000, Y0 + 10_000)
BOW_TIE = Polygon([(X0 + 100, Y0 + 100), (X0 + 600, Y0 + 600), (X0 + 600, Y0 + 100), (X0 + 100, Y0 + 600)])

# Declared size of every suite: a suite never loads with fewer (or more) expectations than this.
EXPECTED_COUNTS = {
    "source_landuse": 19, "source_landuse_overlay": 9, "source_roads": 15, "source_railways": 14,
    "source_watercourses": 16, "source_protected_areas": 15, "source_boundary": 8, "source_communes": 14,
    "source_mining": 9, "source_osm": 10, "source_river_obstacles": 9,
    "output_reservoirs": 18, "output_relays": 18, "output_corridors": 20, "output_wet_corridors": 15,
    "output_rupture_points": 18, "output_indicators": 6, "output_corridor_areas": 21,
    "source_projects": 17, "source_maintenance": 14, "output_priorities": 22,
    "output_vigilance_points": 20, "output_corridor_stretches": 22,
}


# --- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("validate")


@pytest.fixture(scope="module")
def boundary_path(workdir) -> Path:
    path = workdir / "territory.parquet"
    gpd.GeoDataFrame({"siren": ["000000000"]}, geometry=[TERRITORY], crs=2154).to_parquet(path)
    return path


def _territory(boundary_path: Path, validation: dict | None = None):
    """CALL configuration whose boundary source is the test box, with a given ``validation`` section."""
    base = load_territory("call")
    sources = dict(base.sources)
    sources["territory"] = base.sources["territory"].model_copy(update={"path": str(boundary_path), "layer": None})
    return base.model_copy(update={"sources": sources, "validation": ValidationSettings.model_validate(validation or {})})


@pytest.fixture(scope="module")
def territory(boundary_path):
    """No repair, default bounds (± 20 % rows and area per class)."""
    return _territory(boundary_path, {"min_class_area_ha": 1})


def landuse(n: int = 6, **overrides) -> gpd.GeoDataFrame:
    """``n`` valid 100 m × 100 m... up to 400 m squares inside the territory with valid OCS2D codes."""
    codes = [("CS4.1.2", "US1.2.1"), ("CS6.3.0", "US1.1.3"), ("CS1.1.1", "US5.1.1"), ("CS6.2.0", "US6.2.3")]
    rows = [codes[i % len(codes)] for i in range(n)]
    data = {
        "id": list(range(1, n + 1)),
        "code_cs": [r[0] for r in rows],
        "code_us": [r[1] for r in rows],
        "millesime": [2021] * n,
    }
    geoms = [box(X0 + 1000 * i, Y0 + 1000, X0 + 1000 * i + 400, Y0 + 1400) for i in range(n)]
    gdf = gpd.GeoDataFrame(data, geometry=geoms, crs=2154)
    for column, values in overrides.items():
        gdf[column] = values
    return gdf


def write(gdf: gpd.GeoDataFrame, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.parquet"
    gdf.to_parquet(path)
    return path


def run_landuse(territory, tmp_path, gdf, previous: gpd.GeoDataFrame | None = None) -> dict:
    path = write(gdf, tmp_path, "landuse")
    prev = write(previous, tmp_path / "prev", "landuse") if previous is not None else None
    return validate_source(territory, "landuse", path, previous_path=prev, out_dir=tmp_path / "out")


def critical_keys(summary: dict) -> set[str]:
    return {f["expectation"] for f in summary["critical_failures"]}


# --- suites and the registration guard ------------------------------------------------------------------------------
def test_every_suite_loads_with_its_declared_count():
    assert sorted(list_suites()) == sorted(EXPECTED_COUNTS)
    for name, count in EXPECTED_COUNTS.items():
        doc = suites_mod.read_suite_json(name)
        assert doc["meta"]["expected_expectation_count"] == count == len(doc["expectations"])
        assert len(load_suite(name).expectations) == count, name


def test_every_role_and_output_has_a_suite():
    from typing import get_args

    from tvb_tasks.config import SourceRole

    for role in get_args(SourceRole):
        assert suites_mod.suite_for("source", role).startswith("source_")
    for layer in ("reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors", "rupture_points",
                  "indicators", "priorities", "vigilance_points", "corridor_stretches"):
        assert suites_mod.suite_for("output", layer) == f"output_{layer}"


def test_suite_refuses_to_load_when_a_custom_expectation_is_not_registered(monkeypatch):
    import great_expectations as gx
    from great_expectations.expectations import registry

    doc = suites_mod.read_suite_json("source_landuse")
    monkeypatch.delitem(registry._registered_expectations, "expect_column_values_to_be_valid_geometry")
    # what the guard protects against: GX itself silently drops the unknown expectation
    logging.disable(logging.CRITICAL)
    try:
        silent = gx.ExpectationSuite(name="silent", expectations=copy.deepcopy(doc["expectations"]))
    finally:
        logging.disable(logging.NOTSET)
    assert len(silent.expectations) == EXPECTED_COUNTS["source_landuse"] - 1
    with pytest.raises(SuiteLoadError, match="expect_column_values_to_be_valid_geometry"):
        load_suite("source_landuse")


def test_suite_count_mismatch_and_invalid_expectations_raise(tmp_path, monkeypatch):
    doc = suites_mod.read_suite_json("source_roads")
    wrong = copy.deepcopy(doc)
    wrong["name"] = "wrong_count"
    wrong["meta"]["expected_expectation_count"] = len(doc["expectations"]) + 1
    (tmp_path / "wrong_count.json").write_text(json.dumps(wrong))
    invalid = copy.deepcopy(doc)
    invalid["name"] = "invalid"
    invalid["expectations"][1]["kwargs"] = {"mostly": 7}
    (tmp_path / "invalid.json").write_text(json.dumps(invalid))
    monkeypatch.setenv("TVB_EXPECTATIONS_DIR", str(tmp_path))
    with pytest.raises(SuiteLoadError, match="declares 16 expectations but the file lists 15"):
        load_suite("wrong_count")
    with pytest.raises(SuiteLoadError, match="an expectation is invalid"):
        load_suite("invalid")
    with pytest.raises(SuiteLoadError, match="unknown expectations"):
        suites_mod.apply_severity_overrides(copy.deepcopy(doc), {"expect_nothing[id]": "warning"})


def test_loaded_count_is_checked_after_gx_built_the_suite(monkeypatch):
    """Second guard: even if the type check were fooled, a suite GX built short is refused."""
    from great_expectations.expectations import registry

    known = suites_mod.registered_expectation_types()
    monkeypatch.setattr(suites_mod, "registered_expectation_types", lambda: known)
    monkeypatch.delitem(registry._registered_expectations, "expect_table_crs_to_be")
    logging.disable(logging.CRITICAL)
    try:
        with pytest.raises(SuiteLoadError, match=r"loaded 14 expectations, declares 15; GX refused "
                                                 r"\['expect_table_crs_to_be'\]"):
            load_suite("source_roads")
    finally:
        logging.disable(logging.NOTSET)


# --- sources ---------------------------------------------------------------------------------------------------------
def test_good_landuse_passes(territory, tmp_path):
    summary = run_landuse(territory, tmp_path, landuse(), previous=landuse())
    assert summary["success"], summary["critical_failures"]
    assert summary["critical_failures"] == [] and summary["warnings"] == []
    assert summary["evaluated"] == EXPECTED_COUNTS["source_landuse"]
    assert summary["previous_row_count"] == 6 and summary["row_count"] == 6
    stored = json.loads(Path(summary["results_path"]).read_text())
    assert stored["result"]["statistics"]["successful_expectations"] == EXPECTED_COUNTS["source_landuse"]
    raise_for_critical(summary)   # no exception


def _bad_inputs():
    good = landuse()
    bow_tie = landuse()
    bow_tie.loc[1, "geometry"] = BOW_TIE
    empty = landuse()
    empty.loc[2, "geometry"] = Polygon()
    wrong_crs = landuse().set_crs(3857, allow_override=True)
    outside = landuse()
    outside.loc[3, "geometry"] = box(X0 + 50_000, Y0 + 50_000, X0 + 50_400, Y0 + 50_400)
    unknown_code = landuse()
    unknown_code.loc[0, "code_cs"] = "CS9.9.9"
    missing_column = landuse().drop(columns=["code_us"])
    empty_layer = landuse().iloc[0:0]
    return {
        "bow-tie polygon": (bow_tie, None, "expect_column_values_to_be_valid_geometry[geometry]"),
        "empty geometry": (empty, None, "expect_column_values_to_be_non_empty_geometry[geometry]"),
        "wrong CRS": (wrong_crs, None, "expect_table_crs_to_be"),
        "outside the territory": (outside, None, "expect_column_values_to_be_in_territory[geometry]"),
        "unknown land-use code": (unknown_code, None, "expect_column_values_to_be_in_set[code_cs]"),
        "missing column": (missing_column, None, "expect_table_columns_to_match_set"),
        "empty layer": (empty_layer, None, "row_count_non_empty"),
        "50 % fewer features": (landuse(4), landuse(8), "row_count_drift"),
        "area drift of a class": (good, landuse(6).assign(code_cs="CS4.1.2"),
                                  "expect_table_area_by_class_drift_to_be_below"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_is_blocked(territory, tmp_path, case):
    gdf, previous, expected_key = _bad_inputs()[case]
    summary = run_landuse(territory, tmp_path, gdf, previous)
    assert not summary["success"]
    assert expected_key in critical_keys(summary), summary["critical_failures"]
    with pytest.raises(ValidationFailed) as err:
        raise_for_critical(summary)
    assert "'landuse'" in str(err.value) and expected_key in str(err.value)


def test_failure_message_names_source_expectation_count_and_sample(territory, tmp_path):
    gdf = landuse()
    gdf.loc[[0, 4], "code_cs"] = ["CS9.9.9", "XX"]
    summary = run_landuse(territory, tmp_path, gdf)
    failure = next(f for f in summary["critical_failures"]
                   if f["expectation"] == "expect_column_values_to_be_in_set[code_cs]")
    assert failure["unexpected_count"] == 2 and failure["element_count"] == 6
    assert failure["sample"] == ["id=1: CS9.9.9", "id=5: XX"]
    with pytest.raises(ValidationFailed) as err:
        raise_for_critical({"success": False, "sources": {"landuse": summary}})
    text = str(err.value)
    assert "source 'landuse' (suite source_landuse)" in text
    assert "expect_column_values_to_be_in_set[code_cs]: 2 of 6 rows fail" in text
    assert "sample: id=1: CS9.9.9; id=5: XX" in text


def test_geometry_sample_is_described_not_dumped(territory, tmp_path):
    gdf = landuse()
    gdf.loc[1, "geometry"] = BOW_TIE
    summary = run_landuse(territory, tmp_path, gdf)
    failure = next(f for f in summary["critical_failures"] if f["type"] == "expect_column_values_to_be_valid_geometry")
    assert failure["unexpected_count"] == 1
    assert failure["sample"][0].startswith("id=2: Polygon: Self-intersection")


def test_warnings_do_not_block(territory, tmp_path):
    summary = run_landuse(territory, tmp_path, landuse(millesime=[1850] * 6))
    assert summary["success"] and summary["critical_failures"] == []
    assert [w["expectation"] for w in summary["warnings"]] == ["expect_column_values_to_be_between[millesime]"]
    raise_for_critical(summary)


def test_severity_override_from_yaml_turns_a_critical_into_a_warning(boundary_path, tmp_path):
    relaxed = _territory(boundary_path, {"sources": {"landuse": {
        "severity": {"expect_column_values_to_be_in_set[code_cs]": "warning"}}}})
    gdf = landuse()
    gdf.loc[0, "code_cs"] = "CS9.9.9"
    summary = run_landuse(relaxed, tmp_path, gdf)
    assert summary["success"]
    assert [w["expectation"] for w in summary["warnings"]] == ["expect_column_values_to_be_in_set[code_cs]"]


def test_repair_enabled_in_yaml_fixes_a_bow_tie_before_validation(boundary_path, tmp_path, caplog):
    repairing = _territory(boundary_path, {"sources": {"landuse": {"repair_geometries": True}}})
    gdf = landuse()
    gdf.loc[1, "geometry"] = BOW_TIE
    with caplog.at_level(logging.WARNING, logger="tvb_tasks.validate.repair"):
        summary = run_landuse(repairing, tmp_path, gdf)
    assert summary["success"], summary["critical_failures"]
    assert summary["repaired_geometries"] == 1
    assert "repair_geometries(landuse): repaired 1 invalid geometries" in caplog.text


def test_repair_geometries_fixes_and_counts():
    gdf = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=[BOW_TIE, box(0, 0, 1, 1), None], crs=2154)
    fixed, n = repair_geometries(gdf, "test")
    assert n == 1
    assert fixed.geometry.iloc[0].is_valid and fixed.geometry.iloc[0].geom_type == "MultiPolygon"
    assert fixed.geometry.iloc[0].area == pytest.approx(2 * 0.5 * 500 * 250)
    assert fixed.geometry.iloc[1].equals(box(0, 0, 1, 1)) and fixed.geometry.iloc[2] is None
    assert fixed.crs == gdf.crs and not gdf.geometry.iloc[0].is_valid   # input untouched
    again, n_again = repair_geometries(fixed, "test")
    assert n_again == 0 and again is fixed


def test_validate_sources_writes_results_and_data_docs(territory, boundary_path, tmp_path):
    roads = gpd.GeoDataFrame(
        {"id": [1, 2, 3], "importance": [1, 3, 9], "name": ["A1", "D917", "x"]},
        geometry=[LineString([(X0 + 100, Y0 + 100 + 50 * i), (X0 + 5000, Y0 + 200 + 50 * i)]) for i in range(3)],
        crs=2154)
    railways = gpd.GeoDataFrame({"id": [1], "status": ["disused"]},
                                geometry=[LineString([(X0 + 10, Y0 + 10), (X0 + 900, Y0 + 900)])], crs=2154)
    paths = {"territory": boundary_path, "landuse": write(landuse(), tmp_path, "landuse"),
             "roads": write(roads, tmp_path, "roads"), "railways": write(railways, tmp_path, "railways")}
    out = tmp_path / "validation"
    summary = validate_sources(territory, paths, {"roads": None}, out)
    assert set(summary["sources"]) == set(paths)
    assert not summary["success"] and summary["critical_failures"] == 1
    assert summary["sources"]["roads"]["critical_failures"][0]["sample"] == ["id=3: 9"]
    assert all(summary["sources"][n]["success"] for n in ("territory", "landuse", "railways"))
    results = json.loads(Path(summary["results_path"]).read_text())
    assert set(results["results"]) == set(paths) and results["summary"]["critical_failures"] == 1
    index = Path(summary["docs_path"]).read_text()
    assert "BLOCKED" in index and "source-roads.html" in index
    page = (out / "data_docs" / "source-roads.html").read_text()
    assert "expect_column_values_to_be_in_territory" in page or "source_roads" in page
    with pytest.raises(ValidationFailed, match=r"source 'roads' .*importance.*1 of 3 rows fail"):
        raise_for_critical(summary)
    manifest = release_summary(summary, None)
    assert manifest["success"] is False and manifest["outputs"] is None
    assert manifest["sources"]["layers"]["roads"]["critical"] == ["expect_column_values_to_be_between[importance]"]
    json.dumps(manifest)   # JSON-serialisable for manifest.json


def test_unreadable_snapshot_is_a_critical_failure(territory, tmp_path):
    bad = tmp_path / "landuse.parquet"
    bad.write_text("not parquet")
    summary = validate_source(territory, "landuse", bad, previous_path=None, out_dir=tmp_path / "out")
    assert not summary["success"] and critical_keys(summary) == {"layer_readable"}
    with pytest.raises(ValidationFailed, match="not a readable GeoParquet"):
        raise_for_critical(summary)


def test_invalid_validation_section_names_the_key(tmp_path):
    """The section is validated when the territory loads (``territory.validation`` is then typed)."""

    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["validation"] = {"row_count_drift_pct": -5}
    path = tmp_path / "call.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"validation\.row_count_drift_pct"):
        load_territory(path)


# --- outputs ---------------------------------------------------------------------------------------------------------
def _square(i: int, size: float = 300) -> Polygon:
    return box(X0 + 1000 * i, Y0 + 5000, X0 + 1000 * i + size, Y0 + 5000 + size)


def output_layers() -> dict[str, gpd.GeoDataFrame]:
    reservoirs = gpd.GeoDataFrame({"id": ["R1", "R2"], "sous_trame": ["forest", "wetland"], "origin": ["landuse"] * 2,
                                   "area_ha": [9.0, 9.0], "libelle": ["Réservoir 1", "Réservoir 2"]},
                                  geometry=[_square(0), _square(2)], crs=2154)
    relays = gpd.GeoDataFrame({"id": ["Z1"], "sous_trame": ["forest"], "origin": ["landuse"], "area_ha": [1.0],
                               "libelle": ["Zone relais"]}, geometry=[_square(4, 100)], crs=2154)
    line = LineString([(X0 + 300, Y0 + 5150), (X0 + 2000, Y0 + 5150)])
    corridors = gpd.GeoDataFrame({"id": ["C1"], "sous_trame": ["forest"], "status": ["to_restore"],
                                  "length_m": [1700.0], "cost": [5000.0], "libelle": ["Corridor à restaurer"]},
                                 geometry=[line], crs=2154)
    wet = gpd.GeoDataFrame({"id": ["W1"], "length_m": [1700.0], "libelle": ["Corridor humide"]},
                           geometry=[line], crs=2154)
    ruptures = gpd.GeoDataFrame({"id": ["P1"], "corridor_id": ["C1"], "sous_trame": ["forest"],
                                 "infrastructure": ["road"], "infra_class": ["1"], "severity": ["high"],
                                 "libelle": ["Point de rupture"]}, geometry=[Point(X0 + 1000, Y0 + 5150)], crs=2154)
    areas = gpd.GeoDataFrame({"id": ["C1-A"], "corridor_id": ["C1"], "sous_trame": ["forest"],
                              "status": ["to_restore"], "missing_link": [0], "cost_margin": [2500.0],
                              "area_ha": [17.0], "mean_width_m": [100.0], "libelle": ["Emprise du corridor"]},
                             geometry=[line.buffer(50)], crs=2154)
    mid = X0 + 1200
    stretches = gpd.GeoDataFrame({"id": ["C1-S01", "C1-S02"], "corridor_id": ["C1", "C1"],
                                  "sous_trame": ["forest", "forest"], "status": ["existing", "to_restore"],
                                  "length_m": [900.0, 800.0], "max_gap_m": [0.0, 325.0],
                                  "support_share": [0.92, 0.41], "missing_link": [0, 0], "downgraded": [0, 1],
                                  "libelle": ["Tronçon existant", "Tronçon à restaurer"]},
                                 geometry=[LineString([(X0 + 300, Y0 + 5150), (mid, Y0 + 5150)]),
                                           LineString([(mid, Y0 + 5150), (X0 + 2000, Y0 + 5150)])], crs=2154)
    vigilance = gpd.GeoDataFrame({"id": ["V0001"], "corridor_id": ["C1"], "sous_trame": ["forest"],
                                  "infrastructure": ["road"], "infra_class": ["4"], "infra_name": ["D58"],
                                  "severity": [2], "n_merged": [1], "libelle": ["Point de vigilance"]},
                                 geometry=[Point(X0 + 1600, Y0 + 5150)], crs=2154)
    return {"reservoirs": reservoirs, "relays": relays, "corridors": corridors, "wet_corridors": wet,
            "rupture_points": ruptures, "corridor_areas": areas, "corridor_stretches": stretches,
            "vigilance_points": vigilance}


def write_outputs(directory: Path, layers: dict, figures: dict | None) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    gpkg = directory / "tvb.gpkg"
    for name, gdf in layers.items():
        gdf.to_file(gpkg, layer=name, driver="GPKG")
    indicators = directory / "indicators.json"
    indicators.write_text(json.dumps({"key_figures": figures} if figures is not None else {}))
    return gpkg, indicators


GOOD_FIGURES = {"territory_area_ha": 10_000.0, "artificialised_share_pct": 31.5, "natural_share_pct": 12.0,
                "reservoir_count": 2}


def test_good_outputs_pass_and_share_the_docs_index(territory, tmp_path):
    gpkg, indicators = write_outputs(tmp_path, output_layers(), GOOD_FIGURES)
    summary = validate_outputs(territory, gpkg, indicators, tmp_path / "validation")
    assert summary["success"], [(k, s["critical_failures"]) for k, s in summary["sources"].items()]
    assert summary["critical_failures"] == 0 and summary["warnings"] == 0
    assert set(summary["sources"]) == {"reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors",
                                       "rupture_points", "corridor_stretches", "vigilance_points", "indicators"}
    assert summary["sources"]["vigilance_points"]["evaluated"] == EXPECTED_COUNTS["output_vigilance_points"]
    assert summary["sources"]["corridor_stretches"]["evaluated"] == EXPECTED_COUNTS["output_corridor_stretches"]
    assert summary["sources"]["corridors"]["evaluated"] == EXPECTED_COUNTS["output_corridors"]
    assert summary["sources"]["corridor_areas"]["evaluated"] == EXPECTED_COUNTS["output_corridor_areas"]
    assert Path(summary["results_path"]).name == "outputs_results.json"
    assert "output-reservoirs.html" in Path(summary["docs_path"]).read_text()
    assert release_summary(None, summary)["success"] is True


def test_bad_outputs_are_blocked_and_empty_optional_layers_only_warn(territory, tmp_path):
    """Each output layer is validated on its own (one suite per layer), so one run checks several broken layers: a
    status outside the set, a reservoir outside the territory, bad key figures, two missing layers (rupture points,
    corridor stretches) block; an empty relay layer only warns and an empty vigilance layer (no local road crossed)
    passes."""
    layers = output_layers()
    layers["corridors"].loc[0, "status"] = "maybe"
    layers["reservoirs"].loc[1, "geometry"] = box(X0 - 5000, Y0, X0 - 4000, Y0 + 1000)   # outside the territory
    layers["relays"] = layers["relays"].iloc[0:0]
    layers["vigilance_points"] = layers["vigilance_points"].iloc[0:0]
    del layers["rupture_points"]
    del layers["corridor_stretches"]
    figures = {**GOOD_FIGURES, "artificialised_share_pct": 120.0, "reservoir_count": "two"}
    gpkg, indicators = write_outputs(tmp_path, layers, figures)
    summary = validate_outputs(territory, gpkg, indicators, tmp_path / "validation")
    layers_summary = summary["sources"]
    assert not summary["success"]
    assert critical_keys(layers_summary["corridors"]) == {"expect_column_values_to_be_in_set[status]"}
    assert critical_keys(layers_summary["reservoirs"]) == {"expect_column_values_to_be_in_territory[geometry]"}
    assert critical_keys(layers_summary["rupture_points"]) == {"layer_exists"}
    assert critical_keys(layers_summary["corridor_stretches"]) == {"layer_exists"}
    assert critical_keys(layers_summary["indicators"]) == {
        "expect_column_values_to_be_between[artificialised_share_pct]", "expect_table_values_to_be_numeric"}
    assert layers_summary["relays"]["success"]
    assert [w["expectation"] for w in layers_summary["relays"]["warnings"]] == ["row_count_non_empty"]
    vigilance = layers_summary["vigilance_points"]
    assert vigilance["success"] and vigilance["critical_failures"] == [], vigilance
    failing = {name for name, s in layers_summary.items() if not s["success"]}
    assert failing == {"corridors", "reservoirs", "rupture_points", "corridor_stretches", "indicators"}
    with pytest.raises(ValidationFailed, match=r"source 'rupture_points'.*layer 'rupture_points' missing"):
        raise_for_critical(summary)
    with pytest.raises(ValidationFailed, match=r"source 'corridor_stretches'.*layer 'corridor_stretches' missing"):
        raise_for_critical(summary)


@pytest.fixture(scope="module")
def broken_outputs(territory, workdir) -> dict:
    """One validation of outputs whose vigilance points and corridor stretches are broken (V0001 twice, a severity
    that is not the YAML's ``vigilance_severity`` — set to 3 here, so the default 2 is the wrong one —, an id
    outside the V… series, a status outside the three, a zero-length stretch) and whose indicators file has no key
    figures; the other layers are good (layers are validated one by one)."""
    layers = output_layers()
    vig = layers["vigilance_points"]
    layers["vigilance_points"] = gpd.GeoDataFrame(
        {**{c: list(vig[c]) * 3 for c in vig.columns if c != "geometry"}, "id": ["V0001", "V0001", "P0002"],
         "severity": [3, 2, 3]},
        geometry=[Point(X0 + 1600, Y0 + 5150), Point(X0 + 1700, Y0 + 5150), Point(X0 + 1800, Y0 + 5150)], crs=2154)
    layers["corridor_stretches"].loc[0, "status"] = "partiel"
    layers["corridor_stretches"].loc[1, "length_m"] = 0.0
    directory = workdir / "broken-outputs"
    gpkg, indicators = write_outputs(directory, layers, None)
    rules = territory.rupture_points.model_copy(update={"vigilance_severity": 3})
    return validate_outputs(territory.model_copy(update={"rupture_points": rules}), gpkg, indicators,
                            directory / "validation")


def test_indicators_without_key_figures_are_blocked(broken_outputs):
    summary = broken_outputs
    assert not summary["sources"]["indicators"]["success"]
    assert "expect_table_columns_to_match_set" in critical_keys(summary["sources"]["indicators"])
    assert all(summary["sources"][k]["success"] for k in ("reservoirs", "corridors"))


def test_broken_vigilance_and_stretch_layers_fail_the_gate_naming_them(broken_outputs):
    """Points de vigilance and corridor stretches are output layers like the others: duplicate ids, a severity that is
    not the YAML's ``vigilance_severity``, a status outside the three, a zero-length stretch each block the release,
    and the gate's message names the layer (the empty and the missing layers are in the test above). The vigilance
    severity is the YAML's, not a constant; an id not in the V… series is refused."""
    summary = broken_outputs
    assert not summary["success"]
    assert critical_keys(summary["sources"]["vigilance_points"]) == {
        "expect_column_values_to_be_unique[id]", "expect_column_values_to_be_in_set[severity]",
        "expect_column_values_to_match_regex[id]"}
    vigilance = {f["expectation"]: f for f in summary["sources"]["vigilance_points"]["critical_failures"]}
    assert vigilance["expect_column_values_to_be_in_set[severity]"]["unexpected_count"] == 1     # the 2: the YAML says 3
    assert critical_keys(summary["sources"]["corridor_stretches"]) == {
        "expect_column_values_to_be_in_set[status]", "expect_column_values_to_be_between[length_m]"}
    assert all(summary["sources"][k]["success"] for k in ("corridors", "rupture_points", "reservoirs"))
    with pytest.raises(ValidationFailed) as caught:
        raise_for_critical(summary)
    message = str(caught.value)
    assert "source 'vigilance_points' (suite output_vigilance_points)" in message
    assert "source 'corridor_stretches' (suite output_corridor_stretches)" in message
    assert "partiel" in message and "V0001" in message


def test_suites_are_built_once_per_document_and_validation_leaves_them_unchanged(territory, tmp_path):
    """The per-process cache of built suites: the same document gives the same object, another document (a
    severity override) another one, and a gate run leaves the shared suite as built."""
    first = load_suite("source_landuse")
    assert load_suite("source_landuse") is first
    assert load_suite("source_landuse", {"row_count_non_empty": "info"}) is not first
    before = json.dumps(first.to_json_dict(), sort_keys=True, default=str)
    assert run_landuse(territory, tmp_path, landuse(), previous=landuse())["success"]
    bad = _bad_inputs()["unknown land-use code"][0]
    assert not run_landuse(territory, tmp_path / "bad", bad)["success"]
    assert run_landuse(territory, tmp_path / "again", landuse(), previous=landuse())["success"]
    assert json.dumps(first.to_json_dict(), sort_keys=True, default=str) == before

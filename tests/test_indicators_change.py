"""Change since the previous release: a run on modified inputs (one reservoir removed) shows the expected change
in the change table and the change layer."""
from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from helpers.indicators_scene import POLYS, scene_layers, scene_territory, write_gpkg, write_scene
from tvb_tasks.indicators import append_history, compute_indicators
from tvb_tasks.indicators.change import change_table, corridor_changes, polygon_changes


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Release 1: the scene; release 2: the same scene without forest reservoir R4 (4 ha), so without its
    corridors C2 (60 m, to restore) and C3 (1050 m, to create) and C3's two rupture points."""
    tmp = tmp_path_factory.mktemp("change")
    territory = scene_territory(tmp)
    old = write_scene(tmp / "old.gpkg")
    new = write_scene(tmp / "new.gpkg", drop_reservoir="R4")
    compute_indicators(territory, old, tmp / "r1")
    result = compute_indicators(territory, new, tmp / "r2", previous_gpkg=old,
                                previous_indicators=tmp / "r1" / "indicators.json")
    return territory, tmp, result


def _row(table: pd.DataFrame, family: str, indicator: str, sous_trame: str = "") -> pd.Series:
    sel = table[(table["family"] == family) & (table["indicator"] == indicator) & (table["scope"] == "territory")
                & (table["sous_trame"].fillna("") == sous_trame)]
    assert len(sel) == 1, (family, indicator, sous_trame)
    return sel.iloc[0]


def test_change_table_after_removing_one_reservoir(releases):
    _, tmp, result = releases
    assert {p.split("/")[-1] for p in result["files"]} >= {"change.csv", "change.gpkg"}
    table = pd.read_csv(tmp / "r2" / "change.csv", dtype={"unit_id": str, "sous_trame": str})
    area = _row(table, "key_figures", "terrestrial_reservoirs_relays_ha")
    assert (area["previous"], area["current"], area["change_abs"]) == pytest.approx((49.5, 45.5, -4.0))
    assert area["change_pct"] == pytest.approx(-400 / 49.5)
    km = _row(table, "key_figures", "terrestrial_corridors_km")
    assert km["change_abs"] == pytest.approx(-(0.06 + 1.05))
    assert _row(table, "key_figures", "rupture_points")["current"] == 0
    assert _row(table, "key_figures", "territory_area_ha")["change_abs"] == 0
    nodes = _row(table, "connectivity", "n_nodes", "forest")
    assert (nodes["previous"], nodes["current"]) == (3, 2)
    pc = _row(table, "connectivity", "pc", "forest")
    assert pc["current"] == pytest.approx((900 + 100 + 2 * 300 * 0.5) / 200**2)   # R1–R2 only
    # habitat did not change (R4's wood is still forest land use): meff unchanged
    assert _row(table, "fragmentation", "meff_cbc_ha", "forest")["change_abs"] == pytest.approx(0.0)


def test_change_layer_after_removing_one_reservoir(releases):
    _, tmp, _result = releases
    reservoirs = gpd.read_file(tmp / "r2" / "change.gpkg", layer="reservoirs_change")
    assert reservoirs[["change", "previous_id", "sous_trame"]].values.tolist() == [["lost", "R4", "forest"]]
    assert reservoirs["previous_area_ha"].iloc[0] == pytest.approx(4.0)
    assert reservoirs.geometry.iloc[0].equals(POLYS["F4"])
    corridors = gpd.read_file(tmp / "r2" / "change.gpkg", layer="corridors_change")
    assert sorted(zip(corridors["change"], corridors["previous_id"])) == [("lost", "C2"), ("lost", "C3")]
    points = gpd.read_file(tmp / "r2" / "change.gpkg", layer="rupture_points_change")
    assert sorted(points["previous_id"]) == ["P1", "P2"] and set(points["change"]) == {"removed"}
    assert gpd.read_file(tmp / "r2" / "change.gpkg", layer="relays_change").empty
    import json
    doc = json.loads((tmp / "r2" / "indicators.json").read_text(encoding="utf-8"))
    assert doc["change"]["layers"] == {"reservoirs_lost": 1, "corridors_lost": 2, "rupture_points_removed": 2}
    assert any(r["indicator"] == "terrestrial_reservoirs_relays_ha" for r in doc["change"]["table"])


def test_identical_release_has_no_change(releases, tmp_path):
    territory, tmp, _ = releases
    result = compute_indicators(territory, tmp / "old.gpkg", tmp_path / "same", previous_gpkg=tmp / "old.gpkg",
                                previous_indicators=tmp / "r1" / "indicators.json")
    table = pd.read_csv(tmp_path / "same" / "change.csv")
    assert table["change_abs"].abs().max() == pytest.approx(0.0, abs=1e-9)
    assert (table["previous"].isna() == table["current"].isna()).all()       # splitting index: None without habitat
    assert set(table.loc[table["previous"].isna(), "indicator"]) == {"splitting_index"}
    for layer in ("reservoirs_change", "relays_change", "corridors_change", "rupture_points_change"):
        assert gpd.read_file(tmp_path / "same" / "change.gpkg", layer=layer).empty
    assert "change.gpkg" in {p.split("/")[-1] for p in result["files"]}


def test_previous_indicators_from_the_history(releases, tmp_path):
    territory, tmp, _ = releases
    history = append_history(None, tmp / "r1" / "indicators.json", release_id="2026-01-05", released_at="2026-01-05",
                             snapshot_ids={}, out_path=tmp_path / "indicators.parquet")
    compute_indicators(territory, tmp / "new.gpkg", tmp_path / "out", previous_indicators=history)
    import json
    doc = json.loads((tmp_path / "out" / "indicators.json").read_text(encoding="utf-8"))
    assert doc["change"]["previous_release"] == "2026-01-05" and doc["change"]["layers"] is None
    assert not (tmp_path / "out" / "change.gpkg").exists()


def test_status_change_and_resized_reservoir(tmp_path):
    old, new = scene_layers(), scene_layers()
    new["corridors"].loc[new["corridors"]["id"] == "C1", "status"] = "to_restore"
    new["corridors"]["id"] = ["K1", "K2", "K3"]                          # ids need not be stable
    new["reservoirs"].loc[new["reservoirs"]["id"] == "R1", "geometry"] = box(*POLYS["F1"].bounds).buffer(20,
                                                                                                         join_style=2)
    rows = corridor_changes(old["corridors"], new["corridors"], line_tolerance_m=5)
    assert [(r["change"], r["id"], r["previous_id"], r["previous_status"], r["status"]) for r in rows] == \
        [("status_changed", "K1", "C1", "existing", "to_restore")]
    rows = polygon_changes(old["reservoirs"], new["reservoirs"], "reservoirs", min_overlap_share=0.5)
    assert [(r["change"], r["id"]) for r in rows] == [("resized", "R1")]
    assert rows[0]["area_ha"] == pytest.approx(640 * 540 / 1e4) and rows[0]["previous_area_ha"] == pytest.approx(30)
    path = write_gpkg(new, tmp_path / "new.gpkg")
    assert path.exists()


def test_change_table_keeps_indicators_present_in_one_release_only():
    cols = ["family", "scope", "unit_id", "sous_trame", "indicator", "value", "unit"]
    cur = pd.DataFrame([["key_figures", "territory", "t", "", "a", 5.0, "ha"],
                        ["key_figures", "territory", "t", "", "new", 1.0, ""]], columns=cols)
    prev = pd.DataFrame([["key_figures", "territory", "t", "", "a", 4.0, "ha"],
                         ["key_figures", "territory", "t", "", "gone", 0.0, "km"]], columns=cols)
    table = change_table(cur, prev).set_index("indicator")
    assert table.loc["a", "change_abs"] == 1.0 and table.loc["a", "change_pct"] == pytest.approx(25.0)
    assert pd.isna(table.loc["new", "previous"]) and pd.isna(table.loc["gone", "current"])
    assert table.loc["gone", "unit"] == "km"

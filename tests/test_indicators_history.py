"""Indicator history: one row per release and indicator, Parquet + CSV, idempotent per release."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.indicators_scene import scene_territory, write_scene
from tvb_tasks.indicators import append_history, compute_indicators
from tvb_tasks.indicators.history import HISTORY_COLUMNS, HistoryError, flatten_indicators, previous_rows, read_history


@pytest.fixture(scope="module")
def indicators_json(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hist")
    result = compute_indicators(scene_territory(tmp), write_scene(tmp / "tvb.gpkg"), tmp / "out")
    return tmp / "out" / "indicators.json", result


def test_flatten_has_every_family(indicators_json):
    path, _ = indicators_json
    rows = flatten_indicators(json.loads(path.read_text(encoding="utf-8")))
    assert set(rows["family"]) == {"key_figures", "fragmentation", "connectivity", "communes"}
    key = rows[(rows["family"] == "key_figures") & (rows["indicator"] == "territory_area_ha")]
    assert key["value"].tolist() == [pytest.approx(200.0)] and key["unit"].tolist() == ["ha"]
    meff = rows[(rows["family"] == "fragmentation") & (rows["scope"] == "commune") & (rows["unit_id"] == "62001")
                & (rows["sous_trame"] == "forest") & (rows["indicator"] == "meff_cbc_ha")]
    assert meff["value"].tolist() == [pytest.approx(9.41)]
    assert not rows.duplicated(["family", "scope", "unit_id", "sous_trame", "indicator"]).any()


def test_append_creates_then_extends_then_replaces(indicators_json, tmp_path):
    path, _ = indicators_json
    first = append_history(None, path, release_id="r1", released_at="2026-01-05T03:00:00Z",
                           snapshot_ids={"landuse": "aa11", "communes": "bb22"}, out_path=tmp_path / "h1" /
                           "indicators.parquet")
    h1 = read_history(first)
    assert list(h1.columns) == HISTORY_COLUMNS and set(h1["release_id"]) == {"r1"}
    assert json.loads(h1["snapshot_ids"].iloc[0]) == {"communes": "bb22", "landuse": "aa11"}
    assert (tmp_path / "h1" / "indicators.csv").exists()
    n = len(h1)

    second = append_history(first, path, release_id="r2", released_at="2026-01-12T03:00:00+00:00",
                            snapshot_ids={"landuse": "cc33"}, out_path=tmp_path / "h2" / "indicators.parquet")
    h2 = read_history(second)
    assert len(h2) == 2 * n and list(h2.drop_duplicates("release_id")["release_id"]) == ["r1", "r2"]

    again = append_history(second, path, release_id="r2", released_at="2026-01-12T03:00:00+00:00",
                           snapshot_ids={"landuse": "dd44"}, out_path=tmp_path / "h3" / "indicators.parquet")
    h3 = read_history(again)
    assert len(h3) == 2 * n
    assert set(h3.loc[h3["release_id"] == "r2", "snapshot_ids"]) == {json.dumps({"landuse": "dd44"})}

    from_csv = read_history(tmp_path / "h3" / "indicators.csv")
    pd.testing.assert_frame_equal(from_csv.reset_index(drop=True), h3.reset_index(drop=True))

    release, rows = previous_rows(again)
    assert release == "r2" and len(rows) == n


def test_previous_rows_from_indicators_json(indicators_json):
    path, _ = indicators_json
    release, rows = previous_rows(path)
    assert release is None and len(rows) == len(flatten_indicators(json.loads(path.read_text(encoding="utf-8"))))


def test_bad_inputs(indicators_json, tmp_path):
    path, _ = indicators_json
    with pytest.raises(HistoryError, match="no indicator history"):
        append_history(tmp_path / "missing.parquet", path, release_id="r", released_at="2026-01-01",
                       snapshot_ids={}, out_path=tmp_path / "o.parquet")
    with pytest.raises(HistoryError, match="not an ISO 8601 date"):
        append_history(None, path, release_id="r", released_at="next monday", snapshot_ids={},
                       out_path=tmp_path / "o.parquet")
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(HistoryError, match="missing columns"):
        read_history(bogus)
    not_json = tmp_path / "x.json"
    not_json.write_text("{]", encoding="utf-8")
    with pytest.raises(HistoryError, match="cannot read indicators JSON"):
        append_history(None, not_json, release_id="r", released_at="2026-01-01", snapshot_ids={},
                       out_path=tmp_path / "o.parquet")


def test_history_of_another_territory_is_refused(indicators_json, tmp_path):
    path, _ = indicators_json
    h = append_history(None, path, release_id="r1", released_at="2026-01-01", snapshot_ids={},
                       out_path=tmp_path / "h.parquet")
    frame = read_history(h)
    frame["territory"] = "other"
    frame.to_parquet(h, index=False)
    with pytest.raises(HistoryError, match="territory"):
        append_history(h, path, release_id="r2", released_at="2026-02-01", snapshot_ids={},
                       out_path=tmp_path / "h2.parquet")

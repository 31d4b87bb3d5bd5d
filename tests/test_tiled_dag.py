"""The tiled cost-distance DAG end to end through real Airflow (``dag.test()`` on a migrated SQLite DB, the bundled
sample, a local store): tiles × sous-trames run as mapped tasks over several rounds, rasters only in the store, the
stitched cost rasters identical to the untiled engine's, and so are the corridors computed from the tiles."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from helpers.airflow_run import ROOT, Airflow, assert_clean_log, task_states, why
from helpers.yamlio import dump_yaml, load_yaml


@pytest.fixture(scope="module")
def tiled_config(tmp_path_factory) -> Path:
    """A config folder whose CALL enables tiling with small tiles (many tiles, several rounds)."""
    d = tmp_path_factory.mktemp("config")
    raw = load_yaml((ROOT / "config" / "territories" / "call.yaml").read_text(encoding="utf-8"))
    raw["tiling"] = {"enabled": True, "tile_size": 256, "overlap": 8, "dag_rounds": 10, "memory_limit_gib": 4}
    (d / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return d


@pytest.mark.integration          # a fresh interpreter importing Airflow
def test_dag_only_for_tiled_territories_parses_fast_without_warnings(tiled_config, tmp_path):
    """No DAG for the bundled CALL (tiling disabled); with tiling enabled: the DAG, its rounds, no stage library
    imported at parse time and no deprecation warning."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; g = runpy.run_path(sys.argv[3]); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('geopandas', 'rasterio', 'numba', 'scipy') "
            "or m.startswith(('tvb_tasks.layers', 'tvb_tasks.tiled', 'tvb_tasks.pipeline'))); "
            "d = g.get('tvb_tiled_cost_call'); "
            "print(heavy, None if d is None else sorted(t.task_id for t in d.tasks))")
    args = [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c", code,
            str(ROOT / "plugins"), str(ROOT), str(ROOT / "dags" / "tvb_tiled_cost.py")]
    base = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path)}
    off = subprocess.run(args, capture_output=True, text=True, env=base, timeout=120)
    assert off.returncode == 0, off.stderr[-3000:]
    assert off.stdout.strip().splitlines()[-1] == "[] None"
    on = subprocess.run(args, capture_output=True, text=True, env={**base, "TVB_CONFIG_DIR": str(tiled_config)},
                        timeout=120)
    assert on.returncode == 0, on.stderr[-3000:]
    heavy, tasks = on.stdout.strip().splitlines()[-1].split("] ", 1)
    assert heavy == "["
    for name in ("fetch_sources", "plan_tiles", "first_round", "round_1", "after_round_10", "stitch", "corridors"):
        assert f"'{name}'" in tasks
    assert "'round_11'" not in tasks


@pytest.mark.e2e
@pytest.mark.slow
def test_tiles_mapped_over_rounds_stitch_to_the_untiled_rasters(tmp_path_factory, tiled_config, tmp_path,
                                                                 monkeypatch):
    pytest.importorskip("airflow", reason="apache-airflow is not installed in this environment")
    import rasterio

    af = Airflow(tmp_path_factory.mktemp("airflow-tiled"))
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    # at 50 m: 2 × 2 tiles of 256 cells per sous-trame (8 per round), enough for mapped tiles × sous-trames and
    # the exchange of boundary values over rounds
    run = af.run("tvb_tiled_cost_call", {"sous_trames": ["forest", "mining"], "resolution_m": 50},
                 TVB_CONFIG_DIR=str(tiled_config))
    assert run["state"] == "success", why(run)
    assert_clean_log(run)             # the rounds read the mapped tile results without "XCom not found" errors
    states = task_states(run)
    assert not [k for k, v in states.items() if v not in ("success", "skipped")], why(run)
    round1 = [k for k in states if k.startswith("round_1[")]
    assert len(round1) > 4                                    # tiles of both sous-trames, mapped
    labels = {run["tasks"][k]["rendered_map_index"].split(" ")[0] for k in round1}
    assert {lab.split("/")[0] for lab in labels} == {"forest", "mining"}
    assert {"forest/potential"} <= labels           # the missing links' potential problem in the same rounds
    assert any(k.startswith("round_2[") and v == "success" for k, v in states.items())   # boundary exchange
    assert states["round_10"] == "skipped" if "round_10" in states else True            # converged earlier
    # XCom carries items, counts and the run record (with the territory configuration the fetch used, ≈30 kB:
    # one identity per run), never rasters (MBs)
    for key, value in run["xcoms"].items():
        assert len(str(value)) < 64_000, key
    peaks = [v["peak_mb"] for k, v in run["xcoms"].items() if k.startswith("round_") and isinstance(v, dict)]
    assert peaks and max(peaks) < 4 * 1024

    # the untiled observatory stage on the same run (same snapshots, same effective territory)
    from tvb_tasks import pipeline

    store = af.store()
    fetched = run["xcoms"]["fetch_sources[-1].return_value"]
    assert fetched["resolution_m"] == 50
    for st in ("forest", "mining"):
        res = run["xcoms"][f"stitch[{['forest', 'mining'].index(st)}].return_value"]
        assert res["sous_trame"] == st and res["reached"] > 10_000
        pipeline.stage_compute_sous_trame(fetched, st)
        untiled = pipeline._local_dir(fetched, "layers") / st / "cost.tif"
        with rasterio.open(untiled) as a, rasterio.open(store.local_path(res["cost"])) as b:
            assert np.array_equal(a.read(1), b.read(1)), st
            assert a.transform == b.transform and a.crs == b.crs
        # the corridors task from the same tiles: the untiled stage's corridors (real and missing links), row for row
        cor = run["xcoms"][f"corridors[{['forest', 'mining'].index(st)}].return_value"]
        assert cor["sous_trame"] == st and cor["peak_mb"] < 4 * 1024
        ref = gpd.read_parquet(pipeline._local_dir(fetched, "layers") / st / "corridors.parquet")
        assert cor["missing_links"] == int((ref["missing_link"] == 1).sum())
        got = gpd.read_parquet(store.local_path(cor["corridors"]))
        assert cor["count"] == len(got) == len(ref), st
        pd.testing.assert_frame_equal(got.drop(columns="geometry"), ref.drop(columns="geometry"))
        assert list(got.geometry.to_wkb()) == list(ref.geometry.to_wkb()), st

"""The tiled observatory DAG end to end through real Airflow (``dag.test()`` on a migrated SQLite DB, the bundled
sample, a local store): a territory with tiling gets ``tvb_observatory_<id>`` whose sous-trames are computed by
tiles × sous-trames run as mapped tasks over several rounds (rasters only in the store), stitched and turned into the
untiled parts' files, then assembled, validated and published like an untiled run; the release's layers and rasters
equal the untiled engine's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
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
def test_tiled_observatory_dag_parses_fast_without_warnings(tiled_config, tmp_path):
    """No DAG from tvb_observatory_tiled.py for the bundled CALL (tiling disabled: tvb_observatory.py builds it);
    with tiling enabled: ``tvb_observatory_call`` with the tile chain and its rounds, no stage library imported at
    parse time and no deprecation warning."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; g = runpy.run_path(sys.argv[3]); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('geopandas', 'rasterio', 'numba', 'scipy') "
            "or m.startswith(('tvb_tasks.layers', 'tvb_tasks.tiled', 'tvb_tasks.pipeline'))); "
            "d = g.get('tvb_observatory_call'); "
            "print(heavy, None if d is None else sorted(t.task_id for t in d.tasks))")
    args = [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c", code,
            str(ROOT / "plugins"), str(ROOT), str(ROOT / "dags" / "tvb_observatory_tiled.py")]
    base = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path)}
    off = subprocess.run(args, capture_output=True, text=True, env=base, timeout=120)
    assert off.returncode == 0, off.stderr[-3000:]
    assert off.stdout.strip().splitlines()[-1] == "[] None"
    on = subprocess.run(args, capture_output=True, text=True, env={**base, "TVB_CONFIG_DIR": str(tiled_config)},
                        timeout=120)
    assert on.returncode == 0, on.stderr[-3000:]
    heavy, tasks = on.stdout.strip().splitlines()[-1].split("] ", 1)
    assert heavy == "["
    for name in ("fetch_sources", "validate_sources", "plan_tiles", "first_round", "round_1", "after_round_10",
                 "stitch", "part", "assemble", "publish", "notify"):
        assert f"'{name}'" in tasks
    assert "'round_11'" not in tasks and "'compute_sous_trame'" not in tasks


@pytest.mark.e2e
@pytest.mark.slow
def test_tiled_observatory_publishes_the_untiled_release(tmp_path_factory, tiled_config, tmp_path, monkeypatch):
    """Forest (trame verte, missing links) and wetland (trame bleue) at 50 m: 2 × 2 tiles of 256 cells per problem,
    mapped over rounds; published to the test's store; the release's layers (every layer the assembly writes) and
    rasters equal those of the untiled stages on the same snapshots."""
    pytest.importorskip("airflow", reason="apache-airflow is not installed in this environment")
    import rasterio

    af = Airflow(tmp_path_factory.mktemp("airflow-tiled"))
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    chosen = ["forest", "wetland"]
    run = af.run("tvb_observatory_call", {"sous_trames": chosen, "resolution_m": 50},
                 TVB_CONFIG_DIR=str(tiled_config))
    assert run["state"] == "success", why(run)
    assert_clean_log(run)             # the rounds read the mapped tile results without "XCom not found" errors
    states = task_states(run)
    assert not [k for k, v in states.items() if v not in ("success", "skipped")], why(run)
    assert not any(k.startswith("compute_sous_trame") for k in states)
    round1 = [k for k in states if k.startswith("round_1[")]
    assert len(round1) > 4                                    # tiles of both sous-trames, mapped
    labels = {run["tasks"][k]["rendered_map_index"].split(" ")[0] for k in round1}
    assert {lab.split("/")[0] for lab in labels} == set(chosen)
    assert {"forest/potential"} <= labels           # the missing links' potential problem in the same rounds
    assert any(k.startswith("round_2[") and v == "success" for k, v in states.items())   # boundary exchange
    assert states["round_10"] == "skipped" if "round_10" in states else True            # converged earlier
    # XCom carries items, counts and the run record (with the territory configuration the fetch used, ≈30 kB:
    # one identity per run), never rasters (MBs)
    for key, value in run["xcoms"].items():
        assert len(str(value)) < 64_000, key
    peaks = [v["peak_mb"] for k, v in run["xcoms"].items() if k.startswith("round_") and isinstance(v, dict)]
    assert peaks and max(peaks) < 4 * 1024
    result = run["xcoms"]["notify[-1].return_value"]
    assert result["status"] == "published", result
    assert [e["uri"] for e in run["asset_events"]] == ["x-tvb://call/release"]

    # the untiled stages on the same run (same snapshots, the effective territory with tiling off)
    from tvb_tasks import pipeline
    from tvb_tasks.layers.tiles import TilingConfig

    store = af.store()
    fetched = run["xcoms"]["fetch_sources[-1].return_value"]
    assert fetched["resolution_m"] == 50
    untiled_t = pipeline.territory_from_run(fetched).model_copy(update={"tiling": TilingConfig()})
    urun = {**fetched, "config": untiled_t.model_dump(mode="json", by_alias=True),
            "config_hash": untiled_t.config_hash(), "input_key": "f" * 64}
    parts = [pipeline.stage_compute_sous_trame(urun, st) for st in chosen]
    for st, part in zip(chosen, parts):
        tiled_part = run["xcoms"][f"part[{chosen.index(st)}].return_value"]
        assert {k: tiled_part[k] for k in ("counts", "areas_ha", "lengths_km", "trame")} == \
            {k: part[k] for k in ("counts", "areas_ha", "lengths_km", "trame")}, st
    summary = pipeline.stage_assemble(urun, parts)
    ref_gpkg = pipeline._local_dir(urun, "layers") / "tvb.gpkg"
    rid = json.loads(store.get_bytes("releases/call/latest.json"))["release_id"]
    got_gpkg = store.local_path(f"releases/call/{rid}/tvb.gpkg")
    assembled = run["xcoms"]["assemble[-1].return_value"]
    assert {k: assembled[k] for k in ("counts", "lengths_km", "areas_ha")} == \
        {k: summary[k] for k in ("counts", "lengths_km", "areas_ha")}
    for layer in pyogrio.list_layers(ref_gpkg)[:, 0]:
        ref = gpd.read_file(ref_gpkg, layer=layer)
        got = gpd.read_file(got_gpkg, layer=layer)
        assert set(ref.columns) <= set(got.columns) and len(got) == len(ref), layer
        got = got[list(ref.columns)]            # the release adds columns (labels) to the assembled layers
        assert got.drop(columns="geometry").equals(ref.drop(columns="geometry")), layer
        assert list(got.geometry.to_wkb()) == list(ref.geometry.to_wkb()), layer
    assert summary["counts"]["corridors"] > 5 and summary["counts"]["wet_corridors"] > 0
    for st in chosen:
        for kind in ("friction", "cost"):
            ref_tif = pipeline._local_dir(urun, "layers") / "rasters" / f"{kind}_{st}.tif"
            got_tifs = [k for k in store.list(f"releases/call/{rid}/") if k.endswith(f"{kind}_{st}.tif")]
            assert len(got_tifs) == 1, (kind, st)
            with rasterio.open(ref_tif) as a, rasterio.open(store.local_path(got_tifs[0])) as b:
                assert np.array_equal(a.read(1), b.read(1)), (kind, st)
                assert a.transform == b.transform and a.crs == b.crs and a.nodata == b.nodata

"""The whole pipeline without Airflow (`tvb run`): publish, idempotence, and bad input that never reaches users."""
import hashlib
import json
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from shapely.geometry import Polygon

from helpers.sample_release import copy_sample_release
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.cli import main as tvb
from tvb_tasks.config import PROJECT_ROOT
from tvb_tasks.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]      # whole pipeline on the bundled sample


@pytest.fixture(scope="module")
def published(sample_release_master, tmp_path_factory):
    """One real run on the bundled sample into a local store (this module's copy of the session's run)."""
    root, result = copy_sample_release(sample_release_master, tmp_path_factory.mktemp("pipeline"))
    mp = pytest.MonkeyPatch()
    mp.setenv("TVB_WORK_DIR", str(root / "work"))
    mp.setenv("TVB_CACHE_DIR", str(root / "cache"))
    yield root, (root / "store").as_uri(), result
    mp.undo()


def test_first_run_publishes_a_complete_release(published):
    _, store_uri, result = published
    assert result["status"] == "published"
    store = open_store(store_uri)
    latest = json.loads(store.get_bytes("releases/call/latest.json"))
    assert latest["release_id"] == result["release_id"]
    base = f"releases/call/{result['release_id']}"
    manifest = json.loads(store.get_bytes(f"{base}/manifest.json"))
    assert manifest["config_hash"] and manifest["code_version"] and manifest["sources"]
    keys = {f["key"] for f in manifest["files"]}
    for needed in ("tvb.gpkg", "indicators/indicators.json", "report/index.html"):
        assert any(k.endswith(needed) for k in keys), needed
    assert any(k.endswith(".tif") for k in keys)
    for f in manifest["files"]:                       # every listed file is there with its checksum
        data = store.get_bytes(f["key"] if f["key"].startswith("releases/") else f"{base}/{f['key']}")
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
    gpkg = store.local_path(f"{base}/tvb.gpkg")
    layers = dict(pyogrio.list_layers(gpkg))
    for layer in ("reservoirs", "relays", "corridors", "wet_corridors", "rupture_points"):
        assert layer in layers
        assert len(gpd.read_file(gpkg, layer=layer)) > 0, layer
    figures = json.loads(store.get_bytes(f"{base}/indicators/indicators.json"))["key_figures"]
    assert 30 < figures["artificialised_share_pct"] < 60
    assert figures["rupture_points"] > 0 and figures["terrestrial_corridors_km"] > 0
    assert manifest["input_key"] and store.list(f"work/call/{manifest['input_key'][:16]}/") == []  # scratch removed


def test_second_run_with_unchanged_inputs_publishes_nothing(published, capsys):
    _, store_uri, first = published
    store = open_store(store_uri)
    before = store.list("releases/call/")
    assert tvb(["run", "--territory", "call", "--store", store_uri]) == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and first["release_id"] in out
    assert store.list("releases/call/") == before


def _corrupt_config(tmp: Path, source: str, gdf: gpd.GeoDataFrame) -> Path:
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    bad = tmp / f"{source}_corrupt.gpkg"
    gdf.to_file(bad, layer=source, driver="GPKG")
    raw["sources"][source].update(path=str(bad), layer=source)
    cfg = tmp / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return cfg


@pytest.mark.parametrize("source, corrupt, expected", [
    ("roads", lambda g: g.to_crs("EPSG:4326"), "CRS"),
    ("landuse", lambda g: g.assign(geometry=[Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])] + list(g.geometry[1:])),
     "valid"),
])
def test_corrupted_input_fails_naming_the_source_and_keeps_latest(published, tmp_path, monkeypatch, capsys,
                                                                  source, corrupt, expected):
    _, store_uri, _first = published
    store = open_store(store_uri)
    latest_before = store.get_with_etag("releases/call/latest.json")
    sample = PROJECT_ROOT / f"sample/call/{source}.gpkg"
    cfg = _corrupt_config(tmp_path, source, corrupt(gpd.read_file(sample, layer=source)))
    monkeypatch.setenv("TVB_CONFIG_DIR", str(cfg))
    assert tvb(["run", "--territory", "call", "--store", store_uri]) != 0
    err = capsys.readouterr().err
    assert source in err and expected.lower() in err.lower(), err
    assert store.get_with_etag("releases/call/latest.json") == latest_before


def test_release_tools_from_the_command_line(published, capsys):
    _, store_uri, first = published
    rid = first["release_id"]
    assert tvb(["releases", "list", "--store", store_uri]) == 0
    assert f"* {rid}" in capsys.readouterr().out                 # the live release is starred
    assert tvb(["releases", "show", rid, "--store", store_uri, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["release_id"] == rid and shown["latest"] is True
    assert tvb(["releases", "verify", rid, "--store", store_uri]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert tvb(["releases", "orphans", "--store", store_uri]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert tvb(["releases", "prune", "--keep", "1", "--store", store_uri]) == 0
    assert "kept" in capsys.readouterr().out
    assert tvb(["releases", "verify", "--store", store_uri]) == 2          # a RELEASE_ID is required
    assert "needs a RELEASE_ID" in capsys.readouterr().err
    store = open_store(store_uri)                                         # tamper with a published file
    key = f"releases/call/{rid}/indicators/indicators.json"
    original = store.get_bytes(key)
    store.put_bytes(key, original.replace(b"{", b"{ ", 1))
    try:
        assert tvb(["releases", "verify", rid, "--store", store_uri]) == 1
        assert key.split(f"{rid}/")[1] in capsys.readouterr().out
    finally:
        store.put_bytes(key, original)


def test_release_holds_the_priorities_layer_and_four_fiches_and_screening_stays_outside(published, capsys):
    _root, store_uri, result = published
    store = open_store(store_uri)
    base = f"releases/call/{result['release_id']}"
    prio = gpd.read_file(store.local_path(f"{base}/tvb.gpkg"), layer="priorities")
    assert len(prio) > 0 and prio["rank"].min() == 1 and prio.geom_type.eq("Point").all()
    assert {"score", "gain_dpc_pct", "cost_proxy", "conflict", "maintenance_share"} <= set(prio.columns)
    assert (prio["conflict"] > 0).any() and (prio["maintenance_share"] > 0).any()   # synthetic projects / sectors
    assert store.head(f"{base}/parquet/priorities.parquet") is not None
    fiches = [k for k in store.list(f"{base}/report/fiches/") if k.endswith((".html", ".pdf"))]
    assert sorted(k.rsplit("/", 1)[1] for k in fiches if "fiche_" in k) == sorted(
        f"fiche_{st}.{ext}" for st in ("forest", "grassland", "mining", "wetland") for ext in ("html", "pdf"))
    before = store.list(f"{base}/")
    zac = str(PROJECT_ROOT / "sample" / "call" / "screening_zac.gpkg")
    assert tvb(["screen", "--store", store_uri, zac]) == 0
    out = capsys.readouterr().out
    assert "corridor forest-" in out and "ΔPC -" in out
    assert store.list(f"screenings/call/{result['release_id']}/")
    assert store.list(f"{base}/") == before

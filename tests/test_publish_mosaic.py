"""Regional mosaic release (tvb_tasks.publish.mosaic) on two tiny hand-built member releases in a local store:
layers concatenated with a ``territoire`` column and unique ids, known key-figure totals, provenance, unchanged
detection, member releases never modified, and every bad input refused naming the member with nothing published."""
from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pyogrio
import pytest

from helpers.release_outputs import T0, make_layers_gpkg
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import load_territory
from tvb_tasks.config_regions import Region
from tvb_tasks.publish import input_key, publish_release, read_latest
from tvb_tasks.publish.mosaic import MosaicError, publish_mosaic, region_key_figures
from tvb_tasks.store import LocalStore

FIGURES = {
    "call": {"territory_area_ha": 300.0, "artificialised_share_pct": 40.0, "terrestrial_corridors_km": 10.5,
             "rupture_points": 7, "mean_patch_ha": 3.0},
    "call_voisin": {"territory_area_ha": 100.0, "artificialised_share_pct": 20.0, "terrestrial_corridors_km": 2.0,
                    "rupture_points": 3, "mean_patch_ha": 5.0},
}


def member(tid: str):
    call = load_territory("call")
    return call if tid == "call" else call.model_copy(update={"id": tid, "name": "Voisin synthétique"})


def publish_member(store, tmp: Path, tid: str, n: int = 0, gpkg_hook=None) -> str:
    staging = tmp / f"stage-{tid}-{n}"
    (staging / "indicators").mkdir(parents=True)
    make_layers_gpkg(staging / "tvb.gpkg")
    if gpkg_hook:
        gpkg_hook(staging / "tvb.gpkg")
    (staging / "indicators" / "indicators.json").write_text("{}", encoding="utf-8")
    result = publish_release(member(tid), store, staging, input_key=input_key({"m": f"{tid}{n}"}, "c" * 64, "1"),
                             sources={}, validation={"success": True}, indicators=FIGURES[tid], code_version="1",
                             released_at=T0 + timedelta(minutes=n))
    assert result["status"] == "published"
    return result["release_id"]


REGION = Region(id="duo", name="CALL et voisin", members=["call", "call_voisin"])
MEMBERS = [member("call"), member("call_voisin")]


def snapshot(store, tid: str) -> dict[str, bytes]:
    return {k: store.get_bytes(k) for k in store.list(f"releases/{tid}/") if "/latest" not in k
            and not k.endswith("collection.json")}


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture
def two_members(store, tmp_path):
    return {tid: publish_member(store, tmp_path, tid) for tid in ("call", "call_voisin")}


def mosaic(store, tmp_path, **kw):
    return publish_mosaic(REGION, MEMBERS, store, tmp_path / "work", code_version="1", **kw)


def test_mosaic_assembles_the_live_member_releases(store, tmp_path, two_members):
    before = {tid: snapshot(store, tid) for tid in two_members}
    result = mosaic(store, tmp_path)
    assert result["status"] == "published"
    assert result["members"] == [{"territory": t, "release_id": r} for t, r in two_members.items()]
    latest, _ = read_latest(store, "duo")
    assert latest["release_id"] == result["release_id"]
    prefix = f"releases/duo/{result['release_id']}"
    gpkg = store.local_path(f"{prefix}/tvb.gpkg")
    single = make_layers_gpkg(tmp_path / "one.gpkg")
    for layer, _ in pyogrio.list_layers(single):
        one = pyogrio.read_dataframe(single, layer=layer)
        both = pyogrio.read_dataframe(gpkg, layer=layer)
        assert len(both) == 2 * len(one), layer
        assert list(both["territoire"]) == ["call"] * len(one) + ["call_voisin"] * len(one)
        if "id" in both:
            assert both["id"].is_unique and both["id"].iloc[0] == f"call:{one['id'].iloc[0]}"
    stretches = pyogrio.read_dataframe(gpkg, layer="corridor_stretches")
    corridors = pyogrio.read_dataframe(gpkg, layer="corridors")
    assert set(stretches["corridor_id"]) <= set(corridors["id"])           # references follow their objects

    manifest = json.loads(store.get_bytes(f"{prefix}/manifest.json"))
    assert {t: s["snapshot_id"] for t, s in manifest["sources"].items()} == two_members     # provenance
    for tid in two_members:
        assert manifest["sources"][tid]["sha256"] == read_latest(store, tid)[0]["manifest_sha256"]
    region = manifest["indicators"]["region"]
    assert region["territory_area_ha"] == 400.0 and region["terrestrial_corridors_km"] == 12.5
    assert region["rupture_points"] == 10 and isinstance(region["rupture_points"], int)
    assert region["artificialised_share_pct"] == pytest.approx(35.0)      # (40·300 + 20·100) / 400
    assert "mean_patch_ha" not in region and "mean_patch_ha" in manifest["indicators"]["omitted"]

    page = store.get_bytes(f"{prefix}/report/index.html").decode("utf-8")
    for tid, rid in two_members.items():
        assert rid in page and f'href="../../../{tid}/{rid}/report/index.html"' in page
    assert "ne recalcule pas" in page and "ne sont pas raccordés" in page
    rows = list(csv.DictReader((store.local_path(f"{prefix}/indicators/key_figures.csv")).open(encoding="utf-8")))
    assert {"territoire": "region", "id": "rupture_points", "value": "10"}.items() <= next(
        r for r in rows if r["territoire"] == "region" and r["id"] == "rupture_points").items()
    assert {tid: snapshot(store, tid) for tid in two_members} == before      # member releases untouched


def test_unchanged_when_every_member_release_is_the_same(store, tmp_path, two_members):
    first = mosaic(store, tmp_path)
    again = mosaic(store, tmp_path)
    assert again["status"] == "unchanged" and again["release_id"] == first["release_id"]
    rid = publish_member(store, tmp_path, "call_voisin", n=1)               # one member republished
    third = mosaic(store, tmp_path)
    assert third["status"] == "published" and third["previous_release_id"] == first["release_id"]
    assert third["members"][1] == {"territory": "call_voisin", "release_id": rid}


def test_dry_run_publishes_nothing(store, tmp_path, two_members):
    assert mosaic(store, tmp_path, dry_run=True)["status"] == "dry_run"
    assert read_latest(store, "duo") == (None, "")


def _reproject(path: Path) -> None:
    for layer, _ in pyogrio.list_layers(path):
        frame = pyogrio.read_dataframe(path, layer=layer)
        pyogrio.write_dataframe(frame.to_crs("EPSG:3949"), path, layer=layer, driver="GPKG")


def _extra_column(path: Path) -> None:
    frame = pyogrio.read_dataframe(path, layer="reservoirs")
    frame["surprise"] = 1
    pyogrio.write_dataframe(frame, path, layer="reservoirs", driver="GPKG")


@pytest.mark.parametrize("breakage, message", [
    ("no_release", "member call_voisin: no live release"),
    ("crs", "member call_voisin: layer reservoirs is in EPSG:3949, the region's CRS is EPSG:2154"),
    ("schema", "member call_voisin: layer reservoirs has other columns than member call's (missing [], "
               "extra ['surprise'])"),
    ("tampered", "/tvb.gpkg does not match the sha256 of its manifest"),
])
def test_bad_member_input_is_refused_naming_the_member(store, tmp_path, breakage, message):
    publish_member(store, tmp_path, "call")
    if breakage != "no_release":
        hook = {"crs": _reproject, "schema": _extra_column}.get(breakage)
        rid = publish_member(store, tmp_path, "call_voisin", gpkg_hook=hook)
        if breakage == "tampered":
            store.local_path(f"releases/call_voisin/{rid}/tvb.gpkg").write_bytes(b"not the published file")
    with pytest.raises(MosaicError) as err:
        mosaic(store, tmp_path)
    assert message in str(err.value)
    assert read_latest(store, "duo") == (None, "") and not store.list("releases/duo/")


def test_region_key_figures_rules():
    figures = region_key_figures(FIGURES)
    assert figures["summed"] == ["territory_area_ha", "terrestrial_corridors_km", "rupture_points"]
    assert figures["recomputed"] == ["artificialised_share_pct"] and figures["omitted"] == ["mean_patch_ha"]
    partial = region_key_figures({"a": {"rupture_points": 1}, "b": {}})
    assert partial["region"] == {} and partial["omitted"] == ["rupture_points"]      # missing in a member


def test_cli_mosaic_publishes_then_reports_unchanged(store, tmp_path, two_members, monkeypatch, capsys):
    from tvb_tasks.cli import main

    territories, regions = tmp_path / "territories", tmp_path / "regions"
    territories.mkdir()
    regions.mkdir()
    for t in MEMBERS:
        raw = load_yaml(Path(load_territory("call").path).read_text(encoding="utf-8"))
        raw.update(id=t.id, name=t.name)
        (territories / f"{t.id}.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    (regions / "duo.yaml").write_text("id: duo\nname: CALL et voisin\nmembers: [call, call_voisin]\n",
                                      encoding="utf-8")
    monkeypatch.setenv("TVB_CONFIG_DIR", str(territories))
    monkeypatch.delenv("TVB_REGIONS_DIR", raising=False)
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    assert main(["mosaic", "duo", "--store", str(store.root)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "published" and [m["release_id"] for m in first["members"]] == list(
        two_members.values())
    assert main(["mosaic", "duo", "--store", str(store.root)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unchanged"

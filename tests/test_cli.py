"""The `tvb` command line: help, cost-distance, ad-hoc WFS fetch against a real MapServer, territories."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from helpers.yamlio import dump_yaml
from tvb_tasks.cli import main as tvb
from tvb_tasks.config import load_yaml

ROOT = Path(__file__).resolve().parent.parent


def _help(args: list[str], capsys) -> str:
    """What ``tvb <args> --help`` prints (argparse exits with status 0); the command as a process: the
    integration tests below run ``python -m tvb_tasks.cli``."""
    with pytest.raises(SystemExit) as done:
        tvb([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_help_lists_the_commands(capsys):
    out = _help([], capsys)
    for command in ("run", "cost-distance", "sources", "releases", "territories", "check-config", "serve"):
        assert command in out


def test_territories_and_check_config(capsys):
    assert tvb(["territories"]) == 0
    assert "call" in capsys.readouterr().out
    assert tvb(["check-config", "call", "--profile", "production"]) == 0
    assert "valid (profile production" in capsys.readouterr().out
    assert tvb(["check-config", "atlantis"]) == 1                       # a failure (usage errors exit 2)
    assert "no territory configuration" in capsys.readouterr().err


def test_cost_distance_command(tmp_path, capsys):
    cost = np.ones((20, 30), dtype="float32")
    cost[:, 15] = 100.0                                   # a costly column to cross
    tif = tmp_path / "cost.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=20, width=30, count=1, dtype="float32", crs="EPSG:2154",
                       transform=from_origin(680000, 7040000, 25, 25), nodata=-1) as dst:
        dst.write(cost, 1)
    csv = tmp_path / "sources.csv"
    csv.write_text("x,y\n680012.5,7039987.5\n")          # centre of the top-left cell
    out = tmp_path / "acc.tif"
    assert tvb(["cost-distance", str(tif), str(csv), str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["sources"] == 1 and stats["cells"] == 600
    with rasterio.open(out) as src:
        acc = src.read(1)
    assert acc[0, 0] == 0
    assert acc[0, 1] == pytest.approx(25.0)               # (1 + 1) / 2 × 25 m
    assert acc[0, 16] > acc[0, 14] + 100 * 25 * 0.9      # crossing the costly column costs ≈ 100 × 25
    csv.write_text("x,y\n600000,6000000\n")
    assert tvb(["cost-distance", str(tif), str(csv), str(tmp_path / "x.tif")]) == 1
    assert "outside the raster" in capsys.readouterr().err


_PROBE = """
import json, sys
from tvb_tasks.cli import main
sys.argv = ["tvb", "cost-distance", *sys.argv[1:4]]
rc_lib = main(sys.argv[1:])                  # called from Python: nothing is hidden from the caller
lib = {m: sys.modules.get(m, "absent") is not None for m in ("scipy", "boto3")}
rc_cmd = main()                              # the process's own command line
cmd = {m: sys.modules.get(m, "absent") is not None for m in ("scipy", "boto3")}
print(json.dumps({"rc": [rc_lib, rc_cmd], "lib": lib, "cmd": cmd}))
"""


@pytest.mark.integration          # fresh interpreters running the command (as test_dags' deprecation check)
def test_cost_distance_command_skips_unused_imports_only_as_its_own_process(tmp_path):
    """``tvb cost-distance`` hides SciPy and boto3 (numba and rasterio import them, the command never uses them:
    ≈ 15 % of its time) only when the process runs that command; ``main([...])`` from Python leaves them importable."""
    tif, csv = tmp_path / "cost.tif", tmp_path / "sources.csv"
    with rasterio.open(tif, "w", driver="GTiff", height=8, width=8, count=1, dtype="float32", crs="EPSG:2154",
                       transform=from_origin(680000, 7040000, 25, 25)) as dst:
        dst.write(np.ones((8, 8), dtype="float32"), 1)
    csv.write_text("x,y\n680012.5,7039987.5\n")
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tif), str(csv), str(tmp_path / "acc.tif")],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["rc"] == [0, 0]
    assert res["lib"] == {"scipy": True, "boto3": True}    # "absent" (never imported) counts as importable
    assert res["cmd"] == {"scipy": True, "boto3": True}    # already imported by the first call: left alone
    fresh = subprocess.run([sys.executable, "-c", "import sys; from tvb_tasks.cli import main; "
                            "sys.argv = ['tvb', 'cost-distance', *sys.argv[1:]]; main(); "
                            "print([m for m in ('scipy', 'boto3') if m in sys.modules "
                            "and sys.modules[m] is None])", str(tif), str(csv), str(tmp_path / "b.tif")],
                           capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert fresh.strip().splitlines()[-1] == "['scipy', 'boto3']"
    with rasterio.open(tmp_path / "acc.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(1), b.read(1)) and a.read(1)[7, 7] == pytest.approx(7 * 25 * 2 ** 0.5)


def test_remote_paths_keep_boto3_importable():
    """With an ``s3://`` or ``/vsi…`` path rasterio needs boto3 for credentials: only SciPy is hidden."""
    from tvb_tasks.cli import _skip_unused_imports

    saved = {name: sys.modules.pop(name, None) for name in ("scipy", "boto3")}   # as in a fresh process
    try:
        _skip_unused_imports(["s3://bucket/cost.tif", "a.csv", "/vsis3/bucket/out.tif"])
        assert "scipy" in sys.modules and sys.modules["scipy"] is None and "boto3" not in sys.modules
    finally:
        for name, module in saved.items():                                      # this process's modules back
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def wfs(mapserver, tmp_path_factory):
    with mapserver.points(tmp_path_factory.mktemp("wfs"), n=1200, max_features=500) as (url, _data):
        yield url


@pytest.mark.integration
def test_fetch_wfs_command_writes_the_complete_layer(wfs, tmp_path, capsys):
    out = tmp_path / "pts.gpkg"
    assert tvb(["sources", "fetch-wfs", wfs, "ms:pts", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("1200 features written")
    assert len(gpd.read_file(out)) == 1200                # 3 pages through the server's 500 cap


@pytest.mark.integration
def test_fetch_wfs_command_fails_with_the_servers_message(wfs, tmp_path, capsys):
    assert tvb(["sources", "fetch-wfs", wfs, "ms:broken", str(tmp_path / "b.parquet")]) == 1
    err = capsys.readouterr().err
    assert "broken" in err and "Open failed" in err and "Traceback" not in err
    assert not (tmp_path / "b.parquet").exists()
    assert tvb(["sources", "fetch-wfs", wfs, "ms:pts", str(tmp_path / "c.parquet"), "--bbox", "1,2,3"]) == 2


def test_release_commands_refuse_a_missing_store_and_bad_usage(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert tvb(["releases", "list", "--store", missing.as_uri()]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "no release" not in err and not missing.exists()     # not created either
    assert tvb(["serve", "--port", "0", "--store", missing.as_uri()]) == 1
    assert "does not exist" in capsys.readouterr().err and not missing.exists()
    assert tvb(["releases", "prune", "--keep", "0", "--store", tmp_path.as_uri()]) == 2        # usage error
    assert "--keep must be at least 1" in capsys.readouterr().err
    assert tvb(["releases", "list", "--store", tmp_path.as_uri()]) == 0                       # empty but real
    assert "no release published" in capsys.readouterr().out


def test_release_list_aligned_and_figures_in_french_format():
    from tvb_tasks.cli import fr_figure, release_list_lines

    rows = [{"release_id": "20261130T130222Z-b2b678f4-307f8b88", "released_at": "2026-11-30T13:02:22Z",
             "files": 120, "bytes": 12_345_678, "latest": True},
            {"release_id": "20261129T100000Z-aaaaaaaa", "released_at": "2026-11-29T10:00:00Z", "files": 9,
             "bytes": 1000}]
    lines = release_list_lines(rows)
    starts = {line.index("2026-11") for line in lines[1:3]}
    assert len(starts) == 1 and lines[0].index("PUBLISHED") == starts.pop()        # dates in one column
    assert len({len(line) for line in lines[:3]}) == 1
    assert fr_figure(23940.5) == "23\u202f940,5" and fr_figure(289) == "289" and fr_figure(12.0) == "12"


def test_check_config_refuses_a_copy_whose_id_was_not_changed(tmp_path, monkeypatch, capsys):
    text = (ROOT / "config/territories/call.yaml").read_text(encoding="utf-8")
    (tmp_path / "call.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "lens.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("TVB_CONFIG_DIR", str(tmp_path))
    for checked in ("lens", str(tmp_path / "lens.yaml"), "call"):       # by id or path; the original names the copy
        assert tvb(["check-config", checked]) == 1
        err = capsys.readouterr().err
        assert str(tmp_path / "call.yaml") in err and str(tmp_path / "lens.yaml") in err, err
    help_text = _help(["check-config"], capsys)
    assert "territory id" in help_text and "path" in help_text


def _renamed(where: str, old: str, new: str):
    """Rename the key ``old`` of the mapping at the dotted path ``where`` of a territory mapping."""
    def mutate(raw: dict) -> None:
        for k in where.split("."):
            raw = raw[k]
        raw[new] = raw.pop(old)
    return mutate


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.update(indicatorz=r.pop("indicators")), "indicatorz: unknown key (did you mean 'indicators'?)"),
    (lambda r: r.update(validation={"bogus_key": 1}), "validation.bogus_key: unknown key"),
    # keys that are names of other things (sous-trame, profile, source, project stage)
    (_renamed("fiches", "forest", "forst"), "fiches.forst: unknown sous-trame (did you mean 'forest'?)"),
    (_renamed("publish.credits", "default", "defualt"), "publish.credits.defualt: unknown profile (did you mean"),
    (_renamed("publish.basemap", "production", "productoin"), "publish.basemap.productoin: unknown profile"),
    (_renamed("publish.credits.default", "territory", "terrtory"),
     "publish.credits.default.terrtory: unknown source (did you mean 'territory'?)"),
    (_renamed("validation.sources", "terrils", "terils"),
     "validation.sources.terils: unknown source (did you mean 'terrils'?)"),
    (_renamed("priorities.conflict.stage_weights", "planned", "planed"),
     "priorities.conflict.stage_weights.planed: unknown project stage (did you mean 'planned'?)"),
    (_renamed("friction.landuse.forest", "grassland", "grasland"),
     "friction.landuse.forest.grasland: unknown sous-trame (did you mean 'grassland'?)"),
])
def test_check_config_names_a_misspelt_key(tmp_path, capsys, mutate, key):
    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "call.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    assert tvb(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and key in err and "(top level)" not in err


@pytest.mark.integration          # a fresh interpreter running the command
def test_check_config_as_a_command_names_a_misspelt_key(tmp_path):
    """The command itself (a process): exit status 1, the key's path, no traceback."""
    import yaml

    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    _renamed("validation.sources", "terrils", "terils")(raw)
    path = tmp_path / "call.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "tvb_tasks.cli", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "validation.sources.terils: unknown source (did you mean 'terrils'?)" in proc.stderr


@pytest.mark.parametrize("status, printed, located", [
    ("published", "published release 20261130T145510Z-71996243", True), ("unchanged", "unchanged: inputs", True),
    ("dry_run", "dry run: release 20261130T145510Z-71996243 computed", False)])
def test_run_prints_how_the_run_ended(tmp_path, monkeypatch, capsys, status, printed, located):
    """One message per status of tvb_tasks.contracts; the release is located only when it exists."""
    import tvb_tasks.pipeline

    RID = "20261130T145510Z-71996243"

    monkeypatch.setattr(tvb_tasks.pipeline, "run_pipeline", lambda *a, **k: {
        "status": status, "release_id": RID, "territory": "call", "store_uri": str(tmp_path)})
    assert tvb(["run", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(printed)
    assert (f"releases/call/{RID}" in out) == located


def test_release_paths_do_not_need_a_loadable_territory(tmp_path, monkeypatch):
    """A run of a territory given as a YAML path (or one edited since) still prints where its release is: the
    territory id alone loads nothing, so no public base URL is configured and the `tvb serve` hint follows."""
    from tvb_tasks.cli import release_paths

    monkeypatch.delenv("TVB_PUBLIC_BASE_URL", raising=False)
    lines = release_paths(f"file://{tmp_path}/store", "no-such-territory", "20260101T000000Z-abcdef01")
    assert any(line.startswith("report") and "no-such-territory" in line for line in lines)
    assert lines[-1].startswith("(to open the report and the web map: ") and " serve --store " in lines[-1]
    assert "tvb serve" in lines[-1]

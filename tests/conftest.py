"""Shared fixtures and test tiers.

Tiers (markers declared in pyproject.toml):

* ``integration``: needs a real local server (MapServer WFS, moto S3, PostgreSQL, Chromium, QGIS Server, the
  Airflow stack) or a separate Airflow / publisher process, or runs several stages end to end (stages on the whole
  bundled sample, a whole report build with its PDF, a stage then its GX validation). Every test
  using a server fixture of this file is marked here (:func:`pytest_collection_modifyitems`), so a new test cannot
  forget it; tests that start their server or process otherwise carry the mark themselves (``pytestmark``).
* ``e2e``: runs through real Airflow (``dag.test()`` or the stack).
* the rest is the fast tier: ``pytest -m "not integration and not e2e"``.

The servers themselves are in :mod:`helpers.servers`.
"""
from __future__ import annotations

import os

import pytest

# GeoPackages written by tests need no crash durability: without SQLite's fsync a layer write takes ~10 ms instead of
# ~110 ms of waiting on the disk (GDAL reads this configuration option from the environment; subprocesses inherit it)
os.environ.setdefault("OGR_SQLITE_SYNCHRONOUS", "OFF")
# likewise the local store's objects (tvb_tasks.store.LocalStore fsyncs each one by default; tests/test_store_local.py
# checks that default): ~2300 objects per fast-tier run
os.environ.setdefault("TVB_STORE_FSYNC", "0")

from helpers.servers import MapServer, fake_aws_env, moto_executable, moto_server_process

# fixtures that start (or need) a real server: a test using any of them, directly or through another fixture, is
# an integration test
SERVER_FIXTURES = frozenset({"moto_url", "moto_server", "mapserver"})


# The fast tier's longest work units (seconds of one idle worker, measured 2026-12-01), run first so that the two
# xdist workers end together (longest processing time first): under `--dist loadfile` xdist hands out files in
# collection order (see pytest_xdist_make_scheduler); a file missing here only runs later.
HEAVY_FIRST = ("great_expectations",                                    # GX_TEST_FILES below: ≈ 20 s with the import
               "tests/test_faults.py", "tests/test_layers_network.py",  # ≈ 10 s, ≈ 12 s
               "tests/test_layers_engine.py", "tests/test_priorities.py", "airflow", "tests/test_cli.py",
               "tests/test_sources_osm.py", "tests/test_layers_wet.py", "tests/test_indicators_network.py",
               "tests/test_layers_burn.py")


def _work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return next((unit for unit, files in SHARED_IMPORT_UNITS.items() if path in files), path)


@pytest.hookimpl(tryfirst=True)      # before pytest's own -m selection
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    rank = {unit: i for i, unit in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(_work_unit(item.nodeid), len(rank)))   # stable: files keep their order


# Fast-tier test files that import Great Expectations (~3 s of CPU per process): under `--dist loadfile` (the fast tier
# in scripts/test.sh) they form one work unit, so only one xdist worker pays the import. A file that starts calling
# tvb_tasks.validate (validate_source, validate_outputs, load_suite) belongs here.
GX_TEST_FILES = frozenset({
    "tests/test_validate_gate.py", "tests/test_priorities_release.py", "tests/test_production_config.py",
})
# Likewise the fast-tier files that import Airflow (~1.5 s of CPU per process: the DagBag, the hooks and plugins).
AIRFLOW_TEST_FILES = frozenset({"tests/test_dags.py", "tests/test_plugins.py"})
SHARED_IMPORT_UNITS = {"great_expectations": GX_TEST_FILES, "airflow": AIRFLOW_TEST_FILES}


@pytest.hookimpl(tryfirst=True, optionalhook=True)     # pytest-xdist's hook; before xdist's own scheduler
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with each group of :data:`SHARED_IMPORT_UNITS` (the GX files, the Airflow files) as one
    unit (xdist's ``loadgroup`` cannot do it: it
    renames node ids in a way pytest 9.2 ignores); other modes: xdist's own scheduler."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False    # units in collection order (HEAVY_FIRST), not by number of tests

    class GroupedLoadFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return GroupedLoadFileScheduling(config, log)


@pytest.fixture(scope="session")
def moto_url():
    """URL of one ``moto_server`` (real S3 HTTP API on 127.0.0.1) shared by the session; tests make their own
    buckets (``helpers.servers.new_s3_store``)."""
    if moto_executable() is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    with moto_server_process() as url:
        yield url


@pytest.fixture(scope="module")
def moto_server(moto_url):
    """URL of the session's moto_server, with fake AWS credentials set in this process for the module, then
    restored."""
    with fake_aws_env():
        yield moto_url


@pytest.fixture(scope="module")
def territory():
    """The bundled territory ``call`` (default profile), loaded once per module (module scope: a module may set
    ``TVB_CONFIG_DIR`` / ``TVB_PROFILE``)."""
    from tvb_tasks.config import load_territory

    return load_territory("call")


@pytest.fixture(scope="module")
def call_sample(territory):
    """``(territory, inputs)``: the bundled CALL territory and its sample files (``layers.sample_inputs``); fails,
    naming the sources, if a sample file is missing."""
    from tvb_tasks.layers import sample_inputs

    inputs = sample_inputs(territory)
    missing = [name for name, path in inputs.items() if not path.exists()]
    if missing:
        pytest.fail(f"sample files missing for sources {missing}")
    return territory, inputs


@pytest.fixture(scope="module")
def call_tiled_run(tmp_path_factory):
    """A run dict of CALL at 50 m with 128-cell tiles (12 per sous-trame) whose snapshots are the sample files,
    the outline shrunk by 500 m so that the computation grid (outline + 3 km buffer, cut to the land use) is larger
    than the territory's own grid on every side (tests/test_tile_stitch.py, tests/test_tile_links.py)."""
    from types import SimpleNamespace

    import geopandas as gpd

    from tvb_tasks.config import load_territory
    from tvb_tasks.layers import sample_inputs
    from tvb_tasks.layers.common import load_boundary
    from tvb_tasks.layers.tiles import TilingConfig
    from tvb_tasks.store import LocalStore
    from tvb_tasks.tiled import files_run

    base = load_territory("call")
    territory = base.model_copy(update={"resolution_m": 50.0,
                                        "tiling": TilingConfig(enabled=True, tile_size=128, overlap=4)})
    inputs = dict(sample_inputs(territory))
    d = tmp_path_factory.mktemp("call_stitch")
    small = load_boundary(territory, inputs).buffer(-500)
    name = territory.boundary.source
    inputs[name] = d / "boundary.parquet"
    gpd.GeoDataFrame({"name": ["CALL (shrunk)"]}, geometry=[small], crs=territory.crs).to_parquet(inputs[name])
    run = files_run(territory, inputs, str(d / "store"), "0123456789abcdef0123")
    return SimpleNamespace(run=run, territory=territory, inputs=inputs, store=LocalStore(d / "store"), dir=d)


@pytest.fixture(scope="session")
def sample_release_master(tmp_path_factory):
    """``(folder, run result)`` of the one pipeline run of the bundled sample in this session (read only: use
    :func:`helpers.sample_release.copy_sample_release` to get a copy to work on)."""
    from helpers.sample_release import build_sample_release

    root = tmp_path_factory.mktemp("sample-release")
    return root, build_sample_release(root)


@pytest.fixture(scope="session")
def mapserver() -> MapServer:
    """Starts MapServer WFS servers (``.points(folder, n, max_features)``, ``.serve(config)``); skips the test when
    MapServer is not installed (apt-get install cgi-mapserver)."""
    server = MapServer()
    if not server.available():
        pytest.skip("MapServer CGI not installed (apt-get install cgi-mapserver)")
    return server

"""plugins/: WFS hook (against a real MapServer behind an authenticating proxy), object-store hook (against a real
moto S3 server), notifier (against a real local webhook), the release report link, the plugin registration and the
fail-fast retry policy. Connections come from ``AIRFLOW_CONN_*`` environment variables, as in a deployment.
"""
from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from helpers.airflow_env import use_throwaway_airflow_home
from helpers.yamlio import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"

use_throwaway_airflow_home()

if importlib.util.find_spec("airflow") is None:
    pytest.skip("apache-airflow is not installed in this environment", allow_module_level=True)


class _Lazy:
    """Module ``name``, imported on first use of a public attribute: the plugins import Airflow (~2 s), which each
    pytest-xdist worker would otherwise pay at collection, whether it runs this file or not. Private names raise
    AttributeError, so pytest's look-ups at collection (fixture markers, ``__test__``) do not import it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


tvb_hooks = _Lazy("tvb_hooks")
tvb_links = _Lazy("tvb_links")
tvb_notifier = _Lazy("tvb_notifier")
tvb_retry = _Lazy("tvb_retry")
from helpers.servers import free_port  # noqa: E402
from tvb_tasks.config import PROJECT_ROOT, load_territory  # noqa: E402
from tvb_tasks.contracts import RUN_STATUSES  # noqa: E402

SECRET = "s3cr3t-Pa55"          # fake, test-only


def _conn_env(monkeypatch, conn_id: str, **conn) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


# --- WFS hook --------------------------------------------------------------------------------------------------------
def test_wfs_settings_basic_auth_and_no_secret_in_repr(monkeypatch):
    _conn_env(monkeypatch, "tvb_wfs_basic", conn_type="http", host="wfs.example.org", schema="https", port=8443,
              login="reader", password=SECRET, extra={"version": "1.1.0", "timeout": 12, "headers": {"X-A": "1"}})
    s = tvb_hooks.WfsHook("tvb_wfs_basic").settings()
    assert (s.url, s.version, s.username, s.password, s.timeout) == (
        "https://wfs.example.org:8443", "1.1.0", "reader", SECRET, 12.0)
    assert SECRET not in repr(s)
    kw = s.owslib_kwargs()
    assert kw["url"] == s.url and kw["version"] == "1.1.0" and kw["headers"] == {"X-A": "1"}
    assert (kw["auth"].username, kw["auth"].password) == ("reader", SECRET)
    assert s.requests_kwargs()["auth"] == ("reader", SECRET)


def test_wfs_settings_api_key_header_and_url_host(monkeypatch):
    _conn_env(monkeypatch, "tvb_wfs_key", conn_type="http", host="https://data.example.org/wfs/ows",
              password=SECRET, extra={"api_key_header": "X-Api-Key"})
    s = tvb_hooks.WfsHook("tvb_wfs_key", version="2.0.0").settings()
    assert s.url == "https://data.example.org/wfs/ows" and s.version == "2.0.0"
    assert s.headers == {"X-Api-Key": SECRET} and s.username is None and s.password is None


def test_wfs_connection_without_url(monkeypatch):
    _conn_env(monkeypatch, "tvb_wfs_nourl", conn_type="http", login="reader", password=SECRET)
    with pytest.raises(ValueError, match="connection 'tvb_wfs_nourl' has no host / URL"):
        tvb_hooks.WfsHook("tvb_wfs_nourl").settings()
    creds = tvb_hooks.WfsHook("tvb_wfs_nourl").source_credentials()
    assert creds == {"auth": ("reader", SECRET), "headers": {}}     # the YAML URL applies


class _AuthProxy(BaseHTTPRequestHandler):
    """Forwards GET/POST to MapServer only with the expected basic auth + header; remembers what it saw."""

    upstream = ""
    expected_auth = ""
    seen: ClassVar[list] = []

    def _forward(self, body: bytes | None = None):
        auth_ok = self.headers.get("Authorization") == self.expected_auth
        type(self).seen.append({"auth_ok": auth_ok, "x_client": self.headers.get("X-Client")})
        if not auth_ok:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="wfs"')
            self.end_headers()
            return
        req = urllib.request.Request(self.upstream.rstrip("/") + self.path, data=body, method=self.command,
                                     headers={"Content-Type": self.headers.get("Content-Type", "text/xml")})
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload, ctype, status = resp.read(), resp.headers.get("Content-Type"), resp.status
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._forward()

    def do_POST(self):
        self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def protected_wfs(mapserver, tmp_path_factory):
    """(proxy URL, number of points) of a real MapServer WFS reachable only with basic auth."""
    with mapserver.points(tmp_path_factory.mktemp("wfs"), n=300, max_features=1000) as (upstream, _data):
        handler = type("Proxy", (_AuthProxy,), {
            "upstream": upstream, "seen": [],
            "expected_auth": "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/", handler
        finally:
            server.shutdown()


def test_wfs_hook_opens_a_protected_server_with_owslib(protected_wfs, monkeypatch):
    url, proxy = protected_wfs
    _conn_env(monkeypatch, "tvb_wfs_live", conn_type="http", host=url, login="reader", password=SECRET,
              extra={"version": "2.0.0", "headers": {"X-Client": "tvb"}})
    wfs = tvb_hooks.WfsHook("tvb_wfs_live").get_conn()
    assert "ms:pts" in wfs.contents
    assert proxy.seen and all(s["auth_ok"] and s["x_client"] == "tvb" for s in proxy.seen)


def _wfs_territory(tmp_path: Path, conn_id: str):
    """The CALL configuration with a small boundary and a WFS source whose URL/credentials come from ``conn_id``."""
    import geopandas as gpd
    import shapely

    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    boundary = tmp_path / "boundary.gpkg"
    gpd.GeoDataFrame({"nom": ["test"]}, geometry=[shapely.box(682000, 7032000, 688000, 7035000)],
                     crs=2154).to_file(boundary, layer="epci")
    raw["id"] = "hooktest"
    raw["sources"]["territory"] = {"kind": "file", "role": "boundary", "path": str(boundary), "layer": "epci"}
    raw["sources"]["points"] = {"kind": "wfs", "role": "protected_areas", "connection_id": conn_id,
                                "typename": "ms:pts", "version": "2.0.0", "max_retries": 1, "backoff_s": 0.05,
                                "constant_columns": {"protection_type": "ENS"}}
    raw["profiles"] = {}
    raw["publish"]["basemap"] = {}              # keyed by profile: production's goes with the profile
    path = tmp_path / "hooktest.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return load_territory(path)


def test_connection_credentials_reach_the_source_fetcher(protected_wfs, tmp_path, monkeypatch):
    from tvb_tasks.sources import SourceError, fetch_source
    from tvb_tasks.store import open_store

    url, _proxy = protected_wfs
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    _conn_env(monkeypatch, "tvb_wfs_points", conn_type="http", host=url, login="reader", password=SECRET)
    territory = _wfs_territory(tmp_path, "tvb_wfs_points")
    creds = tvb_hooks.source_credentials(territory)
    assert set(creds) == {"points"} and creds["points"]["url"] == url
    store = open_store(str(tmp_path / "store"))
    fetch_source(territory, "territory", store)
    ref = fetch_source(territory, "points", store, **creds["points"])
    assert ref["feature_count"] > 0 and ref["changed"] is True

    _conn_env(monkeypatch, "tvb_wfs_points", conn_type="http", host=url, login="reader", password="wrong")
    bad = tvb_hooks.source_credentials(territory)["points"]
    with pytest.raises(SourceError) as err:
        fetch_source(territory, "points", store, force=True, **bad)
    assert "401" in str(err.value) and "wrong" not in str(err.value)


def test_source_credentials_names_a_missing_connection(tmp_path):
    from airflow.sdk.exceptions import AirflowNotFoundException

    territory = _wfs_territory(tmp_path, "tvb_wfs_not_defined")
    with pytest.raises(AirflowNotFoundException, match="tvb_wfs_not_defined"):
        tvb_hooks.source_credentials(territory)
    assert tvb_hooks.source_credentials(load_territory("call")) == {}     # no connection_id: nothing to resolve


# --- object-store hook -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint(moto_url):
    return moto_url             # conftest.py's moto_server, without fake credentials in the environment


def test_object_store_hook_builds_a_store_on_the_connection(moto_endpoint, monkeypatch):
    from tvb_tasks.store import ObjectExists, S3Store

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                "TVB_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _conn_env(monkeypatch, "tvb_store", conn_type="aws", login="hook-key", password=SECRET,
              extra={"endpoint_url": moto_endpoint, "region_name": "us-east-1",
                     "store_uri": "s3://hook-bucket/obs"})
    hook = tvb_hooks.ObjectStoreHook()
    assert SECRET not in repr(hook.settings())
    hook.get_conn().create_bucket(Bucket="hook-bucket")
    store = hook.get_store()
    assert isinstance(store, S3Store) and store.uri == "s3://hook-bucket/obs"
    store.put_bytes("releases/t/a.json", b"{}", create_only=True)
    with pytest.raises(ObjectExists):
        store.put_bytes("releases/t/a.json", b"{}", create_only=True)
    assert hook.get_conn().get_object(Bucket="hook-bucket", Key="obs/releases/t/a.json")["Body"].read() == b"{}"

    # the same connection exposed to code that only knows the URI (tvb_tasks.pipeline)
    import rasterio
    from rasterio.session import DummySession

    from tvb_tasks.store import open_store

    with tvb_hooks.store_environment() as names:
        assert set(names) >= {"aws_access_key_id", "aws_secret_access_key", "endpoint_url"}
        assert set(names.values()) == {"***"}
        assert open_store("s3://hook-bucket/obs").get_bytes("releases/t/a.json") == b"{}"
        # not through the environment: there, rasterio would build a boto3 session at every GDAL call it wraps
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TVB_S3_ENDPOINT_URL"} & set(os.environ)
        assert isinstance(rasterio.Env().session, DummySession)
    with pytest.raises(Exception, match=r"(?i)credentials"):
        open_store("s3://hook-bucket/obs").get_bytes("releases/t/a.json")     # outside the block: boto3's chain


def test_store_environment_without_connection_changes_nothing(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TVB_STORE_ABSENT", raising=False)
    before = dict(os.environ)
    with tvb_hooks.store_environment("tvb_store_absent") as names:
        assert names == {} and dict(os.environ) == before


# --- notifier --------------------------------------------------------------------------------------------------------
@pytest.fixture()
def webhook():
    """A local webhook receiver: (base URL, list of received {path, headers, body}, status to answer)."""
    received: list[dict] = []
    state = {"status": 204}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received, state
    finally:
        server.shutdown()


def _context(exc: BaseException | None = None) -> dict:
    from airflow.sdk import DAG

    ctx = {"dag": DAG("tvb_observatory_call", schedule=None),
           "dag_run": SimpleNamespace(run_id="manual__1", run_type="manual", logical_date=None),
           "ti": SimpleNamespace(task_id="publish", map_index=-1, try_number=1, dag_id="tvb_observatory_call"),
           "params": {"territory": "call"}, "run_id": "manual__1"}
    if exc is not None:
        ctx["exception"] = exc
    return ctx


def test_notifier_posts_the_release_with_a_bearer_token_and_logs_no_secret(webhook, monkeypatch, caplog):
    url, received, _ = webhook
    _conn_env(monkeypatch, "tvb_webhook", conn_type="http", host=url + "/hooks/private-path?key=abc",
              password=SECRET)
    result = {"status": "published", "release_id": "20260101T000000Z-abc", "territory": "call",
              "report_url": "http://store/releases/call/20260101T000000Z-abc/report/index.html",
              "key_figures": {"reservoir_area_ha": 12.5}, "internal": "not sent"}
    with caplog.at_level(logging.INFO):
        payload = tvb_notifier.TvbNotifier("published").send(_context(), result)
    assert payload["webhook"] == "sent (HTTP 204)"
    [got] = received
    assert got["path"] == "/hooks/private-path?key=abc"
    assert got["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = got["body"]
    assert body["event"] == "published" and body["dag_id"] == "tvb_observatory_call" and body["territory"] == "call"
    assert body["release"]["report_url"] == result["report_url"] and "internal" not in body["release"]
    assert SECRET not in caplog.text and "private-path" not in caplog.text and "key=abc" not in caplog.text
    assert "20260101T000000Z-abc" in caplog.text and url in caplog.text


def test_failure_callback_sends_the_error_with_basic_auth(webhook, monkeypatch, caplog):
    url, received, _ = webhook
    host = url.removeprefix("http://")
    _conn_env(monkeypatch, "tvb_webhook", conn_type="http", schema="http", host=host.split(":")[0],
              port=int(host.split(":")[1]), login="bot", password=SECRET, extra={"endpoint": "/fail"})
    notifier = tvb_notifier.TvbNotifier("failure")
    with caplog.at_level(logging.ERROR):
        notifier(_context(RuntimeError("landuse: expect_table_crs_to_be failed")))   # as Airflow calls it
    [got] = received
    assert got["path"] == "/fail"
    assert got["headers"]["Authorization"] == "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()
    assert got["body"]["event"] == "failure" and got["body"]["task_id"] == "publish"
    assert got["body"]["error"] == "RuntimeError: landuse: expect_table_crs_to_be failed"
    assert "TVB run FAILED" in caplog.text and SECRET not in caplog.text


def test_notifier_never_breaks_the_pipeline(webhook, monkeypatch):
    url, _, state = webhook
    monkeypatch.delenv("AIRFLOW_CONN_TVB_WEBHOOK", raising=False)
    assert tvb_notifier.TvbNotifier("unchanged").send(_context(), {})["webhook"] == "not configured"
    _conn_env(monkeypatch, "tvb_webhook", conn_type="http", host=url, password=SECRET)
    state["status"] = 500
    assert tvb_notifier.TvbNotifier("dry_run").send(_context(), {})["webhook"] == "failed (HTTP 500)"
    _conn_env(monkeypatch, "tvb_webhook", conn_type="http", host=f"http://127.0.0.1:{free_port()}", password="x")
    assert tvb_notifier.TvbNotifier("failure").send(_context(), {})["webhook"] == "failed (ConnectionError)"
    with pytest.raises(ValueError, match="unknown notification event 'oops'"):
        tvb_notifier.TvbNotifier("oops")
    for status in RUN_STATUSES:                      # every way a run ends (tvb_tasks.contracts) is an event
        assert tvb_notifier.TvbNotifier(status).event == status


# --- link and plugin registration ------------------------------------------------------------------------------------
def test_release_report_link_reads_the_report_url():
    link = tvb_links.ReleaseReportLink()
    assert link.name == "Release report" and link.xcom_key == "_link_ReleaseReportLink"
    assert tvb_links.report_url_from({"status": "published", "report_url": "http://x/report/index.html"}) \
        == "http://x/report/index.html"
    assert tvb_links.report_url_from({"status": "unchanged", "report_url": "http://x/r.html"}) == "http://x/r.html"
    for value in (None, {"status": "dry_run", "report_url": "http://x/not-published.html"}, "text",
                  {"status": "published", "report_url": 3}, {"report_url": "http://x/no-status.html"}):
        assert tvb_links.report_url_from(value) == ""


@pytest.mark.integration          # the `airflow plugins` command
def test_plugin_is_loaded_by_airflow():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "plugins", "-o", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plugins = {p["name"]: p for p in json.loads(proc.stdout[proc.stdout.index("["):])}
    assert "tvb_links.ReleaseReportLink" in str(plugins["tvb_observatory"]["operator_extra_links"])


# --- retry policy ----------------------------------------------------------------------------------------------------
def test_deterministic_pipeline_errors_fail_fast_others_retry():
    from airflow.sdk import RetryAction

    from tvb_tasks.cli import UsageError
    from tvb_tasks.config import ConfigError
    from tvb_tasks.errors import DeterministicError, TVBError
    from tvb_tasks.indicators import IndicatorsError
    from tvb_tasks.indicators.history import HistoryError
    from tvb_tasks.layers.common import LayerInputError
    from tvb_tasks.pipeline import PipelineError, RunInProgress
    from tvb_tasks.priorities.screening import ScreeningError
    from tvb_tasks.publish.formats import FormatError
    from tvb_tasks.publish.release import PublishConflict, PublishError, ReleaseNotFound
    from tvb_tasks.sources import SourceError
    from tvb_tasks.store import NotFound, ObjectExists, PreconditionFailed, StoreError
    from tvb_tasks.validate import ValidationFailed
    from tvb_tasks.validate.suites import SuiteLoadError

    policy = tvb_retry.FailFastPolicy()

    class MoreSpecific(ValidationFailed):
        pass

    deterministic = (ValidationFailed("landuse: CRS"), MoreSpecific("x"), ConfigError("bad"), PipelineError("bad"),
                     RunInProgress("lock"), ObjectExists("exists"), IndicatorsError("bad"), HistoryError("bad"),
                     LayerInputError("bad"), SuiteLoadError("bad"), PublishConflict("lost"), ScreeningError("bad"),
                     UsageError("bad"))
    for exc in deterministic:
        decision = policy.evaluate(exc, 1, 3)
        assert decision.action == RetryAction.FAIL and type(exc).__name__ in decision.reason
        assert isinstance(exc, DeterministicError)
    # the builtin bases are kept: existing `except ValueError` / `except RuntimeError` handlers still catch them
    assert isinstance(ConfigError("x"), ValueError) and isinstance(ValidationFailed("x"), RuntimeError)
    assert isinstance(ObjectExists("x"), StoreError) and isinstance(ReleaseNotFound("x"), LookupError)

    class ValidationFailedElsewhere(Exception):
        pass
    ValidationFailedElsewhere.__name__ = "ValidationFailed"       # same name, not a DeterministicError
    transient = (RuntimeError("network"), TimeoutError(), ValueError("x"), ValidationFailedElsewhere(),
                 SourceError("HTTP 503"), PreconditionFailed("etag"), NotFound("gone"), StoreError("s3 down"),
                 PublishError("crash"), FormatError("pmtiles"))
    for exc in transient:
        assert policy.evaluate(exc, 1, 3).action == RetryAction.DEFAULT
    assert all(isinstance(e, TVBError) for e in transient[4:]) and not any(isinstance(e, TVBError)
                                                                           for e in transient[:4])
    again = tvb_retry.FailFastPolicy.deserialize(json.loads(json.dumps(policy.serialize())))
    assert again.reason == policy.reason and again.matches(ConfigError("x")) and not again.matches(SourceError("x"))
    # a DAG serialized by the former by-name policy still deserializes
    old = tvb_retry.FailFastPolicy.deserialize({"class_names": ["ConfigError"], "package": "tvb_tasks",
                                                "reason": policy.reason})
    assert old.matches(ScreeningError("x")) and not old.matches(SourceError("x"))


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test classifies whatever the library raises
        return exc
    raise AssertionError("expected an error")


def test_bad_inputs_on_task_paths_fail_fast_and_stay_builtin_errors(tmp_path):
    """Review 17: bad inputs that a retry cannot fix used to raise plain ValueError / FormatError, which the policy
    retried twice (2 then 4 min) for the same result. Each real call below now fails the task at once, and its error
    is still the builtin (ValueError / RuntimeError) that existing handlers catch."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyogrio
    from airflow.sdk import RetryAction
    from shapely.geometry import Point

    from tvb_tasks.indicators.key_figures import key_figures
    from tvb_tasks.layers.costdistance import accumulated_cost
    from tvb_tasks.publish.formats import write_pmtiles
    from tvb_tasks.publish.layout import check_release_id, check_territory_id
    from tvb_tasks.publish.release import staged_files
    from tvb_tasks.publish.retention import plan_prune
    from tvb_tasks.publish.stac import multihash_sha256
    from tvb_tasks.publish.stage import stage_release
    from tvb_tasks.sources.http import HttpOptions
    from tvb_tasks.store import open_store, validate_key
    from tvb_tasks.validate.frames import _nomenclature_codes, read_snapshot

    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    (tmp_path / "no_column.csv").write_text("label\nforest\n", encoding="utf-8")
    (tmp_path / "no_code.csv").write_text("code\n\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                  # pyogrio: "'crs' was not provided"
        gpd.GeoDataFrame({"id": [1]}, geometry=[Point(0, 0)], crs=None).to_file(tmp_path / "no_crs.gpkg", layer="x")
    gpd.GeoDataFrame({"id": [1]}, geometry=[None], crs="EPSG:2154").to_file(tmp_path / "empty.gpkg", layer="x")
    pyogrio.write_dataframe(pd.DataFrame({"a": [1]}), tmp_path / "table.gpkg", layer="t", driver="GPKG")
    store = open_store(str(tmp_path / "store"))
    (empty_staging := tmp_path / "empty_staging").mkdir()
    (bad_name := tmp_path / "bad_name").mkdir()
    (bad_name / "a b.txt").write_text("x", encoding="utf-8")
    calls = {
        "missing snapshot": lambda: read_snapshot(tmp_path / "absent.parquet"),
        "unreadable snapshot": lambda: read_snapshot(tmp_path / "garbage.parquet"),
        "nomenclature without its column": lambda: _nomenclature_codes(str(tmp_path / "no_column.csv"), "code", 0),
        "nomenclature without code": lambda: _nomenclature_codes(str(tmp_path / "no_code.csv"), "code", 0),
        "blank store URI": lambda: open_store("  "),
        "S3 URI without bucket": lambda: open_store("s3://"),
        "file URI with a host": lambda: open_store("file://host/store"),
        "unsupported store scheme": lambda: open_store("ftp://host/store"),
        "object key with ..": lambda: validate_key("releases/../x"),
        "bad territory id": lambda: check_territory_id("Bad Id"),
        "bad release id": lambda: check_release_id("yesterday"),
        "layer without CRS": lambda: write_pmtiles(tmp_path / "no_crs.gpkg", tmp_path / "a.pmtiles"),
        "no features to tile": lambda: write_pmtiles(tmp_path / "empty.gpkg", tmp_path / "b.pmtiles"),
        "no vector layer to publish": lambda: stage_release(None, tmp_path / "staging", gpkg=tmp_path / "table.gpkg",
                                                            rasters=[], indicators_dir=tmp_path),
        "1-D cost raster": lambda: accumulated_cost(np.ones(3), np.array([[0, 0]])),
        "no commune": lambda: key_figures(pd.DataFrame()),
        "negative timeout": lambda: HttpOptions(timeout_s=-1),
        "not a sha256 digest": lambda: multihash_sha256("zz"),
        "keep no release": lambda: plan_prune(store, "call", 0),
        "no staging folder": lambda: staged_files(tmp_path / "absent"),
        "empty staging folder": lambda: staged_files(empty_staging),
        "staged file name not a key": lambda: staged_files(bad_name),
    }
    policy = tvb_retry.FailFastPolicy()
    for what, call in calls.items():
        exc = _raised(call)
        decision = policy.evaluate(exc, 1, 3)
        assert decision.action == RetryAction.FAIL, f"{what}: {type(exc).__name__} {exc} would be retried"
        assert isinstance(exc, (ValueError, RuntimeError)), f"{what}: {type(exc).__mro__}"


def test_a_deterministic_error_fails_the_task_at_once_and_a_transient_one_is_retried():
    """The task runner's own failure handling (``airflow.sdk.execution_time.task_runner``), with the retry policy every
    DAG task gets (``tvb_dag_support.DEFAULT_ARGS``), on try 1 of 3 of a task the server would retry: a deterministic
    error → FAILED at once, a transient one → UP_FOR_RETRY."""
    import structlog
    from airflow.sdk.execution_time import task_runner
    from airflow.utils.state import TaskInstanceState

    from tvb_dag_support import DEFAULT_ARGS
    from tvb_tasks.config import ConfigError
    from tvb_tasks.sources import SourceError

    def outcome(exc: BaseException):
        ti = SimpleNamespace(task=SimpleNamespace(retry_policy=DEFAULT_ARGS["retry_policy"]), try_number=1,
                             _ti_context_from_server=SimpleNamespace(max_tries=3, should_retry=True), end_date=None,
                             rendered_map_index=None, _failure_metrics_emitted=True, stats_tags={})
        return task_runner._handle_current_task_failed(ti, exc, structlog.get_logger("test"))[1]

    assert outcome(ConfigError("config/territories/x.yaml: indicatorz: unknown key")) == TaskInstanceState.FAILED
    assert outcome(SourceError("https://wfs.example: HTTP 503")) == TaskInstanceState.UP_FOR_RETRY
    assert outcome(TimeoutError("read timed out")) == TaskInstanceState.UP_FOR_RETRY

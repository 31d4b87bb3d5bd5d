"""Real local servers for the tests: moto S3 (``moto_server``), MapServer WFS (Debian ``cgi-mapserver``, through
``tests/fixtures/wfs/mapserver_fixture.py``), a static HTTP file server, and free TCP ports on 127.0.0.1.

Every server binds 127.0.0.1 on a free port and is stopped when its context manager exits. The pytest fixtures
built on these (``moto_server``, ``mapserver``…) live in ``tests/conftest.py``, which also marks every test using
them ``integration``.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout_s: float = 20.0, what: str = "server") -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; RuntimeError when ``proc`` exits or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}") from None
            time.sleep(0.1)


@functools.cache
def fixture_module(relative: str) -> ModuleType:
    """A helper module of ``tests/fixtures/`` (not a package) loaded by path once, e.g. ``"wfs/mapserver_fixture.py"``."""
    path = FIXTURES / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate ``proc``, then kill it if it is still alive after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- moto S3 ---------------------------------------------------------------------------------------------------------
def moto_executable() -> str | None:
    """The ``moto_server`` of this venv (or of PATH), None when moto[server] is not installed."""
    return (shutil.which("moto_server", path=str(Path(sys.executable).parent))
            or shutil.which("moto_server", path=str(ROOT / ".venv" / "bin")) or shutil.which("moto_server"))


@contextlib.contextmanager
def moto_server_process() -> Iterator[str]:
    """A fresh ``moto_server`` on 127.0.0.1 (random port); yields its URL. Needs moto[server]."""
    exe = moto_executable()
    if exe is None:
        raise FileNotFoundError("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, what="moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@contextlib.contextmanager
def temp_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process's environment, then the previous values restored (absent ones removed)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def fake_aws_env() -> Iterator[None]:
    """Fake AWS credentials in this process's environment (what boto3 needs to sign moto requests), then restored."""
    with temp_env(FAKE_AWS_ENV):
        yield


def new_s3_store(url: str, prefix: str = "obs"):
    """An S3Store on a new bucket of the moto server at ``url``."""
    import boto3

    from tvb_tasks.store import S3Store

    bucket = f"tvb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=bucket)
    return S3Store(bucket, prefix, endpoint_url=url)


# --- MapServer WFS ---------------------------------------------------------------------------------------------------
class MapServer:
    """MapServer WFS servers of ``tests/fixtures/wfs/mapserver_fixture.py`` (``fixture``: that module)."""

    def __init__(self) -> None:
        self.fixture = fixture_module("wfs/mapserver_fixture.py")

    def available(self) -> bool:
        return self.fixture.find_mapserv() is not None

    @contextlib.contextmanager
    def serve(self, config: Path) -> Iterator[str]:
        """Serve a MapServer config (``write_mapfile`` / ``replicas.build_replicas``); yields the base URL."""
        proc, url = self.fixture.start_mapserver(config)
        try:
            yield url
        finally:
            self.fixture.stop(proc)

    @contextlib.contextmanager
    def points(self, folder: Path, n: int, max_features: int) -> Iterator[tuple[str, Path]]:
        """A WFS of ``n`` seeded points (layer ``ms:pts``, EPSG:2154) capped at ``max_features`` per response;
        yields (base URL, GeoPackage of the served points)."""
        data = self.fixture.write_points_layer(folder / "points.gpkg", n=n)
        with self.serve(self.fixture.write_mapfile(folder, data, max_features=max_features)) as url:
            yield url, data


# --- static files ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """A quiet threaded HTTP server of ``folder`` (Python's http.server: answers If-Modified-Since with 304, no
    Range requests); yields its base URL (no trailing slash)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- in-process HTTP file server with validators (tests/fixtures/osm/http_server.py) ---------------------------------
FileServer = fixture_module("osm/http_server.py").FileServer

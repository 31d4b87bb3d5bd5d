"""Fault injection: the attacks of issue 14, each one reproduced, with what must hold afterwards.

For every attack: nothing half-visible (``latest.json`` byte-identical, or pointing at a release that verifies),
one clear error message naming the thing at fault, and the next good run succeeds. Attacks: forced race
interleavings of publishers and runs, stalled / trickling / redirect-looping local HTTP servers, a refused input
followed by a good one, disk full (a store whose writes fail, and a real small tmpfs when running as root),
``kill -9`` of a publishing process at each step, and bad configurations.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import pytest

from helpers.release_outputs import make_outputs, territory
from helpers.servers import static_server
from helpers.yamlio import dump_yaml
from tvb_tasks import publish
from tvb_tasks.cli import main as tvb
from tvb_tasks.config import PROJECT_ROOT, ConfigError, load_territory, load_yaml
from tvb_tasks.publish import (
    PublishConflict,
    PublishError,
    find_orphans,
    input_key,
    list_releases,
    prune,
    publish_release,
    release_id_for,
    rollback,
    verify_release,
)
from tvb_tasks.publish.release import check_release_id, new_run_nonce, release_time
from tvb_tasks.sources import SourceError, fetch_source, list_rejected
from tvb_tasks.sources.http import HttpOptions, download, request
from tvb_tasks.store import LocalStore, StoreError, open_store

T0 = datetime(2026, 11, 25, 18, 15, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


# --- helpers ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("faults")
    return publish.stage_release(territory(), tmp / "release", **make_outputs(tmp / "in"))


def key_for(n: int) -> str:
    return input_key({"landuse": f"snap{n}"}, "cfg" + "0" * 61, "1.0.0")


def pub(store, staged: Path, n: int, **kw) -> dict:
    return publish_release(territory(), store, staged, input_key=key_for(n),
                           sources={"landuse": {"snapshot_id": f"snap{n}"}},
                           validation={"success": True, "critical_failures": 0}, indicators={"x": n},
                           code_version="1.0.0", released_at=T0 + timedelta(minutes=n), **kw)


def latest_bytes(store) -> bytes | None:
    try:
        return store.get_bytes("releases/call/latest.json")
    except Exception:  # noqa: BLE001
        return None


def assert_live_release_verified(store) -> str:
    """``latest.json`` points at a complete release whose objects and manifest verify."""
    rid = json.loads(store.get_bytes("releases/call/latest.json"))["release_id"]
    report = verify_release(store, "call", rid)
    assert report["ok"] and report["manifest_matches_pointer"] is True, report
    return rid


def copy_staged(staged: Path, dest: Path, change: str | None = None) -> Path:
    shutil.copytree(staged, dest)
    if change:
        (dest / change).write_bytes((dest / change).read_bytes() + b" ")
    return dest


# --- 1. races between publishers ---------------------------------------------------------------------------------
def test_release_ids_are_unique_per_run():
    k = key_for(1)
    nonces = {new_run_nonce() for _ in range(200)}
    assert len(nonces) == 200
    a, b = (release_id_for(k, T0, nonce=n) for n in list(nonces)[:2])
    assert a != b and a[:25] == b[:25] == release_id_for(k, T0)        # same second, same inputs, other run
    assert check_release_id(a) == a and release_time(a) == T0
    with pytest.raises(ValueError):
        release_id_for(k, T0, nonce="XYZ")


def test_release_id_must_match_time_and_inputs(tmp_path, staged):
    store = LocalStore(tmp_path / "s")
    with pytest.raises(PublishError, match="does not match"):
        pub(store, staged, 1, release_id=release_id_for(key_for(2), T0, nonce="abcdef12"))
    assert store.list("releases/") == []


def test_same_second_same_inputs_two_runs_do_not_share_objects(tmp_path, staged):
    """Two runs with identical inputs in the same second (the CLI race of the issue): distinct ids, the CAS
    elects one, the loser removes only its own objects and the winner's release verifies."""
    store = LocalStore(tmp_path / "s")
    barrier = threading.Barrier(2, timeout=60)
    results: dict[str, object] = {}

    def run(nonce: str) -> None:
        rid = release_id_for(key_for(1), T0 + timedelta(minutes=1), nonce=nonce)
        try:
            results[nonce] = pub(store, staged, 1, release_id=rid, crash_before_swap=lambda r: barrier.wait())
        except Exception as exc:  # noqa: BLE001
            results[nonce] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in ("aaaaaa01", "bbbbbb02")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    won = [v for v in results.values() if isinstance(v, dict)]
    lost = [v for v in results.values() if isinstance(v, PublishConflict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert assert_live_release_verified(store) == won[0]["release_id"]
    assert find_orphans(store, "call") == []
    assert [r["release_id"] for r in list_releases(store, "call")] == [won[0]["release_id"]]


def test_loser_cleanup_never_breaks_a_release_that_adopted_its_objects(tmp_path, staged):
    """The interleaving of issue 14 (same release id, different content): B writes the first objects, A adopts
    them (identical) and uploads the rest, B meets A's different object, gives up and deletes what B wrote.
    A must then refuse to swap (its release is missing objects) instead of going live half-empty."""
    store = LocalStore(tmp_path / "s")
    r0 = pub(store, staged, 0)
    before = latest_bytes(store)
    rels = publish.release.staged_files(staged)
    differing = rels[6]
    a_dir = copy_staged(staged, tmp_path / "a", change=differing)      # A's content differs from B's at rels[6]
    rid = release_id_for(key_for(1), T0 + timedelta(minutes=1), nonce="cafe0001")
    a_uploaded, b_done = threading.Event(), threading.Event()
    result_a: dict[str, object] = {}

    def run_a() -> None:
        def pause(_rid: str) -> None:
            a_uploaded.set()
            assert b_done.wait(60)
        try:
            result_a["r"] = pub(store, a_dir, 1, release_id=rid, crash_before_swap=pause)
        except Exception as exc:  # noqa: BLE001
            result_a["r"] = exc
            a_uploaded.set()

    thread_a = threading.Thread(target=run_a)

    def b_hook(step: str, _rid: str) -> None:
        if step == f"uploaded:releases/call/{rid}/{rels[5]}":
            thread_a.start()                 # A starts now: adopts B's first 6 objects, writes the rest
            assert a_uploaded.wait(60)

    with pytest.raises(PublishConflict, match="already exists with other content"):
        pub(store, staged, 1, release_id=rid, step_hook=b_hook)
    b_done.set()
    thread_a.join(120)
    assert isinstance(result_a["r"], PublishConflict), result_a
    assert "NOT made live" in str(result_a["r"]) and "missing" in str(result_a["r"])
    assert latest_bytes(store) == before                                   # users still on r0
    assert assert_live_release_verified(store) == r0["release_id"]
    assert not store.exists(f"releases/call/{rid}/manifest.json")
    # next good run succeeds
    r2 = pub(store, staged, 2)
    assert assert_live_release_verified(store) == r2["release_id"]


def test_retry_never_deletes_objects_it_only_adopted(tmp_path, staged):
    """A retried publish adopts the objects of the crashed attempt; when it then loses the CAS it removes none of
    them (they are not its own): they stay orphans for ``prune``, nothing is half-visible."""
    store = LocalStore(tmp_path / "s")
    pub(store, staged, 0)
    with pytest.raises(publish.SimulatedCrash):
        pub(store, staged, 1, crash_before_swap=True)
    rid = release_id_for(key_for(1), T0 + timedelta(minutes=1))
    crashed = set(store.list(f"releases/call/{rid}/"))
    _, etag = store.get_with_etag("releases/call/latest.json")

    def sneak(_rid: str) -> None:
        store.put_bytes("releases/call/latest.json", store.get_bytes("releases/call/latest.json") + b"\n",
                        if_match=etag)

    with pytest.raises(PublishConflict):
        pub(store, staged, 1, crash_before_swap=sneak)
    assert set(store.list(f"releases/call/{rid}/")) == crashed                # adopted objects left alone
    assert set(find_orphans(store, "call")) == crashed


# --- 7. tampering with an old release ----------------------------------------------------------------------------
def test_tampering_a_file_and_its_manifest_entry_is_detected(tmp_path, staged):
    store = LocalStore(tmp_path / "s")
    r1, r2 = pub(store, staged, 1), pub(store, staged, 2)
    pointer = json.loads(latest_bytes(store))
    assert [h.get("manifest_sha256") is not None for h in pointer["history"]] == [True, True]
    base = f"releases/call/{r1['release_id']}"
    forged = b'{"forged": true}'
    store.put_bytes(f"{base}/indicators/indicators.json", forged)
    m = json.loads(store.get_bytes(f"{base}/manifest.json"))
    for f in m["files"]:
        if f["path"] == "indicators/indicators.json":
            import hashlib
            f.update(sha256=hashlib.sha256(forged).hexdigest(), size=len(forged))
    store.put_bytes(f"{base}/manifest.json", json.dumps(m).encode())
    v = verify_release(store, "call", r1["release_id"])
    assert v["mismatched"] == [] and v["manifest_matches_pointer"] is False and v["ok"] is False
    before = latest_bytes(store)
    with pytest.raises(PublishError, match="manifest differs"):
        rollback(store, "call", r1["release_id"])
    assert latest_bytes(store) == before and assert_live_release_verified(store) == r2["release_id"]
    assert tvb(["releases", "verify", r1["release_id"], "--store", str(tmp_path / "s")]) == 1


# --- 8. disk full, file://host, kill -9 --------------------------------------------------------------------------
class FullDiskStore(LocalStore):
    """A local store whose disk fills up after ``budget`` more bytes (writes raise ENOSPC like a full disk)."""

    def __init__(self, root, budget: int):
        super().__init__(root)
        self.budget = budget

    def _write_tmp(self, target, writer):
        store = self

        def limited(f):
            class Sink:
                def write(self, data):
                    store.budget -= len(data)
                    if store.budget < 0:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return f.write(data)
            writer(Sink())
        return super()._write_tmp(target, limited)


def test_disk_full_mid_publish_names_the_key_and_leaves_nothing(tmp_path, staged):
    root = tmp_path / "s"
    r0 = pub(LocalStore(root), staged, 0)
    before = latest_bytes(LocalStore(root))
    full = FullDiskStore(root, budget=200_000)
    with pytest.raises(PublishError) as err:
        pub(full, staged, 1)
    msg = str(err.value)
    rid = release_id_for(key_for(1), T0 + timedelta(minutes=1))
    assert "disk full" in msg and f"releases/call/{rid}/" in msg and "NOT published" in msg, msg
    store = LocalStore(root)
    assert latest_bytes(store) == before and store.list(f"releases/call/{rid}/") == []
    assert store.list_partial() == [] and find_orphans(store, "call") == []
    assert assert_live_release_verified(store) == r0["release_id"]
    r2 = pub(store, staged, 2)                                    # space back: the next run succeeds
    assert assert_live_release_verified(store) == r2["release_id"]


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="a tmpfs needs root")
def test_disk_full_on_a_real_small_tmpfs(tmp_path, staged):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size = _tree_size(staged)
    # room for one release and its latest/ mirror, not for a second release
    kib = (size + _tree_size(staged / "web") + 200_000) * 13 // 10 // 1024
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = LocalStore(mnt / "store")
        r0 = pub(store, staged, 0)
        before = latest_bytes(store)
        with pytest.raises(PublishError, match="disk full"):
            pub(store, staged, 1)
        assert latest_bytes(store) == before and store.list_partial() == []
        assert assert_live_release_verified(store) == r0["release_id"]
        subprocess.run(["mount", "-o", f"remount,size={kib * 3}k", str(mnt)], check=True)
        r2 = pub(store, staged, 2)
        assert assert_live_release_verified(store) == r2["release_id"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_file_uri_with_a_host_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="host 'somehost'"):
        open_store("file://somehost/tmp/x")
    assert isinstance(open_store(f"file://localhost{tmp_path}/a"), LocalStore)
    assert tvb(["releases", "list", "--store", "file://somehost" + str(tmp_path)]) == 2          # a malformed store URI is a usage error
    assert "file:///absolute/path" in capsys.readouterr().err
    assert not (Path(str(tmp_path)) / "releases").exists()


KILLER = r"""
import os, signal, sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, sys.argv[5])
from helpers.release_outputs import territory
from tvb_tasks.publish import publish_release, input_key
from tvb_tasks.store import LocalStore

root, staged, step, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class KillingStore(LocalStore):
    def _commit(self, key, tmp, create_only, if_match):
        if step == "mid-write" and key.endswith("/tvb.gpkg"):
            os.kill(os.getpid(), signal.SIGKILL)          # the .tmp-* file is written, not yet linked
        return super()._commit(key, tmp, create_only, if_match)

def hook(s, rid):
    if s == step or (step == "first-upload" and s.startswith("uploaded:")) or \
            (step == "item" and s.endswith("/stac/item.json")):
        os.kill(os.getpid(), signal.SIGKILL)

publish_release(territory(), KillingStore(root), staged,
                input_key=input_key({"landuse": f"snap{n}"}, "cfg" + "0" * 61, "1.0.0"),
                sources={}, validation={"success": True}, indicators={}, code_version="1.0.0",
                released_at=datetime(2026, 11, 25, 18, 15, tzinfo=timezone.utc) + timedelta(minutes=n),
                step_hook=hook)
print("NOT KILLED")
"""


@pytest.mark.integration          # a real publisher process, killed with SIGKILL
@pytest.mark.parametrize("step", ["first-upload", "mid-write", "item", "manifest", "swapped"])
def test_kill_9_at_each_publish_step(tmp_path, staged, step):
    store = LocalStore(tmp_path / "s")
    r0 = pub(store, staged, 0)
    before = latest_bytes(store)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path / "s"), str(staged), step, "1", str(ROOT)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    rid = release_id_for(key_for(1), T0 + timedelta(minutes=1))
    if step == "swapped":        # killed after the swap: the new release is live and complete
        assert assert_live_release_verified(store) == rid
    else:                        # killed before: users still on r0, byte for byte
        assert latest_bytes(store) == before
        assert assert_live_release_verified(store) == r0["release_id"]
    orphans = find_orphans(store, "call")
    if step in ("first-upload", "mid-write", "item"):
        assert orphans, "the killed run's objects must be visible as orphans"
        assert all(k.startswith(f"releases/call/{rid}/") for k in orphans)
        if step == "mid-write":
            assert any("/.tmp-" in "/" + k for k in orphans)          # kill -9 leftovers are visible too
        res = prune(store, "call", keep=5, now=datetime.now(UTC) + timedelta(days=2))
        assert find_orphans(store, "call") == [] and store.list_partial() == []
        assert res["objects_deleted"] >= len(orphans)
    else:                        # manifest written: a complete release, never half-visible
        assert orphans == [] and verify_release(store, "call", rid)["ok"]
    r2 = pub(store, staged, 2)                                          # the next good run succeeds
    assert assert_live_release_verified(store) == r2["release_id"]


# --- 2. stalled, trickling and looping HTTP servers --------------------------------------------------------------
class RawServer:
    """A TCP server on 127.0.0.1 answering every connection with ``handler(conn)`` in a thread."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._loop, args=(handler,), daemon=True).start()

    def _loop(self, handler):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(handler, conn), daemon=True).start()

    def _serve(self, handler, conn):
        try:
            handler(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def stalled(server, conn):
    conn.recv(65536)
    server.stop.wait(60)                       # never answers


def trickle_body(server, conn):
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n")
    while not server.stop.wait(0.1):           # one byte every 0.1 s: each read well within the read timeout
        conn.sendall(b"<")


def trickle_headers(server, conn):
    conn.recv(65536)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000:
        if server.stop.wait(0.1):
            return
        conn.sendall(bytes([byte]))


def redirect_loop(server, conn):
    conn.recv(65536)
    conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {server.url}/loop?x=1\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n".encode())


@pytest.fixture
def raw_server():
    servers = []

    def start(handler):
        servers.append(RawServer(handler))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


def run_bounded(fn, limit_s: float = 60.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not return within ``limit_s``."""
    box: dict[str, object] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"still running after {limit_s} s: no deadline"
    return box


@pytest.mark.parametrize("handler", [stalled, trickle_body, trickle_headers])
def test_overall_deadline_cuts_stalled_and_trickling_servers(raw_server, handler, tmp_path):
    server = raw_server(handler)
    # the deadline (0.3 s) is shorter than one read timeout (0.5 s; the servers send a byte every 0.1 s): only the deadline can cut these servers
    opts = HttpOptions(timeout_s=0.5, connect_timeout_s=0.5, deadline_s=0.3, max_retries=10, backoff_s=0.05)
    url = f"{server.url}/wfs?SERVICE=WFS&token=s3cret"
    box = run_bounded(lambda: request("GET", url, opts=opts))
    err = box.get("error")
    assert isinstance(err, SourceError), box
    msg = str(err)
    assert f"{server.url}/wfs?SERVICE=WFS" in msg and "deadline of 0.3 s" in msg and "--deadline" in msg
    assert "s3cret" not in msg
    box = run_bounded(lambda: download(url, tmp_path / "dl" / "x.bin", opts=opts))
    assert isinstance(box.get("error"), SourceError) and "deadline" in str(box["error"])
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []     # no partial file


def test_wfs_read_and_cli_cut_by_the_deadline(raw_server, tmp_path, capsys):
    from tvb_tasks.sources.wfs import read_wfs

    server = raw_server(trickle_body)
    box = run_bounded(lambda: read_wfs(server.url + "/ows", "ms:x",
                                       opts=HttpOptions(timeout_s=0.5, deadline_s=0.3, max_retries=3)))
    assert isinstance(box.get("error"), SourceError) and server.url in str(box["error"])
    out = tmp_path / "x.parquet"
    box = run_bounded(lambda: tvb(["sources", "fetch-wfs", server.url + "/ows", "ms:x", str(out),
                                   "--timeout", "0.5", "--deadline", "0.3"]))
    assert box.get("value") == 1 and not out.exists()
    err = capsys.readouterr().err
    assert err.count("tvb: error:") == 1 and server.url in err and "deadline of 0.3 s" in err
    with pytest.raises(SystemExit) as usage:                                         # usage error
        tvb(["sources", "fetch-wfs", server.url, "ms:x", str(out), "--deadline", "0"])
    assert usage.value.code == 2 and "positive finite number of seconds" in capsys.readouterr().err
    for bad in ("inf", "nan", "-inf", "1e999"):                                      # the deadline stays on
        with pytest.raises(SystemExit) as usage:
            tvb(["sources", "fetch-wfs", server.url, "ms:x", str(out), f"--deadline={bad}"])
        assert usage.value.code == 2 and "finite" in capsys.readouterr().err
    for bad in ("-5", "nan", "inf"):
        with pytest.raises(SystemExit) as usage:
            tvb(["run", f"--wait={bad}", "--store", str(tmp_path / "w")])
        assert usage.value.code == 2 and "--wait" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    with pytest.raises(ValueError, match="finite"):
        HttpOptions(deadline_s=float("inf"))


def test_redirect_loop_names_the_url(raw_server):
    server = raw_server(redirect_loop)
    box = run_bounded(lambda: request("GET", server.url + "/start", opts=HttpOptions(max_retries=0)))
    msg = str(box.get("error"))
    assert isinstance(box.get("error"), SourceError) and "redirect" in msg and f"{server.url}/start" in msg


def sample_server():
    """A quiet local HTTP server of the bundled sample folder (answers If-Modified-Since with 304); yields its URL."""
    return static_server(PROJECT_ROOT / "sample" / "call")


def http_territory(url: str, **options):
    from tvb_tasks.config import SourceConfig

    t = load_territory("call")
    roads = SourceConfig(kind="http", role="roads", url=url, **options)
    return t.model_copy(update={"sources": {**t.sources, "roads": roads}})


def test_deadline_from_yaml_and_cli_override_then_good_server(raw_server, tmp_path):

    store = LocalStore(tmp_path / "s")
    slow = raw_server(trickle_body)
    t = http_territory(slow.url + "/roads.gpkg", deadline_s=0.3, timeout_s=0.5)
    box = run_bounded(lambda: fetch_source(t, "roads", store))
    assert isinstance(box.get("error"), SourceError) and "deadline of 0.3 s" in str(box["error"])
    t = http_territory(slow.url + "/roads.gpkg")              # YAML without deadline: the CLI's applies
    box = run_bounded(lambda: fetch_source(t, "roads", store, http_overrides={"deadline_s": 0.25, "timeout_s": 0.5}))
    assert "deadline of 0.25 s" in str(box.get("error"))
    assert store.list("snapshots/call/roads/") == []          # nothing written by the failed fetches
    # the next good fetch succeeds
    with sample_server() as base:
        t = http_territory(f"{base}/roads.gpkg", layer="roads", deadline_s=60)
        ref = fetch_source(t, "roads", store)
        assert ref["changed"] and store.exists(ref["key"])


# --- 3. a refused input, then the good one -----------------------------------------------------------------------
def _config_dir(tmp: Path, landuse: Path | None = None, **changes) -> Path:
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    if landuse is not None:
        raw["sources"]["landuse"].update(path=str(landuse))
    raw.update(changes)
    d = tmp / f"config-{len(list(tmp.glob('config-*')))}"
    d.mkdir()
    (d / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return d


def _landuse_path() -> Path:
    return load_territory("call").resolve_path(load_territory("call").sources["landuse"].path)


def _subset(run: dict, *names: str) -> dict:
    return {**run, "snapshots": {n: r for n, r in run["snapshots"].items() if n in names}}


@pytest.mark.integration          # stages of the whole bundled sample
@pytest.mark.slow
def test_refused_snapshot_never_becomes_the_baseline(tmp_path, monkeypatch, capsys):
    from tvb_tasks.pipeline import stage_fetch, stage_validate_sources
    from tvb_tasks.validate import ValidationFailed

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    store_uri = (tmp_path / "store").as_uri()
    t = load_territory("call")
    names = (t.boundary.source, "landuse")
    good = _landuse_path()
    layer = t.sources["landuse"].layer
    gdf = gpd.read_file(good, layer=layer) if layer else gpd.read_file(good)
    half = tmp_path / ("half" + good.suffix)
    gdf.iloc[: len(gdf) // 2].to_file(half, layer=layer) if layer else gdf.iloc[: len(gdf) // 2].to_file(half)

    run1 = stage_fetch("call", store_uri=store_uri)
    assert stage_validate_sources(_subset(run1, *names))["success"]
    monkeypatch.setenv("TVB_CONFIG_DIR", str(_config_dir(tmp_path, landuse=half)))
    run2 = stage_fetch("call", store_uri=store_uri)
    with pytest.raises(ValidationFailed, match="landuse"):
        stage_validate_sources(_subset(run2, *names))
    rejected = list_rejected(open_store(store_uri), "call")
    assert [(r["source"], r["snapshot_id"]) for r in rejected] == [("landuse",
                                                                     run2["snapshots"]["landuse"]["snapshot_id"])]
    assert "row_count" in rejected[0]["reason"]
    assert tvb(["sources", "rejected", "--store", store_uri]) == 0
    assert run2["snapshots"]["landuse"]["snapshot_id"][:12] in capsys.readouterr().out
    # the good layer again: compared with the last accepted snapshot, not with the refused one
    monkeypatch.delenv("TVB_CONFIG_DIR")
    run3 = stage_fetch("call", store_uri=store_uri)
    assert stage_validate_sources(_subset(run3, *names))["success"]
    assert tvb(["sources", "rejected", "--clear", "--store", store_uri]) == 0
    assert "cleared 1 rejected" in capsys.readouterr().out and list_rejected(open_store(store_uri), "call") == []


# --- 4 and 5. one territory identity per run; a lease on the work folder -----------------------------------------
def test_path_form_territory_is_used_by_every_stage(tmp_path, monkeypatch):
    from tvb_tasks.pipeline import _territory, stage_fetch

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["sous_trames"]["forest"]["reservoir_min_area_ha"] = 77.0
    x = tmp_path / "x.yaml"                       # same id as config/territories/call.yaml, other thresholds
    x.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    run = stage_fetch(str(x), store_uri=(tmp_path / "store").as_uri())
    used = _territory(run)
    assert used.sous_trames["forest"].reservoir_min_area_ha == 77.0 and used.path == str(x)
    assert run["config_hash"] == load_territory(x).config_hash() != load_territory("call").config_hash()
    assert used.config_hash() == run["config_hash"] and run["config_path"] == str(x)
    assert run["input_key"] == input_key({n: r["snapshot_id"] for n, r in run["snapshots"].items()},
                                         run["config_hash"], run["code_version"])
    # a configuration changed under a running run stops it instead of mixing two configurations
    bad = {**run, "config_hash": "0" * 64}
    from tvb_tasks.pipeline import PipelineError
    with pytest.raises(PipelineError, match="configuration changed since the fetch"):
        _territory(bad)


@pytest.mark.integration          # a whole `tvb run` of the bundled sample
@pytest.mark.slow
def test_path_form_run_publishes_with_that_files_configuration(tmp_path, monkeypatch, capsys):
    """A whole ``tvb run --territory /path/x.yaml`` whose id is that of config/territories/call.yaml: the release's
    manifest records x.yaml's (effective) configuration hash, not call.yaml's."""
    from tvb_tasks.pipeline import effective_territory

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["sous_trames"]["forest"]["reservoir_min_area_ha"] = float(raw["sous_trames"]["forest"]
                                                                  ["reservoir_min_area_ha"]) + 7
    x = tmp_path / "x.yaml"
    x.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    store = tmp_path / "store"
    # forest only at 100 m: what is checked (the configuration recorded) does not depend on the grid
    assert tvb(["run", "--territory", str(x), "--store", str(store), "--sous-trames", "forest",
                "--resolution", "100"]) == 0
    rid = capsys.readouterr().out.split("published release ")[1].split()[0]
    m = json.loads((store / "releases" / "call" / rid / "manifest.json").read_text())
    used = effective_territory(str(x), sous_trames=["forest"], resolution_m=100)
    assert m["config_hash"] == used.config_hash()
    assert m["input_key"] == input_key({n: r["snapshot_id"] for n, r in m["sources"].items()}, used.config_hash(),
                                       m["code_version"])
    assert m["config_hash"] != effective_territory("call", sous_trames=["forest"], resolution_m=100).config_hash()
    assert rid.count("-") == 2 and assert_live_release_verified(LocalStore(store)) == rid      # run nonce in the id


def test_ghost_territory_fails_before_writing_snapshots(tmp_path, capsys):
    store = tmp_path / "store"
    assert tvb(["run", "--territory", str(tmp_path / "ghost.yaml"), "--store", str(store)]) == 1
    assert "no territory configuration" in capsys.readouterr().err
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["id"] = "ghost"
    raw["sources"]["roads"]["path"] = "sample/call/no-such-roads.gpkg"
    ghost = tmp_path / "ghost.yaml"
    ghost.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    assert tvb(["run", "--territory", str(ghost), "--store", str(store)]) == 1
    err = capsys.readouterr().err
    assert str(ghost) in err and "no-such-roads.gpkg not found" in err and "nothing fetched" in err
    assert not (store / "snapshots").exists() or not list((store / "snapshots").rglob("*.parquet"))


def _fake_run(tmp_path) -> dict:
    return {"territory": "call", "input_key": "ab" * 32}


def test_work_lease_stops_or_waits_and_survives_kill_9(tmp_path, monkeypatch):
    from tvb_tasks.pipeline import RunInProgress, lease_path, work_lease

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    run = _fake_run(tmp_path)
    with work_lease(run):
        with pytest.raises(RunInProgress, match="another run is working on these inputs") as err, work_lease(run):
            pass
        assert f"pid {os.getpid()}" in str(err.value)
    # a waiting run gets the lease once the holder finishes
    held, release = threading.Event(), threading.Event()

    def holder():
        with work_lease(run):
            held.set()
            release.wait(30)
    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    threading.Timer(0.1, release.set).start()
    with work_lease(run, wait_s=30, poll_s=0.05):
        pass
    t.join(30)
    # a holder killed with SIGKILL leaves no stale lease
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from tvb_tasks.pipeline import work_lease\n"
            "with work_lease({'territory': 'call', 'input_key': 'ab' * 32}):\n"
            "    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TVB_WORK_DIR": str(tmp_path / "work")})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunInProgress), work_lease(run):
            pass
    finally:
        proc.kill()
        proc.wait(30)
    with work_lease(run):
        assert json.loads(lease_path(run).read_text())["pid"] == os.getpid()


@pytest.mark.integration          # stages of the whole bundled sample
@pytest.mark.slow
def test_second_cli_run_on_the_same_inputs_stops_clearly(tmp_path, monkeypatch, capsys):
    from tvb_tasks.pipeline import stage_fetch, work_lease

    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TVB_CACHE_DIR", str(tmp_path / "cache"))
    store_uri = (tmp_path / "store").as_uri()
    run = stage_fetch("call", store_uri=store_uri)
    with work_lease(run):                     # a first run is working on these inputs
        assert tvb(["run", "--store", store_uri]) == 1
        err = capsys.readouterr().err
        assert tvb(["run", "--store", store_uri, "--wait", "0.3"]) == 1
        waited = capsys.readouterr().err
    assert "waited 0.3 s" in waited and "use --wait" not in waited            # --wait was given: no such advice
    assert err.count("tvb: error:") == 1 and "another run is working on these inputs" in err and "--wait" in err
    assert "FileNotFoundError" not in err and not open_store(store_uri).exists("releases/call/latest.json")


# --- 6 and 8. bad configurations: one clear message ------------------------------------------------------------
def _yaml(tmp_path: Path, mutate) -> Path:
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    mutate(raw)
    p = tmp_path / "t.yaml"
    p.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return p


def test_empty_habitat_refused_by_check_config(tmp_path, capsys):
    p = _yaml(tmp_path, lambda raw: raw["sous_trames"]["forest"].update(habitat=[]))
    assert tvb(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "sous_trames.forest" in err and "habitat is empty" in err


@pytest.mark.parametrize("value", ["0", "1000", "nan", "-5"])
def test_resolution_out_of_bounds_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as usage:
        tvb(["run", "--resolution", value, "--store", str(tmp_path / "s"), "--dry-run"])
    assert usage.value.code == 2
    assert f"resolution_m must be between 5 and 500 m, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("value", [1, 0, 1000, 501])
def test_resolution_bound_in_the_yaml(tmp_path, capsys, value):
    """The 5–500 m bound lives in the schema: check-config refuses, a run fetches and writes nothing."""
    p = _yaml(tmp_path, lambda raw: raw.update(resolution_m=value))
    assert tvb(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "resolution_m" in err and ("greater than or equal to 5" in err or "less than or equal to 500" in err)
    assert tvb(["run", "--territory", str(p), "--store", str(tmp_path / "s")]) == 1
    assert not (tmp_path / "s").exists()


def test_non_utf8_yaml_names_the_file(tmp_path, capsys):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("id: call\nname: Lens-Liévin\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8"):
        load_territory(p)
    assert tvb(["check-config", str(p)]) == 1
    assert "latin1.yaml: not UTF-8" in capsys.readouterr().err


def test_nomenclature_error_never_echoes_the_file(tmp_path, capsys):
    secret_line = "root:x:0:0:TOPSECRET:/root:/bin/bash"
    fake = tmp_path / "passwd"
    fake.write_text(secret_line + "\n")
    nomenclature = load_yaml((PROJECT_ROOT / "config/nomenclatures/ocs2d.yaml").read_text(encoding="utf-8"))

    def point_at_fake(raw: dict) -> None:      # explicit {file, code_column} form, with the OCS2D rules
        raw["nomenclature"] = {"file": str(fake), "code_column": nomenclature["code_column"]}
        raw["landuse"].update(rules=nomenclature["rules"], code_columns=nomenclature["code_columns"])

    p = _yaml(tmp_path, point_at_fake)
    assert tvb(["run", "--territory", str(p), "--store", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert str(fake) in err and "no column" in err and "TOPSECRET" not in err and "root:x" not in err
    assert not (tmp_path / "s" / "snapshots").exists()


# --- cold review of issue 14: no file content in errors, bounded config reads ----------------------------------
def test_nomenclature_check_columns_error_never_echoes_the_file(tmp_path, capsys):
    """The check-config path (``check_columns``: rule codes checked against the list) read a non-code-list file
    and listed its 'columns', i.e. its first line (``/etc/shadow``)."""
    fake = tmp_path / "shadow"
    fake.write_text("root:*:19000:0:99999:7:::TOPSECRET\ndaemon:*:19000:0:99999:7:::\n")
    nomenclature = load_yaml((PROJECT_ROOT / "config/nomenclatures/ocs2d.yaml").read_text(encoding="utf-8"))

    def point_at_fake(raw: dict) -> None:
        raw["nomenclature"] = {"file": str(fake), "code_column": nomenclature["code_column"],
                               "check_columns": nomenclature["code_columns"][:1]}
        raw["landuse"].update(rules=nomenclature["rules"], code_columns=nomenclature["code_columns"])

    p = _yaml(tmp_path, point_at_fake)
    assert tvb(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert str(fake) in err and "no column" in err and "TOPSECRET" not in err and "root:" not in err


def test_yaml_syntax_error_never_echoes_the_file(tmp_path, capsys):
    p = tmp_path / "t.yaml"
    p.write_text("id: call\nsecret: TOPSECRET: value\n")
    assert tvb(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "line 2" in err and "TOPSECRET" not in err


def test_osm_tag_rules_error_never_echoes_the_file(tmp_path):
    from tvb_tasks.sources.osm import load_tag_rules

    p = tmp_path / "rules.yaml"
    p.write_text("landuse: [TOPSECRET: x: y\n")
    with pytest.raises(SourceError) as err:
        load_tag_rules(p)
    assert "not valid YAML" in str(err.value) and "TOPSECRET" not in str(err.value)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_territory_yaml_symlinked_to_a_device_is_refused(tmp_path, capsys, device):
    p = tmp_path / "t.yaml"
    p.symlink_to(device)
    assert tvb(["check-config", str(p)]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_oversized_territory_yaml_is_refused(tmp_path):
    from tvb_tasks.config import MAX_CONFIG_BYTES

    p = tmp_path / "big.yaml"
    with p.open("wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES + 10)
    with pytest.raises(ConfigError, match="larger than 10 MB"):
        load_territory(p)


def firehose(server, conn, announce: bool = False):
    """Answers 200 and sends zeros as fast as the client reads, without end (the 3 GB attack); counts bytes."""
    conn.recv(65536)
    length = f"Content-Length: {3 * 1024 ** 3}\r\n" if announce else ""
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n".encode())
    block = b"0" * 65536
    server.sent = 0
    while not server.stop.is_set():
        conn.sendall(block)
        server.sent += len(block)


def test_oversized_response_is_cut_and_names_the_url(raw_server, tmp_path):
    server = raw_server(firehose)
    opts = HttpOptions(max_retries=0, max_page_bytes=1 << 20, max_bytes=2 << 20)
    box = run_bounded(lambda: request("GET", server.url + "/wfs?token=s3cret", opts=opts))
    msg = str(box.get("error"))
    assert isinstance(box.get("error"), SourceError), box
    assert f"{server.url}/wfs" in msg and "max_page_bytes = 1048576" in msg and "s3cret" not in msg
    assert server.sent < 16 << 20                            # stopped reading: at most socket buffers more
    box = run_bounded(lambda: download(server.url + "/big.gpkg", tmp_path / "dl" / "x.gpkg", opts=opts))
    msg = str(box.get("error"))
    assert isinstance(box.get("error"), SourceError) and "max_bytes = 2097152" in msg and "/big.gpkg" in msg
    assert list((tmp_path / "dl").iterdir()) == []           # the partial file is removed
    announced = raw_server(lambda s, c: firehose(s, c, announce=True))
    box = run_bounded(lambda: download(announced.url + "/big.gpkg", tmp_path / "dl" / "y.gpkg", opts=opts))
    assert "announced by Content-Length" in str(box.get("error"))


def test_max_bytes_from_the_yaml_and_refused_when_invalid(raw_server, tmp_path):
    server = raw_server(firehose)
    store = LocalStore(tmp_path / "s")
    t = http_territory(server.url + "/roads.gpkg", max_bytes=1 << 20, max_retries=0)
    box = run_bounded(lambda: fetch_source(t, "roads", store))
    assert isinstance(box.get("error"), SourceError) and "max_bytes = 1048576" in str(box["error"])
    assert not store.list("snapshots/")
    with pytest.raises(ValueError, match=r"max_bytes\s+Input should be greater than 0"):   # the schema refuses it
        http_territory(server.url + "/r.gpkg", max_bytes=-1)
    with pytest.raises(SourceError, match="max_bytes must be a positive whole number"):      # and the client too
        HttpOptions.from_source({"max_bytes": -1})
    assert HttpOptions().max_bytes == 2 * 1024 ** 3 and HttpOptions().max_page_bytes == 256 * 1024 ** 2


# --- cold review: a dangling or corrupt latest.json, forged releases, store URIs --------------------------------
def _point_latest_at(store, release_id: str) -> None:
    pointer = json.loads(store.get_bytes("releases/call/latest.json"))
    pointer["release_id"] = release_id
    store.put_bytes("releases/call/latest.json", json.dumps(pointer).encode())


def test_dangling_latest_json_blocks_prune_warns_and_rollback_repairs(tmp_path, staged, capsys):
    store = LocalStore(tmp_path / "s")
    r1, r2 = pub(store, staged, 1)["release_id"], pub(store, staged, 2)["release_id"]
    ghost = release_id_for(key_for(3), T0 + timedelta(minutes=3))
    _point_latest_at(store, ghost)                       # points at a release that does not exist
    with pytest.raises(PublishError, match=f"prune refused: .*{ghost}, which does not exist"):
        prune(store, "call", keep=1)
    assert tvb(["releases", "prune", "--keep", "1", "--store", store.uri]) == 1
    assert [r["release_id"] for r in list_releases(store, "call")] == [r2, r1]        # nothing deleted
    capsys.readouterr()
    assert tvb(["releases", "list", "--store", store.uri]) == 0
    err = capsys.readouterr().err
    assert f"points at release {ghost}, which does not exist" in err and "tvb releases rollback" in err
    assert tvb(["releases", "rollback", r2, "--store", store.uri]) == 0             # the documented repair
    assert assert_live_release_verified(store) == r2 and prune(store, "call", keep=1)["deleted"] == [r1]
    store.delete(f"releases/call/{r2}/manifest.json")     # the live release loses its manifest
    capsys.readouterr()
    assert tvb(["releases", "list", "--store", store.uri]) == 0
    assert f"points at release {r2}, which has no manifest" in capsys.readouterr().err


def test_corrupt_latest_json_blocks_prune_and_rollback_force_repairs(tmp_path, staged, capsys):
    store = LocalStore(tmp_path / "s")
    r1, r2 = pub(store, staged, 1)["release_id"], pub(store, staged, 2)["release_id"]
    store.put_bytes("releases/call/latest.json", b'{"release_id": "SECRET-CONTENT"')
    with pytest.raises(PublishError, match="not valid JSON"):
        prune(store, "call", keep=1)
    assert len(list_releases(store, "call")) == 2
    assert tvb(["releases", "list", "--store", store.uri]) == 0
    err = capsys.readouterr().err
    assert "latest.json: not valid JSON" in err and "SECRET-CONTENT" not in err and "--force" in err
    assert tvb(["releases", "rollback", r2, "--store", store.uri]) == 1           # history lost: --force needed
    assert "--force" in capsys.readouterr().err
    assert tvb(["releases", "rollback", r2, "--force", "--store", store.uri]) == 0
    assert assert_live_release_verified(store) == r2
    assert [r["release_id"] for r in list_releases(store, "call")] == [r2, r1]       # the repair deletes nothing


def _forge(tmp_path, staged, store, n: int, released_at: datetime) -> str:
    """A complete, self-consistent release written straight into ``store`` (never through latest.json)."""
    other = LocalStore(tmp_path / f"forger{n}")
    rid = publish_release(territory(), other, staged, input_key=key_for(n), sources={"landuse": {"snapshot_id": "x"}},
                          validation={"success": True, "critical_failures": 0}, indicators={"x": n},
                          code_version="1.0.0", released_at=released_at)["release_id"]
    shutil.copytree(other.root / "releases/call" / rid, store.root / "releases/call" / rid)
    return rid


def test_forged_release_is_flagged_by_verify_and_refused_by_rollback(tmp_path, staged, capsys):
    store = LocalStore(tmp_path / "s")
    live = pub(store, staged, 1)["release_id"]
    forged = _forge(tmp_path, staged, store, 2, T0 + timedelta(minutes=2))
    report = verify_release(store, "call", forged)
    assert report["ok"] and report["published"] is False and report["manifest_matches_pointer"] is None
    assert any("never published through latest.json (no pointer history entry)" in w for w in report["warnings"])
    assert tvb(["releases", "verify", forged, "--store", store.uri]) == 0
    assert "never published through latest.json" in capsys.readouterr().err
    with pytest.raises(PublishError, match="no pointer history entry"):
        rollback(store, "call", forged)
    assert tvb(["releases", "rollback", forged, "--store", store.uri]) == 1
    assert assert_live_release_verified(store) == live
    assert tvb(["releases", "rollback", forged, "--force", "--store", store.uri]) == 0
    assert json.loads(store.get_bytes("releases/call/latest.json"))["release_id"] == forged
    assert rollback(store, "call", live)["status"] == "rolled_back"       # a release that was live: no --force
    future = _forge(tmp_path, staged, store, 3, datetime.now(UTC) + timedelta(days=30))
    assert any("dated in the future" in w for w in verify_release(store, "call", future)["warnings"])
    with pytest.raises(PublishError, match="dated in the future"):
        rollback(store, "call", future)


def test_read_only_release_commands_never_create_a_store(tmp_path, capsys):
    missing = tmp_path / "nonexistent" / "zz"
    assert tvb(["releases", "list", "--store", missing.as_uri()]) == 1
    assert f"no store at {missing.as_uri()}" in capsys.readouterr().err and not missing.exists()
    assert not (tmp_path / "nonexistent").exists()
    assert tvb(["releases", "list", "--store", ""]) == 2          # a malformed store URI is a usage error
    assert "empty store URI" in capsys.readouterr().err
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0::/root:/bin/sh\n")
    assert tvb(["releases", "list", "--store", a_file.as_uri()]) == 1
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "FileExistsError" not in err and "root:x" not in err
    with pytest.raises(StoreError, match="not a folder"):
        open_store(str(a_file))


def test_deleted_snapshot_object_is_written_again(tmp_path, capsys):
    """The index kept, the GeoParquet deleted: a fetch must not answer "unchanged" (every run would then fail with
    NotFound) — the file source, and the HTTP source whose server answers 304 Not Modified."""

    store = LocalStore(tmp_path / "s")
    t = load_territory("call")
    ref = fetch_source(t, "territory", store)
    store.delete(ref["key"])
    again = fetch_source(t, "territory", store)
    assert again["snapshot_id"] == ref["snapshot_id"] and store.exists(ref["key"])
    assert len(json.loads(store.get_bytes("snapshots/call/territory/index.json"))["snapshots"]) == 1

    with sample_server() as base:                           # answers If-Modified-Since with 304
        t = http_territory(f"{base}/roads.gpkg", layer="roads")
        ref = fetch_source(t, "roads", store)
        assert fetch_source(t, "roads", store)["changed"] is False            # 304: unchanged, object there
        store.delete(ref["key"])
        again = fetch_source(t, "roads", store)
        assert again["snapshot_id"] == ref["snapshot_id"] and store.exists(ref["key"])


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_nomenclature_file_symlinked_to_a_device_is_refused(tmp_path, capsys, device):
    link = tmp_path / "codes.csv"
    link.symlink_to(device)
    nomenclature = load_yaml((PROJECT_ROOT / "config/nomenclatures/ocs2d.yaml").read_text(encoding="utf-8"))

    def point_at_device(raw: dict) -> None:
        raw["nomenclature"] = {"file": str(link), "code_column": nomenclature["code_column"],
                               "check_columns": nomenclature["code_columns"][:1]}
        raw["landuse"].update(rules=nomenclature["rules"], code_columns=nomenclature["code_columns"])

    assert tvb(["check-config", str(_yaml(tmp_path, point_at_device))]) == 1
    assert "not a regular file" in capsys.readouterr().err

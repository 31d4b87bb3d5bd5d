"""Run scratch in the store (``work/<territory>/<input key[:16]>/``): removed once the run is published, kept by a dry
run and a failed one, and stale prefixes removed by ``tvb releases prune`` (age, never a leased one).

Hand-built: a local store seeded with a run's scratch objects of known sizes, the publish stage replaced by stubs
(what is checked is when the scratch goes, not the publication itself, which test_publish_release.py covers)."""
from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tvb_tasks import pipeline
from tvb_tasks import store as store_mod
from tvb_tasks.cli import main as tvb
from tvb_tasks.errors import InvalidInputError
from tvb_tasks.publish import prune, prune_work
from tvb_tasks.store import LocalStore, StoreError, delete_prefix

KEY = "0123456789abcdef" + "0" * 48          # an input key; its work prefix is work/call/0123456789abcdef/
PREFIX = "work/call/0123456789abcdef/"
SCRATCH = {"tiles/reservoirs/r0c0.npy": 18 * 100, "tiles/pending.json": 10, "layers/tvb.gpkg": 500,
           "indicators/indicators.json": 30, "validation/outputs/result.json": 20, "history/indicators.parquet": 40}


def seed(store: LocalStore, prefix: str = PREFIX, age_days: float = 0.0) -> int:
    """Write the scratch objects under ``prefix`` (modified ``age_days`` ago); return their total size (bytes)."""
    when = time.time() - age_days * 86400
    for rel, size in SCRATCH.items():
        store.put_bytes(prefix + rel, b"x" * size)
        os.utime(store.local_path(prefix + rel), (when, when))
    return sum(SCRATCH.values())


def fake_run(store: LocalStore) -> dict:
    return {"territory": "call", "input_key": KEY, "store_uri": store.uri}


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> LocalStore:
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    return LocalStore(tmp_path / "store")


@pytest.fixture
def stub_publish(monkeypatch):
    """``stage_publish`` returning ``status`` (or raising), no URLs to build: only the scratch's fate is tested."""
    def use(status: str | Exception):
        def stage_publish(run, indicators, validation=None, *, dry_run=False, crash_before_swap=False):
            if isinstance(status, Exception):
                raise status
            return {"status": "dry_run" if dry_run else status, "release_id": "20261201T000000Z-01234567"}
        monkeypatch.setattr(pipeline, "stage_publish", stage_publish)
        monkeypatch.setattr(pipeline, "release_urls", lambda run, rid: {})
    return use


# --- the store's list + delete ----------------------------------------------------------------------------------
def test_delete_prefix_removes_the_folder_its_leftovers_and_nothing_else(store):
    size = seed(store)
    seed(store, "work/call/fedcba9876543210/")               # another run's scratch
    store.put_bytes("work/call/0123456789abcdef.txt", b"not under the folder prefix")
    (store.root / PREFIX / "tiles" / ".tmp-killed").write_bytes(b"half a write")
    stats = store.list_stats(PREFIX)
    assert [s.key for s in stats] == sorted(PREFIX + k for k in SCRATCH)
    assert sum(s.size for s in stats) == size and all(abs(s.modified - time.time()) < 60 for s in stats)
    assert delete_prefix(store, PREFIX) == (len(SCRATCH) + 1, size)      # + the .tmp leftover, 0 B counted
    assert store.list(PREFIX) == [] and store.list_partial(PREFIX) == []
    assert not (store.root / PREFIX.rstrip("/")).exists()              # no empty folders left behind
    assert len(store.list("work/call/fedcba9876543210/")) == len(SCRATCH)
    assert store.exists("work/call/0123456789abcdef.txt")
    with pytest.raises(InvalidInputError):
        delete_prefix(store, "work/call/0123456789abcdef")              # not a folder prefix
    with pytest.raises(InvalidInputError):
        delete_prefix(store, "/")


# --- a run's end ----------------------------------------------------------------------------------------------------
def end_run(store, outputs_ok: bool, *, dry_run: bool = False):
    """How a run ends, as ``tvb run`` and the DAG's publish + notify tasks end it: the publish outcome, then
    ``finish_run``."""
    run = fake_run(store)
    outcome = pipeline.publish_outcome(run, {}, {"success": True}, {"success": outputs_ok}, dry_run=dry_run)
    pipeline.finish_run(run, outcome, dry_run=dry_run)
    return outcome


def test_the_publish_step_alone_keeps_the_scratch_for_its_retry(store, stub_publish):
    """A publish task retried after its release went live (its process lost before its result was kept) must
    still find its files: the scratch goes at the run's end (``finish_run``), not in the publish step."""
    seed(store)
    stub_publish("published")
    assert pipeline.publish_outcome(fake_run(store), {}, {"success": True}, {"success": True})["status"] == "published"
    assert len(store.list(PREFIX)) == len(SCRATCH)


def test_a_published_run_removes_its_work_prefix(store, stub_publish):
    seed(store)
    seed(store, "work/call/fedcba9876543210/")
    stub_publish("published")
    outcome = end_run(store, True)
    assert outcome["status"] == "published"
    assert store.list(PREFIX) == []
    assert len(store.list("work/call/")) == len(SCRATCH)                # another input key's scratch stays


def test_a_dry_run_keeps_its_work_prefix(store, stub_publish):
    seed(store)
    stub_publish("published")
    outcome = end_run(store, True, dry_run=True)
    assert outcome["status"] == "dry_run"
    assert len(store.list(PREFIX)) == len(SCRATCH)


def test_an_unchanged_publish_removes_the_scratch_but_an_unchanged_dry_run_keeps_it(store, monkeypatch):
    """``publish_release`` answers *unchanged* when the live release already has the inputs (a race), dry run or
    not: the scratch is redundant then, but a dry run's is still the user's to inspect."""
    seed(store)
    monkeypatch.setattr(pipeline, "stage_publish", lambda run, ind, val, *, dry_run=False: {
        "status": "unchanged", "release_id": "20261201T000000Z-01234567"})
    monkeypatch.setattr(pipeline, "release_urls", lambda run, rid: {})
    end_run(store, True, dry_run=True)
    assert len(store.list(PREFIX)) == len(SCRATCH)
    assert end_run(store, True)["status"] == "unchanged"
    assert store.list(PREFIX) == []


def test_a_failed_publish_keeps_its_work_prefix(store, stub_publish):
    seed(store)
    stub_publish(pipeline.PipelineError("publish refused: validation did not succeed"))
    with pytest.raises(pipeline.PipelineError):
        end_run(store, False)
    assert len(store.list(PREFIX)) == len(SCRATCH)


def test_a_failed_removal_still_returns_the_published_outcome_with_a_warning(store, stub_publish, monkeypatch,
                                                                           caplog):
    seed(store)
    stub_publish("published")

    def refuse(self, keys):
        raise StoreError("s3://bucket/work/call/…: S3 delete failed: AccessDenied")
    monkeypatch.setattr(LocalStore, "delete_many", refuse)
    with caplog.at_level(logging.WARNING, logger="tvb_tasks.pipeline"):
        outcome = end_run(store, True)
    assert outcome["status"] == "published"
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and PREFIX in warning[0] and "AccessDenied" in warning[0]
    assert len(store.list(PREFIX)) == len(SCRATCH)


# --- retention ------------------------------------------------------------------------------------------------------
def test_prune_work_removes_old_prefixes_and_keeps_recent_and_leased_ones(store):
    old = seed(store, PREFIX, age_days=10)
    seed(store, "work/call/aaaaaaaaaaaaaaaa/", age_days=1)               # recent: kept
    seed(store, "work/call/bbbbbbbbbbbbbbbb/", age_days=10)              # old, but its lease is held: kept
    seed(store, "work/call/cccccccccccccccc/", age_days=10)
    store.put_bytes("work/call/cccccccccccccccc/tiles/pending.json", b"{}")  # written just now: a live run
    seed(store, "work/other/0123456789abcdef/", age_days=10)             # another territory: untouched
    leased = {("call", "bbbbbbbbbbbbbbbb")}
    dry = prune_work(store, "call", older_than_days=7, dry_run=True, leased=lambda t, k: (t, k) in leased)
    assert dry["work_deleted"] == [PREFIX] and dry["work_bytes_deleted"] == old
    assert len(store.list(PREFIX)) == len(SCRATCH)                       # dry run: nothing deleted
    res = prune_work(store, "call", older_than_days=7, leased=lambda t, k: (t, k) in leased)
    assert res["work_deleted"] == [PREFIX]
    assert res["work_objects_deleted"] == len(SCRATCH) and res["work_bytes_deleted"] == old
    assert res["work_kept_recent"] == ["work/call/aaaaaaaaaaaaaaaa/", "work/call/cccccccccccccccc/"]
    assert res["work_kept_leased"] == ["work/call/bbbbbbbbbbbbbbbb/"]
    assert store.list(PREFIX) == []
    assert {k.split("/")[2] for k in store.list("work/call/")} == {"a" * 16, "b" * 16, "c" * 16}
    assert len(store.list("work/other/")) == len(SCRATCH)
    with pytest.raises(InvalidInputError):
        prune_work(store, "call", older_than_days=-1)


def test_prune_work_sees_a_lease_held_by_a_run_of_this_host(store):
    seed(store, age_days=10)
    run = fake_run(store)
    assert not pipeline.work_leased("call", KEY[:16])                   # no lease file: not created by asking
    assert not pipeline.lease_path(run).exists()
    with pipeline.work_lease(run):
        assert pipeline.work_leased("call", KEY[:16])
        assert prune_work(store, "call", older_than_days=7)["work_kept_leased"] == [PREFIX]
    assert not pipeline.work_leased("call", KEY[:16])                   # released: the next prune deletes it
    assert prune_work(store, "call", older_than_days=7)["work_deleted"] == [PREFIX]


def test_releases_prune_removes_stale_work_and_reports_it(store, capsys):
    size = seed(store, age_days=3)
    assert tvb(["releases", "prune", "--keep", "1", "--store", store.uri]) == 0     # default: 7 days
    out = capsys.readouterr().out
    assert "0 work prefix(es) deleted" in out and "1 recent" in out
    assert len(store.list(PREFIX)) == len(SCRATCH)
    assert tvb(["releases", "prune", "--keep", "1", "--store", store.uri, "--work-older-than-days", "2"]) == 0
    out = capsys.readouterr().out
    assert f"deleted  {PREFIX}" in out
    assert f"1 work prefix(es) deleted ({len(SCRATCH)} object(s), {size / 1000:.1f} kB)" in out
    assert store.list("work/") == []
    assert tvb(["releases", "prune", "--keep", "1", "--store", store.uri, "--work-older-than-days", "-1"]) == 2


def test_prune_keeps_work_when_asked_and_uses_its_clock(store):
    seed(store, age_days=0)
    assert "work_deleted" not in prune(store, "call", keep=1, work_older_than_days=None)
    assert prune(store, "call", keep=1, now=datetime.now(UTC) + timedelta(days=8))["work_deleted"] == [PREFIX]
    assert store.list("work/") == []


def test_s3_delete_many_batches(monkeypatch):
    """The batching of ``S3Store.delete_many`` (``DeleteObjects`` takes at most 1000 keys), on a recording client."""
    calls = []

    class Client:
        def delete_objects(self, Bucket, Delete):
            calls.append([o["Key"] for o in Delete["Objects"]])
            return {"Errors": [{"Key": "obs/k4", "Code": "AccessDenied"}]} if "obs/k4" in calls[-1] else {}

    monkeypatch.setattr(store_mod, "S3_DELETE_BATCH", 2)
    s3 = store_mod.S3Store("bucket", "obs", client=Client())
    s3.delete_many(["k0", "k1", "k2"])
    assert calls == [["obs/k0", "obs/k1"], ["obs/k2"]]
    with pytest.raises(StoreError, match="s3://bucket/obs/k4: S3 delete failed: AccessDenied"):
        s3.delete_many(["k3", "k4"])

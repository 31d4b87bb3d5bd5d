"""S3Store against a real S3 HTTP server (``moto_server`` on 127.0.0.1, random port: the ``moto_server`` fixture of
conftest.py).

Checks the semantics the release protocol relies on: create-only (``If-None-Match: *``), compare-and-swap
(``If-Match``), multipart upload (create-only at completion), listing, traversal refusal.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.servers import new_s3_store
from tvb_tasks import store as store_mod
from tvb_tasks.store import NotFound, ObjectExists, PreconditionFailed, S3Store, open_store


@pytest.fixture
def s3(moto_server) -> S3Store:
    return new_s3_store(moto_server)


def test_create_only(s3: S3Store):
    etag = s3.put_bytes("releases/call/x/a.txt", b"one", create_only=True)
    assert etag
    with pytest.raises(ObjectExists):
        s3.put_bytes("releases/call/x/a.txt", b"two", create_only=True)
    assert s3.get_bytes("releases/call/x/a.txt") == b"one"


def test_compare_and_swap(s3: S3Store):
    key = "releases/call/latest.json"
    e1 = s3.put_bytes(key, b"v1", if_match="")               # "" = must not exist yet
    with pytest.raises(PreconditionFailed):
        s3.put_bytes(key, b"v1bis", if_match="")
    data, etag = s3.get_with_etag(key)
    assert (data, etag) == (b"v1", e1)
    e2 = s3.put_bytes(key, b"v2", if_match=e1)
    with pytest.raises(PreconditionFailed):
        s3.put_bytes(key, b"v3", if_match=e1)                 # stale ETag
    assert s3.get_bytes(key) == b"v2" and s3.head(key).etag == e2
    s3.delete(key)
    with pytest.raises(PreconditionFailed):                   # S3 answers 404 here: still a failed precondition
        s3.put_bytes(key, b"v4", if_match=e2)


def test_multipart_upload_create_only(s3: S3Store, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(store_mod, "MULTIPART_THRESHOLD", 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(17 * 1024 * 1024))            # 2 parts of 16 MiB + 1 MiB
    etag = s3.put_file("releases/call/x/big.bin", big, create_only=True)
    assert etag.strip('"').endswith("-2")                    # a multipart ETag: <md5>-<parts>
    out = s3.download("releases/call/x/big.bin", tmp_path / "back.bin")
    assert out.read_bytes() == big.read_bytes()
    with pytest.raises(ObjectExists):
        s3.put_file("releases/call/x/big.bin", big, create_only=True)
    leftover = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert leftover == []


def test_list_head_delete_and_prefix(s3: S3Store):
    for k in ("releases/call/a/1.txt", "releases/call/a/2.txt", "releases/call/b/3.txt", "releases/other/4.txt"):
        s3.put_bytes(k, b"x")
    assert s3.list("releases/call/a/") == ["releases/call/a/1.txt", "releases/call/a/2.txt"]
    assert len(s3.list("releases/call/")) == 3
    assert s3.head("releases/call/a/1.txt").size == 1 and s3.head("releases/call/zz") is None
    raw = s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]
    assert all(o["Key"].startswith("obs/releases/") for o in raw)      # the store prefix is applied
    s3.delete("releases/call/a/1.txt")
    assert not s3.exists("releases/call/a/1.txt")
    with pytest.raises(NotFound):
        s3.get_bytes("releases/call/a/1.txt")


@pytest.mark.parametrize("bad", ["../escape", "releases/../x", "/abs", "a//b", "a\\b", "releases/call/./x", ""])
def test_traversal_refused(s3: S3Store, bad: str):
    with pytest.raises(ValueError):
        s3.put_bytes(bad, b"x")


def test_open_store_endpoint_from_env(moto_server, monkeypatch):
    s = new_s3_store(moto_server)
    monkeypatch.setenv("TVB_S3_ENDPOINT_URL", moto_server)
    again = open_store(f"s3://{s.bucket}/obs")
    again.put_bytes("k.txt", b"hello")
    assert s.get_bytes("k.txt") == b"hello"
    assert again.url("k.txt") == f"s3://{s.bucket}/obs/k.txt"


def test_work_prefix_removed_after_publish_and_pruned_by_age(s3: S3Store, monkeypatch, tmp_path: Path):
    """The run-scratch clean-up on S3: ``list_stats`` (sizes, ``LastModified``), ``delete_many`` in several
    ``DeleteObjects`` batches (3 keys each here); a published run's prefix goes, a dry run's stays, and
    ``prune_work`` deletes a prefix only once it is older than the limit."""
    from datetime import UTC, datetime, timedelta

    from tvb_tasks import pipeline
    from tvb_tasks.publish import prune_work

    monkeypatch.setattr(store_mod, "S3_DELETE_BATCH", 3)
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    key = "0123456789abcdef" + "0" * 48
    prefix = "work/call/0123456789abcdef/"
    for i in range(7):
        s3.put_bytes(f"{prefix}tiles/r/{i}.npy", b"x" * (10 + i))
    s3.put_bytes("work/call/0123456789abcdef0.txt", b"a neighbour of the prefix, not under it")
    stats = s3.list_stats(prefix)
    assert [o.size for o in stats] == list(range(10, 17))
    assert all(abs(o.modified - datetime.now(UTC).timestamp()) < 120 for o in stats)

    run = {"territory": "call", "input_key": key, "store_uri": s3.uri}
    monkeypatch.setattr(pipeline, "open_store", lambda uri=None, **kw: s3)
    monkeypatch.setattr(pipeline, "release_urls", lambda run, rid: {})
    monkeypatch.setattr(pipeline, "stage_publish", lambda run, ind, val, *, dry_run=False: {
        "status": "dry_run" if dry_run else "published", "release_id": "20261201T000000Z-01234567"})
    dry = pipeline.publish_outcome(run, {}, {"success": True}, {"success": True}, dry_run=True)
    pipeline.finish_run(run, dry, dry_run=True)
    assert len(s3.list(prefix)) == 7
    res = prune_work(s3, "call", older_than_days=7, leased=lambda t, k: False)
    assert res["work_deleted"] == [] and res["work_kept_recent"] == [prefix]
    res = prune_work(s3, "call", older_than_days=7, leased=lambda t, k: False,
                     now=datetime.now(UTC) + timedelta(days=8))
    assert res["work_deleted"] == [prefix] and res["work_bytes_deleted"] == sum(range(10, 17))
    assert s3.list("work/") == ["work/call/0123456789abcdef0.txt"]

    for i in range(7):
        s3.put_bytes(f"{prefix}tiles/r/{i}.npy", b"x")
    outcome = pipeline.publish_outcome(run, {}, {"success": True}, {"success": True})
    assert outcome["status"] == "published" and len(s3.list(prefix)) == 7    # kept for a retried publish
    pipeline.finish_run(run, outcome, dry_run=False)                         # the run's end (notify, tvb run)
    assert s3.list(prefix) == [] and s3.exists("work/call/0123456789abcdef0.txt")

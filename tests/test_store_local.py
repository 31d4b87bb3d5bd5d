"""Local object store: create-only and compare-and-swap semantics, key validation."""
import threading

import pytest

from tvb_tasks.store import LocalStore, NotFound, ObjectExists, PreconditionFailed, open_store, validate_key


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def test_put_get_list_delete(store, tmp_path):
    etag = store.put_bytes("a/b.json", b"{}")
    assert store.get_with_etag("a/b.json") == (b"{}", etag)
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    store.put_file("a/c.bin", src)
    assert store.head("a/c.bin").size == 1000
    assert store.list("a/") == ["a/b.json", "a/c.bin"]
    store.delete("a/b.json")
    assert not store.exists("a/b.json")
    with pytest.raises(NotFound):
        store.get_bytes("a/b.json")


def test_create_only_refuses_existing(store):
    store.put_bytes("r/x", b"1", create_only=True)
    with pytest.raises(ObjectExists):
        store.put_bytes("r/x", b"2", create_only=True)
    assert store.get_bytes("r/x") == b"1"
    assert store.list() == ["r/x"]          # no temp file left behind


def test_compare_and_swap(store):
    with pytest.raises(PreconditionFailed):
        store.put_bytes("latest.json", b"v1", if_match="deadbeef")
    e1 = store.put_bytes("latest.json", b"v1", if_match="")        # "must not exist yet"
    with pytest.raises(PreconditionFailed):
        store.put_bytes("latest.json", b"v0", if_match="")
    e2 = store.put_bytes("latest.json", b"v2", if_match=e1)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("latest.json", b"v3", if_match=e1)          # stale ETag
    assert store.get_with_etag("latest.json") == (b"v2", e2)


def test_concurrent_cas_exactly_one_wins(store):
    etag = store.put_bytes("p", b"start")
    outcomes = []

    def swap(i):
        try:
            store.put_bytes("p", f"writer{i}".encode(), if_match=etag)
            outcomes.append("won")
        except PreconditionFailed:
            outcomes.append("lost")

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b", "a b"])
def test_keys_cannot_escape_the_store(store, key):
    with pytest.raises(ValueError):
        validate_key(key)
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")


def test_open_store_uris(tmp_path):
    assert isinstance(open_store(str(tmp_path / "s")), LocalStore)
    assert isinstance(open_store((tmp_path / "s").as_uri()), LocalStore)
    with pytest.raises(ValueError, match="unsupported store URI"):
        open_store("ftp://x/y")
    with pytest.raises(ValueError, match="no bucket"):
        open_store("s3:///prefix")


def test_objects_are_fsynced_before_the_rename_unless_the_tests_turn_it_off(store, monkeypatch):
    """Production default: each object's temporary file is fsynced (durable once renamed into place);
    ``TVB_STORE_FSYNC=0`` (tests/conftest.py) skips only that wait."""
    import os

    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    monkeypatch.delenv("TVB_STORE_FSYNC", raising=False)
    store.put_bytes("a/one.txt", b"1")
    store.put_file("a/two.txt", __file__)
    assert len(synced) == 2 and store.get_bytes("a/one.txt") == b"1"
    monkeypatch.setenv("TVB_STORE_FSYNC", "0")
    store.put_bytes("a/three.txt", b"3")
    assert len(synced) == 2 and store.get_bytes("a/three.txt") == b"3"

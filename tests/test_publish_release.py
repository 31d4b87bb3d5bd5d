"""Release protocol on both stores (local folder and S3 through a real moto_server): create-only objects, manifest,
compare-and-swap of latest.json, idempotence, crash before the swap, concurrent publishers, rollback, retention,
verify, orphans, no credentials in what is published."""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from helpers.release_outputs import SECRET, T0, do_publish, key_for, make_outputs, territory
from helpers.servers import new_s3_store
from tvb_tasks import publish
from tvb_tasks.publish import (
    PublishConflict,
    SimulatedCrash,
    find_orphans,
    find_unchanged,
    input_key,
    list_releases,
    prune,
    release_id_for,
    rollback,
    show_release,
    verify_release,
)
from tvb_tasks.store import LocalStore


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("rel")
    return publish.stage_release(territory(), tmp / "release", **make_outputs(tmp / "in"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return new_s3_store(request.getfixturevalue("moto_server"))


def latest(store) -> dict:
    return json.loads(store.get_bytes("releases/call/latest.json"))


def test_ids_and_input_key():
    k = input_key({"b": "2", "a": "1"}, "c" * 64, "v1")
    assert k == input_key({"a": "1", "b": "2"}, "c" * 64, "v1") and len(k) == 64
    assert k != input_key({"a": "1", "b": "3"}, "c" * 64, "v1")
    assert k != input_key({"a": "1", "b": "2"}, "c" * 64, "v2")
    rid = release_id_for(k, T0)
    assert rid == f"20261125T181500Z-{k[:8]}"
    assert release_id_for(k, T0.replace(tzinfo=None)) == rid
    assert release_id_for(k, T0 + timedelta(seconds=1)) > rid
    for bad in ("../call", "Call", "a/b", ""):
        with pytest.raises(ValueError):
            publish.latest_key(bad)
    with pytest.raises(ValueError):
        show_release(LocalStore(Path("/tmp/never-used-tvb")), "call", "../../etc")


def test_publish_manifest_pointer_and_unchanged(store, staged: Path):
    r = do_publish(store, staged, 1)
    assert r["status"] == "published" and r["release_id"] == release_id_for(key_for(1), T0 + timedelta(minutes=1))
    rid = r["release_id"]
    m = json.loads(store.get_bytes(r["manifest_key"]))
    staged_files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in m["files"]) == sorted(staged_files + ["stac/item.json"])
    assert r["files"] == len(m["files"])
    for f in m["files"]:
        assert f["key"] == f"releases/call/{rid}/{f['path']}" and len(f["sha256"]) == 64 and f["size"] >= 0
        assert store.exists(f["key"])
    assert {"media_type"} <= set(m["files"][0])
    assert m["config_hash"] == territory().config_hash() and m["code_version"] == "1.0.0"
    assert m["validation"]["success"] is True and m["indicators"] == {"reservoir_area_ha": 61.5}
    assert m["sources"]["landuse"]["snapshot_id"] == "snap1"
    p = latest(store)
    assert p["release_id"] == rid and p["input_key"] == key_for(1) and p["manifest_key"] == r["manifest_key"]
    # same inputs, config and code → nothing new
    assert find_unchanged(store, "call", key_for(1))["release_id"] == rid
    assert find_unchanged(store, "call", key_for(2)) is None
    again = do_publish(store, staged, 1)
    assert again["status"] == "unchanged" and again["release_id"] == rid
    assert [x["release_id"] for x in list_releases(store, "call")] == [rid]
    # the latest/ mirror and the collection follow the pointer
    mirror = store.get_bytes("releases/call/latest/web/index.html").decode()
    assert f'href="../../{rid}/report/index.html"' in mirror
    assert json.loads(store.get_bytes("releases/call/latest/web/release.json"))["release_id"] == rid
    coll = json.loads(store.get_bytes("releases/call/collection.json"))
    assert [lk["href"] for lk in coll["links"] if lk["rel"] == "item"] == [f"./{rid}/stac/item.json"]


def test_release_links_name_the_published_objects(store, staged: Path, monkeypatch):
    """One function builds a release's URLs: under a public base URL each one is that base + an object key of the
    release (the key exists), without it the store's own URLs; the publish result and ``show`` use it."""
    from tvb_tasks.publish.release import release_links

    base = "https://tvb.example.org/data"
    monkeypatch.setenv("TVB_PUBLIC_BASE_URL", base + "/")
    r = do_publish(store, staged, 1)
    rid = r["release_id"]
    links = release_links(store, "call", rid, base)
    assert set(links) == {"release_url", "report_url", "web_url", "manifest_url", "stac_url"}
    assert links["release_url"] == f"{base}/releases/call/{rid}/"
    for name in ("report_url", "web_url", "manifest_url", "stac_url"):
        assert links[name].startswith(base + "/") and store.exists(links[name][len(base) + 1:]), name
    assert {k: r[k] for k in ("release_url", "report_url", "web_url")} == {
        k: links[k] for k in ("release_url", "report_url", "web_url")}
    local = release_links(store, "call", rid)
    assert local["manifest_url"] == store.url(f"releases/call/{rid}/manifest.json")
    assert local["release_url"] == store.url(f"releases/call/{rid}/")
    assert show_release(store, "call", rid)["manifest_url"] == local["manifest_url"]


def test_no_credentials_published(store, staged: Path):
    r = do_publish(store, staged, 1)
    texts = [store.get_bytes(k).decode("utf-8", "replace") for k in
             (r["manifest_key"], "releases/call/latest.json", f"releases/call/{r['release_id']}/stac/item.json",
              "releases/call/collection.json")]
    assert all(SECRET not in t for t in texts)
    src = json.loads(texts[0])["sources"]["landuse"]
    assert "password" not in src and src["url"].startswith("https://example.org/wfs?typename=x&apikey=REDACTED")


def test_dry_run_writes_nothing(store, staged: Path):
    r = do_publish(store, staged, 1, dry_run=True)
    assert r["status"] == "dry_run" and r["files"] > 10
    assert store.list("releases/") == []


def test_crash_before_swap_leaves_previous_release_live(store, staged: Path):
    r1 = do_publish(store, staged, 1)
    with pytest.raises(SimulatedCrash):
        do_publish(store, staged, 2, crash_before_swap=True)
    crashed = release_id_for(key_for(2), T0 + timedelta(minutes=2))
    assert latest(store)["release_id"] == r1["release_id"]              # users still on release 1
    assert [x["release_id"] for x in list_releases(store, "call")] == [r1["release_id"]]
    orphans = find_orphans(store, "call")
    assert orphans and all(k.startswith(f"releases/call/{crashed}/") for k in orphans)
    assert f"releases/call/{crashed}/manifest.json" not in orphans
    assert f"releases/call/{crashed}/tvb.gpkg" in orphans
    # an orphan younger than the grace period may be a publish in progress: kept
    res = prune(store, "call", keep=5, now=T0 + timedelta(hours=1))
    assert res["deleted_orphans"] == [] and res["young_orphans"] == [crashed]
    res = prune(store, "call", keep=5, now=T0 + timedelta(days=2))
    assert res["deleted_orphans"] == [crashed] and find_orphans(store, "call") == []
    assert verify_release(store, "call", r1["release_id"])["ok"]


def test_create_only_conflict_on_same_release_id(store, staged: Path):
    rid = release_id_for(key_for(1), T0 + timedelta(minutes=1))
    store.put_bytes(f"releases/call/{rid}/tvb.gpkg", b"someone else's content", create_only=True)
    with pytest.raises(PublishConflict, match="already exists with other content"):
        do_publish(store, staged, 1)
    assert not store.exists("releases/call/latest.json")
    assert store.get_bytes(f"releases/call/{rid}/tvb.gpkg") == b"someone else's content"   # not overwritten
    assert not store.exists(f"releases/call/{rid}/manifest.json")


def test_retry_after_crash_reuses_identical_objects(store, staged: Path):
    with pytest.raises(SimulatedCrash):
        do_publish(store, staged, 1, crash_before_swap=True)
    r = do_publish(store, staged, 1)                 # same release id: identical objects are accepted
    assert r["status"] == "published" and find_orphans(store, "call") == []
    assert verify_release(store, "call", r["release_id"])["ok"]


def test_cas_conflict_between_concurrent_publishers(store, staged: Path):
    r0 = do_publish(store, staged, 0)
    barrier = threading.Barrier(2, timeout=60)
    results: dict[int, object] = {}

    def run(n: int) -> None:
        try:
            results[n] = do_publish(store, staged, n, crash_before_swap=lambda rid: barrier.wait())
        except Exception as exc:  # noqa: BLE001
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    winners = [n for n, v in results.items() if isinstance(v, dict) and v["status"] == "published"]
    losers = [n for n, v in results.items() if isinstance(v, PublishConflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    msg = str(results[losers[0]])
    assert "changed by another publisher" in msg and "NOT made live" in msg
    won = results[winners[0]]["release_id"]
    lost = release_id_for(key_for(losers[0]), T0 + timedelta(minutes=losers[0]))
    p = latest(store)
    assert p["release_id"] == won and p["previous_release_id"] == r0["release_id"]
    assert [x["release_id"] for x in list_releases(store, "call")] == sorted([won, r0["release_id"]], reverse=True)
    assert store.list(f"releases/call/{lost}/") == []            # the loser removed what it wrote
    assert find_orphans(store, "call") == []


def test_pointer_cas_refuses_a_stale_etag(store, staged: Path):
    do_publish(store, staged, 1)
    _, etag = store.get_with_etag("releases/call/latest.json")

    def sneak(rid: str) -> None:       # another tool moves the pointer while this run uploads
        store.put_bytes("releases/call/latest.json", b'{"release_id": "x"}', if_match=etag)

    with pytest.raises(PublishConflict):
        do_publish(store, staged, 2, crash_before_swap=sneak)
    assert latest(store) == {"release_id": "x"}
    assert store.list(f"releases/call/{release_id_for(key_for(2), T0 + timedelta(minutes=2))}/") == []


def test_rollback_and_verify(store, staged: Path):
    r1, r2 = do_publish(store, staged, 1), do_publish(store, staged, 2)
    assert latest(store)["release_id"] == r2["release_id"]
    res = rollback(store, "call", r1["release_id"])
    assert res == {"status": "rolled_back", "release_id": r1["release_id"], "previous_release_id": r2["release_id"],
                   "latest_key": "releases/call/latest.json"}
    p = latest(store)
    assert p["release_id"] == r1["release_id"] and p["action"] == "rollback"
    assert [h["action"] for h in p["history"]] == ["publish", "publish", "rollback"]
    assert json.loads(store.get_bytes("releases/call/latest/web/release.json"))["release_id"] == r1["release_id"]
    item = json.loads(store.get_bytes("releases/call/latest/stac/item.json"))
    assert item["properties"]["version"] == r1["release_id"]
    rows = {x["release_id"]: x for x in list_releases(store, "call")}
    assert rows[r1["release_id"]]["latest"] and not rows[r2["release_id"]]["latest"]
    assert show_release(store, "call", r1["release_id"])["latest"] is True
    assert rollback(store, "call", r1["release_id"])["status"] == "unchanged"
    with pytest.raises(publish.ReleaseNotFound):
        rollback(store, "call", "20200101T000000Z-00000000")
    # verify: tampered, missing and unexpected objects are reported
    base = f"releases/call/{r2['release_id']}"
    assert verify_release(store, "call", r2["release_id"])["ok"]
    store.put_bytes(f"{base}/indicators/indicators.json", b'{"forged": true}')
    store.delete(f"{base}/parquet/corridors.parquet")
    store.put_bytes(f"{base}/web/extra.js", b"alert(1)")
    v = verify_release(store, "call", r2["release_id"])
    assert v["ok"] is False
    assert v["mismatched"] == [f"{base}/indicators/indicators.json"]
    assert v["missing"] == [f"{base}/parquet/corridors.parquet"]
    assert v["unexpected"] == [f"{base}/web/extra.js"]
    with pytest.raises(publish.PublishError, match="damaged"):
        rollback(store, "call", r2["release_id"])             # never roll back to a damaged release
    assert latest(store)["release_id"] == r1["release_id"]


def test_retention_keeps_n_and_the_live_release(store, staged: Path):
    ids = [do_publish(store, staged, n)["release_id"] for n in range(1, 5)]
    rollback(store, "call", ids[0])                            # the oldest is live
    res = prune(store, "call", keep=2)
    assert res["kept"] == [ids[3], ids[2], ids[0]] and res["deleted"] == [ids[1]]
    assert [x["release_id"] for x in list_releases(store, "call")] == [ids[3], ids[2], ids[0]]
    assert store.list(f"releases/call/{ids[1]}/") == [] and find_orphans(store, "call") == []
    assert latest(store)["release_id"] == ids[0] and verify_release(store, "call", ids[0])["ok"]
    coll = json.loads(store.get_bytes("releases/call/collection.json"))
    assert sorted(lk["href"] for lk in coll["links"] if lk["rel"] == "item") == sorted(
        f"./{i}/stac/item.json" for i in (ids[3], ids[2], ids[0]))
    with pytest.raises(ValueError):
        prune(store, "call", keep=0)


def test_scrub_secrets():
    from tvb_tasks.publish import scrub_secrets

    raw = {"roads": {"snapshot_id": "abc", "key": "snapshots/call/roads/abc.parquet",
                     "url": "https://bob:hunter2@wfs.example.org/ows?SERVICE=WFS&access_token=tok123&typename=t",
                     "aws_secret_access_key": "AKIA-SECRET", "headers": {"Authorization": "Bearer xyz"},
                     "session_token": "st", "password": "p", "note": "ok"}}
    clean = scrub_secrets(raw)["roads"]
    text = json.dumps(clean)
    for secret in ("hunter2", "bob:", "tok123", "AKIA-SECRET", "Bearer xyz", '"st"', '"p"'):
        assert secret not in text
    assert clean["snapshot_id"] == "abc" and clean["key"] == "snapshots/call/roads/abc.parquet"
    assert clean["url"] == "https://wfs.example.org/ows?SERVICE=WFS&access_token=REDACTED&typename=t"
    assert clean["note"] == "ok" and clean["headers"] == {}


def test_staging_refuses_symlinks_and_bad_names(tmp_path: Path):
    from tvb_tasks.publish.release import PublishError, staged_files

    d = tmp_path / "s"
    d.mkdir()
    (d / "ok.txt").write_text("x")
    assert staged_files(d) == ["ok.txt"]
    (d / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(PublishError, match="symbolic links"):
        staged_files(d)
    (d / "passwd").unlink()
    (d / "bad name.txt").write_text("x")
    with pytest.raises(PublishError, match="cannot be an object key"):
        staged_files(d)

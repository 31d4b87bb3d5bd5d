"""Release tools (``tvb releases list|show|verify|rollback|orphans``; ``prune`` is in :mod:`.retention`).

They read what the release protocol of :mod:`.release` wrote (manifests, ``latest.json`` and its history) and, for
``rollback``, move the pointer with the same compare-and-swap as a publish.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from ..store import Store
from .layout import check_release_id, latest_key, manifest_key, release_links, release_time, territory_prefix
from .mirror import after_swap
from .release import (
    PublishError,
    _object_sha256,
    _pointer,
    _release_ids_with_objects,
    load_manifest,
    read_latest,
    read_latest_lenient,
    swap_latest,
)

log = logging.getLogger(__name__)


def list_releases(store: Store, territory_id: str) -> list[dict]:
    """Complete releases (with a manifest), newest first: release_id, released_at, files, bytes, latest (bool),
    activated (was ever live), input_key, code_version, previous_release_id. A corrupt ``latest.json`` counts as
    no pointer here (:func:`pointer_problems` reports it)."""
    latest, _, _ = read_latest_lenient(store, territory_id)
    live = latest.get("release_id") if latest else None
    activated = {h["release_id"] for h in (latest or {}).get("history", [])}
    out = []
    for rid, keys in sorted(_release_ids_with_objects(store, territory_id).items(), reverse=True):
        if manifest_key(territory_id, rid) not in keys:
            continue
        m = load_manifest(store, territory_id, rid)
        out.append({"release_id": rid, "released_at": m.get("released_at"), "files": len(m.get("files", [])),
                    "bytes": sum(f.get("size", 0) for f in m.get("files", [])), "latest": rid == live,
                    "activated": rid in activated or rid == live, "input_key": m.get("input_key"),
                    "code_version": m.get("code_version"), "previous_release_id": m.get("previous_release_id")})
    return out


def show_release(store: Store, territory_id: str, release_id: str) -> dict:
    """The release's manifest plus ``latest`` (bool) and ``manifest_url``."""
    m = load_manifest(store, territory_id, check_release_id(release_id))
    latest, _ = read_latest(store, territory_id)
    return {**m, "latest": bool(latest and latest.get("release_id") == release_id),
            "manifest_url": release_links(store, territory_id, release_id)["manifest_url"]}


def verify_release(store: Store, territory_id: str, release_id: str) -> dict:
    """Recompute every object's sha256 against the manifest, and the manifest's against ``latest.json``.

    Returns {"ok", "release_id", "checked", "mismatched": [keys], "missing": [keys], "unexpected": [keys not in
    the manifest], "manifest_matches_pointer": bool | None}: the manifest's sha256 compared with the one the
    pointer recorded when the release went live (its history keeps one per release); None when the release was
    never live. A file changed together with its manifest entry is caught there.
    """
    check_release_id(release_id)
    m = load_manifest(store, territory_id, release_id)
    mismatched, missing = [], []
    for f in m["files"]:
        info = store.head(f["key"])
        if info is None:
            missing.append(f["key"])
            continue
        if info.size != f["size"] or _object_sha256(store, f["key"], info.size) != f["sha256"]:
            mismatched.append(f["key"])
    listed = {f["key"] for f in m["files"]} | {manifest_key(territory_id, release_id)}
    present = _release_ids_with_objects(store, territory_id).get(release_id, [])
    unexpected = sorted(k for k in present if k not in listed)
    latest, _, problem = read_latest_lenient(store, territory_id)
    recorded = recorded_manifest_sha256(latest, release_id)
    pointer_ok = None
    if recorded is not None:
        data = store.get_bytes(manifest_key(territory_id, release_id))
        pointer_ok = hashlib.sha256(data).hexdigest() == recorded
    ok = not (mismatched or missing or unexpected) and pointer_ok is not False
    return {"ok": ok, "release_id": release_id, "checked": len(m["files"]), "mismatched": mismatched,
            "missing": missing, "unexpected": unexpected, "manifest_matches_pointer": pointer_ok,
            "published": was_published(latest, release_id),
            "warnings": release_warnings(latest, release_id) + ([problem] if problem else [])}


def was_published(latest: dict | None, release_id: str) -> bool:
    """True when ``latest.json`` points at ``release_id`` or its history records it going live."""
    if not latest:
        return False
    return latest.get("release_id") == release_id or any(
        isinstance(h, dict) and h.get("release_id") == release_id for h in latest.get("history") or [])


FUTURE_TOLERANCE = timedelta(minutes=10)


def release_warnings(latest: dict | None, release_id: str, now: datetime | None = None) -> list[str]:
    """Reasons to distrust a release that verifies: never published through ``latest.json`` (a crashed publish
    — or objects written by hand, a forgery), or an id whose timestamp is in the future."""
    out = []
    if not was_published(latest, release_id):
        out.append(f"release {release_id} was never published through latest.json (no pointer history entry): "
                   "its checksums only prove it is self-consistent, not where it came from")
    now = now or datetime.now(UTC)
    if release_time(release_id) > now + FUTURE_TOLERANCE:
        out.append(f"release id {release_id} is dated in the future ({release_time(release_id):%Y-%m-%d %H:%M} UTC, "
                   f"now {now:%Y-%m-%d %H:%M} UTC): not made by a publish of this clock")
    return out


def recorded_manifest_sha256(latest: dict | None, release_id: str) -> str | None:
    """The manifest sha256 ``latest.json`` recorded for ``release_id`` (the live one, else the newest history
    entry that has one); None when the release was never live or predates manifest hashes in the history."""
    if not latest:
        return None
    if latest.get("release_id") == release_id and latest.get("manifest_sha256"):
        return latest["manifest_sha256"]
    for h in reversed(latest.get("history") or []):
        if h.get("release_id") == release_id and h.get("manifest_sha256"):
            return h["manifest_sha256"]
    return None


def rollback(store: Store, territory_id: str, release_id: str, *, verify: bool = True, force: bool = False
             ) -> dict:
    """Point ``latest.json`` back to an earlier complete release, with the same compare-and-swap.

    With ``verify`` (default) the target's checksums are checked first and a damaged release is refused. A
    release that was never live (no ``latest.json`` history entry) or whose id is dated in the future is refused
    unless ``force``. Also the repair of a dangling or corrupt ``latest.json`` (a corrupt one has lost its history:
    ``force`` is then needed). Returns {"status": "rolled_back"|"unchanged", "release_id", "previous_release_id",
    "latest_key", "warnings"}.
    """
    check_release_id(release_id)
    manifest = load_manifest(store, territory_id, release_id)
    latest, etag, problem = read_latest_lenient(store, territory_id)
    warnings = release_warnings(latest, release_id)
    if warnings and not force:
        raise PublishError("; ".join(warnings) + f". Refusing to make it live; check it (tvb releases verify "
                           f"{release_id}) and use --force if it is genuine"
                           + (f" ({problem})" if problem else ""))
    if verify:
        report = verify_release(store, territory_id, release_id)
        if report["mismatched"] or report["missing"]:
            raise PublishError(f"release {release_id} is damaged (mismatched: {report['mismatched']}, missing: "
                               f"{report['missing']}); refusing to roll back to it")
        if report["manifest_matches_pointer"] is False:
            raise PublishError(f"release {release_id} is damaged: its manifest differs from the one recorded in "
                               f"{latest_key(territory_id)} when it went live (manifest edited); refusing to roll "
                               "back to it")
    latest, etag, problem = read_latest_lenient(store, territory_id)
    if latest and latest.get("release_id") == release_id:
        return {"status": "unchanged", "release_id": release_id, "previous_release_id": release_id,
                "latest_key": latest_key(territory_id), **({"warnings": warnings} if warnings else {})}
    if problem:
        log.warning("%s; replacing it (its history is lost)", problem)
    data = store.get_bytes(manifest_key(territory_id, release_id))
    now = datetime.now(UTC).replace(microsecond=0)
    pointer = _pointer(territory_id, manifest, hashlib.sha256(data).hexdigest(), latest, "rollback", now)
    swap_latest(store, territory_id, pointer, etag)
    log.info("rolled %s back to release %s (was %s)", territory_id, release_id,
             latest.get("release_id") if latest else None)
    after_swap(store, territory_id, release_id)
    return {"status": "rolled_back", "release_id": release_id,
            "previous_release_id": latest.get("release_id") if latest else None, "latest_key": latest_key(territory_id),
            **({"warnings": warnings} if warnings else {})}


def find_orphans(store: Store, territory_id: str) -> list[str]:
    """Object keys under ``releases/<t>/<id>/`` where ``<id>`` has no manifest (a crashed or losing publish), plus
    the ``.tmp-*`` leftovers of writes interrupted by a killed process anywhere under ``releases/<t>/``."""
    out = []
    for rid, keys in sorted(_release_ids_with_objects(store, territory_id).items()):
        if manifest_key(territory_id, rid) not in keys:
            out.extend(sorted(keys))
    out.extend(key for key, _ in store.list_partial(territory_prefix(territory_id) + "/"))
    return out

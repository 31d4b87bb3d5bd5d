"""Release protocol: immutable, traceable, atomic releases in the object store (local folder or S3).

Layout (``<t>`` = territory id, ``<id>`` = release id ``YYYYMMDDTHHMMSSZ-<input_key[:8]>[-<run nonce>]``, sortable;
the pipeline always adds a random per-run nonce so two runs on the same inputs in the same second never share an
id)::

    releases/<t>/<id>/…              data objects, written create-only (S3 ``If-None-Match: *``)
    releases/<t>/<id>/stac/item.json the release's STAC Item (create-only, listed in the manifest)
    releases/<t>/<id>/manifest.json  written last of the release's objects (create-only); its presence marks a
                                     complete release: every object's key, sha256, size, media type; sources;
                                     config hash; code version; validation and indicator summaries
    releases/<t>/latest.json         the pointer users follow, replaced with compare-and-swap (``If-Match`` ETag)
    releases/<t>/latest/web/…        convenience mirror of the live release's web map (written after the swap)
    releases/<t>/latest/stac/item.json  the live release's STAC Item (hrefs rewritten), target of latest-version
    releases/<t>/collection.json     STAC Collection of the territory, regenerated after every swap / prune

A run that stops before the swap leaves ``latest.json`` untouched, so users stay on the previous release; its
objects (without a manifest) are *orphans*, listed by :func:`.admin.find_orphans` and removed by ``prune`` once older
than a grace period. Two concurrent publishers: the compare-and-swap lets exactly one move the pointer; the other
raises :class:`PublishConflict` and removes what it wrote, so nothing of it is visible.

Ownership: a publisher deletes only the objects *it* created (create-only write succeeded). An object found
already present with identical content (a retried publish of the same release id) is *adopted*, never deleted by
this publisher, and is verified again (present, same size and sha256) together with every other object of the
release just before the pointer swap: a release whose objects are not all its own or verified identical never goes
live. ``latest.json`` keeps, for every release it ever pointed to, the sha256 of its manifest, so ``verify`` and
``rollback`` detect a release whose files *and* manifest were both changed.

Why one module over 500 lines: it is the write protocol above (create-only objects, ownership, verification,
compare-and-swap, cleanup), whose steps must be read together; key layout and URLs are in :mod:`.layout`, the
administration (list / show / verify / rollback / orphans) in :mod:`.admin`, retention in :mod:`.retention`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import DeterministicError, TVBError
from ..store import (
    NotFound,
    ObjectExists,
    PreconditionFailed,
    Store,
    StoreError,
    media_type,
    os_error_text,
    sha256_file,
    validate_key,
)
from .layout import (
    RELEASE_ID_RE,
    check_release_id,
    check_territory_id,
    latest_key,
    manifest_key,
    pretty_json,
    release_id_for,
    release_links,
    release_prefix,
    territory_prefix,
)
from .layout import new_run_nonce as new_run_nonce  # re-exported: tests import it from here
from .layout import release_time as release_time  # re-exported: tests import it from here

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "tvb-release-manifest/1"
POINTER_SCHEMA = "tvb-release-pointer/1"
HISTORY_MAX = 200
_SECRET_KEY_RE = re.compile(r"(^|[_-])(pass(word|wd)?|secrets?|tokens?|credentials?|api[_-]?key|access[_-]?key|"
                            r"secret[_-]?key|authorization|auth|session[_-]?token)($|[_-])", re.IGNORECASE)
_SECRET_QUERY_RE = re.compile(r"(?i)([?&](?:[a-z_]*(?:key|token|secret|password|signature|sig|credential)"
                              r"[a-z_-]*))=[^&#]*")


class PublishError(TVBError, RuntimeError):
    """Publishing failed; the message says why and what users still see."""


class PublishConflict(PublishError, DeterministicError):
    """Another publisher moved ``latest.json`` (or wrote the same release) first: nothing was published."""


class StagingError(PublishError, DeterministicError):
    """The staged release cannot be published as it is (no or empty staging folder, a symbolic link, a file name
    that is not an object key, a release id that does not match its time and inputs): the same folder fails the same
    way, so the task fails without a retry."""


class ReleaseNotFound(PublishError, LookupError):
    """No complete release (with a manifest) under that id."""


class SimulatedCrash(PublishError):
    """Raised by the ``crash_before_swap`` test hook: the run stops after uploading, before manifest and swap."""


# --- security -----------------------------------------------------------------------------------------------------
def _scrub_url(value: str) -> str:
    """Remove ``user:password@`` and secret-looking query parameters from a URL."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = _SECRET_QUERY_RE.sub(r"\1=REDACTED", "?" + parts.query)[1:] if parts.query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_secrets(obj: Any) -> Any:
    """A copy of ``obj`` without credentials: secret-named keys dropped, URLs stripped of user info and secrets."""
    if isinstance(obj, dict):
        return {k: scrub_secrets(v) for k, v in obj.items()
                if not (isinstance(k, str) and _SECRET_KEY_RE.search(k))}
    if isinstance(obj, (list, tuple)):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str) and "://" in obj:
        return _scrub_url(obj)
    return obj


# --- pointer ------------------------------------------------------------------------------------------------------
def read_latest(store: Store, territory_id: str) -> tuple[dict | None, str]:
    """``(pointer dict, etag)`` of ``latest.json``; ``(None, "")`` when nothing was published yet."""
    try:
        data, etag = store.get_with_etag(latest_key(territory_id))
    except NotFound:
        return None, ""
    try:
        return json.loads(data), etag
    except json.JSONDecodeError as exc:
        raise PublishError(f"{store.url(latest_key(territory_id))}: not valid JSON ({exc})") from None


def read_latest_lenient(store: Store, territory_id: str) -> tuple[dict | None, str, str | None]:
    """``(pointer, etag, problem)``: like :func:`read_latest` but a corrupt ``latest.json`` gives
    ``(None, etag, "not valid JSON …")`` instead of raising, so that tools can report it and
    :func:`rollback` can repair it (its ETag is kept for the compare-and-swap)."""
    try:
        data, etag = store.get_with_etag(latest_key(territory_id))
    except NotFound:
        return None, "", None
    try:
        latest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, etag, f"{store.url(latest_key(territory_id))}: not valid JSON ({type(exc).__name__})"
    if not isinstance(latest, dict) or not isinstance(latest.get("release_id"), str):
        return None, etag, f"{store.url(latest_key(territory_id))}: no release_id (not a release pointer)"
    return latest, etag, None


def pointer_problems(store: Store, territory_id: str) -> list[str]:
    """What is wrong with ``latest.json``: corrupt, or dangling (its release has no manifest — deleted, or its
    objects only). Empty when the pointer is absent (nothing published) or names a complete release."""
    latest, _, problem = read_latest_lenient(store, territory_id)
    if problem:
        return [f"{problem}; repair it with `tvb releases rollback RELEASE_ID --force` (a release that verifies)"]
    if latest is None:
        return []
    rid = latest["release_id"]
    if store.exists(manifest_key(territory_id, rid)):
        return []
    objects = _release_ids_with_objects(store, territory_id).get(rid, [])
    what = (f"has no manifest ({len(objects)} of its objects remain)" if objects else "does not exist")
    return [f"{store.url(latest_key(territory_id))} points at release {rid}, which {what}: the live release is "
            "missing; repair the pointer with `tvb releases rollback RELEASE_ID` (a release that verifies)"]


def find_unchanged(store: Store, territory_id: str, input_key: str) -> dict | None:
    """The ``latest.json`` dict when the live release was built from the same inputs, config and code, else None."""
    latest, _ = read_latest(store, territory_id)
    if latest and latest.get("input_key") == input_key:
        return latest
    return None


def _pointer(territory_id: str, manifest: dict, manifest_sha256: str, previous: dict | None, action: str,
             now: datetime) -> dict:
    history = list((previous or {}).get("history", []))
    history.append({"release_id": manifest["release_id"], "action": action,
                    "at": now.isoformat().replace("+00:00", "Z"), "manifest_sha256": manifest_sha256})
    return {
        "schema": POINTER_SCHEMA,
        "territory": territory_id,
        "release_id": manifest["release_id"],
        "released_at": manifest["released_at"],
        "input_key": manifest["input_key"],
        "manifest_key": manifest_key(territory_id, manifest["release_id"]),
        "manifest_sha256": manifest_sha256,
        "previous_release_id": (previous or {}).get("release_id"),
        "updated_at": now.isoformat().replace("+00:00", "Z"),
        "action": action,
        "history": history[-HISTORY_MAX:],
    }


def swap_latest(store: Store, territory_id: str, pointer: dict, expected_etag: str) -> str:
    """Replace ``latest.json`` only if its ETag is still ``expected_etag`` ("" = must not exist). Returns new ETag."""
    try:
        return store.put_bytes(latest_key(territory_id), pretty_json(pointer), if_match=expected_etag,
                               content_type="application/json")
    except (PreconditionFailed, ObjectExists) as exc:
        raise PublishConflict(
            f"{store.url(latest_key(territory_id))} was changed by another publisher while release "
            f"{pointer['release_id']} was being published; this release was NOT made live ({exc})") from None


# --- staging ------------------------------------------------------------------------------------------------------
def staged_files(staging_dir: Path) -> list[str]:
    """Relative POSIX paths of the files to publish, sorted; raises on names that are not valid object keys."""
    staging_dir = Path(staging_dir)
    if not staging_dir.is_dir():
        raise StagingError(f"staging folder {staging_dir} does not exist")
    out = []
    for p in sorted(staging_dir.rglob("*")):
        if p.is_symlink():
            raise StagingError(f"{p}: symbolic links are not published")
        if not p.is_file():
            continue
        rel = p.relative_to(staging_dir).as_posix()
        if rel in ("manifest.json",):
            raise StagingError(f"{p}: 'manifest.json' is written by the publisher, not staged")
        try:
            validate_key(rel)
        except ValueError:
            raise StagingError(f"{p}: file name {rel!r} cannot be an object key (letters, digits, . _ - / only)") from None
        out.append(rel)
    if not out:
        raise StagingError(f"staging folder {staging_dir} is empty")
    return out


def file_entry(staging_dir: Path, rel: str, prefix: str) -> dict:
    path = Path(staging_dir) / rel
    return {"path": rel, "key": f"{prefix}/{rel}", "sha256": sha256_file(path), "size": path.stat().st_size,
            "media_type": media_type(rel)}


def _summarise_validation(validation: dict) -> dict:
    """Keep a validation summary small and credential-free (drop long per-expectation lists)."""
    def shrink(v: Any, depth: int = 0) -> Any:
        if isinstance(v, dict):
            return {k: shrink(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list) and len(v) > 50:
            return v[:50] + [f"… {len(v) - 50} more"]
        return v
    return scrub_secrets(shrink(validation or {}))


def _sources_summary(sources: dict[str, dict]) -> dict:
    keep = ("snapshot_id", "key", "sha256", "fetched_at", "kind", "role", "url", "typename", "layer", "path",
            "features", "rows", "changed", "version", "license", "licence", "attribution")
    out = {}
    for name, ref in sorted((sources or {}).items()):
        if isinstance(ref, dict):
            out[name] = {k: ref[k] for k in keep if k in ref}
        else:
            out[name] = {"snapshot_id": str(ref)}
    return scrub_secrets(out)


# --- publish ------------------------------------------------------------------------------------------------------
def _put_create_only(store: Store, key: str, path: Path, sha256: str, written: list[str],
                     adopted: list[tuple[str, str, int]] | None = None) -> None:
    """Create ``key`` and record it in ``written`` (objects this publisher owns and may delete).

    An existing object with identical content (a retried run of the same release id) is accepted but NOT owned:
    it goes to ``adopted`` as ``(key, sha256, size)`` and is verified again before the pointer swap; anything else
    raises :class:`PublishConflict`. A store failure (disk full, permission, network) raises :class:`PublishError`
    naming the key.
    """
    try:
        store.put_file(key, path, create_only=True, content_type=media_type(key))
        written.append(key)
    except ObjectExists:
        size = path.stat().st_size
        if _object_sha256(store, key, size) != sha256:
            raise PublishConflict(f"{store.url(key)} already exists with other content: another publisher is "
                                  "writing the same release id; this run publishes nothing") from None
        log.info("%s already present with identical content (retried publish): adopted, not owned", key)
        if adopted is not None:
            adopted.append((key, sha256, size))
    except StoreError as exc:
        raise PublishError(f"could not write {store.url(key)}: {exc}") from None
    except OSError as exc:
        raise PublishError(f"could not write {store.url(key)}: {os_error_text(exc)}") from None


def _verify_before_swap(store: Store, files: list[dict], adopted: list[tuple[str, str, int]]) -> None:
    """Refuse to make a release live unless every object is present with its size, and every adopted object
    (written by someone else) still has the expected sha256."""
    problems = []
    for f in files:
        info = store.head(f["key"])
        if info is None:
            problems.append(f"{f['key']} missing")
        elif info.size != f["size"]:
            problems.append(f"{f['key']} has {info.size} bytes, expected {f['size']}")
    for key, sha, size in adopted:
        if not any(p.startswith(key + " ") for p in problems) and _object_sha256(store, key, size) != sha:
            problems.append(f"{key} changed")
    if problems:
        raise PublishConflict(f"{len(problems)} object(s) of this release are not verified ({'; '.join(problems[:5])}"
                              f"{' …' if len(problems) > 5 else ''}): another publisher removed or changed them; "
                              "this release was NOT made live")


def _object_sha256(store: Store, key: str, size: int | None = None) -> str | None:
    """sha256 of an object's content (None if absent): read in memory when small, else downloaded to a temp file."""
    local = store.local_path(key)
    if local is not None:
        return sha256_file(local) if local.is_file() else None
    if size is not None and size <= 32 * 1024 * 1024:
        try:
            return hashlib.sha256(store.get_bytes(key)).hexdigest()
        except NotFound:
            return None
    with tempfile.TemporaryDirectory(prefix="tvb-verify-") as tmp:
        try:
            path = store.download(key, Path(tmp) / "obj")
        except NotFound:
            return None
        return sha256_file(path)


def _cleanup(store: Store, keys: list[str]) -> None:
    """Best-effort removal of objects this run created: manifest first, so a partial cleanup leaves an orphan."""
    for key in sorted(keys, key=lambda k: (not k.endswith("/manifest.json"), k)):
        try:
            store.delete(key)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the original error
            log.warning("could not remove %s: %s", key, exc)


def _public_base_url(territory) -> str | None:
    """The http(s) base under which links are given (browsers cannot use a ``file://`` web map): see
    :func:`.serve.viewer_base_url`."""
    from .serve import viewer_base_url

    return viewer_base_url(territory)


def _result_links(store: Store, territory_id: str, release_id: str, base_url: str | None) -> dict[str, str]:
    """The links a publish result carries: release folder, report, web map (of :func:`release_links`)."""
    links = release_links(store, territory_id, release_id, base_url)
    return {k: links[k] for k in ("release_url", "report_url", "web_url")}


def publish_release(territory, store: Store, staging_dir: Path, *, input_key: str, sources: dict[str, dict],
                    validation: dict, indicators: dict, code_version: str, dry_run: bool = False,
                    released_at: datetime | None = None,
                    crash_before_swap: bool | Callable[[str], None] = False, force: bool = False,
                    release_id: str | None = None, step_hook: Callable[[str, str], None] | None = None) -> dict:
    """Publish the staged folder as a new immutable release and make it live with a compare-and-swap.

    Steps: read ``latest.json`` (+ETag) → "unchanged" if its input key is this one (unless ``force``) → upload
    every staged file create-only → write ``stac/item.json`` → [``crash_before_swap`` hook] → write
    ``manifest.json`` create-only → swap ``latest.json`` with ``If-Match`` → mirror ``latest/web/`` and
    regenerate the STAC Collection. ``crash_before_swap``: True raises :class:`SimulatedCrash` at the hook, a
    callable is called with the release id. Returns {"status": "published"|"unchanged"|"dry_run", "release_id",
    "manifest_key", "latest_key", "release_url", "report_url", "web_url", "files", "previous_release_id"}.
    Raises :class:`PublishConflict` when another publisher won (nothing of this run stays visible).

    ``release_id`` (the pipeline passes one with its run nonce) must carry the time of ``released_at`` and the
    input key; default: ``release_id_for(input_key, released_at)``. ``step_hook(step, release_id)`` (fault
    injection) is called after each step: ``"uploaded:<key>"``, ``"manifest"``, ``"swapped"``. Before the swap,
    every object is checked present with its size and adopted objects (not written by this run) are checked
    identical; otherwise :class:`PublishConflict` and the pointer is not moved.
    """
    from . import stac

    tid = check_territory_id(territory.id)
    staging_dir = Path(staging_dir)
    base_url = _public_base_url(territory)
    latest, etag = read_latest(store, tid)
    if latest and latest.get("input_key") == input_key and not force:
        rid = latest["release_id"]
        return {"status": "unchanged", "release_id": rid, "manifest_key": manifest_key(tid, rid),
                "latest_key": latest_key(tid), **_result_links(store, tid, rid, base_url),
                "files": None, "previous_release_id": latest.get("previous_release_id")}

    now = datetime.now(UTC).replace(microsecond=0)
    released_at = (released_at or now)
    released_at = released_at.replace(tzinfo=UTC) if released_at.tzinfo is None else \
        released_at.astimezone(UTC)
    if release_id:
        rid = check_release_id(release_id)
        if rid[:25] != release_id_for(input_key, released_at):
            raise StagingError(f"release id {rid} does not match the release time {released_at.isoformat()} and "
                               f"input key {input_key[:8]}")
    else:
        rid = release_id_for(input_key, released_at)
    prefix = release_prefix(tid, rid)
    if latest and latest.get("release_id") == rid:
        raise PublishConflict(f"release {rid} is already live for {tid}; nothing to publish")
    if latest and latest.get("release_id", "") > rid:
        log.warning("release %s is older than the live release %s; publishing it makes it live anyway",
                    rid, latest.get("release_id"))

    rels = [r for r in staged_files(staging_dir) if r != stac.ITEM_PATH]
    entries = [file_entry(staging_dir, rel, prefix) for rel in rels]
    previous_id = latest.get("release_id") if latest else None
    item = stac.build_item(territory, rid, released_at, entries, staging_dir,
                           previous_release_id=previous_id, input_key=input_key, code_version=code_version)
    item_bytes = pretty_json(item)
    item_entry: dict[str, Any] = {"path": stac.ITEM_PATH, "key": f"{prefix}/{stac.ITEM_PATH}",
                                  "sha256": hashlib.sha256(item_bytes).hexdigest(), "size": len(item_bytes),
                                  "media_type": "application/geo+json"}
    files = entries + [item_entry]
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "territory": tid,
        "territory_name": territory.name,
        "release_id": rid,
        "released_at": released_at.isoformat().replace("+00:00", "Z"),
        "input_key": input_key,
        "previous_release_id": previous_id,
        "config_hash": territory.config_hash(),
        "profile": getattr(territory, "profile", None),
        "code_version": code_version,
        "sources": _sources_summary(sources),
        "validation": _summarise_validation(validation),
        "indicators": scrub_secrets(indicators or {}),
        "files": files,
        "totals": {"files": len(files), "bytes": sum(f["size"] for f in files)},
    }
    manifest_bytes = pretty_json(manifest)
    result = {"status": "dry_run" if dry_run else "published", "release_id": rid,
              "manifest_key": manifest_key(tid, rid), "latest_key": latest_key(tid),
              **_result_links(store, tid, rid, base_url), "files": len(files), "previous_release_id": previous_id}
    if dry_run:
        return result

    written: list[str] = []
    adopted: list[tuple[str, str, int]] = []
    hook = step_hook or (lambda step, release: None)
    try:
        for e in entries:
            _put_create_only(store, e["key"], staging_dir / e["path"], e["sha256"], written, adopted)
            hook(f"uploaded:{e['key']}", rid)
        with tempfile.TemporaryDirectory(prefix="tvb-item-") as tmp:
            p = Path(tmp) / "item.json"
            p.write_bytes(item_bytes)
            _put_create_only(store, item_entry["key"], p, item_entry["sha256"], written, adopted)
            hook(f"uploaded:{item_entry['key']}", rid)
        if crash_before_swap:
            if callable(crash_before_swap):
                crash_before_swap(rid)
            else:
                raise SimulatedCrash(f"simulated crash after uploading release {rid}, before manifest and swap")
        _verify_before_swap(store, files, adopted)
        with tempfile.TemporaryDirectory(prefix="tvb-manifest-") as tmp:
            p = Path(tmp) / "manifest.json"
            p.write_bytes(manifest_bytes)
            _put_create_only(store, manifest_key(tid, rid), p, hashlib.sha256(manifest_bytes).hexdigest(),
                             written, adopted)
        hook("manifest", rid)
        if adopted:     # objects shared with another attempt: check again, right before the pointer moves
            _verify_before_swap(store, files, adopted)
        pointer = _pointer(tid, manifest, hashlib.sha256(manifest_bytes).hexdigest(), latest, "publish", now)
        swap_latest(store, tid, pointer, etag)
        hook("swapped", rid)
    except SimulatedCrash:
        raise       # a crash leaves everything in place: that is what it simulates
    except PublishError as exc:
        now_latest, _ = read_latest(store, tid)
        if not (now_latest and now_latest.get("release_id") == rid):
            _cleanup(store, written)
            if not isinstance(exc, PublishConflict):
                raise PublishError(f"release {rid} of {tid} NOT published: {exc}; latest.json unchanged "
                                   f"({(latest or {}).get('release_id') or 'no release yet'} stays live), "
                                   "the objects this run wrote were removed") from None
        raise
    log.info("published release %s of %s (%d files); latest.json now points to it", rid, tid, len(files))
    from .mirror import after_swap

    after_swap(store, tid, rid)
    return result


# --- reading a release -------------------------------------------------------------------------------------------
def load_manifest(store: Store, territory_id: str, release_id: str) -> dict:
    try:
        return json.loads(store.get_bytes(manifest_key(territory_id, release_id)))
    except NotFound:
        raise ReleaseNotFound(f"no release {release_id} for territory {territory_id} "
                              f"({store.url(manifest_key(territory_id, release_id))} missing)") from None


def _release_ids_with_objects(store: Store, territory_id: str) -> dict[str, list[str]]:
    """Map release id → object keys, for every folder under ``releases/<t>/`` named like a release id."""
    out: dict[str, list[str]] = {}
    base = territory_prefix(territory_id) + "/"
    for key in store.list(base):
        head, _, rest = key[len(base):].partition("/")
        if rest and RELEASE_ID_RE.match(head):
            out.setdefault(head, []).append(key)
    return out


#: Release tools moved to :mod:`.admin` and :mod:`.mirror`, still importable from here.
_ADMIN_NAMES = frozenset({"FUTURE_TOLERANCE", "find_orphans", "list_releases",
                          "recorded_manifest_sha256", "release_warnings", "rollback", "show_release", "verify_release",
                          "was_published"})
_MIRROR_NAMES = frozenset({"after_swap", "mirror_latest"})


def __getattr__(name: str):
    """The names of :mod:`.admin` and :mod:`.mirror` under their old address (imported lazily: they import this
    module)."""
    if name in _ADMIN_NAMES:
        from . import admin

        return getattr(admin, name)
    if name in _MIRROR_NAMES:
        from . import mirror

        return getattr(mirror, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
objects (without a manifest) are *orphans*, listed by :func:`find_orphans` and removed by ``prune`` once older
than a grace period. Two concurrent publishers: the compare-and-swap lets exactly one move the pointer; the other
raises :class:`PublishConflict` and removes what it wrote, so nothing of it is visible.

Ownership: a publisher deletes only the objects *it* created (create-only write succeeded). An object found
already present with identical content (a retried publish of the same release id) is *adopted*, never deleted by
this publisher, and is verified again (present, same size and sha256) together with every other object of the
release just before the pointer swap: a release whose objects are not all its own or verified identical never goes
live. ``latest.json`` keeps, for every release it ever pointed to, the sha256 of its manifest, so ``verify`` and
``rollback`` detect a release whose files *and* manifest were both changed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from ..config import ID_PATTERN
from ..errors import DeterministicError, TVBError
from ..store import (NotFound, ObjectExists, PreconditionFailed, Store, StoreError, media_type, os_error_text,
                     sha256_file, validate_key)

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "tvb-release-manifest/1"
POINTER_SCHEMA = "tvb-release-pointer/1"
HISTORY_MAX = 200
RELEASE_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}(-[0-9a-f]{6,16})?$")
NONCE_RE = re.compile(r"^[0-9a-f]{6,16}$")
_SECRET_KEY_RE = re.compile(r"(^|[_-])(pass(word|wd)?|secrets?|tokens?|credentials?|api[_-]?key|access[_-]?key|"
                            r"secret[_-]?key|authorization|auth|session[_-]?token)($|[_-])", re.IGNORECASE)
_SECRET_QUERY_RE = re.compile(r"(?i)([?&](?:[a-z_]*(?:key|token|secret|password|signature|sig|credential)"
                              r"[a-z_-]*))=[^&#]*")


class PublishError(TVBError, RuntimeError):
    """Publishing failed; the message says why and what users still see."""


class PublishConflict(PublishError, DeterministicError):
    """Another publisher moved ``latest.json`` (or wrote the same release) first: nothing was published."""


class ReleaseNotFound(PublishError, LookupError):
    """No complete release (with a manifest) under that id."""


class SimulatedCrash(PublishError):
    """Raised by the ``crash_before_swap`` test hook: the run stops after uploading, before manifest and swap."""


# --- names and keys ---------------------------------------------------------------------------------------------
def check_territory_id(territory_id: str) -> str:
    """Return ``territory_id`` if it is a valid id (lowercase, digits, ``-``/``_``), else raise ValueError."""
    if not isinstance(territory_id, str) or not ID_PATTERN.match(territory_id):
        raise ValueError(f"invalid territory id {territory_id!r}")
    return territory_id


def check_release_id(release_id: str) -> str:
    """Return ``release_id`` if it has the form ``YYYYMMDDTHHMMSSZ-xxxxxxxx[-nonce]``, else raise ValueError."""
    if not isinstance(release_id, str) or not RELEASE_ID_RE.match(release_id):
        raise ValueError(f"invalid release id {release_id!r} (expected YYYYMMDDTHHMMSSZ-<8 hex>[-<6-16 hex>])")
    return release_id


def territory_prefix(territory_id: str) -> str:
    return f"releases/{check_territory_id(territory_id)}"


def release_prefix(territory_id: str, release_id: str) -> str:
    return f"{territory_prefix(territory_id)}/{check_release_id(release_id)}"


def latest_key(territory_id: str) -> str:
    return f"{territory_prefix(territory_id)}/latest.json"


def manifest_key(territory_id: str, release_id: str) -> str:
    return f"{release_prefix(territory_id, release_id)}/manifest.json"


def collection_key(territory_id: str) -> str:
    return f"{territory_prefix(territory_id)}/collection.json"


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, no spaces, UTF-8) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pretty_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def input_key(snapshot_ids: dict[str, str], config_hash: str, code_version: str) -> str:
    """sha256 (hex) of the canonical JSON of the source snapshot ids, the config hash and the code version."""
    return hashlib.sha256(canonical_json({"snapshots": dict(snapshot_ids), "config_hash": config_hash,
                                          "code_version": code_version})).hexdigest()


def release_id_for(input_key: str, when: datetime, nonce: str | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<input_key[:8]>[-<nonce>]`` (UTC; a naive ``when`` is taken as UTC). Sorts by time.

    ``nonce`` (6-16 lowercase hex, see :func:`new_run_nonce`) makes the id unique per run: without it two runs
    on the same inputs in the same second would get the same id.
    """
    if not re.fullmatch(r"[0-9a-f]{8,}", input_key or ""):
        raise ValueError(f"invalid input key {input_key!r} (expected a hex digest)")
    if nonce is not None and not NONCE_RE.match(nonce):
        raise ValueError(f"invalid run nonce {nonce!r} (expected 6-16 lowercase hex)")
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{input_key[:8]}" + (f"-{nonce}" if nonce else "")


def new_run_nonce() -> str:
    """A random 8-hex-digit nonce (32 bits from the OS CSPRNG) identifying one run."""
    return secrets.token_hex(4)


def release_time(release_id: str) -> datetime:
    """The UTC time encoded in a release id."""
    return datetime.strptime(check_release_id(release_id)[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


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
        raise PublishError(f"staging folder {staging_dir} does not exist")
    out = []
    for p in sorted(staging_dir.rglob("*")):
        if p.is_symlink():
            raise PublishError(f"{p}: symbolic links are not published")
        if not p.is_file():
            continue
        rel = p.relative_to(staging_dir).as_posix()
        if rel in ("manifest.json",):
            raise PublishError(f"{p}: 'manifest.json' is written by the publisher, not staged")
        try:
            validate_key(rel)
        except ValueError:
            raise PublishError(f"{p}: file name {rel!r} cannot be an object key (letters, digits, . _ - / only)") from None
        out.append(rel)
    if not out:
        raise PublishError(f"staging folder {staging_dir} is empty")
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


def public_url(store: Store, key: str, base_url: str | None = None) -> str:
    """``base_url/key`` when a public base URL is configured (``TVB_PUBLIC_BASE_URL``), else the store URL."""
    if not base_url:
        return store.url(key)
    folder = key.endswith("/")
    return f"{base_url.rstrip('/')}/{validate_key(key.rstrip('/'))}" + ("/" if folder else "")


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
                "latest_key": latest_key(tid),
                "release_url": public_url(store, release_prefix(tid, rid) + "/", base_url),
                "report_url": public_url(store, release_prefix(tid, rid) + "/report/index.html", base_url),
                "web_url": public_url(store, release_prefix(tid, rid) + "/web/index.html", base_url),
                "files": None, "previous_release_id": latest.get("previous_release_id")}

    now = datetime.now(timezone.utc).replace(microsecond=0)
    released_at = (released_at or now)
    released_at = released_at.replace(tzinfo=timezone.utc) if released_at.tzinfo is None else \
        released_at.astimezone(timezone.utc)
    if release_id:
        rid = check_release_id(release_id)
        if rid[:25] != release_id_for(input_key, released_at):
            raise PublishError(f"release id {rid} does not match the release time {released_at.isoformat()} and "
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
    item_entry = {"path": stac.ITEM_PATH, "key": f"{prefix}/{stac.ITEM_PATH}",
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
              "release_url": public_url(store, prefix + "/", base_url),
              "report_url": public_url(store, prefix + "/report/index.html", base_url),
              "web_url": public_url(store, prefix + "/web/index.html", base_url),
              "files": len(files), "previous_release_id": previous_id}
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
    after_swap(store, tid, rid)
    return result


def after_swap(store: Store, territory_id: str, release_id: str) -> None:
    """Refresh the conveniences derived from the pointer: ``latest/`` mirror and the STAC Collection.

    Failures are logged, not raised: ``latest.json`` is the source of truth and already moved.
    """
    from . import stac

    for what, fn in (("web mirror", lambda: mirror_latest(store, territory_id, release_id)),
                     ("STAC collection", lambda: stac.update_collection(store, territory_id))):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            log.warning("release %s is live but the %s could not be refreshed: %s", release_id, what, exc)


def mirror_latest(store: Store, territory_id: str, release_id: str) -> dict:
    """Copy ``<id>/web/*`` to ``releases/<t>/latest/web/`` (stale files removed) and the STAC Item to
    ``latest/stac/item.json`` with its asset hrefs pointing into the release. Returns counts."""
    from . import stac

    latest, _ = read_latest(store, territory_id)
    if not latest or latest.get("release_id") != release_id:
        log.info("latest.json no longer points to %s: mirror not refreshed", release_id)
        return {"copied": 0, "removed": 0}
    manifest = load_manifest(store, territory_id, release_id)
    src_prefix = release_prefix(territory_id, release_id) + "/web/"
    dst_prefix = territory_prefix(territory_id) + "/latest/web/"
    wanted = {}
    for f in manifest["files"]:
        if f["key"].startswith(src_prefix):
            wanted[dst_prefix + f["key"][len(src_prefix):]] = f
    copied = 0
    for dst, f in sorted(wanted.items()):
        data = store.get_bytes(f["key"])
        if dst.endswith("/index.html"):
            from .webmap import rewrite_for_mirror
            data = rewrite_for_mirror(data.decode("utf-8"), release_id).encode("utf-8")
        store.put_bytes(dst, data, content_type=f["media_type"])
        copied += 1
    stamp = {"release_id": release_id, "manifest_key": manifest_key(territory_id, release_id),
             "note": "convenience copy; releases/<territory>/latest.json is the source of truth"}
    store.put_bytes(dst_prefix + "release.json", pretty_json(stamp), content_type="application/json")
    removed = 0
    for key in store.list(dst_prefix):
        if key not in wanted and key != dst_prefix + "release.json":
            store.delete(key)
            removed += 1
    item = json.loads(store.get_bytes(release_prefix(territory_id, release_id) + "/" + stac.ITEM_PATH))
    store.put_bytes(territory_prefix(territory_id) + "/latest/" + stac.ITEM_PATH,
                    pretty_json(stac.relocate_item_for_latest(item, release_id)),
                    content_type="application/geo+json")
    return {"copied": copied, "removed": removed}


# --- release tools ------------------------------------------------------------------------------------------------
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
            "manifest_url": store.url(manifest_key(territory_id, release_id))}


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
    now = now or datetime.now(timezone.utc)
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
    now = datetime.now(timezone.utc).replace(microsecond=0)
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

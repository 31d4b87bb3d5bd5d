"""Where a release lives in the object store and how it is named: territory and release ids, object keys, the
input key, the JSON encodings, and the URLs of a release (:func:`release_links`, the one place they are built).

The layout itself is described in :mod:`.release`; these names are also importable from there.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from tvb_tasks.errors import InvalidInputError

from ..config import ID_PATTERN
from ..store import Store, validate_key

RELEASE_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}(-[0-9a-f]{6,16})?$")
NONCE_RE = re.compile(r"^[0-9a-f]{6,16}$")


# --- names and keys ---------------------------------------------------------------------------------------------
def check_territory_id(territory_id: str) -> str:
    """Return ``territory_id`` if it is a valid id (lowercase, digits, ``-``/``_``), else raise ValueError."""
    if not isinstance(territory_id, str) or not ID_PATTERN.match(territory_id):
        raise InvalidInputError(f"invalid territory id {territory_id!r}")
    return territory_id


def check_release_id(release_id: str) -> str:
    """Return ``release_id`` if it has the form ``YYYYMMDDTHHMMSSZ-xxxxxxxx[-nonce]``, else raise ValueError."""
    if not isinstance(release_id, str) or not RELEASE_ID_RE.match(release_id):
        raise InvalidInputError(f"invalid release id {release_id!r} (expected YYYYMMDDTHHMMSSZ-<8 hex>[-<6-16 hex>])")
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
        raise InvalidInputError(f"invalid input key {input_key!r} (expected a hex digest)")
    if nonce is not None and not NONCE_RE.match(nonce):
        raise InvalidInputError(f"invalid run nonce {nonce!r} (expected 6-16 lowercase hex)")
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{input_key[:8]}" + (f"-{nonce}" if nonce else "")


def new_run_nonce() -> str:
    """A random 8-hex-digit nonce (32 bits from the OS CSPRNG) identifying one run."""
    return secrets.token_hex(4)


def release_time(release_id: str) -> datetime:
    """The UTC time encoded in a release id."""
    return datetime.strptime(check_release_id(release_id)[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


# --- URLs ---------------------------------------------------------------------------------------------------------
def public_url(store: Store, key: str, base_url: str | None = None) -> str:
    """``base_url/key`` when a public base URL is configured (``TVB_PUBLIC_BASE_URL``), else the store URL."""
    if not base_url:
        return store.url(key)
    folder = key.endswith("/")
    return f"{base_url.rstrip('/')}/{validate_key(key.rstrip('/'))}" + ("/" if folder else "")


def release_links(store: Store, territory_id: str, release_id: str, base_url: str | None = None) -> dict[str, str]:
    """The URLs of a release, built in this one place: ``release_url`` (its folder), ``web_url`` (web map),
    ``report_url``, ``manifest_url`` and ``stac_url`` (its STAC Item).

    Under ``base_url`` (an http(s) URL serving the store root, :func:`.serve.viewer_base_url`) when given, else the
    store's own URLs (:meth:`Store.url`: a folder or ``s3://`` location, not for a browser)."""
    from .stac import ITEM_PATH

    prefix = release_prefix(territory_id, release_id)
    return {"release_url": public_url(store, prefix + "/", base_url),
            "report_url": public_url(store, prefix + "/report/index.html", base_url),
            "web_url": public_url(store, prefix + "/web/index.html", base_url),
            "manifest_url": public_url(store, manifest_key(territory_id, release_id), base_url),
            "stac_url": public_url(store, f"{prefix}/{ITEM_PATH}", base_url)}

"""After a pointer swap (publish or rollback): the ``releases/<t>/latest/`` mirror of the live release's web map and
STAC Item, and the territory's STAC Collection. Conveniences only: ``latest.json`` is the source of truth."""
from __future__ import annotations

import json
import logging

from ..store import Store
from .layout import manifest_key, pretty_json, release_prefix, territory_prefix
from .release import load_manifest, read_latest

log = logging.getLogger(__name__)


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

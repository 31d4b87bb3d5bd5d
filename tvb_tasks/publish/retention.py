"""Retention: keep the N newest complete releases, never the one ``latest.json`` points to; clean old orphans and
stale run scratch (``work/<territory>/<input key[:16]>/`` prefixes untouched for a number of days, :func:`prune_work`).

A prune refuses to run while ``latest.json`` is corrupt or dangling (points at a release without a manifest): the
N newest complete releases might then not include the last good one a repair needs. Repair first with
``tvb releases rollback RELEASE_ID``."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tvb_tasks.errors import InvalidInputError

from ..store import Store, delete_prefix
from .admin import _release_ids_with_objects, find_orphans, list_releases
from .layout import check_territory_id, manifest_key, release_time, territory_prefix
from .release import PublishError, pointer_problems, read_latest

log = logging.getLogger(__name__)


def plan_prune(store: Store, territory_id: str, keep: int) -> dict:
    """Which complete releases a prune keeps and deletes (newest first), without deleting anything."""
    if keep < 1:
        raise InvalidInputError(f"keep must be at least 1, got {keep}")
    problems = pointer_problems(store, territory_id)
    if problems:
        raise PublishError(f"prune refused: {problems[0]}")
    releases = list_releases(store, territory_id)
    latest, _ = read_latest(store, territory_id)
    live = latest.get("release_id") if latest else None
    kept = [r["release_id"] for r in releases[:keep]]
    if live and live not in kept:
        kept.append(live)          # the live release is never deleted, even when older than the N newest
    deleted = [r["release_id"] for r in releases if r["release_id"] not in kept]
    return {"kept": kept, "deleted": deleted, "latest": live}


WORK_MAX_AGE_DAYS = 7.0


def prune_work(store: Store, territory_id: str, *, older_than_days: float = WORK_MAX_AGE_DAYS,
               now: datetime | None = None, dry_run: bool = False,
               leased: Callable[[str, str], bool] | None = None) -> dict:
    """Delete the territory's stale run scratch: each ``work/<territory_id>/<key16>/`` prefix whose newest object
    was last modified more than ``older_than_days`` days before ``now`` (a published run removes its own prefix,
    :func:`tvb_tasks.pipeline.remove_work`; what stays is dry runs', failed runs' and interrupted ones').

    A prefix whose lease a run holds (``leased(territory_id, key16)``; default
    :func:`tvb_tasks.pipeline.work_leased`, which sees the runs of this host's ``TVB_WORK_DIR`` only) is kept
    whatever its age; runs elsewhere (other hosts, the DAG's tasks) are protected by the age alone: a run writes
    into its prefix as it goes. Returns {"work_deleted": [prefixes], "work_kept_recent": [prefixes],
    "work_kept_leased": [prefixes], "work_objects_deleted": n, "work_bytes_deleted": bytes} (with ``dry_run``:
    what would be deleted)."""
    check_territory_id(territory_id)
    if older_than_days < 0:
        raise InvalidInputError(f"the age of stale work prefixes must be at least 0 days, got {older_than_days:g}")
    if leased is None:
        from ..pipeline import work_leased

        leased = work_leased
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=older_than_days)).timestamp()
    groups: dict[str, list] = defaultdict(list)
    root = f"work/{territory_id}/"
    for obj in store.list_stats(root):
        parts = obj.key[len(root):].split("/")
        if len(parts) > 1:                       # work/<t>/<key16>/…
            groups[parts[0]].append(obj)
    deleted, recent, held, n, size = [], [], [], 0, 0
    for key16, objs in sorted(groups.items()):
        prefix = f"{root}{key16}/"
        if max(o.modified for o in objs) > cutoff:
            recent.append(prefix)
        elif leased(territory_id, key16):
            held.append(prefix)
            log.info("work prefix %s kept: a run holds its lease", prefix)
        else:
            deleted.append(prefix)
            if dry_run:
                n, size = n + len(objs), size + sum(o.size for o in objs)
            else:
                d_n, d_size = delete_prefix(store, prefix)
                n, size = n + d_n, size + d_size
    log.info("prune work of %s: %d prefix(es) older than %g days deleted (%d objects, %.1f MB), %d recent and %d "
             "leased kept", territory_id, len(deleted), older_than_days, n, size / 1e6, len(recent), len(held))
    return {"work_deleted": deleted, "work_kept_recent": recent, "work_kept_leased": held,
            "work_objects_deleted": n, "work_bytes_deleted": size}


def prune(store: Store, territory_id: str, keep: int, *, orphan_grace_hours: float = 24.0,
          now: datetime | None = None, dry_run: bool = False,
          work_older_than_days: float | None = WORK_MAX_AGE_DAYS) -> dict:
    """Delete complete releases beyond the ``keep`` newest (never the live one) and orphans older than
    ``orphan_grace_hours`` (younger orphans may belong to a publish in progress), ``.tmp-*`` leftovers of
    killed writes older than the same grace period, and work prefixes untouched for ``work_older_than_days``
    days (:func:`prune_work`; ``None``: keep them all).

    A release's manifest is deleted first, so an interrupted prune leaves an orphan, never a release whose
    manifest lists missing files. Returns {"kept": [...], "deleted": [...], "deleted_orphans": [release ids],
    "objects_deleted": n, "dry_run": bool} and :func:`prune_work`'s keys.
    """
    check_territory_id(territory_id)
    now = now or datetime.now(UTC)
    plan = plan_prune(store, territory_id, keep)
    objects = _release_ids_with_objects(store, territory_id)
    partial = store.list_partial(territory_prefix(territory_id) + "/")
    orphan_keys = set(find_orphans(store, territory_id)) - {k for k, _ in partial}
    orphan_ids = sorted({rid for rid, keys in objects.items() if set(keys) <= orphan_keys})
    old_orphans = [rid for rid in orphan_ids
                   if now - release_time(rid) >= timedelta(hours=orphan_grace_hours)]
    old_partial = [k for k, mtime in partial
                   if now - datetime.fromtimestamp(mtime, UTC) >= timedelta(hours=orphan_grace_hours)]
    n = 0
    if not dry_run:
        for rid in plan["deleted"]:
            latest, _ = read_latest(store, territory_id)
            if latest and latest.get("release_id") == rid:     # re-checked: a rollback may have happened since
                log.warning("release %s became live during the prune: kept", rid)
                continue
            mkey = manifest_key(territory_id, rid)
            store.delete(mkey)
            n += 1
            for key in sorted(objects.get(rid, [])):
                if key != mkey:
                    store.delete(key)
                    n += 1
        for rid in old_orphans:
            for key in sorted(objects.get(rid, [])):
                store.delete(key)
                n += 1
        for key in old_partial:
            store.delete(key)
            n += 1
        if plan["deleted"]:
            from .stac import update_collection
            try:
                update_collection(store, territory_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("pruned, but the STAC collection could not be refreshed: %s", exc)
    log.info("prune %s: kept %s, deleted %s, orphans deleted %s", territory_id, plan["kept"], plan["deleted"],
             old_orphans)
    work = (prune_work(store, territory_id, older_than_days=work_older_than_days, now=now, dry_run=dry_run)
            if work_older_than_days is not None else {})
    return {"kept": plan["kept"], "deleted": plan["deleted"], "deleted_orphans": old_orphans,
            "young_orphans": [r for r in orphan_ids if r not in old_orphans], "objects_deleted": n,
            "deleted_partial": old_partial,
            "dry_run": dry_run, **work}

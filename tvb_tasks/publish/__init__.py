"""Publishing: immutable releases in the object store, atomic pointer swap, formats, STAC, web map, QGIS.

Public API (used by ``tvb_tasks.pipeline`` and the ``tvb releases`` CLI):

* ``input_key``, ``release_id_for``, ``find_unchanged`` — idempotence;
* ``stage_release`` — arrange the release folder; ``publish_release`` — upload + manifest + compare-and-swap;
* ``list_releases``, ``show_release``, ``rollback``, ``verify_release``, ``find_orphans`` (:mod:`.admin`), ``prune``,
  ``prune_work`` (:mod:`.retention`) — tools;
* ``release_links`` — the URLs of a release (web map, report, manifest, STAC Item).

The STAC Collection of a territory is ``releases/<territory>/collection.json`` (see :mod:`.stac`).
"""
from .admin import find_orphans, list_releases, rollback, show_release, verify_release
from .layout import input_key, latest_key, manifest_key, release_id_for, release_links, release_prefix
from .release import (
    PublishConflict,
    PublishError,
    ReleaseNotFound,
    SimulatedCrash,
    find_unchanged,
    pointer_problems,
    publish_release,
    read_latest,
    scrub_secrets,
)
from .retention import plan_prune, prune, prune_work
from .stage import stage_release

__all__ = [
    "PublishConflict", "PublishError", "ReleaseNotFound", "SimulatedCrash", "find_orphans", "find_unchanged",
    "input_key", "latest_key", "list_releases", "manifest_key", "plan_prune", "pointer_problems", "prune", "prune_work", "publish_release",
    "read_latest", "release_id_for", "release_links", "release_prefix", "rollback", "scrub_secrets", "show_release",
    "stage_release", "verify_release",
]

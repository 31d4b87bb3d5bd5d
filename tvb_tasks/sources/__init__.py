"""Source fetchers (file, HTTP, WFS, OSM) writing immutable, content-addressed snapshots.

Public API (see docs/sources.md):

* :func:`fetch_source` / :func:`fetch_all` — fetch a territory's sources into ``snapshots/<t>/<name>/<sha256>.parquet``;
* :func:`previous_snapshot` — a source's previous accepted snapshot ref (row-count drift checks);
* :func:`mark_rejected` / :func:`list_rejected` / :func:`clear_rejected` — snapshots the validation gate refused;
* :func:`fetch_wfs_to_file` — ad-hoc complete WFS read to a GeoParquet / GeoPackage file (CLI ``tvb sources
  fetch-wfs``);
* :class:`SourceError` — every fetch failure (server exception, incomplete read, timeout…), message without secrets.

Loggers are named ``tvb_tasks.sources.*``.
"""
from .errors import SourceError
from .fetch import cache_dir, fetch_all, fetch_source, territory_outline
from .http import redact_url
from .snapshot import (
                       clear_rejected,
                       content_hash,
                       latest_snapshot,
                       list_rejected,
                       mark_rejected,
                       previous_snapshot,
                       read_snapshot,
)
from .wfs import fetch_wfs_to_file, read_wfs

__all__ = [
                       "SourceError",
                       "cache_dir",
                       "clear_rejected",
                       "content_hash",
                       "fetch_all",
                       "fetch_source",
                       "fetch_wfs_to_file",
                       "latest_snapshot",
                       "list_rejected",
                       "mark_rejected",
                       "previous_snapshot",
                       "read_snapshot",
                       "read_wfs",
                       "redact_url",
                       "territory_outline",
]

"""What travels between the pipeline's tasks: one ``TypedDict`` per value a task receives or returns.

The Airflow tasks (``dags/``), the CLI (``tvb run``) and the stage functions of :mod:`tvb_tasks.pipeline` and
:mod:`tvb_tasks.tiled` exchange these dicts; under Airflow they travel through XCom, so every field is JSON-safe
(str, int, float, bool, None, lists and dicts of those) and small: store keys, ids, counts, never data. Large things
(rasters, GeoPackages, validation results) stay in the object store under the run's work prefix.

Flow of the observatory DAG (``dags/tvb_observatory.py``), with the contract of each edge::

    fetch_sources ─ FetchedRun ─┬─> validate_sources ─ GateVerdict ──────────────────────┐
                                ├─> compute_sous_trame ×N ─ SousTramePart ─> assemble ─ LayersSummary
                                │      ─> indicators ─ IndicatorSummary ─> validate_outputs ─ GateVerdict
                                └────────────────────────────────> publish ─ Outcome ─> notify ─ Outcome

The fetch DAG returns a :class:`FetchSummary`, the screening DAG a :class:`ScreeningSummary`, the region DAG a
:class:`MosaicResult`, the tiled observatory DAG passes :class:`TileItem` / :class:`TileRound` / :class:`StitchedCost`. A ``TypedDict`` is a plain ``dict`` at run
time (nothing to convert, nothing for XCom to serialise differently); the types are for readers and type checkers.
This module imports nothing heavy: the DAG files import it at parse time. No ``from __future__ import annotations``
here: on Python 3.11 it would hide ``NotRequired`` from ``__required_keys__`` / ``__optional_keys__``.
"""
from typing import Any, Literal, NotRequired, TypedDict, get_args

__all__ = [
    "FetchSummary",
    "FetchedRun",
    "GateVerdict",
    "IndicatorSummary",
    "LayersSummary",
    "MosaicMember",
    "MosaicResult",
    "NotifyEvent",
    "Outcome",
    "PublishResult",
    "PublishStatus",
    "ReleaseUrls",
    "RunOptions",
    "ScreeningSummary",
    "SnapshotRef",
    "SousTramePart",
    "StitchedCost",
    "TileItem",
    "TileRound",
    "ValidationVerdict",
]


# --- fetch ----------------------------------------------------------------------------------------------------------
class SnapshotRef(TypedDict):
    """One source's content-addressed snapshot (``tvb_tasks.sources.fetch_source``; more keys may be present:
    ``etag``, ``number_matched``, ``duration_s``, ``layers`` of an OSM download …)."""

    source: str
    snapshot_id: str                    # sha256 hex of the content
    key: str                            # store key of the GeoParquet snapshot
    changed: bool                       # new content since the previous snapshot of the source
    role: NotRequired[str | None]
    metadata_key: NotRequired[str]
    feature_count: NotRequired[int]
    fetched_at: NotRequired[str]        # ISO 8601 UTC
    parent_source: NotRequired[str]     # a derived layer (``osm_roads``): the configured source it comes from


class RunOptions(TypedDict):
    """``stage_fetch`` keyword arguments from the trigger form (``tvb_dag_support.run_options``): None = the
    territory's default, so that a default manual run has the identity of a scheduled one."""

    force: bool
    sous_trames: list[str] | None
    resolution_m: float | None


class FetchedRun(TypedDict):
    """The *run*: what :func:`tvb_tasks.pipeline.stage_fetch` returns and every later stage takes.

    ``config`` is the effective configuration the fetch used (validated YAML with profile and run parameters
    applied) and ``config_hash`` its hash: every later stage rebuilds the territory from them."""

    territory: str
    profile: str
    store_uri: str
    config_path: str
    config_hash: str
    config: dict[str, Any]
    run_nonce: str                      # makes the release id unique per run
    resolution_m: float | None          # None: the territory's resolution
    sous_trames: list[str] | None       # None: every sous-trame of the territory
    snapshots: dict[str, SnapshotRef]
    changed_sources: list[str]
    input_key: str                      # sha256 of snapshot ids, config hash and code version
    code_version: str
    force: bool
    unchanged_release: str | None       # the live release with the same input key (nothing to recompute)


class FetchSummary(TypedDict):
    """Return value of the fetch DAG's task (``dags/tvb_fetch.py``)."""

    territory: str
    store_uri: str
    input_key: str
    changed_sources: list[str]          # configured sources with a new snapshot (one Asset event each)
    unchanged_release: str | None


# --- validation gates ----------------------------------------------------------------------------------------------
class GateVerdict(TypedDict):
    """Compact verdict of a validation gate (``stage_validate_sources`` / ``stage_validate_outputs``); the full
    results stay in the work prefix. A gate with critical failures raises instead of returning."""

    success: bool
    critical_failures: int
    warnings: int


class ValidationVerdict(TypedDict):
    """Both gates' verdicts, as checked again by the publish stage."""

    sources: GateVerdict | None
    outputs: GateVerdict | None
    success: bool


# --- layers and indicators -----------------------------------------------------------------------------------------
class SousTramePart(TypedDict):
    """One sous-trame's layers (``stage_compute_sous_trame``): paths as ``@work/<relative>`` (portable between
    workers), counts, areas (ha), lengths (km), timings (s)."""

    sous_trame: str
    trame: str
    dir: str
    files: dict[str, str]
    counts: dict[str, int]
    areas_ha: dict[str, float]
    lengths_km: dict[str, float]
    timings_s: dict[str, float]


class LayersSummary(TypedDict):
    """The assembled layers (``stage_assemble``): ``tvb.gpkg`` and rasters as ``@work/…`` paths, counts, lengths
    (km), areas (ha), timings (s)."""

    gpkg: str
    rasters: list[str]                  # friction_<sous_trame>.tif, cost_<sous_trame>.tif
    counts: dict[str, int]
    lengths_km: dict[str, float]
    areas_ha: dict[str, float]
    timings_s: dict[str, float]


class IndicatorSummary(TypedDict):
    """``stage_indicators``: the id and time the release will have, its key figures, the live release before."""

    release_id: str
    released_at: str                    # ISO 8601 UTC
    key_figures: dict[str, Any]
    previous_release: str | None


# --- publish and notify --------------------------------------------------------------------------------------------
# How a run ends: the one definition of the statuses (publish result, outcome, notifier event, CLI message, the
# "Release report" link). A live status means a release exists (the one just published, or the live one whose
# inputs the run had); a dry run wrote nothing.
LiveStatus = Literal["published", "unchanged"]
RunStatus = Literal[LiveStatus, "dry_run"]
LIVE_STATUSES: tuple[LiveStatus, ...] = get_args(LiveStatus)
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
PublishStatus = RunStatus
NotifyEvent = RunStatus


class ReleaseUrls(TypedDict):
    """Where people open a release (http(s): ``TVB_PUBLIC_BASE_URL`` / ``publish.public_base_url``, else the local
    ``tvb serve`` address)."""

    release_url: str
    report_url: str
    manifest_url: str


class PublishResult(TypedDict):
    """``stage_publish`` (``tvb_tasks.publish.publish_release``)."""

    status: PublishStatus
    release_id: str
    manifest_key: NotRequired[str]
    latest_key: NotRequired[str]
    release_url: NotRequired[str]
    report_url: NotRequired[str]
    web_url: NotRequired[str]
    files: NotRequired[int | None]
    previous_release_id: NotRequired[str | None]


class Outcome(PublishResult):
    """What a run ended with (the ``publish`` and ``notify`` tasks, ``tvb run``): the publish result plus territory
    and store; the links of a release that exists (none for a dry run, which wrote nothing)."""

    territory: str
    store_uri: str
    manifest_url: NotRequired[str]


# --- regional mosaic (dags/tvb_region.py, tvb_tasks.publish.mosaic) ----------------------------------------------
class MosaicMember(TypedDict):
    """One member territory's live release that the mosaic assembles."""

    territory: str
    release_id: str


class MosaicResult(PublishResult):
    """``stage_publish_mosaic`` (``tvb_tasks.publish.mosaic.publish_mosaic``): the publish result of the region's
    mosaic release (no ``web_url``: its page links the members' web maps) and the member releases, in order."""

    members: list[MosaicMember]


# --- tiled cost-distance (dags/tvb_observatory_tiled.py, tvb_tasks.tiled) ------------------------------------------
class TileItem(TypedDict):
    """One tile of one sous-trame to run in a round; ``sous_trame`` is ``<sous_trame>/potential`` for a tile of its
    missing links' potential (barrier-free) problem."""

    sous_trame: str
    tile: int


class TileRound(TypedDict):
    """One tile run: the tiles to run next round and the task's peak memory (MB)."""

    next: list[TileItem]
    peak_mb: float


class StitchedCost(TypedDict):
    """One stitched sous-trame: store key of ``cost.tif`` (None: no reservoir) and the reached cell count."""

    sous_trame: str
    cost: str | None
    reached: int


# --- screening (dags/tvb_screening.py) -----------------------------------------------------------------------------
class ScreeningSummary(TypedDict):
    """Return value of the screening DAG's task: where the sheet is and what the project touches."""

    territory: str
    release_id: str
    screening_id: str
    prefix: str
    keys: list[str]                     # store keys of the sheet (HTML, PDF), screening.json, emprise.gpkg
    touches_anything: bool
    summary: dict[str, Any]
    sheet_url: str
    pdf_url: str
    lines: list[str]                    # French description of what the project touches (printed, logged)

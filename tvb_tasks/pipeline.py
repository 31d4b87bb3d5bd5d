"""The pipeline's glue between the object store and the stage libraries.

Each ``stage_*`` function takes and returns small JSON-serialisable dicts (store keys, ids, counts; their shapes are
the ``TypedDict`` contracts of :mod:`tvb_tasks.contracts`), so the CLI (``tvb run``) and the Airflow tasks call exactly
the same code and only keys travel through XCom. A stage
materialises its inputs from the store into a local work folder, calls the stage library on local paths, and uploads
what it produced under ``work/<territory>/<input_key>/…`` in the store, so that tasks may run on different workers.

Order: fetch → validate sources → compute (per sous-trame) → assemble → indicators → validate outputs → publish.
A territory with ``tiling.enabled`` computes its sous-trames with the tiled stages instead (:mod:`tvb_tasks.tiled`:
plan, rounds, stitch, part; :func:`tvb_tasks.tiled.run_tiled_parts`, each task in its own process as in the DAG),
which give the same parts.
How a run ends (published, dry run, unchanged; links to the release; the event to notify) is decided here once, by
:func:`publish_outcome`, :func:`unchanged_outcome` and :func:`notify_event`, for the DAG's tasks and the CLI alike.

One territory identity per run: the fetch stage records the effective configuration it used (``run["config"]``,
the validated YAML with profile and run parameters applied, and ``run["config_hash"]``); every later stage
rebuilds the territory from that content, so a path-form ``--territory /path/x.yaml`` computes, validates and
publishes with that file's settings, and the manifest's config hash is the one the run used. A run id nonce
(``run["run_nonce"]``) makes the release id unique per run. The CLI's whole run holds a lease per territory and input
key on the work folder (:func:`work_lease`), so two runs on the same inputs never share it at the same time.

Why one module over 500 lines: it is the one API the DAG tasks and the CLI call (``tvb_dag_support.tvb_pipeline``
imports it whole), and every stage shares the same run-private helpers (work folder, store transfers, the territory
rebuilt from the run); the stage logic itself stays in the stage libraries.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from . import __version__
from .config import PROJECT_ROOT, ConfigError, Territory, load_territory
from .contracts import (
    RUN_STATUSES,
    FetchedRun,
    GateVerdict,
    IndicatorSummary,
    LayersSummary,
    MosaicResult,
    NotifyEvent,
    Outcome,
    PublishResult,
    ReleaseUrls,
    SnapshotRef,
    SousTramePart,
    ValidationVerdict,
)
from .errors import DeterministicError
from .store import LocalStore, NotFound, Store, StoreError, open_store

log = logging.getLogger(__name__)

_CODE_DIRS = ("tvb_tasks", "expectations")


class PipelineError(DeterministicError, RuntimeError):
    """A stage cannot proceed; the message says which stage and why."""


class RunInProgress(PipelineError):
    """Another run holds the lease on the same territory and input key."""


# --- identity of a run ------------------------------------------------------------------------------------------
def code_version() -> str:
    """``<package version>+<sha256[:12] of the library and suites>``: changes whenever computing code changes."""
    h = hashlib.sha256()
    for folder in _CODE_DIRS:
        base = PROJECT_ROOT / folder
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.suffix in (".py", ".json", ".html", ".js", ".css", ".yaml") \
                    and "__pycache__" not in p.parts:
                h.update(p.relative_to(PROJECT_ROOT).as_posix().encode())
                h.update(p.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def effective_territory(territory_id: str, *, profile: str | None = None, resolution_m: float | None = None,
                        sous_trames: list[str] | None = None) -> Territory:
    """Load a territory and apply run parameters (resolution override, subset of sous-trames).

    A subset only restricts what the run computes and publishes (``run_sous_trames``, YAML order): every sous-trame
    stays configured, because territory-wide inputs depend on all of them (the extra habitat sources burned into
    the class raster, the computation extent's buffer, the sous-trame a protected area is a reservoir of), so
    each chosen sous-trame's layers are those of a full run. Choosing every sous-trame is a full run (same
    configuration hash); a subset hashes differently, so a partial release never counts as "unchanged" for a full
    run nor the other way round.
    """
    territory = load_territory(territory_id, profile)
    update: dict[str, Any] = {}
    if resolution_m is not None:
        from .config import RESOLUTION_MAX_M, RESOLUTION_MIN_M

        if not RESOLUTION_MIN_M <= float(resolution_m) <= RESOLUTION_MAX_M:     # NaN fails too
            raise PipelineError(f"resolution_m must be between {RESOLUTION_MIN_M:g} and {RESOLUTION_MAX_M:g} m, "
                                f"got {resolution_m:g}")
        update["resolution_m"] = float(resolution_m)
    if sous_trames:
        unknown = sorted(set(sous_trames) - set(territory.sous_trames))
        if unknown:
            raise PipelineError(f"unknown sous-trames {unknown} for territory {territory.id} "
                                f"(known: {sorted(territory.sous_trames)})")
        if set(sous_trames) != set(territory.sous_trames):
            update["run_sous_trames"] = [k for k in territory.sous_trames if k in set(sous_trames)]
    return territory.model_copy(update=update) if update else territory


def check_runnable(territory: Territory) -> None:
    """Fail before anything is written when the configuration points at missing or unreadable files (every
    ``file`` source's path and the nomenclature CSV) or asks for tiles that cannot run
    (:func:`tvb_tasks.layers.tiles.tiling_problems`). Raises :class:`ConfigError` naming the YAML and each problem."""
    from .layers.tiles import tiling_problems
    from .validate.gate import nomenclature_codes

    problems = []
    for name, src in territory.sources.items():
        if src.kind != "file":
            continue
        if not src.path:
            problems.append(f"source {name!r}: no 'path'")
        elif not territory.resolve_path(src.path).is_file():
            problems.append(f"source {name!r}: file {src.path} not found ({territory.resolve_path(src.path)})")
    try:
        nomenclature_codes(territory)
    except (ValueError, OSError) as exc:
        problems.append(str(exc))
    problems += [f"{key}: {msg}" for key, msg in tiling_problems(territory.tiling, territory.corridors.neighbours)]
    if problems:
        raise ConfigError(f"{territory.path}: territory {territory.id!r} cannot run (nothing fetched): "
                          + "; ".join(problems))


def work_root() -> Path:
    return Path(os.environ.get("TVB_WORK_DIR", PROJECT_ROOT / "var" / "work"))


def _work_prefix(run: FetchedRun) -> str:
    return f"work/{run['territory']}/{run['input_key'][:16]}"


def _local_dir(run: FetchedRun, *parts: str) -> Path:
    d = work_root() / run["territory"] / run["input_key"][:16] / Path(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _territory(run: FetchedRun) -> Territory:
    """The territory exactly as the fetch stage used it (from ``run["config"]``; older run dicts: by id)."""
    if run.get("config") is None:
        return effective_territory(run["territory"], profile=run.get("profile"),
                                   resolution_m=run.get("resolution_m"), sous_trames=run.get("sous_trames"))
    return territory_from_run(run)


def territory_from_run(run: FetchedRun) -> Territory:
    """Rebuild the run's territory from the configuration content the fetch recorded and check its hash (which
    also covers the nomenclature file: a file edited mid-run stops the run rather than mixing two configs)."""
    try:
        territory = Territory.model_validate(run["config"])
    except Exception as exc:  # noqa: BLE001 - pydantic error: say which run
        raise PipelineError(f"run of {run.get('territory')}: the recorded configuration is not valid ({exc})") from None
    if run.get("config_hash") and territory.config_hash() != run["config_hash"]:
        raise PipelineError(
            f"run of {territory.id}: the configuration changed since the fetch (config hash "
            f"{territory.config_hash()[:12]} ≠ {run['config_hash'][:12]}; the nomenclature file "
            f"{territory.nomenclature.file} was probably edited); start a new run")
    return territory


# --- moving folders between the store and the local work dir ------------------------------------------------------
def _upload_dir(store: Store, local: Path, prefix: str) -> list[str]:
    """Upload every file under ``local`` to ``prefix/…`` (overwriting: work objects are scratch, not releases)."""
    keys = []
    for p in sorted(local.rglob("*")):
        if p.is_file():
            key = f"{prefix}/{p.relative_to(local).as_posix()}"
            if isinstance(store, LocalStore) and store.local_path(key) == p.resolve():
                keys.append(key)
                continue
            store.put_file(key, p)
            keys.append(key)
    return keys


def _fetch_dir(store: Store, prefix: str, local: Path) -> Path:
    """Make ``prefix/…`` available under ``local`` (a no-op when the local work dir is the store itself)."""
    for key in store.list(prefix + "/"):
        target = local / key[len(prefix) + 1:]
        if not target.exists():
            store.download(key, target)
    return local


def _materialize(store: Store, key: str) -> Path:
    return store.materialize(key, work_root() / "_cache")


def _snapshot_paths(store: Store, run: FetchedRun) -> dict[str, Path]:
    return {name: _materialize(store, ref["key"]) for name, ref in run["snapshots"].items()}


# --- stages -------------------------------------------------------------------------------------------------------
def stage_fetch(territory_id: str, *, store_uri: str | None = None, profile: str | None = None,
                force: bool = False, resolution_m: float | None = None,
                sous_trames: list[str] | None = None, credentials: dict[str, dict] | None = None,
                http_overrides: dict[str, float] | None = None) -> FetchedRun:
    """Fetch every source into content-addressed snapshots and compute the run's ``input_key``.

    Returns the *run* dict every later stage takes: territory, profile, store URI, parameters, snapshot refs,
    input_key and, when a release with the same inputs is already live, ``unchanged_release``. ``credentials``
    maps a source name to ``{"url", "auth", "headers"}`` (from Airflow connections); they are never stored.
    ``http_overrides`` (``timeout_s``, ``deadline_s`` …) apply to every HTTP/WFS/OSM source of this fetch.
    The run dict carries the configuration content and hash used here (see the module docstring).
    """
    from .publish import find_unchanged
    from .publish import input_key as make_input_key
    from .publish.layout import new_run_nonce
    from .sources import fetch_all

    territory = effective_territory(territory_id, profile=profile, resolution_m=resolution_m,
                                    sous_trames=sous_trames)
    check_runnable(territory)
    store = open_store(store_uri)
    snapshots = cast(dict[str, SnapshotRef], fetch_all(territory, store, force=force, credentials=credentials,
                                                        http_overrides=http_overrides))
    snapshot_ids = {name: ref["snapshot_id"] for name, ref in snapshots.items()}
    version = code_version()
    key = make_input_key(snapshot_ids, territory.config_hash(), version)     # the hash recorded in the run
    unchanged = None if force else find_unchanged(store, territory.id, key)
    changed = sorted(n for n, r in snapshots.items() if r.get("changed"))
    run: FetchedRun = {
        "territory": territory.id, "profile": territory.profile, "store_uri": store.uri,
        "config_path": territory.path, "config_hash": territory.config_hash(),
        "config": territory.model_dump(mode="json", by_alias=True), "run_nonce": new_run_nonce(),
        "resolution_m": territory.resolution_m if resolution_m is not None else None,
        "sous_trames": sorted(territory.computed_sous_trames) if sous_trames else None,
        "snapshots": snapshots, "changed_sources": changed,
        "input_key": key, "code_version": version, "force": force,
        "unchanged_release": unchanged["release_id"] if unchanged else None,
    }
    log.info("fetched %d sources for %s (changed: %s); input key %s%s", len(snapshots), territory.id,
             ", ".join(changed) or "none", key[:12],
             f"; unchanged since release {run['unchanged_release']}" if unchanged else "")
    return run


def stage_validate_sources(run: FetchedRun) -> GateVerdict:
    """Validate every source snapshot with its GX suite; raises ``ValidationFailed`` on a critical failure."""
    from .sources import previous_snapshot
    from .validate import validate_sources

    territory = _territory(run)
    store = open_store(run["store_uri"])
    paths = _snapshot_paths(store, run)
    previous: dict[str, Path | None] = {}
    for name, ref in run["snapshots"].items():
        prev = previous_snapshot(territory.id, name, store, before=ref["snapshot_id"])
        previous[name] = _materialize(store, prev["key"]) if prev else None
    out = _local_dir(run, "validation", "sources")
    summary = validate_sources(territory, paths, previous, out)
    _mark_refused(store, run, summary)
    return _gate(store, run, "sources", out, summary)


def _mark_refused(store: Store, run: FetchedRun, summary: dict) -> list[str]:
    """Mark the snapshots the gate refused as rejected, so they never become a drift baseline. Returns names."""
    from .sources import mark_rejected

    refused = []
    for name, s in sorted((summary.get("sources") or {}).items()):
        if s.get("success") is False and name in run["snapshots"]:
            reason = "; ".join(f"{f.get('expectation')}: {f.get('message') or f.get('observed_value')}"
                               for f in s.get("critical_failures") or [])
            try:
                mark_rejected(store, run["territory"], name, run["snapshots"][name]["snapshot_id"],
                              reason or "refused by the validation gate")
            except StoreError as exc:       # never hide the gate's own message behind a store error
                log.error("could not mark snapshot %s of %s as rejected: %s", run["snapshots"][name]["snapshot_id"],
                          name, exc)
            refused.append(name)
    return refused


def _gate(store: Store, run: FetchedRun, kind: str, out: Path, summary: dict) -> GateVerdict:
    """Keep a gate's results in the work prefix (even when it fails), then block on critical failures."""
    from .validate import raise_for_critical

    _upload_dir(store, out, f"{_work_prefix(run)}/validation/{kind}")
    raise_for_critical(summary)
    return cast(GateVerdict, {k: summary.get(k) for k in ("success", "critical_failures", "warnings")})


def stage_compute_sous_trame(run: FetchedRun, sous_trame: str) -> SousTramePart:
    """Habitat, reservoirs, relays, friction and cost rasters and corridors of one sous-trame."""
    from .layers import compute_sous_trame

    territory = _territory(run)
    if sous_trame not in territory.computed_sous_trames:
        raise PipelineError(f"sous-trame {sous_trame!r} is not configured for {territory.id}"
                            if sous_trame not in territory.sous_trames else
                            f"sous-trame {sous_trame!r} is not one this run of {territory.id} computes "
                            f"({list(territory.computed_sous_trames)})")
    store = open_store(run["store_uri"])
    out = _local_dir(run, "layers")
    part = compute_sous_trame(territory, _snapshot_paths(store, run), sous_trame, out)
    _upload_dir(store, out / sous_trame, f"{_work_prefix(run)}/layers/{sous_trame}")
    return cast(SousTramePart, _relativize(part, out))


_WORK_MARK = "@work/"


def _relativize(obj: Any, base: Path) -> Any:
    """Turn absolute paths under ``base`` into ``@work/<relative>`` so a result dict is portable between workers."""
    if isinstance(obj, dict):
        return {k: _relativize(v, base) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_relativize(v, base) for v in obj]
    if isinstance(obj, Path) or (isinstance(obj, str) and os.path.isabs(obj)):
        try:
            return _WORK_MARK + Path(obj).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return str(obj)
    return obj


def _absolutize(obj: Any, base: Path) -> Any:
    """Inverse of :func:`_relativize` on this worker's work folder."""
    if isinstance(obj, dict):
        return {k: _absolutize(v, base) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_absolutize(v, base) for v in obj]
    if isinstance(obj, str) and obj.startswith(_WORK_MARK):
        return str(base / obj[len(_WORK_MARK):])
    return obj


def stage_assemble(run: FetchedRun, parts: list[SousTramePart]) -> LayersSummary:
    """Merge the sous-trames, compute wet corridors and rupture points, write ``tvb.gpkg`` and the rasters."""
    from .layers import assemble

    territory = _territory(run)
    store = open_store(run["store_uri"])
    out = _local_dir(run, "layers")
    for st in territory.computed_sous_trames:
        _fetch_dir(store, f"{_work_prefix(run)}/layers/{st}", out / st)
    result = assemble(territory, _snapshot_paths(store, run), _absolutize(list(parts), out), out)
    store.put_file(f"{_work_prefix(run)}/layers/tvb.gpkg", out / "tvb.gpkg")
    _upload_dir(store, out / "rasters", f"{_work_prefix(run)}/layers/rasters")
    return cast(LayersSummary, _relativize(result, out))


def stage_indicators(run: FetchedRun) -> IndicatorSummary:
    """Key figures, fragmentation, connectivity, per commune, change since the live release, history, report."""
    from .indicators import append_history, compute_indicators
    from .indicators.history import provenance
    from .publish.layout import release_id_for, release_prefix, territory_prefix
    from .publish.release import read_latest

    territory = _territory(run)
    store = open_store(run["store_uri"])
    layers = _fetch_dir(store, f"{_work_prefix(run)}/layers", _local_dir(run, "layers"))
    out = _local_dir(run, "indicators")
    previous, _ = read_latest(store, territory.id)
    prev_gpkg = prev_ind = history = None
    if previous:
        base = release_prefix(territory.id, previous["release_id"])
        prev_gpkg = _materialize(store, f"{base}/tvb.gpkg")
        try:
            prev_ind = _materialize(store, f"{base}/indicators/indicators.json")
        except NotFound:
            prev_ind = None
    try:
        history = _materialize(store, f"{territory_prefix(territory.id)}/history/indicators.parquet")
    except NotFound:
        history = None
    snapshot_ids = {n: r["snapshot_id"] for n, r in run["snapshots"].items()}
    record = provenance(snapshot_ids, territory.config_hash(), territory.resolution_m, run.get("code_version"),
                        parameters_hash=territory.config_hash(exclude_resolution=True))
    result = compute_indicators(territory, layers / "tvb.gpkg", out, previous_gpkg=prev_gpkg,
                                previous_indicators=prev_ind, provenance=record,
                                previous_release_id=previous["release_id"] if previous else None)
    _priorities_hook(run, territory, store, layers / "tvb.gpkg", out, prev_gpkg)
    released_at = datetime.now(UTC).replace(microsecond=0)
    release_id = release_id_for(run["input_key"], released_at, nonce=run.get("run_nonce"))
    hist_dir = _local_dir(run, "history")
    append_history(history, out / "indicators.json", release_id=release_id, released_at=released_at.isoformat(),
                   snapshot_ids=snapshot_ids, out_path=hist_dir / "indicators.parquet",
                   config_hash=record["config_hash"], resolution_m=record["resolution_m"],
                   code_version=record["code_version"])
    _upload_dir(store, out, f"{_work_prefix(run)}/indicators")
    _upload_dir(store, hist_dir, f"{_work_prefix(run)}/history")
    return {"release_id": release_id, "released_at": released_at.isoformat(),
            "key_figures": result.get("key_figures", {}),
            "previous_release": previous["release_id"] if previous else None}


def _priorities_hook(run: FetchedRun, territory: Territory, store: Store, gpkg: Path, out: Path,
                     prev_gpkg: Path | None) -> dict:
    """Restoration priorities (tvb_tasks.priorities): the ``priorities`` layer into the work ``tvb.gpkg`` (uploaded
    again), their tables into the indicators folder ``out``."""
    from .priorities.stage import priorities_stage

    roles = ("projects", "maintenance")
    inputs = {name: _materialize(store, ref["key"]) for name, ref in run["snapshots"].items()
              if ref.get("key") and territory.sources.get(name) and territory.sources[name].role in roles}
    result = priorities_stage(territory, gpkg, out, inputs=inputs, previous_gpkg=prev_gpkg)
    key = f"{_work_prefix(run)}/layers/tvb.gpkg"
    if not (isinstance(store, LocalStore) and store.local_path(key) == gpkg.resolve()):
        store.put_file(key, gpkg)
    return result


def stage_validate_outputs(run: FetchedRun) -> GateVerdict:
    """Validate the computed layers and indicators (output suites); raises ``ValidationFailed`` if critical."""
    from .validate import validate_outputs

    territory = _territory(run)
    store = open_store(run["store_uri"])
    gpkg = _materialize(store, f"{_work_prefix(run)}/layers/tvb.gpkg")
    ind = _materialize(store, f"{_work_prefix(run)}/indicators/indicators.json")
    out = _local_dir(run, "validation", "outputs")
    # outline from the boundary snapshot (a WFS boundary in production has no configured file)
    ref = run["snapshots"].get(territory.boundary.source)
    boundary = _materialize(store, ref["key"]) if ref else None
    return _gate(store, run, "outputs", out, validate_outputs(territory, gpkg, ind, out, boundary=boundary))


def _full_validation(val_dir: Path) -> dict:
    """The full validation aggregates written by the two gates: {"sources": …, "outputs": …}."""
    out = {}
    for key, rel in (("sources", "sources/results.json"), ("outputs", "outputs/outputs_results.json")):
        path = val_dir / rel
        if not path.exists():
            raise PipelineError(f"publish: no {key} validation results at {path}: the gate did not run")
        out[key] = json.loads(path.read_text(encoding="utf-8"))["summary"]
    return out


def stage_publish(run: FetchedRun, indicators: IndicatorSummary, validation: ValidationVerdict | None = None, *,
                  dry_run: bool = False, crash_before_swap: bool = False) -> PublishResult:
    """Build the report, stage the release folder and publish it (create-only objects, manifest, CAS on latest).

    ``validation`` (the gates' compact verdicts) is checked again here; the full results come from the work folder.
    """
    from .publish import publish_release, stage_release
    from .publish.report import build_report
    from .validate import release_summary

    if validation is not None and validation.get("success") is False:
        raise PipelineError("publish refused: validation did not succeed")
    territory = _territory(run)
    store = open_store(run["store_uri"])
    work = _local_dir(run)
    layers = _fetch_dir(store, f"{_work_prefix(run)}/layers", work / "layers")
    ind_dir = _fetch_dir(store, f"{_work_prefix(run)}/indicators", work / "indicators")
    val_dir = _fetch_dir(store, f"{_work_prefix(run)}/validation", work / "validation")
    hist_dir = _fetch_dir(store, f"{_work_prefix(run)}/history", work / "history")
    full = _full_validation(val_dir)
    if not (full["sources"]["success"] and full["outputs"]["success"]):
        raise PipelineError("publish refused: the validation results in the work folder are not successful")
    report_dir = work / "report"
    shutil.rmtree(report_dir, ignore_errors=True)
    build_report(territory, layers / "tvb.gpkg", ind_dir, report_dir, validation_summary=full,
                 history_path=hist_dir / "indicators.parquet", release_id=indicators["release_id"],
                 inputs=_snapshot_paths(store, run))
    from .priorities.stage import fiches_stage

    fiches_stage(territory, layers / "tvb.gpkg", report_dir / "fiches", release_id=indicators["release_id"])
    staging = work / "release"
    shutil.rmtree(staging, ignore_errors=True)
    rasters = sorted((layers / "rasters").glob("*.tif"))
    stage_release(territory, staging, gpkg=layers / "tvb.gpkg", rasters=rasters, indicators_dir=ind_dir,
                  validation_dir=val_dir, report_dir=report_dir, release_id=indicators["release_id"],
                  released_at=indicators["released_at"])
    result = publish_release(
        territory, store, staging, input_key=run["input_key"], sources=cast(dict[str, dict], run["snapshots"]),
        validation=release_summary(full["sources"], full["outputs"]),
        indicators=indicators.get("key_figures", {}), code_version=run["code_version"], dry_run=dry_run,
        force=run.get("force", False), released_at=datetime.fromisoformat(indicators["released_at"]),
        crash_before_swap=crash_before_swap, release_id=indicators["release_id"])
    if result.get("status") == "published":
        _publish_history(store, territory.id, hist_dir)
    return cast(PublishResult, result)


def _publish_history(store: Store, territory_id: str, hist_dir: Path) -> None:
    """Replace the territory's indicator history with compare-and-swap (after the release pointer moved)."""
    from .publish.layout import territory_prefix

    for name in ("indicators.parquet", "indicators.csv"):
        src = hist_dir / name
        if not src.exists():
            continue
        key = f"{territory_prefix(territory_id)}/history/{name}"
        info = store.head(key)
        store.put_bytes(key, src.read_bytes(), if_match=info.etag if info else "")


# --- how a run ends (the publish and notify tasks, tvb run) -----------------------------------------------------
_LINK_KEYS = ("release_url", "report_url", "web_url", "manifest_url")


def validation_verdict(sources: GateVerdict | None, outputs: GateVerdict | None) -> ValidationVerdict:
    """Both gates' verdicts; ``success`` only when both gates returned and succeeded."""
    return {"sources": sources, "outputs": outputs,
            "success": bool(sources and sources.get("success") and outputs and outputs.get("success"))}


def release_urls(run: FetchedRun, release_id: str) -> ReleaseUrls:
    """Release folder, report and manifest URLs of ``release_id``, as ``tvb_tasks.publish`` builds them: under
    ``TVB_PUBLIC_BASE_URL`` / the territory's ``publish.public_base_url`` (an http(s) URL serving the store root)
    when set, else the local ``tvb serve`` address (the Airflow UI shows only http(s) links)."""
    from .publish.layout import release_links
    from .publish.serve import viewer_base_url

    links = release_links(open_store(run["store_uri"]), run["territory"], release_id,
                          viewer_base_url(_territory(run)))
    return {"release_url": links["release_url"], "report_url": links["report_url"],
            "manifest_url": links["manifest_url"]}

def run_outcome(run: FetchedRun, result: PublishResult) -> Outcome:
    """The publish result with the run's territory and store; a dry run loses every link (nothing was written: no
    link to a release that does not exist), a live release (published or unchanged) gets all of them."""
    outcome: dict[str, Any] = {"territory": run["territory"], "store_uri": run["store_uri"], **result}
    if outcome["status"] == "dry_run":
        for key in _LINK_KEYS:
            outcome.pop(key, None)
    elif outcome.get("release_id"):
        for key, url in release_urls(run, outcome["release_id"]).items():
            outcome.setdefault(key, url)
    return cast(Outcome, outcome)


def unchanged_outcome(run: FetchedRun, release_id: str | None = None) -> Outcome:
    """The outcome of a run whose inputs the live release ``release_id`` (default: ``run["unchanged_release"]``)
    already has: nothing computed, nothing published."""
    rid = release_id or run["unchanged_release"]
    if not rid:
        raise PipelineError(f"run of {run['territory']}: no unchanged release to report")
    return run_outcome(run, {"status": "unchanged", "release_id": rid})


def publish_outcome(run: FetchedRun, indicators: IndicatorSummary, sources: GateVerdict | None,
                    outputs: GateVerdict | None, *, dry_run: bool = False) -> Outcome:
    """Publish (or dry-run) the computed release after both gates (:func:`stage_publish`) and say how the run
    ended (:func:`run_outcome`)."""
    result = stage_publish(run, indicators, validation_verdict(sources, outputs), dry_run=dry_run)
    return run_outcome(run, result)


def finish_run(run: FetchedRun, outcome: Outcome | None, *, dry_run: bool) -> None:
    """Once a run has ended (its outcome returned by the publish step and kept: the DAG's ``notify`` task, the end
    of ``tvb run``): a published run, or one whose inputs another run published first (``unchanged``), no longer
    needs its scratch, which :func:`remove_work` deletes. A dry run keeps it (users inspect it), a failed run too (a
    retry reuses it). Not inside the publish step, so that a publish task retried after its release went live still
    finds its files (and ends ``unchanged``)."""
    if not dry_run and outcome and outcome.get("status") in ("published", "unchanged"):
        remove_work(run)


def remove_work(run: FetchedRun) -> None:
    """Delete the run's scratch in the store (``work/<territory>/<input key[:16]>/``: tiles, layers, indicators,
    validation, history) once a live release holds its outputs; nothing reads it afterwards.

    :func:`finish_run` calls it for a published (or, after a race, unchanged) run, so ``tvb run`` and the DAG's
    ``notify`` task behave alike; a dry run (users inspect the folder) and a failed run (a retry reuses it) keep it.
    A failed removal only logs a warning naming the prefix: the release is live; ``tvb releases prune`` removes
    the leftovers later (:func:`tvb_tasks.publish.retention.prune_work`)."""
    from .store import delete_prefix

    prefix = _work_prefix(run) + "/"
    try:
        store = open_store(run["store_uri"])
        n, size = delete_prefix(store, prefix)
    except Exception as exc:  # noqa: BLE001 - the release is published; the scratch left is pruned later
        log.warning("published, but the work prefix %s could not be removed (%s); `tvb releases prune` removes it "
                    "later", prefix, exc)
        return
    log.info("removed the work prefix %s of %s: %d object(s), %.1f MB", prefix, store.uri, n, size / 1e6)


def stage_publish_mosaic(region_id: str, *, store_uri: str | None = None, dry_run: bool = False,
                         force: bool = False) -> MosaicResult:
    """Publish the regional mosaic of ``config/regions/<region_id>.yaml`` from its members' live releases
    (:func:`tvb_tasks.publish.mosaic.publish_region_mosaic`; status ``unchanged`` when the live mosaic already has
    these member releases): the ``publish_mosaic`` task of ``tvb_region_<id>``."""
    from .publish.mosaic import publish_region_mosaic

    result = publish_region_mosaic(region_id, store_uri, dry_run=dry_run, force=force)
    log.info("mosaic of %s: %s %s (members %s)", region_id, result["status"], result["release_id"],
             result["members"])
    return result


def notify_event(outcome: Outcome | None) -> NotifyEvent:
    """The notifier event of a finished run: its status (``published``, ``unchanged``, ``dry_run``).

    A missing outcome (no ``publish`` XCom) or an unknown status raises :class:`PipelineError`: nothing is announced,
    least of all a publication that may not have happened (the task fails, and its failure is notified)."""
    status = outcome.get("status") if outcome else None
    for known in RUN_STATUSES:
        if status == known:
            return known
    raise PipelineError(f"no run outcome to announce (status {status!r}, expected one of {list(RUN_STATUSES)}): "
                        "the publish task returned nothing usable")


# --- lease on the work folder -------------------------------------------------------------------------------------
def lease_path(run: FetchedRun) -> Path:
    return _lease_file(run["territory"], run["input_key"][:16])


def _lease_file(territory_id: str, key16: str) -> Path:
    return work_root() / territory_id / f"{key16}.lease"


def work_leased(territory_id: str, key16: str) -> bool:
    """Whether a run on this host (same ``TVB_WORK_DIR``) holds the lease of ``work/<territory_id>/<key16>`` now
    (:func:`work_lease`). Runs on other hosts, and the DAG's tasks, hold no lease visible here: False for them."""
    path = _lease_file(territory_id, key16)
    try:
        fd = os.open(path, os.O_RDONLY)         # never creates the file
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)                            # closing releases a lock taken here
    return False


@contextlib.contextmanager
def work_lease(run: FetchedRun, *, wait_s: float = 0.0, poll_s: float = 0.5):
    """Hold the lease on ``work/<territory>/<input_key>`` for the block: an exclusive ``flock`` on a lease file.

    A second run on the same territory and inputs waits up to ``wait_s`` seconds, then raises
    :class:`RunInProgress` ("another run is working on these inputs", naming the holder's pid, host and start).
    The kernel releases the lock when the holder's process dies (even ``kill -9``), so a stale lease never blocks:
    the next run takes it over and reuses the folder. The file stays (it records the last holder).
    """
    path = lease_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in the finally below (releases the flock)
    give_up = time.monotonic() + max(0.0, wait_s)
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    fh.seek(0)
                    try:
                        holder = json.loads(fh.read() or "{}")
                    except json.JSONDecodeError:
                        holder = {}
                    who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started_at')}"
                           if holder else "holder unknown")
                    raise RunInProgress(
                        f"another run is working on these inputs ({run['territory']}, input key "
                        f"{run['input_key'][:12]}: {who}; lease {path}); "
                        + (f"waited {wait_s:g} s; wait longer with a larger --wait" if wait_s > 0 else
                           "wait for it to finish or use --wait SECONDS")) from None
                if not waited:
                    log.info("another run holds %s; waiting up to %.0f s", path, wait_s)
                    waited = True
                time.sleep(poll_s)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": datetime.now(UTC).isoformat(timespec="seconds")}))
        fh.flush()
        yield path
    finally:
        fh.close()          # closing releases the flock


# --- whole run (CLI) ----------------------------------------------------------------------------------------------
def run_pipeline(territory_id: str, *, store_uri: str | None = None, profile: str | None = None,
                 force: bool = False, dry_run: bool = False, resolution_m: float | None = None,
                 sous_trames: list[str] | None = None, http_overrides: dict[str, float] | None = None,
                 wait_s: float = 0.0) -> Outcome:
    """Run every stage in order, as the Airflow DAG does, and return how it ended (:class:`Outcome`).

    Everything after the fetch runs under :func:`work_lease` (``wait_s``: how long to wait for another run on the
    same inputs); after waiting, a run whose inputs were published meanwhile returns ``unchanged``.
    """
    from .publish import find_unchanged

    run = stage_fetch(territory_id, store_uri=store_uri, profile=profile, force=force,
                      resolution_m=resolution_m, sous_trames=sous_trames, http_overrides=http_overrides)
    if run["unchanged_release"]:
        return unchanged_outcome(run)
    with work_lease(run, wait_s=wait_s):
        unchanged = None if force else find_unchanged(open_store(run["store_uri"]), run["territory"],
                                                      run["input_key"])
        if unchanged:           # published by the run we waited for
            return unchanged_outcome(run, unchanged["release_id"])
        return _run_stages(run, dry_run=dry_run)


def _run_stages(run: FetchedRun, *, dry_run: bool) -> Outcome:
    sources = stage_validate_sources(run)
    territory = _territory(run)
    if territory.tiling.enabled:        # the tiled DAG's stages, each task in its own process (bounded as a task)
        from .tiled import run_tiled_parts

        parts = run_tiled_parts(run, list(territory.computed_sous_trames))
    else:
        parts = [stage_compute_sous_trame(run, st) for st in territory.computed_sous_trames]
    stage_assemble(run, parts)
    indicators = stage_indicators(run)
    outputs = stage_validate_outputs(run)
    outcome = publish_outcome(run, indicators, sources, outputs, dry_run=dry_run)
    finish_run(run, outcome, dry_run=dry_run)
    return outcome

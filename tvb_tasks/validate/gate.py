"""The validation gate: run the GX suites on source snapshots and published outputs, summarise, block on critical.

Nothing reaches the observatory without passing here. Each layer is read (GeoParquet snapshot or GeoPackage layer),
optionally repaired (explicit, per source), turned into a pandas frame (shapely geometries in ``geometry``, CRS in
``__crs__``) and validated with an ephemeral GX context (one per process) against the suite of its role. Run-time
values (nomenclature codes, territory outline, drift bounds from the previous snapshot…) are GX suite parameters.

``validate_*`` never raise on bad data: they return a summary (and write results JSON + Data Docs);
:func:`raise_for_critical` turns a summary with critical failures into :class:`ValidationFailed`. Configuration or
code problems (no suite for a role, a suite that would load incomplete) do raise.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd
import shapely

from tvb_tasks.errors import DeterministicError, InvalidInputError
from tvb_tasks.validate.frames import (  # noqa: F401 - also importable from here
    CRS_COLUMN,
    GEOMETRY_COLUMN,
    LANDUSE_CLASS_COLUMN,
    OUTLINE_SIMPLIFY_M,
    _nomenclature_codes,
    _outline_wkt,
    area_by_class_of,
    classify_landuse,
    configured_outline,
    crs_string,
    nomenclature_codes,
    outline_of,
    read_snapshot,
    snapshot_row_count,
    to_frame,
)
from tvb_tasks.validate.repair import repair_geometries
from tvb_tasks.validate.settings import ValidationSettings
from tvb_tasks.validate.suites import expectation_key, load_suite, read_suite_json, suite_for
from tvb_tasks.validate.summaries import (  # noqa: F401 - also importable from here
    _expected_text,
    _sample,
    _short,
    _unreadable_summary,
    _write_json,
    failure_entry,
    summarise,
)

if TYPE_CHECKING:  # pragma: no cover
    from tvb_tasks.config import Territory

log = logging.getLogger(__name__)

OUTPUT_LAYERS = ("reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors", "rupture_points",
                 "corridor_stretches", "vigilance_points")
OPTIONAL_OUTPUT_LAYERS = ("priorities",)   # validated when the GeoPackage holds them (tvb_tasks.priorities)
GX_PARTIAL_COUNT = 20         # failing values kept per expectation in the full results


class ValidationFailed(DeterministicError, RuntimeError):
    """Critical expectations failed; ``str()`` names each source, expectation, failing count and a sample."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


# --- GX context (one per process) --------------------------------------------------------------------------------
_GX: dict[str, Any] = {}
_GX_LOCK = threading.Lock()


def _batch_definition():
    """Whole-dataframe batch definition of a pandas datasource in an ephemeral GX context (created once)."""
    with _GX_LOCK:
        if "batch_definition" not in _GX:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            import tvb_tasks.validate.expectations  # noqa: F401  custom expectations must be registered

            gx_logger = logging.getLogger("great_expectations")
            if gx_logger.level == logging.NOTSET:   # GX logs much at INFO; keep task logs readable
                gx_logger.setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("tvb_layers").add_dataframe_asset("layer")
            _GX["context"] = context
            _GX["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole_layer")
        return _GX["batch_definition"]


def run_suite(suite, frame: pd.DataFrame, parameters: Mapping[str, Any]):
    """Validate ``frame`` with a GX suite; returns the ``ExpectationSuiteValidationResult``."""
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(
        suite,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": GX_PARTIAL_COUNT},
        expectation_parameters=dict(parameters),
    )


# --- severities ----------------------------------------------------------------------------------------------------
EMPTY_LAYER_KEY = "row_count_non_empty"


def source_severity_overrides(territory: Territory, settings: ValidationSettings, suite_name: str,
                              name: str) -> dict[str, str]:
    """Severity overrides of source ``name``'s suite: the ``validation:`` ones, plus ``row_count_non_empty`` at
    ``info`` for a source with ``allow_empty: true`` (an optional layer, e.g. a nature-reserve layer with no site in
    the territory: reported, not blocking), unless ``validation:`` sets it explicitly."""
    overrides: dict[str, str] = dict(settings.severity_overrides(suite_name, name))
    cfg = territory.sources.get(name)
    if cfg is not None and cfg.allow_empty and any(
            expectation_key(e) == EMPTY_LAYER_KEY for e in read_suite_json(suite_name).get("expectations") or []):
        overrides.setdefault(EMPTY_LAYER_KEY, "info")
    return overrides


# --- parameters ----------------------------------------------------------------------------------------------------
def row_count_bounds(previous_rows: int | None, drift_pct: float) -> tuple[int, int | None]:
    """(min, max) feature counts allowed vs the previous snapshot (± ``drift_pct`` %); (0, None) without one (or
    when the previous snapshot was empty: no relative bound exists)."""
    if not previous_rows:
        return 0, None
    return (max(0, math.floor(previous_rows * (1 - drift_pct / 100.0))),
            math.ceil(previous_rows * (1 + drift_pct / 100.0)))


def suite_parameters(
    territory: Territory,
    settings: ValidationSettings,
    *,
    source: str | None,
    outline: shapely.Geometry | None,
    previous_rows: int | None = None,
    previous_area_by_class: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every ``$PARAMETER`` the suites use, from the territory config (and the previous snapshot of ``source``)."""
    infra = territory.friction.infrastructure
    importance = sorted(int(k) for k in infra.roads.by_importance)
    drift = settings.row_count_drift(source) if source else settings.row_count_drift_pct
    row_min, row_max = row_count_bounds(previous_rows, drift)
    return {
        "crs": territory.crs,
        "territory_wkt": _outline_wkt(outline),
        "territory_buffer_m": settings.territory_buffer_m + OUTLINE_SIMPLIFY_M,
        "output_buffer_m": settings.output_buffer_m + OUTLINE_SIMPLIFY_M,
        "row_count_min": row_min,
        "row_count_max": row_max,
        "landuse_codes": nomenclature_codes(territory),
        "previous_area_by_class": previous_area_by_class or None,
        "area_by_class_drift_pct": settings.area_drift(source) if source else settings.area_by_class_drift_pct,
        "min_class_area_ha": settings.min_class_area_ha,
        "road_importance_min": importance[0],
        "road_importance_max": importance[-1],
        "railway_statuses": sorted(infra.railways.by_status),
        "protection_types": sorted(set(territory.protected_areas.always_reservoir)
                                   | set(territory.protected_areas.case_by_case)),
        "sous_trames": sorted(territory.computed_sous_trames),
        "vigilance_severities": [int(territory.rupture_points.vigilance_severity)],
        **_priorities_parameters(territory),
    }


def _priorities_parameters(territory: Territory) -> dict[str, Any]:
    """Value sets of the ``projects`` / ``maintenance`` source suites, from the ``priorities:`` section."""
    from tvb_tasks.priorities.config import priorities_config

    cfg = priorities_config(territory)
    return {"project_types": list(cfg.project_types), "project_stages": sorted(cfg.conflict.stage_weights),
            "maintenance_kinds": list(cfg.maintenance_kinds)}


# --- one layer -------------------------------------------------------------------------------------------------
def _validate_frame(
    *, label: str, suite_name: str, frame: pd.DataFrame, parameters: dict, overrides: Mapping[str, str],
    settings: ValidationSettings, results_path: Path, docs_dir: Path | None, docs_name: str, extra: dict,
) -> tuple[dict, dict]:
    """Run one suite on one frame, write its results JSON (+ Data Docs page); returns (summary, result JSON)."""
    from tvb_tasks.validate.report import write_data_docs_page

    suite = load_suite(suite_name, overrides)
    id_column = (suite.meta or {}).get("id_column")
    result = run_suite(suite, frame, parameters)
    result_json = result.to_json_dict()
    summary = summarise(result_json, source=label, suite=suite_name, frame=frame, id_column=id_column,
                        sample_size=settings.sample_size)
    summary.update(extra)
    summary["results_path"] = str(results_path)
    if docs_dir is not None:
        summary["docs_path"] = str(write_data_docs_page(result, docs_dir / f"{docs_name}.html"))
    _write_json(results_path, {"summary": summary, "result": result_json})
    level = logging.INFO if summary["success"] else logging.ERROR
    log.log(level, "validation %s (suite %s): %s, %d critical, %d warnings, %d expectations", label, suite_name,
            "passed" if summary["success"] else "FAILED", len(summary["critical_failures"]),
            len(summary["warnings"]), summary["evaluated"])
    return summary, result_json


def source_role(territory: Territory, name: str) -> str:
    """Role of a configured source, or of a layer derived from an ``osm`` source (``<osm source>_roads`` …);
    raises ``ValueError`` naming the known sources otherwise."""
    if name in territory.sources:
        return territory.sources[name].role
    from tvb_tasks.sources.osm import DERIVED_ROLES

    for parent, cfg in territory.sources.items():
        if cfg.kind == "osm" and name.startswith(parent + "_") and name[len(parent) + 1:] in DERIVED_ROLES:
            return DERIVED_ROLES[name[len(parent) + 1:]]
    raise InvalidInputError(f"source {name!r} is not configured for territory {territory.id} "
                            f"(known: {sorted(territory.sources)})")


def validate_source(
    territory: Territory,
    name: str,
    path: Path,
    *,
    previous_path: Path | None,
    out_dir: Path,
    boundary: Any = None,
) -> dict:
    """Validate the GeoParquet snapshot ``path`` of source ``name`` with the suite of its role.

    ``previous_path``: the previous snapshot of the same source (row-count and land-use area drift), or ``None``.
    ``boundary``: territory outline (path, GeoDataFrame or shapely geometry in the territory CRS); by default the
    boundary source's file from the YAML. Writes ``out_dir/sources/<name>.json`` (summary + full GX result) and
    ``out_dir/data_docs/source-<name>.html``. Returns ``{"source", "suite", "success", "critical_failures",
    "warnings", "evaluated", "successful", "results_path", "docs_path", "row_count", "repaired_geometries",
    "previous_row_count"}``; never raises on bad data (see :func:`raise_for_critical`).
    """
    role = source_role(territory, name)
    out_dir = Path(out_dir)
    suite_name = suite_for("source", role)
    settings = territory.validation
    results_path = out_dir / "sources" / f"{name}.json"
    try:
        gdf = read_snapshot(path)
    except ValueError as exc:
        summary = _unreadable_summary(name, suite_name, f"source {name!r}: {exc}")
        summary["results_path"] = str(results_path)
        _write_json(results_path, {"summary": summary, "result": None})
        return summary

    repaired = 0
    if settings.for_source(name).repair_geometries:
        gdf, repaired = repair_geometries(gdf, name)
    frame = to_frame(gdf)
    if role == "communes":
        renames = {territory.communes.id_column: "insee", territory.communes.name_column: "nom"}
        frame = frame.rename(columns={k: v for k, v in renames.items() if k != v and v not in frame.columns})

    previous_rows = previous_area = None
    if role == "landuse":
        frame[LANDUSE_CLASS_COLUMN] = classify_landuse(frame, territory.landuse)
    if previous_path is not None:
        try:
            previous_rows = snapshot_row_count(Path(previous_path))
            if role == "landuse":
                prev = to_frame(read_snapshot(Path(previous_path)))
                prev[LANDUSE_CLASS_COLUMN] = classify_landuse(prev, territory.landuse)
                previous_area = area_by_class_of(prev)
        except Exception as exc:  # noqa: BLE001 - a broken previous snapshot must not hide the current checks
            log.warning("validation %s: previous snapshot %s unreadable (%s); drift not checked", name,
                        previous_path, exc)
            previous_rows = previous_area = None

    outline = None
    if role != "boundary":
        try:
            outline = outline_of(boundary, territory.crs) if boundary is not None else configured_outline(territory)
        except Exception as exc:  # noqa: BLE001 - reported through the failing territory expectation
            log.error("validation %s: territory outline unreadable (%s)", name, exc)
        if outline is None:
            log.error("validation %s: no territory outline; every feature fails the territory check", name)
    parameters = suite_parameters(territory, settings, source=name, outline=outline,
                                  previous_rows=previous_rows, previous_area_by_class=previous_area)
    summary, _ = _validate_frame(
        label=name, suite_name=suite_name, frame=frame, parameters=parameters,
        overrides=source_severity_overrides(territory, settings, suite_name, name), settings=settings,
        results_path=results_path, docs_dir=out_dir / "data_docs", docs_name=f"source-{name}",
        extra={"role": role, "row_count": int(len(frame)), "repaired_geometries": repaired,
               "previous_row_count": previous_rows},
    )
    return summary


def _aggregate(summaries: dict[str, dict], results_path: Path, docs_path: Path | None) -> dict:
    return {
        "success": all(s["success"] for s in summaries.values()),
        "sources": summaries,
        "critical_failures": sum(len(s["critical_failures"]) for s in summaries.values()),
        "warnings": sum(len(s["warnings"]) for s in summaries.values()),
        "results_path": str(results_path),
        "docs_path": str(docs_path) if docs_path else None,
    }


def validate_sources(
    territory: Territory,
    paths: dict[str, Path],
    previous: dict[str, Path | None],
    out_dir: Path,
) -> dict:
    """Validate every source snapshot in ``paths`` ({source name: GeoParquet}); never raises on bad data.

    The outline for the "within territory" checks is the boundary source's snapshot when it is in ``paths``, else
    its file from the YAML. Writes ``out_dir/results.json`` (summary + every GX result), per-source files under
    ``out_dir/sources/`` and Data Docs under ``out_dir/data_docs/`` (``index.html``). Returns ``{"success",
    "sources": {name: summary}, "critical_failures": n, "warnings": n, "results_path", "docs_path"}``.
    """
    from tvb_tasks.validate.report import write_docs_index

    out_dir = Path(out_dir)
    boundary_name = territory.boundary.source
    outline = None
    if boundary_name in paths:
        try:
            outline = outline_of(read_snapshot(Path(paths[boundary_name])), territory.crs)
        except ValueError as exc:
            log.error("validation: boundary snapshot unreadable (%s); falling back to the configured file", exc)
    if outline is None:
        outline = configured_outline(territory)
    summaries: dict[str, dict] = {}
    for name in paths:
        summaries[name] = validate_source(territory, name, Path(paths[name]), previous_path=previous.get(name),
                                          out_dir=out_dir, boundary=outline)
    results_path = out_dir / "results.json"
    results = {}
    for name, summary in summaries.items():
        per_source = json.loads(Path(summary["results_path"]).read_text(encoding="utf-8"))
        results[name] = per_source.get("result")
    aggregate = _aggregate(summaries, results_path, out_dir / "data_docs" / "index.html")
    _write_json(results_path, {"kind": "sources", "territory": territory.id, "summary": aggregate,
                               "results": results})
    write_docs_index(out_dir)
    return aggregate


# --- outputs -------------------------------------------------------------------------------------------------------
def indicators_frame(indicators: dict) -> pd.DataFrame:
    """One-row frame, one column per key figure of ``indicators["key_figures"]`` (no row if it is missing)."""
    figures = indicators.get("key_figures") if isinstance(indicators, dict) else None
    if not isinstance(figures, dict):
        return pd.DataFrame()
    return pd.DataFrame([{str(k): v for k, v in figures.items()}])


def validate_outputs(
    territory: Territory,
    gpkg: Path,
    indicators_json: Path | None,
    out_dir: Path,
    *,
    boundary: Any = None,
) -> dict:
    """Validate the published layers of ``gpkg`` (reservoirs, relays, corridors, corridor_areas, wet_corridors,
    rupture_points, corridor_stretches, vigilance_points)
    and ``indicators_json`` with the output suites; never raises on bad data.

    Writes ``out_dir/outputs_results.json``, per-layer files under ``out_dir/outputs/`` and Data Docs pages under
    ``out_dir/data_docs/`` (the ``index.html`` lists sources and outputs when both were validated in ``out_dir``).
    Returns ``{"success", "sources": {layer: summary}, "critical_failures", "warnings", "results_path",
    "docs_path"}`` (``"sources"`` holds the layers, so the shape is that of :func:`validate_sources`).
    """
    from tvb_tasks.validate.report import write_docs_index

    out_dir = Path(out_dir)
    gpkg = Path(gpkg)
    settings = territory.validation
    outline = outline_of(boundary, territory.crs) if boundary is not None else configured_outline(territory)
    parameters = suite_parameters(territory, settings, source=None, outline=outline)
    summaries: dict[str, dict] = {}
    results: dict[str, Any] = {}
    layers: set[str] = set()
    if gpkg.exists():
        import pyogrio

        try:
            layers = {str(row[0]) for row in pyogrio.list_layers(gpkg)}
        except Exception as exc:  # noqa: BLE001
            log.error("validation: %s is not a readable GeoPackage: %s", gpkg, exc)
    for layer in OUTPUT_LAYERS + tuple(n for n in OPTIONAL_OUTPUT_LAYERS if n in layers):
        suite_name = suite_for("output", layer)
        results_path = out_dir / "outputs" / f"{layer}.json"
        if layer not in layers:
            problem = (f"output {gpkg} does not exist" if not gpkg.exists()
                       else f"layer {layer!r} missing from {gpkg} (layers: {sorted(layers)})")
            summary = _unreadable_summary(layer, suite_name, problem, "layer_exists")
            summary["results_path"] = str(results_path)
            _write_json(results_path, {"summary": summary, "result": None})
            summaries[layer], results[layer] = summary, None
            continue
        frame = to_frame(gpd.read_file(gpkg, layer=layer))
        summaries[layer], results[layer] = _validate_frame(
            label=layer, suite_name=suite_name, frame=frame, parameters=parameters,
            overrides=settings.severity_overrides(suite_name), settings=settings, results_path=results_path,
            docs_dir=out_dir / "data_docs", docs_name=f"output-{layer}", extra={"row_count": int(len(frame))},
        )
    suite_name = suite_for("output", "indicators")
    results_path = out_dir / "outputs" / "indicators.json"
    indicators: Any = None
    unreadable: str | None = None
    if indicators_json is None or not Path(indicators_json).exists():
        unreadable = f"indicators file {indicators_json} does not exist"
    else:
        try:
            indicators = json.loads(Path(indicators_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            unreadable = f"indicators file {indicators_json} is not valid JSON: {exc}"
    if unreadable:
        summary = _unreadable_summary("indicators", suite_name, unreadable)
        summary["results_path"] = str(results_path)
        _write_json(results_path, {"summary": summary, "result": None})
        summaries["indicators"], results["indicators"] = summary, None
    else:
        summaries["indicators"], results["indicators"] = _validate_frame(
            label="indicators", suite_name=suite_name, frame=indicators_frame(indicators), parameters=parameters,
            overrides=settings.severity_overrides(suite_name), settings=settings, results_path=results_path,
            docs_dir=out_dir / "data_docs", docs_name="output-indicators", extra={},
        )
    results_path = out_dir / "outputs_results.json"
    aggregate = _aggregate(summaries, results_path, out_dir / "data_docs" / "index.html")
    _write_json(results_path, {"kind": "outputs", "territory": territory.id, "summary": aggregate,
                               "results": results})
    write_docs_index(out_dir)
    return aggregate


def release_summary(sources: dict | None, outputs: dict | None) -> dict:
    """Compact validation block for a release ``manifest.json`` from the summaries of :func:`validate_sources`
    and :func:`validate_outputs` (either may be ``None``): verdicts, counts and the failing expectations."""
    import great_expectations as gx

    def block(summary: dict | None) -> dict | None:
        if summary is None:
            return None
        return {
            "success": bool(summary["success"]),
            "critical_failures": int(summary["critical_failures"]),
            "warnings": int(summary["warnings"]),
            "layers": {
                name: {"suite": s["suite"], "success": s["success"], "evaluated": s.get("evaluated", 0),
                       "critical": [f["expectation"] for f in s["critical_failures"]],
                       "warnings": [f["expectation"] for f in s["warnings"]],
                       **({"repaired_geometries": s["repaired_geometries"]} if s.get("repaired_geometries") else {})}
                for name, s in summary["sources"].items()
            },
        }

    blocks = {"sources": block(sources), "outputs": block(outputs)}
    return {
        "success": all(b["success"] for b in blocks.values() if b is not None),
        "engine": f"great_expectations {gx.__version__}",
        **blocks,
    }


# --- the gate ------------------------------------------------------------------------------------------------------
def _iter_source_summaries(summary: dict) -> list[dict]:
    if "sources" in summary and isinstance(summary["sources"], dict):
        return list(summary["sources"].values())
    return [summary]


def failure_message(summary: dict) -> str:
    """Readable text of the critical failures of a (single or aggregate) summary; ``""`` if there are none."""
    lines: list[str] = []
    failing_sources = 0
    for source in _iter_source_summaries(summary):
        failures = source.get("critical_failures") or []
        if not failures:
            continue
        failing_sources += 1
        for f in failures:
            line = (f"  - source {source.get('source')!r} (suite {source.get('suite')}): {f['expectation']}: "
                    f"{f.get('message', '')}")
            if f.get("sample"):
                line += f"; sample: {'; '.join(str(s) for s in f['sample'])}"
            lines.append(line)
    if not lines:
        return ""
    return (f"validation failed: {len(lines)} critical expectation(s) failed in {failing_sources} source(s)\n"
            + "\n".join(lines))


def raise_for_critical(summary: dict) -> None:
    """Raise :class:`ValidationFailed` (message naming source, expectation, failing count and a sample) when the
    summary of :func:`validate_sources`, :func:`validate_outputs` or :func:`validate_source` has critical failures."""
    message = failure_message(summary)
    if message:
        raise ValidationFailed(message, summary)

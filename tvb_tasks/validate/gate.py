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

import csv
import json
import logging
import math
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tvb_tasks.errors import DeterministicError
from tvb_tasks.validate.repair import repair_geometries
from tvb_tasks.validate.settings import ValidationSettings, validation_settings
from tvb_tasks.validate.suites import expectation_key, load_suite, read_suite_json, suite_for

if TYPE_CHECKING:  # pragma: no cover
    from tvb_tasks.config import Territory

log = logging.getLogger(__name__)

CRS_COLUMN = "__crs__"            # same names as in expectations.py (not imported here: it imports GX)
GEOMETRY_COLUMN = "geometry"
LANDUSE_CLASS_COLUMN = "__landuse_class__"
OUTPUT_LAYERS = ("reservoirs", "relays", "corridors", "corridor_areas", "wet_corridors", "rupture_points")
OPTIONAL_OUTPUT_LAYERS = ("priorities",)   # validated when the GeoPackage holds them (tvb_tasks.priorities)
OUTLINE_SIMPLIFY_M = 1.0      # the outline passed to GX is simplified by this; the buffers are widened by as much
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


# --- inputs -> frames ----------------------------------------------------------------------------------------------
def crs_string(crs: Any) -> str:
    """``EPSG:xxxx`` when the CRS has an authority code, else its WKT; ``""`` when unknown."""
    if crs is None:
        return ""
    return crs.to_string() if hasattr(crs, "to_string") else str(crs)


def to_frame(gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """Plain pandas frame for GX: attributes, shapely geometries in ``geometry``, the layer CRS in ``__crs__``.

    The index is reset to row positions, so GX's unexpected index lists are positions into ``gdf``.
    """
    geometry_name = gdf.geometry.name
    attrs = pd.DataFrame(gdf.drop(columns=[geometry_name])).reset_index(drop=True)
    attrs = attrs.drop(columns=[c for c in (GEOMETRY_COLUMN, CRS_COLUMN) if c in attrs.columns])
    attrs[GEOMETRY_COLUMN] = np.asarray(gdf.geometry.values, dtype=object)
    attrs[CRS_COLUMN] = crs_string(gdf.crs)
    return attrs


def read_snapshot(path: Path) -> gpd.GeoDataFrame:
    """A GeoParquet snapshot; raises ``ValueError`` naming the file when it is missing or not GeoParquet."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"snapshot {path} does not exist")
    try:
        return gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow / geopandas raise many types
        raise ValueError(f"snapshot {path} is not a readable GeoParquet file: {exc}") from exc


def snapshot_row_count(path: Path) -> int:
    """Number of rows of a (Geo)Parquet file from its metadata (no data read)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


@lru_cache(maxsize=8)
def _nomenclature_codes(path: str, column: str, mtime_ns: int) -> tuple[str, ...]:
    # errors name the file and the column, never its content (it may be any file, e.g. /etc/passwd)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if column not in (reader.fieldnames or []):
                raise ValueError(f"nomenclature {path}: no column {column!r} in its header line (expected a CSV "
                                 f"with a {column!r} column: check nomenclature.file and code_column)")
            codes = sorted({(row[column] or "").strip() for row in reader} - {""})
    except UnicodeDecodeError as exc:
        raise ValueError(f"nomenclature {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise ValueError(f"nomenclature {path}: not a readable CSV (line {getattr(exc, 'line_num', '?')})") from None
    if not codes:
        raise ValueError(f"nomenclature {path}: column {column!r} holds no code")
    return tuple(codes)


def nomenclature_codes(territory: "Territory") -> list[str]:
    """Valid land-use codes: the ``nomenclature.code_column`` of the territory's nomenclature CSV."""
    path = territory.resolve_path(territory.nomenclature.file)
    if not path.exists():
        raise ValueError(f"nomenclature file {path} (territory {territory.id}) does not exist")
    from ..config import check_regular_file

    check_regular_file(path, f"nomenclature file {path} (territory {territory.id})")
    return list(_nomenclature_codes(str(path), territory.nomenclature.code_column, path.stat().st_mtime_ns))


def classify_landuse(frame: pd.DataFrame, landuse: Any) -> pd.Series:
    """Land-use class per row from the territory rules (first match wins; a rule matches when every given column
    starts with its code prefix); unmatched rows get ``default_class`` (``"<unclassified>"`` if none)."""
    result = pd.Series(landuse.default_class or "<unclassified>", index=frame.index, dtype=object)
    assigned = np.zeros(len(frame), dtype=bool)
    for rule in landuse.rules:
        mask = ~assigned
        for column, prefix in rule.codes.items():
            if column not in frame.columns:
                mask = np.zeros(len(frame), dtype=bool)
                break
            values = frame[column].astype(object).where(frame[column].notna(), "").astype(str)
            mask &= values.str.startswith(str(prefix)).to_numpy()
        result[mask] = rule.class_
        assigned |= mask
    return result


def area_by_class_of(frame: pd.DataFrame) -> dict[str, float]:
    from tvb_tasks.validate.expectations import area_by_class

    return area_by_class(frame, GEOMETRY_COLUMN, LANDUSE_CLASS_COLUMN)


def outline_of(boundary: Any, crs: str) -> shapely.Geometry | None:
    """Territory outline (union of the boundary layer) in ``crs`` from a path (GeoParquet / any OGR file), a
    GeoDataFrame or a shapely geometry (assumed in ``crs``); ``None`` if ``boundary`` is ``None``."""
    if boundary is None:
        return None
    if isinstance(boundary, shapely.Geometry):
        return boundary
    if not isinstance(boundary, gpd.GeoDataFrame):
        path = Path(boundary)
        boundary = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    if boundary.crs is not None and crs:
        boundary = boundary.to_crs(crs)
    geoms = boundary.geometry.dropna()
    return shapely.union_all(np.asarray(shapely.make_valid(geoms.values), dtype=object)) if len(geoms) else None


def configured_outline(territory: "Territory") -> shapely.Geometry | None:
    """Outline read from the boundary source's file in the YAML (file sources only), else ``None``."""
    source = territory.sources.get(territory.boundary.source)
    if source is None or source.kind != "file" or not source.path:
        return None
    path = territory.resolve_path(source.path)
    if not path.exists():
        return None
    if path.suffix == ".parquet":
        return outline_of(path, territory.crs)
    return outline_of(gpd.read_file(path, layer=source.layer), territory.crs)


def _outline_wkt(outline: shapely.Geometry | None) -> str | None:
    if outline is None or outline.is_empty:
        return None
    return shapely.to_wkt(shapely.simplify(outline, OUTLINE_SIMPLIFY_M), rounding_precision=2)


# --- severities ----------------------------------------------------------------------------------------------------
EMPTY_LAYER_KEY = "row_count_non_empty"


def source_severity_overrides(territory: "Territory", settings: ValidationSettings, suite_name: str,
                              name: str) -> dict[str, str]:
    """Severity overrides of source ``name``'s suite: the ``validation:`` ones, plus ``row_count_non_empty`` at
    ``info`` for a source with ``allow_empty: true`` (an optional layer, e.g. a nature-reserve layer with no site in
    the territory: reported, not blocking), unless ``validation:`` sets it explicitly."""
    overrides = dict(settings.severity_overrides(suite_name, name))
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
    territory: "Territory",
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
        "sous_trames": sorted(territory.sous_trames),
        **_priorities_parameters(territory),
    }


def _priorities_parameters(territory: "Territory") -> dict[str, Any]:
    """Value sets of the ``projects`` / ``maintenance`` source suites, from the ``priorities:`` section."""
    from tvb_tasks.priorities.config import priorities_config

    cfg = priorities_config(territory)
    return {"project_types": list(cfg.project_types), "project_stages": sorted(cfg.conflict.stage_weights),
            "maintenance_kinds": list(cfg.maintenance_kinds)}


# --- summaries -----------------------------------------------------------------------------------------------------
def _short(value: Any, limit: int = 160) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample(result: dict, frame: pd.DataFrame | None, id_column: str | None, size: int) -> list[str]:
    values = list(result.get("partial_unexpected_list") or [])
    index = list(result.get("partial_unexpected_index_list") or [])
    details = result.get("details") or {}
    if not values and isinstance(details.get("mismatched"), dict):
        missing = details["mismatched"].get("missing") or []
        return [f"missing column {c!r}" for c in missing[:size]]
    if not values and details.get("non_numeric_columns"):
        return [f"not a number: {c!r}" for c in details["non_numeric_columns"][:size]]
    out = []
    for i, value in enumerate(values[:size]):
        label = ""
        if i < len(index) and isinstance(index[i], (int, np.integer)) and frame is not None:
            pos = int(index[i])
            if id_column and id_column in frame.columns and 0 <= pos < len(frame):
                label = f"{id_column}={frame[id_column].iloc[pos]!s}: "
            else:
                label = f"row {pos}: "
        out.append(f"{label}{_short(value, 120)}")
    return out


def _expected_text(kwargs: dict) -> str:
    """What the expectation asked for, briefly (long value sets are counted, not listed)."""
    parts = []
    for key in ("value", "min_value", "max_value", "value_set", "column_set", "crs", "geometry_types",
                "max_drift_pct", "predicate", "buffer_m"):
        value = kwargs.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and len(value) > 6:
            shown = ", ".join(str(v) for v in value[:3])
            parts.append(f"{key}=<{len(value)} values: {shown}, …>")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{key}=[{', '.join(str(v) for v in value)}]")
        else:
            parts.append(f"{key}={_short(value, 80)}")
    if "buffer_m" in kwargs and "predicate" not in kwargs:
        parts.insert(len(parts) - 1, "predicate=intersects")
    return ", ".join(parts)


def failure_entry(result: dict, frame: pd.DataFrame | None, id_column: str | None, sample_size: int) -> dict:
    """One failed expectation, compact (for summaries / manifest): key, count, observed value, sample, message."""
    config = result.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id", "territory_wkt")}
    res = result.get("result") or {}
    exception = [v.get("exception_message") for v in (result.get("exception_info") or {}).values()
                 if isinstance(v, dict) and v.get("raised_exception")]
    if (result.get("exception_info") or {}).get("raised_exception"):
        exception.append(result["exception_info"].get("exception_message"))
    key = (config.get("meta") or {}).get("key") or expectation_key(config)
    entry = {
        "expectation": key,
        "type": config.get("type"),
        "column": kwargs.get("column"),
        "severity": str(config.get("severity") or "critical"),
        "unexpected_count": res.get("unexpected_count"),
        "element_count": res.get("element_count"),
        "observed_value": _short(res.get("observed_value")),
        "sample": _sample(res, frame, id_column, sample_size),
    }
    if exception:
        entry["message"] = f"could not be evaluated: {_short(exception[0], 200)}"
        entry["sample"] = entry["sample"] or [_short(exception[0], 200)]
    elif entry["unexpected_count"] is not None and entry["element_count"] is not None and kwargs.get("column"):
        entry["message"] = f"{entry['unexpected_count']} of {entry['element_count']} rows fail"
    elif entry["unexpected_count"] is not None:
        entry["message"] = f"{entry['unexpected_count']} failing item(s); observed {entry['observed_value']}"
    else:
        entry["message"] = f"observed {entry['observed_value']}"
    expected = _expected_text(kwargs)
    if expected:
        entry["message"] += f" (expected {expected})"
    return entry


def summarise(
    result_json: dict,
    *,
    source: str,
    suite: str,
    frame: pd.DataFrame | None,
    id_column: str | None,
    sample_size: int,
) -> dict:
    """Summary of a suite result: success (no critical failure), critical failures, warnings (+ info), counts."""
    critical, warnings = [], []
    for result in result_json.get("results", []):
        if result.get("success"):
            continue
        entry = failure_entry(result, frame, id_column, sample_size)
        (critical if entry["severity"] == "critical" else warnings).append(entry)
    stats = result_json.get("statistics") or {}
    return {
        "source": source,
        "suite": suite,
        "success": not critical,
        "critical_failures": critical,
        "warnings": warnings,
        "evaluated": int(stats.get("evaluated_expectations") or 0),
        "successful": int(stats.get("successful_expectations") or 0),
    }


def _unreadable_summary(source: str, suite: str, problem: str, expectation: str = "layer_readable") -> dict:
    entry = {"expectation": expectation, "type": None, "column": None, "severity": "critical",
             "unexpected_count": None, "element_count": None, "observed_value": None, "sample": [problem],
             "message": problem}
    return {"source": source, "suite": suite, "success": False, "critical_failures": [entry], "warnings": [],
            "evaluated": 0, "successful": 0}


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


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


def source_role(territory: "Territory", name: str) -> str:
    """Role of a configured source, or of a layer derived from an ``osm`` source (``<osm source>_roads`` …);
    raises ``ValueError`` naming the known sources otherwise."""
    if name in territory.sources:
        return territory.sources[name].role
    from tvb_tasks.sources.osm import DERIVED_ROLES

    for parent, cfg in territory.sources.items():
        if cfg.kind == "osm" and name.startswith(parent + "_") and name[len(parent) + 1:] in DERIVED_ROLES:
            return DERIVED_ROLES[name[len(parent) + 1:]]
    raise ValueError(f"source {name!r} is not configured for territory {territory.id} "
                     f"(known: {sorted(territory.sources)})")


def validate_source(
    territory: "Territory",
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
    settings = validation_settings(territory)
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
    territory: "Territory",
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
    territory: "Territory",
    gpkg: Path,
    indicators_json: Path | None,
    out_dir: Path,
    *,
    boundary: Any = None,
) -> dict:
    """Validate the published layers of ``gpkg`` (reservoirs, relays, corridors, corridor_areas, wet_corridors,
    rupture_points)
    and ``indicators_json`` with the output suites; never raises on bad data.

    Writes ``out_dir/outputs_results.json``, per-layer files under ``out_dir/outputs/`` and Data Docs pages under
    ``out_dir/data_docs/`` (the ``index.html`` lists sources and outputs when both were validated in ``out_dir``).
    Returns ``{"success", "sources": {layer: summary}, "critical_failures", "warnings", "results_path",
    "docs_path"}`` (``"sources"`` holds the layers, so the shape is that of :func:`validate_sources`).
    """
    from tvb_tasks.validate.report import write_docs_index

    out_dir = Path(out_dir)
    gpkg = Path(gpkg)
    settings = validation_settings(territory)
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
    problem = None
    if indicators_json is None or not Path(indicators_json).exists():
        problem = f"indicators file {indicators_json} does not exist"
    else:
        try:
            indicators = json.loads(Path(indicators_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            problem = f"indicators file {indicators_json} is not valid JSON: {exc}"
    if problem:
        summary = _unreadable_summary("indicators", suite_name, problem)
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

"""Custom Great Expectations (GX 1.x) expectations for geospatial layers.

GX has no notion of geometry, so these are real GX custom expectations (subclasses of ``ColumnMapExpectation`` with a
``ColumnMapMetricProvider``, or of ``BatchExpectation`` with a ``TableMetricProvider``) for the pandas engine.
Importing this module registers them in GX's expectation and metric registries (the ``MetaExpectation`` /
``MetaMetricProvider`` metaclasses do it at class creation); :func:`tvb_tasks.validate.suites.load_suite` imports it
before building any suite.

Conventions of the validation frame (see :func:`tvb_tasks.validate.gate.to_frame`):

* the geometry column (``geometry``) holds shapely geometries (WKB ``bytes`` are accepted too), one per row;
* the layer's CRS, a batch-level property, is carried in the constant column ``__crs__`` (``""`` if unknown);
* coordinates are metres in the territory CRS (EPSG:2154 inside the pipeline); areas are reported in hectares.

Unexpected geometries are reported as short descriptions (validity reason, type, bounding box…), never as full WKT,
so results JSON and Data Docs stay readable.
"""
# Over 500 lines on purpose: importing this one module registers every custom metric and expectation with GX. Split
# over several modules, a suite could load with some of them unregistered, and GX then drops those expectations and
# the suite passes (a known pitfall); one module keeps "imported" equal to "all registered".
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Any, ClassVar, Literal, cast

import numpy as np
import pandas as pd
import shapely
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import ExecutionEngine, PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation, ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from pyproj import CRS
from pyproj.exceptions import CRSError

from tvb_tasks.errors import InvalidInputError

CRS_COLUMN = "__crs__"
GEOMETRY_COLUMN = "geometry"
M2_PER_HA = 10_000.0

_LIBRARY_METADATA: dict[str, Any] = {
    "maturity": "production",
    "tags": ["geospatial", "tvb"],
    "contributors": ["tvb-observatory"],
    "requirements": ["shapely>=2", "pyproj"],
    "has_full_test_suite": True,
    "manually_reviewed_code": True,
}


# --- helpers -----------------------------------------------------------------------------------------------------
def as_geometry_array(values: Any) -> np.ndarray:
    """Object array of shapely geometries from shapely objects or WKB bytes (``None`` stays ``None``)."""
    arr = np.asarray(values, dtype=object)
    if arr.size and any(isinstance(v, (bytes, bytearray, memoryview)) for v in arr):
        arr = np.array(
            [shapely.from_wkb(bytes(v)) if isinstance(v, (bytes, bytearray, memoryview)) else v for v in arr],
            dtype=object,
        )
    bad = [type(v).__name__ for v in arr if v is not None and not isinstance(v, shapely.Geometry)]
    if bad:
        raise TypeError(f"geometry column holds non-geometry values of type {sorted(set(bad))}")
    return arr


@lru_cache(maxsize=8)
def _prepared_territory(territory_wkt: str, buffer_m: float) -> shapely.Geometry:
    """Territory outline (WKT, territory CRS) buffered by ``buffer_m`` metres, prepared for fast predicates."""
    geom = shapely.from_wkt(territory_wkt)
    if buffer_m:
        geom = shapely.buffer(geom, float(buffer_m))
    shapely.prepare(geom)
    return geom


def _bbox(geom: shapely.Geometry) -> str:
    if geom is None or geom.is_empty:
        return "EMPTY"
    xmin, ymin, xmax, ymax = geom.bounds
    return f"({xmin:.0f}, {ymin:.0f}, {xmax:.0f}, {ymax:.0f})"


def crs_matches(observed: str, expected: str) -> bool:
    """True when two CRS definitions (``EPSG:2154``, WKT, PROJ…) denote the same CRS (axis order ignored)."""
    if not observed:
        return False
    try:
        return CRS.from_user_input(observed).equals(CRS.from_user_input(expected), ignore_axis_order=True)
    except CRSError:
        return False


class _Prescriptive:
    """Data Docs sentence for a custom expectation: ``_TEMPLATE`` with ``$kwarg`` placeholders (legacy renderer)."""

    _TEMPLATE: ClassVar[str] = ""

    @classmethod
    def _template_params(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in kwargs.items() if k not in ("batch_id", "territory_wkt")}
        fields = getattr(cls, "__fields__", {})
        for name in re.findall(r"\$(\w+)", cls._TEMPLATE):   # GX drops kwargs equal to their default
            if name not in params and name in fields and fields[name].default is not None:
                params[name] = fields[name].default
        for key, value in params.items():
            if isinstance(value, (list, tuple)):
                params[key] = ", ".join(str(v) for v in value)
            elif isinstance(value, dict):
                params[key] = "suite parameter" if "$PARAMETER" in value else f"{len(value)} entries"
        return params

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None, **kwargs):
        config = configuration or (result.expectation_config if result is not None else None)
        params = cls._template_params(dict(config.kwargs) if config is not None else {})
        return [RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": cls._TEMPLATE, "params": params,
                             "styling": (runtime_configuration or {}).get("styling")},
        )]


class _GeometryMapMixin(_Prescriptive):
    """Replaces unexpected geometry objects in a map result by short descriptions (``_describe``)."""

    def _describe(self, geom: Any) -> str:  # pragma: no cover - overridden
        return getattr(geom, "geom_type", type(geom).__name__)

    def _describe_result(self, output: dict) -> dict:
        result = output.get("result") or {}
        for key in ("partial_unexpected_list", "unexpected_list"):
            if result.get(key) is not None:
                result[key] = [self._describe_value(v) for v in result[key]]
        if result.get("partial_unexpected_list") is not None:
            counts = Counter(result["partial_unexpected_list"]).most_common()
            result["partial_unexpected_counts"] = [{"value": v, "count": c} for v, c in counts]
        return output

    def _describe_value(self, value: Any) -> str:
        try:
            geom = as_geometry_array([value])[0]
        except Exception:  # noqa: BLE001 - report what it is, the metric already flagged it
            return f"not a geometry: {type(value).__name__}"
        if geom is None:
            return "NULL"
        return self._describe(geom)

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        output = cast(Any, super())._validate(      # a mixin of GX expectation classes
            metrics=metrics, runtime_configuration=runtime_configuration, execution_engine=execution_engine
        )
        return self._describe_result(output)


# --- metrics -----------------------------------------------------------------------------------------------------
class ColumnValuesGeometryValid(ColumnMapMetricProvider):
    """Row is expected when its geometry is OGC-valid (shapely ``is_valid``)."""

    condition_metric_name = "column_values.geometry_valid"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs) -> pd.Series:
        return pd.Series(shapely.is_valid(as_geometry_array(column)), index=column.index)


class ColumnValuesGeometryNonEmpty(ColumnMapMetricProvider):
    """Row is expected when its geometry is not empty."""

    condition_metric_name = "column_values.geometry_non_empty"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs) -> pd.Series:
        return pd.Series(~shapely.is_empty(as_geometry_array(column)), index=column.index)


class ColumnValuesGeometryTypeIn(ColumnMapMetricProvider):
    """Row is expected when its geometry type (``Polygon``, ``MultiLineString``…) is in ``geometry_types``."""

    condition_metric_name = "column_values.geometry_type_in"
    condition_value_keys = ("geometry_types",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, geometry_types: list[str], **kwargs) -> pd.Series:
        types = np.array([g.geom_type for g in as_geometry_array(column)], dtype=object)
        return pd.Series(np.isin(types, list(geometry_types)), index=column.index)


class ColumnValuesGeometryInTerritory(ColumnMapMetricProvider):
    """Row is expected when its geometry intersects / lies within the territory buffered by ``buffer_m`` metres.

    ``territory_wkt`` is the territory outline in the layer CRS; ``None`` (outline unavailable) fails every row.
    """

    condition_metric_name = "column_values.geometry_in_territory"
    condition_value_keys = ("territory_wkt", "buffer_m", "predicate")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(
        cls, column: pd.Series, territory_wkt: str | None, buffer_m: float, predicate: str, **kwargs
    ) -> pd.Series:
        geoms = as_geometry_array(column)
        if not territory_wkt:
            return pd.Series(np.zeros(len(geoms), dtype=bool), index=column.index)
        empty = shapely.is_empty(geoms)  # reported by the non-empty expectation, not here
        area = _prepared_territory(territory_wkt, float(buffer_m or 0))
        if predicate == "within":
            ok = shapely.contains(area, geoms)
        elif predicate == "intersects":
            ok = shapely.intersects(area, geoms)
        else:
            raise InvalidInputError(f"predicate must be 'within' or 'intersects', got {predicate!r}")
        return pd.Series(ok | empty, index=column.index)


class ColumnValuesGeometryUnique(ColumnMapMetricProvider):
    """Row is expected when no other row has the same geometry (same vertices after ``normalize``)."""

    condition_metric_name = "column_values.geometry_unique"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs) -> pd.Series:
        keys = shapely.to_wkb(shapely.normalize(as_geometry_array(column)))
        return pd.Series(~pd.Series(keys).duplicated(keep=False).to_numpy(), index=column.index)


class TableCrsValues(TableMetricProvider):
    """Distinct CRS definitions found in ``crs_column`` (the batch-level CRS carried by the validation frame)."""

    metric_name = "table.crs_values"
    value_keys = ("crs_column",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        df, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        column = metric_value_kwargs.get("crs_column") or CRS_COLUMN
        if column not in df.columns:
            raise KeyError(f"the validation frame has no CRS column {column!r}")
        return sorted({"" if pd.isna(v) else str(v) for v in df[column].tolist()})


class TableAreaByClass(TableMetricProvider):
    """Area in hectares per value of ``class_column`` (geometry areas in ``geometry_column``, metric CRS)."""

    metric_name = "table.area_by_class"
    value_keys = ("geometry_column", "class_column")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        df, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        return area_by_class(
            df, metric_value_kwargs.get("geometry_column") or GEOMETRY_COLUMN, metric_value_kwargs["class_column"]
        )


class TableNonNumericColumns(TableMetricProvider):
    """Columns (except ``exclude``) holding a value that is not a real number (bools and strings are not)."""

    metric_name = "table.non_numeric_columns"
    value_keys = ("exclude",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        df, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        exclude = set(metric_value_kwargs.get("exclude") or ())
        bad = []
        for name in df.columns:
            if name in exclude:
                continue
            values = df[name].tolist()
            if not all(_is_number(v) for v in values):
                bad.append(str(name))
        return bad


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isfinite(value))
    return False


def area_by_class(df: pd.DataFrame, geometry_column: str, class_column: str) -> dict[str, float]:
    """Area in hectares per class (null class → ``"<null>"``); geometry areas are in the frame's metric CRS."""
    if class_column not in df.columns:
        raise KeyError(f"the validation frame has no class column {class_column!r}")
    areas = shapely.area(as_geometry_array(df[geometry_column])) / M2_PER_HA
    classes = df[class_column].astype(object).where(df[class_column].notna(), "<null>").astype(str)
    totals = pd.Series(np.nan_to_num(areas, nan=0.0), index=df.index).groupby(classes.to_numpy()).sum()
    return {str(k): round(float(v), 4) for k, v in totals.items()}


def area_drift(
    current: dict[str, float], previous: dict[str, float], min_class_area_ha: float
) -> dict[str, float | None]:
    """Relative change (%) of area per class; classes below ``min_class_area_ha`` in both snapshots are skipped.

    A class absent from the previous snapshot (previous area 0) has an infinite drift, reported as ``None``.
    """
    drift: dict[str, float | None] = {}
    for cls in sorted(set(current) | set(previous)):
        cur, prev = float(current.get(cls, 0.0)), float(previous.get(cls, 0.0))
        if max(cur, prev) < min_class_area_ha:
            continue
        drift[cls] = None if prev == 0 else round((cur - prev) / prev * 100.0, 3)
    return drift


# --- expectations ------------------------------------------------------------------------------------------------
class ExpectColumnValuesToBeValidGeometry(_GeometryMapMixin, ColumnMapExpectation):
    """Expect every geometry of the column to be valid (OGC simple features rules, shapely ``is_valid``).

    Unexpected values are reported as shapely's ``is_valid_reason``, e.g. ``Self-intersection[5 5]``.
    """

    _TEMPLATE: ClassVar[str] = "$column geometries must be valid (OGC simple features rules)."

    map_metric: ClassVar[str] = "column_values.geometry_valid"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _describe(self, geom: Any) -> str:
        return f"{geom.geom_type}: {shapely.is_valid_reason(geom)}"


class ExpectColumnValuesToBeNonEmptyGeometry(_GeometryMapMixin, ColumnMapExpectation):
    """Expect every (non-null) geometry of the column to be non-empty."""

    _TEMPLATE: ClassVar[str] = "$column geometries must not be empty."

    map_metric: ClassVar[str] = "column_values.geometry_non_empty"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _describe(self, geom: Any) -> str:
        return f"{geom.geom_type} EMPTY"


class ExpectColumnValuesToHaveGeometryType(_GeometryMapMixin, ColumnMapExpectation):
    """Expect every geometry of the column to have one of ``geometry_types`` (shapely names, e.g. ``Polygon``)."""

    _TEMPLATE: ClassVar[str] = "$column geometry types must be one of: $geometry_types."

    geometry_types: list[str] | SuiteParameterDict
    map_metric: ClassVar[str] = "column_values.geometry_type_in"
    success_keys: ClassVar[tuple[str, ...]] = ("geometry_types", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "geometry_types")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _describe(self, geom: Any) -> str:
        return geom.geom_type


class ExpectColumnValuesToBeInTerritory(_GeometryMapMixin, ColumnMapExpectation):
    """Expect every geometry to ``intersect`` (default) or lie ``within`` the territory buffered by ``buffer_m``.

    ``territory_wkt``: outline of the territory in the layer CRS (usually a ``$PARAMETER`` filled at run time);
    ``buffer_m``: tolerance in metres. Unexpected values are reported by their bounding box. Empty geometries pass
    here (``expect_column_values_to_be_non_empty_geometry`` reports them).
    """

    _TEMPLATE: ClassVar[str] = "$column geometries must $predicate the territory outline buffered by $buffer_m m."

    territory_wkt: str | SuiteParameterDict | None
    buffer_m: float | SuiteParameterDict = 0.0
    predicate: Literal["intersects", "within"] = "intersects"
    map_metric: ClassVar[str] = "column_values.geometry_in_territory"
    success_keys: ClassVar[tuple[str, ...]] = ("territory_wkt", "buffer_m", "predicate", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "territory_wkt", "buffer_m", "predicate")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    @classmethod
    def _template_params(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = super()._template_params(kwargs)
        params["predicate"] = "lie within" if params.get("predicate") == "within" else "intersect"
        params.setdefault("buffer_m", 0)
        return params

    def _describe(self, geom: Any) -> str:
        return f"{geom.geom_type} bbox={_bbox(geom)}"


class ExpectColumnValuesToBeUniqueGeometry(_GeometryMapMixin, ColumnMapExpectation):
    """Expect no two rows to carry the same geometry (exact duplicates after vertex normalisation)."""

    _TEMPLATE: ClassVar[str] = "$column geometries must not be duplicated."

    map_metric: ClassVar[str] = "column_values.geometry_unique"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _describe(self, geom: Any) -> str:
        return f"{geom.geom_type} duplicated, bbox={_bbox(geom)}"


class ExpectTableCrsToBe(_Prescriptive, BatchExpectation):
    """Expect the batch CRS (carried in ``crs_column``) to equal ``crs`` (any pyproj input, e.g. ``EPSG:2154``).

    Fails when the layer has no CRS or a different one; an empty batch has no CRS to check and passes (its row
    count is checked by other expectations).
    """

    _TEMPLATE: ClassVar[str] = "The layer CRS must be $crs."

    crs: str | SuiteParameterDict
    crs_column: str = CRS_COLUMN
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.crs_values",)
    success_keys: ClassVar[tuple[str, ...]] = ("crs", "crs_column")
    args_keys: ClassVar[tuple[str, ...]] = ("crs",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: ExecutionEngine | None = None,
    ) -> dict[str, Any]:
        observed: list[str] = metrics["table.crs_values"]
        expected = str(self._get_success_kwarg("crs"))
        wrong = [c or "<none>" for c in observed if not crs_matches(c, expected)]
        return {
            "success": not wrong,
            "result": {"observed_value": observed[0] if len(observed) == 1 else observed, "details": {
                "expected": expected, "mismatched": wrong}},
        }


class ExpectTableAreaByClassDriftToBeBelow(_Prescriptive, BatchExpectation):
    """Expect the area of every class to differ by at most ``max_drift_pct`` % from the previous snapshot.

    ``previous_area_by_class``: {class: hectares} of the previous snapshot of the same source (``None`` when there is
    none: vacuously true). Classes below ``min_class_area_ha`` in both snapshots are ignored (noise); a class that is
    new (absent before) counts as an unbounded drift.
    """

    _TEMPLATE: ClassVar[str] = (
        "Area per $class_column must stay within ± $max_drift_pct % of the previous snapshot "
        "(classes of at least $min_class_area_ha ha)."
    )

    class_column: str
    geometry_column: str = GEOMETRY_COLUMN
    previous_area_by_class: dict[str, float] | SuiteParameterDict | None = None
    max_drift_pct: float | SuiteParameterDict = 20.0
    min_class_area_ha: float | SuiteParameterDict = 1.0
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.area_by_class",)
    success_keys: ClassVar[tuple[str, ...]] = (
        "class_column", "geometry_column", "previous_area_by_class", "max_drift_pct", "min_class_area_ha",
    )
    args_keys: ClassVar[tuple[str, ...]] = ("class_column", "max_drift_pct")
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: ExecutionEngine | None = None,
    ) -> dict[str, Any]:
        current: dict[str, float] = metrics["table.area_by_class"]
        previous = self._get_success_kwarg("previous_area_by_class")
        if not previous:
            return {"success": True, "result": {"observed_value": current, "details": {
                "previous": None, "note": "no previous snapshot: nothing to compare"}}}
        max_pct = float(self._get_success_kwarg("max_drift_pct"))
        drift = area_drift(current, previous, float(self._get_success_kwarg("min_class_area_ha")))
        failing = {k: v for k, v in drift.items() if v is None or abs(v) > max_pct}
        return {
            "success": not failing,
            "result": {
                "observed_value": drift,
                "element_count": len(drift),
                "unexpected_count": len(failing),
                "unexpected_percent": 100.0 * len(failing) / len(drift) if drift else 0.0,
                "partial_unexpected_list": [
                    f"{k}: {'new class' if v is None else f'{v:+.1f} %'} "
                    f"({previous.get(k, 0.0):.1f} ha → {current.get(k, 0.0):.1f} ha)"
                    for k, v in failing.items()
                ],
                "details": {"current_ha": current, "previous_ha": previous, "max_drift_pct": max_pct},
            },
        }


class ExpectTableValuesToBeNumeric(_Prescriptive, BatchExpectation):
    """Expect every value of every column (except ``exclude``) to be a finite real number (not bool, not text)."""

    _TEMPLATE: ClassVar[str] = "Every value must be a finite number (columns not checked: $exclude)."

    exclude: list[str] = []  # noqa: RUF012 - a pydantic field of the Expectation model (pydantic copies defaults)
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.non_numeric_columns",)
    success_keys: ClassVar[tuple[str, ...]] = ("exclude",)
    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: dict | None = None,
        execution_engine: ExecutionEngine | None = None,
    ) -> dict[str, Any]:
        bad: list[str] = metrics["table.non_numeric_columns"]
        return {"success": not bad, "result": {"observed_value": bad, "details": {"non_numeric_columns": bad}}}


#: Expectation types defined here (snake-cased class names, as GX registers them).
CUSTOM_EXPECTATION_TYPES: tuple[str, ...] = tuple(
    cls.expectation_type
    for cls in (
        ExpectColumnValuesToBeValidGeometry,
        ExpectColumnValuesToBeNonEmptyGeometry,
        ExpectColumnValuesToHaveGeometryType,
        ExpectColumnValuesToBeInTerritory,
        ExpectColumnValuesToBeUniqueGeometry,
        ExpectTableCrsToBe,
        ExpectTableAreaByClassDriftToBeBelow,
        ExpectTableValuesToBeNumeric,
    )
)

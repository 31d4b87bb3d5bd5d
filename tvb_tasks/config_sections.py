"""The stage sections of a territory YAML: ``tiling``, ``indicators``, ``validation``, ``priorities``, ``screening``,
``fiches`` and ``publish`` (each optional; every key has a default).

They are fields of :class:`tvb_tasks.config.Territory`, so the whole YAML is validated when it loads (``tvb
check-config``, the DAG files) and an unknown key anywhere is refused with its full path (``validation.bogus_key``).
They live in their own module to keep ``config.py`` (loader, core sections, cross-checks) readable; the stage
modules re-export their section (``tvb_tasks.indicators.IndicatorsConfig``, ``tvb_tasks.layers.tiles.TilingConfig``,
``tvb_tasks.validate.settings.ValidationSettings``, ``tvb_tasks.priorities.config.PrioritiesConfig``…). Documented
values: ``config/territories/call.yaml``. This module imports pydantic only.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "PROJECT_STAGES",
    "BasemapConfig",
    "ChangeConfig",
    "ConflictConfig",
    "ConnectivityConfig",
    "CostConfig",
    "FicheText",
    "FragmentationConfig",
    "IndicatorsConfig",
    "PrioritiesConfig",
    "PublishConfig",
    "PublishReportConfig",
    "ReportConfig",
    "ScreeningConfig",
    "Severity",
    "SourceValidation",
    "TilingConfig",
    "ValidationSettings",
    "Weights",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- tiling (tvb_tasks.layers.tiles) ---------------------------------------------------------------------------------
class TilingConfig(_Section):
    """``tiling:`` section of a territory YAML (cells, not metres: a tile is a unit of memory)."""

    enabled: bool = False                               # layers engine: tiled cost-distance (same result)
    tile_size: int = Field(default=2048, ge=8)          # core side, cells
    overlap: int = Field(default=16, ge=1)              # halo width, cells (>= 2 with knight's moves)
    max_rounds: int = Field(default=100, ge=1)          # safety stop of the boundary exchange
    dag_rounds: int = Field(default=12, ge=1, le=60)    # rounds unrolled in the tiled observatory DAG
    memory_limit_gib: float = Field(default=4.0, gt=0)  # per-task memory bound (workers' sizing)


# --- indicators (tvb_tasks.indicators) -------------------------------------------------------------------------------
class WetPassabilityConfig(_Section):
    """Passability (0 impassable … 1 passable) of a wet rupture point by type and severity (ICE classes 0, 0.33,
    0.66, 1); a point the table does not list gets ``default``. Types: infrastructure of the rupture points."""

    river_obstacle: dict[int, float] = Field(default_factory=dict)   # ROE obstacle, by severity (height of drop)
    culvert: dict[int, float] = Field(default_factory=dict)          # section busée under a road / railway
    road: dict[int, float] = Field(default_factory=dict)             # road bridge over an open watercourse
    railway: dict[int, float] = Field(default_factory=dict)          # railway bridge over an open watercourse
    # road bridge by road importance (infra_class), overriding ``road`` (e.g. {1: 0.33}: a motorway's wide deck)
    road_by_importance: dict[int, float] = Field(default_factory=dict)
    default: float = Field(default=1.0, ge=0, le=1)
    snap_m: float = Field(default=50, ge=0)      # a point is on the nearest watercourse stretch within this (m)

    @field_validator("river_obstacle", "culvert", "road", "railway", "road_by_importance")
    @classmethod
    def _in_unit_interval(cls, table: dict[int, float]) -> dict[int, float]:
        bad = {k: v for k, v in table.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"passabilities must be in [0, 1]: {bad}")
        return table

    def passability(self, infrastructure: str, severity, infra_class=None) -> float:
        if str(infrastructure) == "road" and self.road_by_importance:
            try:
                return float(self.road_by_importance[int(float(infra_class))])
            except (KeyError, TypeError, ValueError):
                pass
        table = getattr(self, str(infrastructure), None) if str(infrastructure) in WET_BARRIER_TYPES else None
        try:
            return float(table[int(severity)]) if table is not None else self.default
        except (KeyError, TypeError, ValueError):
            return self.default


WET_BARRIER_TYPES = ("river_obstacle", "culvert", "road", "railway")


class ConnectivityConfig(_Section):
    probability_at_threshold: float = Field(default=0.05, gt=0, lt=1)   # p at the dispersal distance (Graphab)
    distance_threshold_cost: float | dict[str, float] | None = None   # dispersal distance; None → max_cost
    distance_threshold_m: float = Field(default=1000, gt=0)
    min_probability: float = Field(default=1e-6, gt=0, lt=1)          # p* below this: pair unconnected
    wet_network_snap_m: float = Field(default=25, ge=0)               # wet reservoir ↔ network node tolerance
    wet_passability: WetPassabilityConfig = WetPassabilityConfig()    # wet rupture points on the network (DCI)
    top_n: int = Field(default=10, ge=1)


class ChangeConfig(_Section):
    min_overlap_share: float = Field(default=0.5, gt=0, le=1)
    line_tolerance_m: float = Field(default=50, ge=0)
    point_tolerance_m: float = Field(default=50, ge=0)


class FragmentationConfig(_Section):
    # width (m) by which each fragmenting line cuts the habitat when the layer has no width_m (FragScape)
    cut_width_m: dict[str, float] = Field(default_factory=lambda: {"road": 10.0, "railway": 10.0, "canal": 20.0})


class ReportConfig(_Section):
    attribution: str = "© IGN, Mission Bassin Minier Nord-Pas de Calais, © contributeurs OpenStreetMap"


class IndicatorsConfig(_Section):
    published_figures: str | None = None
    connectivity: ConnectivityConfig = ConnectivityConfig()
    fragmentation: FragmentationConfig = FragmentationConfig()
    change: ChangeConfig = ChangeConfig()
    report: ReportConfig = ReportConfig()


# --- validation (tvb_tasks.validate) ---------------------------------------------------------------------------------
Severity = Literal["critical", "warning", "info"]


class SourceValidation(_Section):
    """Per-source settings; ``None`` falls back to the territory-wide value."""

    repair_geometries: bool = False
    row_count_drift_pct: float | None = Field(default=None, gt=0)
    area_by_class_drift_pct: float | None = Field(default=None, gt=0)
    severity: dict[str, Severity] = Field(default_factory=dict)


class ValidationSettings(_Section):
    row_count_drift_pct: float = Field(default=20.0, gt=0)
    area_by_class_drift_pct: float = Field(default=20.0, gt=0)
    min_class_area_ha: float = Field(default=5.0, ge=0)
    territory_buffer_m: float = Field(default=1000.0, ge=0)
    output_buffer_m: float = Field(default=50.0, ge=0)
    sample_size: int = Field(default=5, ge=1, le=100)
    severity: dict[str, dict[str, Severity]] = Field(default_factory=dict)
    sources: dict[str, SourceValidation] = Field(default_factory=dict)

    def for_source(self, name: str) -> SourceValidation:
        return self.sources.get(name, SourceValidation())

    def row_count_drift(self, name: str) -> float:
        return self.for_source(name).row_count_drift_pct or self.row_count_drift_pct

    def area_drift(self, name: str) -> float:
        return self.for_source(name).area_by_class_drift_pct or self.area_by_class_drift_pct

    def severity_overrides(self, suite_name: str, source: str | None = None) -> dict[str, Severity]:
        """Overrides for a suite, then for a source (the source wins)."""
        merged = dict(self.severity.get(suite_name, {}))
        if source is not None:
            merged.update(self.for_source(source).severity)
        return merged


# --- priorities, screening, fiches (tvb_tasks.priorities) ------------------------------------------------------------
CorridorStatus = Literal["existing", "to_restore", "to_create"]


class Weights(_Section):
    """Score U = G · (1 + conflict · c) / (1 + cost · C) (tvb_tasks.priorities.ranking.urgency): a project at the
    most advanced stage multiplies the gain by 1 + conflict, the costliest item divides it by 1 + cost."""

    conflict: float = Field(default=0.5, ge=0)
    cost: float = Field(default=0.5, ge=0)


def _default_crossing() -> dict[str, float | dict[str, float]]:
    return {"default": 1000.0}


def _default_statuses() -> list[CorridorStatus]:
    return ["to_restore", "to_create"]


class CostConfig(_Section):
    per_m: dict[str, float] = Field(default_factory=lambda: {"to_restore": 1.0, "to_create": 3.0})
    crossing: dict[str, float | dict[str, float]] = Field(default_factory=_default_crossing)
    maintenance_discount: float = Field(default=0.4, ge=0, le=1)


# the ``stage`` values of a planning project (``projects`` source role; French words in priorities.stage)
PROJECT_STAGES = ("planned", "programmed", "authorised", "under_construction")


class ConflictConfig(_Section):
    # weight by project stage (keys: PROJECT_STAGES; an unknown key is refused when the territory loads)
    stage_weights: dict[str, float] = Field(default_factory=lambda: {
        "planned": 0.4, "programmed": 0.7, "authorised": 1.0, "under_construction": 1.0})


class HistoryMatch(_Section):
    """How the priorities of two releases are matched by identity, not id (ids are not stable between releases):
    a corridor by sous-trame and geometry overlap, a site by sous-trame, infrastructure and distance."""

    corridor_buffer_m: float = Field(default=50, gt=0)
    corridor_min_overlap: float = Field(default=0.5, gt=0, le=1)
    site_tolerance_m: float = Field(default=100, ge=0)


class PrioritiesConfig(_Section):
    corridor_statuses: list[CorridorStatus] = Field(default_factory=_default_statuses)
    restored_friction: float | None = Field(default=None, ge=1)
    barrier_crossing_m: float | None = Field(default=None, gt=0)
    site_tolerance_m: float = Field(default=100, ge=0)
    min_probability: float = Field(default=0.001, gt=0, lt=1)
    corridor_buffer_m: float = Field(default=25, ge=0)
    site_buffer_m: float = Field(default=50, ge=0)
    weights: Weights = Weights()
    cost: CostConfig = CostConfig()
    conflict: ConflictConfig = ConflictConfig()
    project_types: list[str] = Field(default_factory=lambda: ["plu_au", "zac", "infrastructure", "other"])
    maintenance_kinds: list[str] = Field(default_factory=lambda: ["green_space", "verge", "bank", "other"])
    top_n: int = Field(default=10, ge=1)
    history: HistoryMatch = HistoryMatch()


class ScreeningConfig(_Section):
    line_buffer_m: float = Field(default=15, gt=0)
    corridor_effect: Literal["remove", "degrade"] = "remove"
    degraded_friction: float = Field(default=1000, ge=1)
    # a project over a watercourse of a trame bleue: "culvert" = the crossed stretch gets the passability of a
    # culvert (indicators.connectivity.wet_passability.culvert at rupture_points.culvert_severity), "remove" = cut
    watercourse_effect: Literal["culvert", "remove"] = "culvert"


class FicheText(_Section):
    """Management recommendations of one sous-trame: ``general``, then per land-use class crossed."""

    general: str = ""
    landuse: dict[str, str] = Field(default_factory=dict)


# --- publish (tvb_tasks.publish: credits, base map, links) -----------------------------------------------------------
class BasemapConfig(_Section):
    """Raster tiles drawn under the layers (web map, QGIS project): an XYZ URL template with ``{z}/{x}/{y}``."""

    tiles: str
    title: str | None = None
    attribution: str | None = None
    max_zoom: int = Field(default=19, ge=0, le=24)


class PublishReportConfig(_Section):
    small_change_pct: float = Field(default=1.0, ge=0)   # changes below this share (%) are "stable" in the report


class PublishConfig(_Section):
    """``publish:`` section. ``credits`` and ``basemap`` are keyed by profile (``default``, ``production``…);
    ``credits.<profile>`` maps a source name to its credit line."""

    reference_label: str | None = None
    credits: dict[str, dict[str, str]] = Field(default_factory=dict)
    basemap: dict[str, BasemapConfig] = Field(default_factory=dict)
    public_base_url: str | None = Field(default=None, pattern=r"^https?://")
    report: PublishReportConfig = PublishReportConfig()

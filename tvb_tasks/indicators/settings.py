"""The ``indicators:`` section of the territory YAML (optional; defaults when absent) and what is read through it:
connectivity thresholds, published figures to compare with, whether the land use is the synthetic sample."""
from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tvb_tasks.config import PROJECT_ROOT, ConfigError, Territory


# --- configuration (the optional ``indicators:`` section of the territory YAML) --------------------------------------
class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WetPassabilityConfig(_Cfg):
    """Passability (0 impassable … 1 passable) of a wet rupture point by type and severity (ICE classes 0, 0.33,
    0.66, 1); a point the table does not list gets ``default``. Types: infrastructure of the rupture points."""

    river_obstacle: dict[int, float] = Field(default_factory=dict)   # ROE obstacle, by severity (height of drop)
    culvert: dict[int, float] = Field(default_factory=dict)          # section busée under a road / railway
    road: dict[int, float] = Field(default_factory=dict)             # road bridge over an open watercourse
    railway: dict[int, float] = Field(default_factory=dict)          # railway bridge over an open watercourse
    default: float = Field(default=1.0, ge=0, le=1)
    snap_m: float = Field(default=50, ge=0)      # a point is on the nearest watercourse stretch within this (m)

    @field_validator("river_obstacle", "culvert", "road", "railway")
    @classmethod
    def _in_unit_interval(cls, table: dict[int, float]) -> dict[int, float]:
        bad = {k: v for k, v in table.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"passabilities must be in [0, 1]: {bad}")
        return table

    def passability(self, infrastructure: str, severity) -> float:
        table = getattr(self, str(infrastructure), None) if str(infrastructure) in WET_BARRIER_TYPES else None
        try:
            return float(table[int(severity)]) if table is not None else self.default
        except (KeyError, TypeError, ValueError):
            return self.default


WET_BARRIER_TYPES = ("river_obstacle", "culvert", "road", "railway")


class ConnectivityConfig(_Cfg):
    probability_at_threshold: float = Field(default=0.05, gt=0, lt=1)   # p at the dispersal distance (Graphab)
    distance_threshold_cost: float | dict[str, float] | None = None   # dispersal distance; None → max_cost
    distance_threshold_m: float = Field(default=1000, gt=0)
    min_probability: float = Field(default=1e-6, gt=0, lt=1)          # p* below this: pair unconnected
    wet_network_snap_m: float = Field(default=25, ge=0)               # wet reservoir ↔ network node tolerance
    wet_passability: WetPassabilityConfig = WetPassabilityConfig()    # wet rupture points on the network (DCI)
    top_n: int = Field(default=10, ge=1)


class ChangeConfig(_Cfg):
    min_overlap_share: float = Field(default=0.5, gt=0, le=1)
    line_tolerance_m: float = Field(default=50, ge=0)
    point_tolerance_m: float = Field(default=50, ge=0)


class FragmentationConfig(_Cfg):
    # width (m) by which each fragmenting line cuts the habitat when the layer has no width_m (FragScape)
    cut_width_m: dict[str, float] = Field(default_factory=lambda: {"road": 10.0, "railway": 10.0, "canal": 20.0})


class ReportConfig(_Cfg):
    attribution: str = "© IGN, Mission Bassin Minier Nord-Pas de Calais, © contributeurs OpenStreetMap"


class IndicatorsConfig(_Cfg):
    published_figures: str | None = None
    connectivity: ConnectivityConfig = ConnectivityConfig()
    fragmentation: FragmentationConfig = FragmentationConfig()
    change: ChangeConfig = ChangeConfig()
    report: ReportConfig = ReportConfig()


def indicators_config(territory: Territory) -> IndicatorsConfig:
    """The territory's ``indicators:`` section (defaults when absent); ConfigError naming the YAML when invalid."""
    raw = getattr(territory, "indicators", None) or {}
    try:
        return IndicatorsConfig.model_validate(raw)
    except ValidationError as err:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{territory.path}: invalid 'indicators' section: {details}") from None


def distance_threshold_cost(territory: Territory, sous_trame: str) -> float:
    """Cost distance (corridor cost units) at which the link probability is ``probability_at_threshold``."""
    value = indicators_config(territory).connectivity.distance_threshold_cost
    if isinstance(value, dict):
        value = value.get(sous_trame)
    return float(value) if value is not None else float(territory.sous_trames[sous_trame].max_cost)


def load_published_figures(territory: Territory) -> dict[str, Any]:
    """``{"source": path, "figures": {...}}`` from the YAML named by ``indicators.published_figures`` (or empty)."""
    rel = indicators_config(territory).published_figures
    if not rel:
        return {"source": None, "figures": {}}
    path = territory.resolve_path(rel)
    if not path.exists():
        raise ConfigError(f"{territory.path}: indicators.published_figures: no file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    figures = raw.get("figures") if isinstance(raw, dict) else None
    if not isinstance(figures, dict) or not all(isinstance(v, (int, float)) for v in figures.values()):
        raise ConfigError(f"{path}: expected a 'figures' mapping of numbers")
    return {"source": rel, "figures": {k: float(v) for k, v in figures.items()}}


def is_synthetic_landuse(territory: Territory) -> bool:
    """True when the land use is the bundled synthetic sample (a file source under ``sample/``) or flagged
    ``synthetic: true`` in its source configuration."""
    for src in territory.sources_by_role("landuse").values():
        if (src.model_extra or {}).get("synthetic"):
            return True
        if src.kind == "file" and src.path:
            path = territory.resolve_path(src.path).resolve()
            if path.is_relative_to((PROJECT_ROOT / "sample").resolve()):
                return True
    return False

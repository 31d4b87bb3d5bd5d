"""The ``indicators:`` section of the territory YAML (optional; defaults when absent) and what is read through it:
connectivity thresholds, published figures to compare with, whether the land use is the synthetic sample."""
from __future__ import annotations

from typing import Any

import yaml

from tvb_tasks.config import PROJECT_ROOT, ConfigError, Territory, load_yaml, typed_section
from tvb_tasks.config_sections import (
    WET_BARRIER_TYPES,
    ChangeConfig,
    ConnectivityConfig,
    FragmentationConfig,
    IndicatorsConfig,
    ReportConfig,
    WetPassabilityConfig,
)

__all__ = ["WET_BARRIER_TYPES", "ChangeConfig", "ConnectivityConfig", "FragmentationConfig", "IndicatorsConfig",
           "ReportConfig", "WetPassabilityConfig", "distance_threshold_cost", "indicators_config",
           "is_synthetic_landuse", "load_published_figures"]


# --- configuration: the ``indicators:`` section of the territory YAML (models in tvb_tasks.config_sections) ------
def indicators_config(territory: Territory) -> IndicatorsConfig:
    """``territory.indicators``, typed (validated when the territory loaded): read it directly. This accessor
    remains for ``tvb_tasks.priorities`` and for a territory whose section a test replaced by a mapping with
    ``model_copy(update=...)`` (which does not validate): that mapping is validated here, a ConfigError naming
    the YAML and the key as :func:`tvb_tasks.config.load_territory` would."""
    return typed_section(territory, "indicators", IndicatorsConfig)


def distance_threshold_cost(territory: Territory, sous_trame: str) -> float:
    """Cost distance (corridor cost units) at which the link probability is ``probability_at_threshold``."""
    value = territory.indicators.connectivity.distance_threshold_cost
    if isinstance(value, dict):
        value = value.get(sous_trame)
    return float(value) if value is not None else float(territory.sous_trames[sous_trame].max_cost)


def load_published_figures(territory: Territory) -> dict[str, Any]:
    """``{"source": path, "figures": {...}}`` from the YAML named by ``indicators.published_figures`` (or empty)."""
    rel = territory.indicators.published_figures
    if not rel:
        return {"source": None, "figures": {}}
    path = territory.resolve_path(rel)
    if not path.exists():
        raise ConfigError(f"{territory.path}: indicators.published_figures: no file {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
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
        if src.synthetic:
            return True
        if src.kind == "file" and src.path:
            path = territory.resolve_path(src.path).resolve()
            if path.is_relative_to((PROJECT_ROOT / "sample").resolve()):
                return True
    return False

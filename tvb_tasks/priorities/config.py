"""The ``priorities:``, ``screening:`` and ``fiches:`` sections of a territory YAML (typed, with defaults).

Every threshold and weight of the restoration priorities, the project screening and the fiches lives there; see
``config/territories/call.yaml`` for the documented values and docs/method.md ("Priorités de restauration").
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tvb_tasks.config import ConfigError, Territory


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Cfg):
    gain: float = Field(default=0.6, ge=0)
    conflict: float = Field(default=0.25, ge=0)
    cost: float = Field(default=0.15, ge=0)


def _default_crossing() -> dict[str, float | dict[str, float]]:
    return {"default": 1000.0}


class CostConfig(_Cfg):
    per_m: dict[str, float] = Field(default_factory=lambda: {"to_restore": 1.0, "to_create": 3.0})
    crossing: dict[str, float | dict[str, float]] = Field(default_factory=_default_crossing)
    maintenance_discount: float = Field(default=0.4, ge=0, le=1)


class ConflictConfig(_Cfg):
    stage_weights: dict[str, float] = Field(default_factory=lambda: {
        "planned": 0.4, "programmed": 0.7, "authorised": 1.0, "under_construction": 1.0})


class PrioritiesConfig(_Cfg):
    corridor_statuses: list[str] = Field(default_factory=lambda: ["to_restore", "to_create"])
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


class ScreeningConfig(_Cfg):
    line_buffer_m: float = Field(default=15, gt=0)
    corridor_effect: Literal["remove", "degrade"] = "remove"
    degraded_friction: float = Field(default=1000, ge=1)


class FicheText(_Cfg):
    general: str = ""
    landuse: dict[str, str] = Field(default_factory=dict)


def _section(territory: Territory, name: str, model: type[_Cfg]):
    raw = (territory.model_extra or {}).get(name) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{territory.path}: invalid {name!r} section: {details}") from None


def priorities_config(territory: Territory) -> PrioritiesConfig:
    """The territory's ``priorities:`` section (defaults when absent); ConfigError naming the YAML when invalid."""
    cfg = _section(territory, "priorities", PrioritiesConfig)
    unknown = sorted(set(cfg.corridor_statuses) - {"existing", "to_restore", "to_create"})
    if unknown:
        raise ConfigError(f"{territory.path}: priorities.corridor_statuses: unknown statuses {unknown}")
    return cfg


def screening_config(territory: Territory) -> ScreeningConfig:
    return _section(territory, "screening", ScreeningConfig)


def fiches_config(territory: Territory) -> dict[str, FicheText]:
    """{sous-trame: recommendations}; a sous-trame without text gets an empty entry (texts of sous-trames a run does
    not compute are ignored); an unknown land-use class is an error."""
    raw = (territory.model_extra or {}).get("fiches") or {}
    out = {}
    for st in territory.sous_trames:
        try:
            out[st] = FicheText.model_validate(raw.get(st) or {})
        except ValidationError as err:
            raise ConfigError(f"{territory.path}: invalid fiches.{st}: {err.errors()[0]['msg']}") from None
        bad = sorted(set(out[st].landuse) - set(territory.landuse.classes))
        if bad:
            raise ConfigError(f"{territory.path}: fiches.{st}.landuse: unknown land-use classes {bad}")
    return out


def restored_friction(territory: Territory) -> float:
    """Friction of a restored corridor: ``priorities.restored_friction`` or the friction of the supporting elements
    of an existing corridor (``corridors.status.support_max_friction``)."""
    value = priorities_config(territory).restored_friction
    return float(value if value is not None else territory.corridors.status.support_max_friction)


def crossing_width_m(territory: Territory) -> float:
    value = priorities_config(territory).barrier_crossing_m
    return float(value if value is not None else territory.resolution_m)

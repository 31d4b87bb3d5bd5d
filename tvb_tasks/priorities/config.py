"""The ``priorities:``, ``screening:`` and ``fiches:`` sections of a territory YAML (typed, with defaults).

Every threshold and weight of the restoration priorities, the project screening and the fiches lives there; see
``config/territories/call.yaml`` for the documented values and docs/method.md ("Priorités de restauration"). The
models are fields of :class:`tvb_tasks.config.Territory` (defined in :mod:`tvb_tasks.config_sections`, re-exported
here), so the territory loader validates them; the accessors below also validate a mapping set by ``model_copy``.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from tvb_tasks.config import ConfigError, Territory
from tvb_tasks.config_sections import ConflictConfig, CostConfig, FicheText, PrioritiesConfig, ScreeningConfig, Weights

__all__ = [
    "ConflictConfig",
    "CostConfig",
    "FicheText",
    "PrioritiesConfig",
    "ScreeningConfig",
    "Weights",
    "crossing_width_m",
    "fiches_config",
    "priorities_config",
    "restored_friction",
    "screening_config",
]


def _section(territory: Territory, name: str, model: type[BaseModel]) -> Any:
    raw = getattr(territory, name, None) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{territory.path}: invalid {name!r} section: {details}") from None


def priorities_config(territory: Territory) -> PrioritiesConfig:
    """The territory's ``priorities:`` section (defaults when absent); ConfigError naming the YAML when invalid."""
    return _section(territory, "priorities", PrioritiesConfig)


def screening_config(territory: Territory) -> ScreeningConfig:
    return _section(territory, "screening", ScreeningConfig)


def fiches_config(territory: Territory) -> dict[str, FicheText]:
    """{sous-trame: recommendations}; a sous-trame without text gets an empty entry (texts of sous-trames a run does
    not compute are ignored; unknown land-use classes are refused when the territory loads)."""
    raw = getattr(territory, "fiches", None) or {}
    out = {}
    for st in territory.computed_sous_trames:
        try:
            out[st] = FicheText.model_validate(raw.get(st) or {})
        except ValidationError as err:
            raise ConfigError(f"{territory.path}: invalid fiches.{st}: {err.errors()[0]['msg']}") from None
    return out


def restored_friction(territory: Territory) -> float:
    """Friction of a restored corridor: ``priorities.restored_friction`` or the friction of the supporting elements
    of an existing corridor (``corridors.status.support_max_friction``)."""
    value = priorities_config(territory).restored_friction
    return float(value if value is not None else territory.corridors.status.support_max_friction)


def crossing_width_m(territory: Territory) -> float:
    value = priorities_config(territory).barrier_crossing_m
    return float(value if value is not None else territory.resolution_m)

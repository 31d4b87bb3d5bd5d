"""The ``validation:`` section of a territory YAML (optional; every key has a default).

Until :class:`tvb_tasks.config.Territory` declares it, the section travels in ``territory.model_extra["validation"]``
and is parsed here. Example::

    validation:
      row_count_drift_pct: 20        # ± % of features vs the previous snapshot of the same source
      area_by_class_drift_pct: 20    # ± % of land-use area per class vs the previous snapshot
      min_class_area_ha: 5           # classes smaller than this in both snapshots are not drift-checked
      territory_buffer_m: 1000       # every source feature must intersect the outline buffered by this (m)
      output_buffer_m: 50            # every output feature must lie within the outline buffered by this (m)
      sample_size: 5                 # failing values / ids quoted per expectation
      severity:                      # per suite: {expectation key: critical | warning | info}
        source_landuse: {"expect_column_values_to_be_between[millesime]": warning}
      sources:                       # per source (YAML name)
        landuse: {repair_geometries: true, row_count_drift_pct: 30, severity: {...}}

An expectation key is its type, with ``[column]`` appended for column expectations.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Severity = Literal["critical", "warning", "info"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceValidation(_Model):
    """Per-source settings; ``None`` falls back to the territory-wide value."""

    repair_geometries: bool = False
    row_count_drift_pct: float | None = Field(default=None, gt=0)
    area_by_class_drift_pct: float | None = Field(default=None, gt=0)
    severity: dict[str, Severity] = Field(default_factory=dict)


class ValidationSettings(_Model):
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


def validation_settings(territory: Any) -> ValidationSettings:
    """Parse ``territory.validation`` (a typed field later) or ``territory.model_extra["validation"]``.

    Raises ``ValueError`` naming the territory file and the bad key.
    """
    raw = getattr(territory, "validation", None)
    if raw is None:
        raw = (getattr(territory, "model_extra", None) or {}).get("validation")
    if isinstance(raw, ValidationSettings):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        settings = ValidationSettings.model_validate(raw or {})
    except ValidationError as err:
        where = getattr(territory, "path", "") or getattr(territory, "id", "?")
        lines = [f"invalid 'validation' section in {where}:"]
        lines += [f"  - validation.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ValueError("\n".join(lines)) from None
    return settings

"""The ``validation:`` section of a territory YAML (optional; every key has a default).

A field of :class:`tvb_tasks.config.Territory` (``territory.validation``; the models live in
:mod:`tvb_tasks.config_sections` and are re-exported here), validated when the territory loads. Example::

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

from tvb_tasks.config_sections import Severity, SourceValidation, ValidationSettings

__all__ = ["Severity", "SourceValidation", "ValidationSettings"]

"""Validation gate (Great Expectations 1.x): suites in ``expectations/``, custom geospatial expectations, summaries.

Public API (GX is imported lazily, on the first validation)::

    validate_source(territory, name, path, *, previous_path, out_dir) -> summary
    validate_sources(territory, paths, previous, out_dir) -> aggregate summary (writes results.json + Data Docs)
    validate_outputs(territory, gpkg, indicators_json, out_dir) -> aggregate summary
    raise_for_critical(summary)  # raises ValidationFailed with a readable message
    release_summary(sources_summary, outputs_summary) -> dict for manifest.json
    repair_geometries(gdf, source_name) -> (gdf, n_repaired)
    load_suite(name) -> gx.ExpectationSuite  # raises SuiteLoadError if incomplete
"""
from tvb_tasks.validate.gate import (
    ValidationFailed,
    failure_message,
    raise_for_critical,
    release_summary,
    validate_outputs,
    validate_source,
    validate_sources,
)
from tvb_tasks.validate.repair import repair_geometries
from tvb_tasks.validate.settings import ValidationSettings
from tvb_tasks.validate.suites import SuiteLoadError, list_suites, load_suite, suite_for

__all__ = [
    "SuiteLoadError",
    "ValidationFailed",
    "ValidationSettings",
    "failure_message",
    "list_suites",
    "load_suite",
    "raise_for_critical",
    "release_summary",
    "repair_geometries",
    "suite_for",
    "validate_outputs",
    "validate_source",
    "validate_sources",
]

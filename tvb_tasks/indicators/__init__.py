"""Observatory indicators of a TVB release: key figures, fragmentation, connectivity, per commune, change, history.

Entry points called by the pipeline (local paths only, no store or network here):

* :func:`compute_indicators` — reads a release's ``tvb.gpkg`` and writes ``indicators.json`` plus CSV tables
  (and ``change.csv`` / ``change.gpkg`` against the previous release);
* :func:`append_history` (in :mod:`.history`) — appends a release's indicators to the indicator history (Parquet + CSV).

All geometry work is in EPSG:2154 (metres); areas are reported in hectares and lengths in kilometres.

Modules: :mod:`.compute` (the entry point), :mod:`.layers` (reading a release's layers), :mod:`.settings` (the
``indicators:`` section of the territory YAML), :mod:`.common` (shared helpers); the indicator families in
:mod:`.key_figures`, :mod:`.fragmentation`, :mod:`.connectivity`, :mod:`.communes`, :mod:`.change`, :mod:`.history`.
Every name below is importable from this package.
"""
from __future__ import annotations

from tvb_tasks.indicators.common import CORRIDOR_STATUSES, IndicatorsError, json_value, records
from tvb_tasks.indicators.compute import (  # noqa: F401
    _network_inputs,
    compute_indicators,
    wet_network_of,
)
from tvb_tasks.indicators.history import append_history
from tvb_tasks.indicators.layers import (  # noqa: F401
    GEOMETRY_KIND,
    OPTIONAL_LAYERS,
    REQUIRED_COLUMNS,
    read_layer,
    read_layers,
    territory_outline,
)
from tvb_tasks.indicators.settings import (  # noqa: F401
    ChangeConfig,
    ConnectivityConfig,
    FragmentationConfig,
    IndicatorsConfig,
    ReportConfig,
    WetPassabilityConfig,
    distance_threshold_cost,
    indicators_config,
    is_synthetic_landuse,
    load_published_figures,
)

__all__ = [
    "CORRIDOR_STATUSES",
    "IndicatorsError",
    "append_history",
    "compute_indicators",
    "indicators_config",
    "json_value",
    "read_layers",
    "records",
]

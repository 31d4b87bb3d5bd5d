"""TVB layers engine: land use → sous-trames, reservoirs and relays, friction, cost-distance, corridors, wet
corridors, rupture points, publication outputs (GeoPackage + COG rasters). Method: docs/method.md.

Stage entry points (called by ``tvb_tasks.pipeline``): :func:`compute_sous_trame` (one sous-trame, mapped in
parallel), :func:`assemble` (wet corridors, rupture points, ``tvb.gpkg``, rasters) and :func:`compute_layers`
(both). The exact cost-distance kernel lives in :mod:`tvb_tasks.layers.costdistance`.

The entry points are imported lazily so that ``tvb cost-distance`` does not pay for geopandas at start-up.
"""
from importlib import import_module

_EXPORTS = {"LayerInputError": ".common", "read_layer": ".common", "assemble": ".assembly",
            "compute_layers": ".engine", "compute_sous_trame": ".engine", "sample_inputs": ".engine"}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - lazy exports: the names are _EXPORTS' keys


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""TVB layers engine: land use → sous-trames, reservoirs and relays, friction, cost-distance, corridors, wet
corridors, rupture points, publication outputs (GeoPackage + COG rasters). Method: docs/method.md.

Stage entry points (called by ``tvb_tasks.pipeline``): :func:`compute_sous_trame` (one sous-trame, mapped in
parallel), :func:`assemble` (wet corridors, rupture points, ``tvb.gpkg``, rasters) and :func:`compute_layers`
(both). The exact cost-distance kernel lives in :mod:`tvb_tasks.layers.costdistance`.
"""
from .common import LayerInputError, read_layer
from .engine import assemble, compute_layers, compute_sous_trame, sample_inputs

__all__ = ["LayerInputError", "assemble", "compute_layers", "compute_sous_trame", "read_layer", "sample_inputs"]

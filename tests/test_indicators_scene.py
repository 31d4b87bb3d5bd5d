"""Reading a release's layers (schema errors), on the small hand-drawn release of
``tests/helpers/indicators_scene.py`` (whose indicators the other indicator tests compute by hand).
"""
from __future__ import annotations

import pytest

from helpers.indicators_scene import CRS, scene_layers, scene_territory, write_gpkg, write_scene
from tvb_tasks.indicators import IndicatorsError, read_layers


def test_read_layers_accepts_the_scene(tmp_path):
    territory = scene_territory(tmp_path)
    layers = read_layers(write_scene(tmp_path / "tvb.gpkg"), territory)
    assert set(layers) == {"reservoirs", "relays", "corridors", "wet_corridors", "rupture_points", "communes",
                           "landuse"}
    assert len(layers["reservoirs"]) == 5 and str(layers["communes"].crs) == CRS


def test_missing_layer_is_named(tmp_path):
    layers = scene_layers()
    del layers["rupture_points"]
    path = write_gpkg(layers, tmp_path / "tvb.gpkg")
    with pytest.raises(IndicatorsError, match=r"tvb\.gpkg.*missing layers \['rupture_points'\]"):
        read_layers(path, scene_territory(tmp_path))


@pytest.mark.parametrize("layer, column, value, message", [
    ("corridors", "status", "maybe", "unknown or empty status"),
    ("landuse", "class", "desert", "unknown or empty class"),
    ("reservoirs", "sous_trame", "savanna", "unknown or empty sous_trame"),
])
def test_bad_values_are_named(tmp_path, layer, column, value, message):
    layers = scene_layers()
    layers[layer].loc[layers[layer].index[0], column] = value
    path = write_gpkg(layers, tmp_path / "tvb.gpkg")
    with pytest.raises(IndicatorsError, match=f"layer '{layer}': {message}.*{value}"):
        read_layers(path, scene_territory(tmp_path))


def test_missing_column_is_named(tmp_path):
    layers = scene_layers()
    layers["corridors"] = layers["corridors"].drop(columns="cost")
    path = write_gpkg(layers, tmp_path / "tvb.gpkg")
    with pytest.raises(IndicatorsError, match=r"layer 'corridors': missing columns \['cost'\]"):
        read_layers(path, scene_territory(tmp_path))

"""Burn rules per element (max / replace / min, priority, width in metres) and resolution independence of barriers,
on hand-built scenes whose answer is known (EPSG:2154, metres).
"""
from __future__ import annotations

import numpy as np
import pytest
from shapely import LineString

from helpers.layers_scene import X0, Y0, b, base_config, line, make_scene
from tvb_tasks.layers import compute_layers, engine
from tvb_tasks.layers.costdistance import accumulated_cost
from tvb_tasks.layers.friction import friction_raster, line_coverage

CROPS = 100.0


def barrier_config(resolution: float, *, width: float | None = 30.0, friction: float = 10000) -> dict:
    cfg = base_config()
    cfg["resolution_m"] = resolution
    cfg["buffer_m"] = 0
    roads = cfg["friction"]["infrastructure"]["roads"]
    roads["by_importance"][1] = friction
    if width is not None:
        roads["width_m"] = {1: width, 2: 15, 3: 10, 4: 8, 5: 6}
    return cfg


def crossing_cost(tmp_path, resolution: float, barrier: LineString | None, *, width: float | None = 30.0) -> float:
    """Least cost (friction × m) from a source cell at (100, 500) to a target cell at (1900, 500) on cropland,
    with or without a motorway (importance 1) along ``barrier``."""
    cfg = barrier_config(resolution, width=width)
    d = tmp_path / f"{resolution:g}_{'b' if barrier is not None else 'n'}_{width}"
    d.mkdir()
    t, inputs = make_scene(d, outline=b(0, 0, 2000, 1000), landuse=[], config=cfg,
                           roads=[(barrier, 1)] if barrier is not None else [(line((0, 990), (10, 990)), 5)])
    ctx = engine._context(t, inputs)
    fr, _ = friction_raster(t, "forest", ctx.classes_raster, ctx.classes, ctx.infra, ctx.grid)
    col_s, row_s = (int(v) for v in ~ctx.grid.transform @ (X0 + 100, Y0 + 500))
    col_t, row_t = (int(v) for v in ~ctx.grid.transform @ (X0 + 1900, Y0 + 500))
    acc = accumulated_cost(fr, np.array([[row_s, col_s]]), cell_size=ctx.grid.res, knight=False, max_cost=1e12)
    return float(acc[row_t, col_t])


@pytest.mark.parametrize("barrier, width", [
    (line((1013, -10), (1013, 1010)), 30),     # along the columns, off-grid: exact at every resolution
    (line((1013, -10), (1013, 1010)), 8),      # narrower than every cell size but 5 m
    (line((800, -10), (1300, 1010)), 30),      # oblique, ≈ 26° off north
    (line((500, -10), (1520, 1010)), 60),      # 45°, a canal-like width
], ids=["vertical-30m", "vertical-8m", "oblique26-30m", "diagonal-60m"])
def test_barrier_crossing_cost_is_resolution_independent(tmp_path, barrier, width):
    """A friction-10000 barrier of width w costs ≈ (10000 − 100) × w to cross at 25, 10 and 5 m (± 10 %).

    (Other angle / width pairs: docs/method.md §4 lists the measured ratios, −18 % … +43 % in the worst cases.)"""
    expected = (10000 - CROPS) * width
    extra = {}
    for res in (25, 10, 5):
        extra[res] = (crossing_cost(tmp_path, res, barrier, width=width)
                      - crossing_cost(tmp_path, res, None, width=width))
    for res, value in extra.items():
        assert value == pytest.approx(expected, rel=0.10), (res, extra)
    assert max(extra.values()) / min(extra.values()) < 1.10, extra


def test_legacy_one_cell_burn_depends_on_the_resolution(tmp_path):
    """Without a width the line is burned one cell wide: the crossing cost scales with the cell size (the issue)."""
    barrier = line((1013, -10), (1013, 1010))
    at25 = crossing_cost(tmp_path, 25, barrier, width=None) - crossing_cost(tmp_path, 25, None, width=None)
    at5 = crossing_cost(tmp_path, 5, barrier, width=None) - crossing_cost(tmp_path, 5, None, width=None)
    assert at25 / at5 > 3


def test_narrow_barrier_scaled_not_widened():
    """A 2 m line in 25 m cells covers 2/25 of each cell it crosses (not the whole cell)."""
    from tvb_tasks.layers.common import make_grid
    grid = make_grid(b(0, 0, 250, 250), 25, "EPSG:2154")
    cells, cover = line_coverage([line((-10, 112.5), (260, 112.5))], [2.0], grid)
    assert len(cells) == 10 and np.allclose(cover, 2 / 25)
    cells, cover = line_coverage([line((-10, 112.5), (260, 112.5))], [50.0], grid)   # 50 m: 2 full rows + halves
    assert cover.sum() * 25 * 25 == pytest.approx(250 * 50, rel=0.01)   # the band's whole area
    assert np.isclose(cover, 1).sum() == 10 and np.isclose(cover, 0.5).sum() == 20   # its row, half the next two


# --- rules and priorities ---------------------------------------------------------------------------------------
def overlay_config(**overlay) -> dict:
    """Scene config with a `cavalier` class (mining-like favourable strip) and an overlay on disused railways."""
    cfg = base_config()
    cfg["buffer_m"] = 0
    cfg["landuse"]["classes"]["cavalier"] = {"label": "Cavaliers", "natural": True}
    cfg["friction"]["landuse"]["cavalier"] = {"forest": 5, "grassland": 5, "wetland": 100}
    rail = cfg["friction"]["infrastructure"]["railways"]
    rail["by_status"] = {"in_use": 1000, "disused": None}
    rail["width_m"] = {"in_use": 15}
    cfg["friction"]["infrastructure"]["roads"].update(width_m={1: 30, 2: 15, 3: 10, 4: 8, 5: 6}, priority=20)
    cfg["friction"]["overlays"] = {"cavaliers": {"role": "railways", "where": {"status": ["disused"]},
                                                 "class": "cavalier", "rule": "replace", "priority": 10,
                                                 "width_m": 15, **overlay}}
    return cfg


def _friction_at(t, inputs, sous_trame: str, *points):
    ctx = engine._context(t, inputs)
    fr, lu = friction_raster(t, sous_trame, ctx.classes_raster, ctx.classes, ctx.infra, ctx.grid)
    out = []
    for x, y in points:
        col, row = (int(v) for v in ~ctx.grid.transform @ (X0 + x, Y0 + y))
        out.append((float(fr[row, col]), float(lu[row, col])))
    return out


def test_replace_overlay_lowers_built_up_and_a_later_barrier_wins(tmp_path):
    """A cavalier (replace, priority 10) across built-up land takes its class friction; a road burned later
    (max, priority 20) still bars it where they cross; the land-cover friction keeps the cavalier, not the road."""
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=overlay_config(),
                           landuse=[(b(0, 0, 1000, 1000), "ART")],
                           railways=[(line((0, 512.5), (1000, 512.5)), "disused")],
                           roads=[(line((612.5, 0), (612.5, 1000)), 2)])
    (on_cav, on_cross, built) = _friction_at(t, inputs, "forest", (212.5, 512.5), (612.5, 512.5), (212.5, 812.5))
    assert on_cav == (5.0, 5.0)                       # replace: 1000 (built-up) → 5 (cavalier)
    assert built == (1000.0, 1000.0)
    assert on_cross[0] == pytest.approx(5 + (1000 - 5) * 15 / 25)   # road of 15 m over the cavalier cell
    assert on_cross[1] == 5.0                          # land cover: the cavalier


def test_overlay_priority_order_decides_who_wins(tmp_path):
    """Burned after the road (priority 30 > 20), the replace overlay wins on the crossing cell."""
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=overlay_config(priority=30),
                           landuse=[(b(0, 0, 1000, 1000), "ART")],
                           railways=[(line((0, 512.5), (1000, 512.5)), "disused")],
                           roads=[(line((612.5, 0), (612.5, 1000)), 2)])
    (on_cross,) = _friction_at(t, inputs, "forest", (612.5, 512.5))
    assert on_cross[0] == 5.0


def test_min_rule_never_raises_and_max_never_lowers(tmp_path):
    """`min` lowers crops (100 → 5) but leaves forest (1); `max` barriers never lower anything."""
    cfg = overlay_config(rule="min")
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=cfg,
                           landuse=[(b(0, 0, 500, 1000), "FOR")],
                           railways=[(line((0, 512.5), (1000, 512.5)), "disused")],
                           roads=[(line((612.5, 0), (612.5, 1000)), 5)])   # 6 m local road, friction 30
    (on_forest, on_crops, road_on_crops) = _friction_at(t, inputs, "forest", (212.5, 512.5), (812.5, 512.5),
                                                        (612.5, 212.5))
    assert on_forest[0] == 1.0 and on_crops[0] == 5.0
    assert road_on_crops[0] == 100.0                   # 30 < 100: a max barrier never lowers crops


def test_width_attribute_overrides_the_class_default(tmp_path):
    cfg = overlay_config()
    cfg["friction"]["overlays"] = {}          # no railway source here: an overlay on that role would be refused
    cfg["friction"]["infrastructure"]["roads"]["width_column"] = "largeur"
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 1000, 1000), config=cfg, landuse=[],
                           roads=[(line((212.5, 0), (212.5, 1000)), 2), (line((612.5, 0), (612.5, 1000)), 2)])
    import geopandas as gpd
    roads = gpd.read_parquet(inputs["roads"])
    roads["largeur"] = [5.0, None]                     # the second one falls back on the default (15 m)
    roads.to_parquet(inputs["roads"])
    engine._CACHE.clear()
    (a, c) = _friction_at(t, inputs, "forest", (212.5, 500), (612.5, 500))
    assert a[0] == pytest.approx(100 + (1000 - 100) * 5 / 25)
    assert c[0] == pytest.approx(100 + (1000 - 100) * 15 / 25)


def test_mining_like_corridor_follows_the_cavalier(tmp_path):
    """Two woods 1 km apart in built-up land, joined by a cavalier bent through the south: the corridor runs
    along the cavalier (friction 5) instead of straight through the built-up land (1000)."""
    cfg = overlay_config()
    t, inputs = make_scene(tmp_path, outline=b(0, 0, 2000, 1000), config=cfg,
                           landuse=[(b(0, 0, 2000, 1000), "ART"), (b(100, 600, 450, 950), "FOR"),
                                    (b(1550, 600, 1900, 950), "FOR")],
                           railways=[(line((300, 600), (300, 150), (1700, 150), (1700, 600)), "disused")])
    out = compute_layers(t, inputs, tmp_path / "out", sous_trames=["forest"])
    import geopandas as gpd
    cor = gpd.read_file(out["gpkg"], layer="corridors")
    assert len(cor) == 1
    cav = line((300, 600), (300, 150), (1700, 150), (1700, 600)).buffer(20)
    assert cor.geometry.iloc[0].intersection(cav).length / cor.geometry.iloc[0].length > 0.95
    assert cor["status"].iloc[0] == "existing"          # land cover along it: the cavalier (5)

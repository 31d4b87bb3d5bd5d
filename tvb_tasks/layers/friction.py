"""Friction (resistance) rasters per sous-trame, BioDispersal-style scale 1 / 5 / 30 / 100 / 1000 / 10000.

The friction of a cell starts from its land-use class (per sous-trame), then every burned element is applied in
increasing ``priority`` (BioDispersal's fusion order: what is burned last wins where elements overlap), each with
its own rule:

* ``max`` (barrier: roads, railways in use, canals) never lowers the friction. With a width (attribute or per-class
  default, metres) the element is its footprint (the line buffered by half the width) and a cell takes the
  area-weighted mean of the barrier and what lies under it: ``f + (F − f) × c`` where ``c`` is the share of the
  cell covered by the footprint. Crossing a barrier of width ``w`` then costs ≈ ``F × w`` whatever the cell size
  (a fully covered cell is ``F``; a 2 m wide line in a 25 m cell adds ``(F − f) × 2 m`` per crossing, not
  ``F × 25 m``). This is the "scale the per-cell resistance by width / cell size" rule used to keep linear
  barriers resolution-independent; the raw one-cell burn made a friction-10000 line cost 250,000 at 25 m and
  50,000 at 5 m.
* ``replace`` (favourable linear elements: cavaliers, hedgerows, verges) and ``min``: every cell touched by the
  footprint takes the element's value (``replace``) or the lower of both (``min``), so a narrow favourable element
  stays a continuous path at every resolution (animals move *along* it, not across it).
* Without any width (legacy configurations) the line is burned one cell wide (``all_touched``) at its full value.

Infrastructure elements carry one friction for every sous-trame (canals count for the trame verte only); overlays
(``friction.overlays``) carry a land-use class, hence a friction per sous-trame. Cells outside the computation
extent are NaN (nodata).

Grid: EPSG:2154, ``resolution_m``; values float32, dimensionless cost per metre.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .common import Grid, LayerInputError, clip_to, lines_only, polygons_only, rasterize_values

__all__ = [
    "Infrastructure",
    "element_widths",
    "footprint_coverage",
    "friction_raster",
    "infrastructure_friction",
    "landuse_friction",
    "line_coverage",
    "prepare_infrastructure",
    "prepare_overlays",
]

_INFRA_COLUMNS = ["infra_type", "infra_class", "infra_name", "friction", "rule", "priority", "width_m"]
_OVERLAY_COLUMNS = ["overlay", "class", "rule", "priority", "width_m"]


@dataclass(frozen=True)
class Infrastructure:
    """Burned elements, territory CRS, clipped to the computation extent.

    ``lines`` (transport / water lines, used for friction and rupture points): ``infra_type`` ∈ {road, railway,
    canal}, ``infra_class`` (road importance as text, railway status, canal kind), ``infra_name``, ``friction``,
    ``rule`` (max / replace / min), ``priority``, ``width_m`` (NaN: legacy one-cell burn), ``geometry`` (the line).
    ``overlays``: favourable elements burned as a land-use class: ``overlay`` (YAML name), ``class``, ``rule``,
    ``priority``, ``width_m``, ``geometry`` (footprint polygons).
    """

    lines: gpd.GeoDataFrame
    overlays: gpd.GeoDataFrame | None = None
    _burns: dict = field(default_factory=dict, compare=False, repr=False)


def element_widths(gdf: gpd.GeoDataFrame, spec, classes, *, what: str) -> np.ndarray:
    """Width (m) per feature: the ``width_column`` attribute when > 0, else the spec's default for the feature's
    class; NaN when neither is configured (legacy line burn)."""
    default = np.array([spec.default_width(c) if spec.default_width(c) is not None else np.nan for c in classes],
                       dtype=float)
    if spec.width_column:
        if spec.width_column not in gdf.columns:
            if np.isnan(default).any():
                raise LayerInputError(f"{what}: width column {spec.width_column!r} missing and no default width "
                                      f"for every class (columns: {list(gdf.columns)})")
            return default
        attr = pd.to_numeric(gdf[spec.width_column], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isfinite(attr) & (attr > 0), attr, default)
    return default


def prepare_infrastructure(territory, roads: gpd.GeoDataFrame, railways: gpd.GeoDataFrame,
                           watercourses: gpd.GeoDataFrame, boundary,
                           overlays: gpd.GeoDataFrame | None = None) -> Infrastructure:
    """Harmonise roads / railways / canals with their YAML friction, burn rule, priority and width. Unknown road
    importances or railway statuses raise :class:`LayerInputError` (a silent default would open holes in
    barriers); railway statuses mapped to ``null`` are not infrastructures (e.g. disused lines: cavaliers)."""
    infra = territory.friction.infrastructure
    frames = []
    if len(roads):
        spec = infra.roads
        col = spec.importance_column
        if col not in roads.columns:
            raise LayerInputError(f"roads: column {col!r} missing (columns: {list(roads.columns)})")
        imp = pd.to_numeric(roads[col], errors="coerce")
        table = {int(k): float(v) for k, v in spec.by_importance.items()}
        unknown = sorted(set(imp.dropna().astype(int)) - set(table)) + (["null"] if imp.isna().any() else [])
        if unknown:
            raise LayerInputError(f"roads: importance values {unknown} have no friction in "
                                  f"friction.infrastructure.roads.by_importance {sorted(table)}")
        cls = imp.astype(int).astype(str).values
        frames.append(gpd.GeoDataFrame({
            "infra_type": "road", "infra_class": cls, "infra_name": _names(roads),
            "friction": imp.astype(int).map(table).values, "rule": spec.rule, "priority": spec.priority,
            "width_m": element_widths(roads, spec, cls, what="roads"),
        }, geometry=roads.geometry.values, crs=territory.crs))
    if len(railways):
        spec = infra.railways
        col = spec.status_column
        if col not in railways.columns:
            raise LayerInputError(f"railways: column {col!r} missing (columns: {list(railways.columns)})")
        status = railways[col].astype(str)
        unknown = sorted(set(status) - set(spec.by_status))
        if unknown:
            raise LayerInputError(f"railways: status values {unknown} have no friction in "
                                  f"friction.infrastructure.railways.by_status {sorted(spec.by_status)}")
        keep = status.map(lambda s: spec.by_status[s] is not None).to_numpy(dtype=bool)
        rail, status = railways[keep], status[keep]
        if len(rail):
            frames.append(gpd.GeoDataFrame({
                "infra_type": "railway", "infra_class": status.values, "infra_name": _names(rail),
                "friction": status.map(spec.by_status).astype(float).values, "rule": spec.rule,
                "priority": spec.priority, "width_m": element_widths(rail, spec, status.values, what="railways"),
            }, geometry=rail.geometry.values, crs=territory.crs))
    if len(watercourses) and "kind" in watercourses.columns:
        canals = watercourses[watercourses["kind"].astype(str) == "canal"]
        if len(canals):
            spec = infra.canal
            frames.append(gpd.GeoDataFrame({
                "infra_type": "canal", "infra_class": "canal", "infra_name": _names(canals),
                "friction": float(spec.friction), "rule": spec.rule, "priority": spec.priority,
                "width_m": element_widths(canals, spec, ["canal"] * len(canals), what="canals"),
            }, geometry=canals.geometry.values, crs=territory.crs))
    if overlays is None:
        overlays = gpd.GeoDataFrame({c: [] for c in _OVERLAY_COLUMNS}, geometry=gpd.GeoSeries([], crs=territory.crs),
                                    crs=territory.crs)
    if not frames:
        lines = gpd.GeoDataFrame({c: [] for c in _INFRA_COLUMNS}, geometry=gpd.GeoSeries([], crs=territory.crs),
                                 crs=territory.crs)
        return Infrastructure(lines, overlays)
    lines = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=territory.crs)
    lines = lines_only(clip_to(lines, boundary))
    return Infrastructure(lines, overlays)


def prepare_overlays(territory, frames: dict[str, gpd.GeoDataFrame], boundary) -> gpd.GeoDataFrame:
    """Footprints of the ``friction.overlays`` (cavaliers, hedgerows…): ``frames`` maps each overlay name to its
    source features; they are filtered by ``where``, buffered to their width (lines, points) and clipped."""
    out = []
    for name, cfg in territory.friction.overlays.items():
        gdf = frames.get(name)
        if gdf is None or gdf.empty:
            continue
        for col, values in cfg.where.items():
            if col not in gdf.columns:
                raise LayerInputError(f"overlay {name!r}: column {col!r} missing (columns: {list(gdf.columns)})")
            gdf = gdf[gdf[col].astype(str).isin([str(v) for v in values])]
        if gdf.empty:
            continue
        width = element_widths(gdf, cfg, [cfg.class_] * len(gdf), what=f"overlay {name!r}")
        polygonal = gdf.geom_type.isin(["Polygon", "MultiPolygon"]).to_numpy()
        raw = np.asarray(gdf.geometry.values, dtype=object)
        geoms = np.where(polygonal, raw, shapely.buffer(raw, np.nan_to_num(width) / 2.0))
        out.append(gpd.GeoDataFrame({"overlay": name, "class": cfg.class_, "rule": cfg.rule,
                                     "priority": cfg.priority, "width_m": width},
                                    geometry=list(geoms), crs=territory.crs))
    if not out:
        return gpd.GeoDataFrame({c: [] for c in _OVERLAY_COLUMNS}, geometry=gpd.GeoSeries([], crs=territory.crs),
                                crs=territory.crs)
    gdf = gpd.GeoDataFrame(pd.concat(out, ignore_index=True), geometry="geometry", crs=territory.crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    return polygons_only(clip_to(gdf, boundary))


def _names(gdf: gpd.GeoDataFrame) -> np.ndarray:
    for col in ("name", "nom", "toponyme"):
        if col in gdf.columns:
            return gdf[col].fillna("").astype(str).values
    return np.full(len(gdf), "", dtype=object)


# --- footprints on the grid -------------------------------------------------------------------------------------
def _segments(lines, widths) -> tuple[np.ndarray, np.ndarray]:
    """Two-point segments of (multi)lines with the width of their line (for cheap per-cell intersections)."""
    parts, idx = shapely.get_parts(np.asarray(lines, dtype=object), return_index=True)
    coords, which = shapely.get_coordinates(parts, return_index=True)
    same = which[1:] == which[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    segs = shapely.linestrings(np.stack([a, b], axis=1))
    return segs, np.asarray(widths, dtype=float)[idx[which[:-1][same]]]


def _clipped_length(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of segments a→b (N, 2) inside the boxes [lo, hi] (N, 2) (Liang–Barsky clipping, vectorized)."""
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    for k in (0, 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (lo[:, k] - a[:, k]) / d[:, k]
            tb = (hi[:, k] - a[:, k]) / d[:, k]
        flat = d[:, k] == 0
        outside = flat & ((a[:, k] < lo[:, k]) | (a[:, k] > hi[:, k]))
        tmin = np.where(flat, 0.0, np.minimum(ta, tb))
        tmax = np.where(flat, 1.0, np.maximum(ta, tb))
        t0 = np.maximum(t0, tmin)
        t1 = np.minimum(t1, np.where(outside, -1.0, tmax))
    return np.clip(t1 - t0, 0.0, None) * np.hypot(d[:, 0], d[:, 1])


def _uniform_sum_cdf(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CDF at ``t`` of U(0, a) + U(0, b) (a trapezoid), vectorized; a or b may be 0 (then a plain uniform)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    t = np.clip(t, 0.0, lo + hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(lo > 1e-9, t * t / (2 * lo * hi), 0.0)
        mid = (t - lo / 2) / hi
        fall = np.where(lo > 1e-9, 1 - (lo + hi - t) ** 2 / (2 * lo * hi), 1.0)
    out = np.where(t < lo, rise, np.where(t < hi, mid, fall))
    return np.clip(np.where(hi > 0, out, 1.0), 0.0, 1.0)


def _band_coverage(lo: np.ndarray, res: float, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Share of the cells [lo, lo + res]² within the band of width ``w`` along segments a→b (its straight body,
    extended by w/2 at both ends as caps): product of the exact shares of the cell's projections across and along
    the segment (exact for axis-aligned segments, within a few % otherwise)."""
    d = b - a
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    m = d / length[:, None]                       # along
    n = np.column_stack([-m[:, 1], m[:, 0]])      # across

    def share(u: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        base = (u * lo).sum(axis=1) + np.minimum(0, u[:, 0] * res) + np.minimum(0, u[:, 1] * res)
        ax, ay = np.abs(u[:, 0]) * res, np.abs(u[:, 1]) * res
        return _uniform_sum_cdf(upper - base, ax, ay) - _uniform_sum_cdf(lower - base, ax, ay)

    na = (n * a).sum(axis=1)
    ma = (m * a).sum(axis=1)
    across = share(n, na - w / 2, na + w / 2)
    along = share(m, ma - w / 2, ma + length + w / 2)
    return np.clip(across * along, 0.0, 1.0)


def _thin_chain(lines, values, grid: Grid) -> np.ndarray:
    """Float32 raster of ``values`` on every cell a line touches (highest value wins), as a 4-connected chain.

    A hair-thin footprint is rasterized, not the bare line: GDAL's ``all_touched`` skips a cell where a line
    passes exactly through a cell corner, which would leave a diagonal gap in the chain.
    """
    order = np.argsort(values, kind="stable")                 # "replace" in increasing order = max
    thin = shapely.buffer(np.asarray(lines, dtype=object)[order], grid.res * 0.01, quad_segs=1)
    return rasterize_values(list(thin), np.asarray(values, dtype=float)[order], grid, fill=0, dtype="float32",
                            all_touched=True)


def _band_cells(lines, widths, grid: Grid, chunk: int = 2_000_000) -> np.ndarray:
    """Float32 raster of the largest band share (:func:`_band_coverage`) of each cell over the lines' segments.

    Segments are cut into pieces of at most 4 cells, and every cell of each piece's bounding box (band included)
    is a candidate: NumPy only, no polygon per cell. On a window of a grid (``grid.offset``), candidates and cell
    coordinates are those of the full grid (bounding boxes clipped to the full grid, then to the window), so the
    window holds the full grid's values.
    """
    res, (H, W) = grid.res, grid.shape
    (R0, C0), (FH, FW) = grid.offset, grid.full_shape or grid.shape
    x0, y1 = grid.transform.c - C0 * res, grid.transform.f + R0 * res     # the full grid's corner
    pieces = shapely.segmentize(np.asarray(lines, dtype=object), 4 * res)
    segs, w = _segments(pieces, widths)
    out = np.zeros(H * W, dtype=np.float64)
    if len(segs) == 0:
        return out.reshape(H, W).astype(np.float32)
    ab = shapely.get_coordinates(segs).reshape(-1, 2, 2)
    lo_xy, hi_xy = ab.min(axis=1) - (w / 2)[:, None], ab.max(axis=1) + (w / 2)[:, None]
    c0 = np.clip(np.floor((lo_xy[:, 0] - x0) / res), 0, FW - 1).astype(np.int64)
    c1 = np.clip(np.floor((hi_xy[:, 0] - x0) / res), 0, FW - 1).astype(np.int64)
    r0 = np.clip(np.floor((y1 - hi_xy[:, 1]) / res), 0, FH - 1).astype(np.int64)
    r1 = np.clip(np.floor((y1 - lo_xy[:, 1]) / res), 0, FH - 1).astype(np.int64)
    if (R0, C0, FH, FW) != (0, 0, H, W):                  # a window: keep the candidates inside it
        c0, c1, r0, r1 = np.maximum(c0, C0), np.minimum(c1, C0 + W - 1), np.maximum(r0, R0), np.minimum(r1, R0 + H - 1)
        keep = (c0 <= c1) & (r0 <= r1)
        ab, w, c0, c1, r0, r1 = ab[keep], w[keep], c0[keep], c1[keep], r0[keep], r1[keep]
        segs = segs[keep]
        if len(segs) == 0:
            return out.reshape(H, W).astype(np.float32)
    nr, nc = r1 - r0 + 1, c1 - c0 + 1
    n = nr * nc
    start = 0
    while start < len(segs):
        stop = start + max(1, int(np.searchsorted(np.cumsum(n[start:]), chunk)))
        idx = np.repeat(np.arange(start, stop), n[start:stop])
        k = np.arange(len(idx)) - np.repeat(np.cumsum(n[start:stop]) - n[start:stop], n[start:stop])
        rr, cc = r0[idx] + k // nc[idx], c0[idx] + k % nc[idx]
        lo = np.column_stack([x0 + cc * res, y1 - (rr + 1) * res])
        share = _band_coverage(lo, res, ab[idx, 0], ab[idx, 1], w[idx])
        hit = share > 0
        np.maximum.at(out, (rr[hit] - R0) * W + cc[hit] - C0, share[hit])
        start = stop
    return out.reshape(H, W).astype(np.float32)


def line_coverage(lines, widths, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Share (0..1] of each touched cell covered by ``lines`` buffered to ``widths`` (m). Returns (flat cell
    indices, coverage).

    * A line narrower than the cell: every cell it touches (a 4-connected chain, so no diagonal leak) gets
      width / cell, so a perpendicular crossing of one cell collects ``F × width``.
    * A line at least as wide as the cell: the share of the cell inside the band (:func:`_band_coverage`, exact
      for axis-aligned segments), the largest over the segments; the line's own chain is fully barred (1).

    Shares of the two kinds in one cell are summed, then capped at 1. NumPy and one rasterization per kind: no
    polygon overlay, so it stays fast at 5 m.
    """
    lines = np.asarray(lines, dtype=object)
    widths = np.asarray(widths, dtype=float)
    res = grid.res
    cover = np.zeros(grid.shape, dtype=np.float32)
    narrow = widths < res
    if narrow.any():
        cover += _thin_chain(lines[narrow], widths[narrow] / res, grid)
    if (~narrow).any():
        band = _band_cells(lines[~narrow], widths[~narrow], grid)
        core = _thin_chain(lines[~narrow], np.ones(int((~narrow).sum())), grid) > 0
        band[core] = 1.0
        cover += band
    flat = np.flatnonzero(cover > 0)
    return flat.astype(np.int64), np.minimum(cover.reshape(-1)[flat], 1.0).astype(np.float32)


def footprint_coverage(footprints, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Share (0..1] of each touched cell covered by the union of ``footprints`` (polygons, metres).

    Returns ``(flat cell indices, coverage)``. Cells are those touched by a footprint (``all_touched``); the share
    is the exact area of footprint ∩ cell / cell area (overlapping footprints are summed, capped at 1).
    """
    geoms = [g for g in footprints if g is not None and not g.is_empty]
    if not geoms:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    touched = rasterize_values(geoms, [1] * len(geoms), grid, fill=0, dtype="uint8", all_touched=True)
    rows, cols = np.nonzero(touched)
    res, (R0, C0) = grid.res, grid.offset
    x0, y1 = grid.transform.c - C0 * res, grid.transform.f + R0 * res     # the full grid's corner (windows)
    fr, fc = rows + R0, cols + C0
    boxes = shapely.box(x0 + fc * res, y1 - (fr + 1) * res, x0 + (fc + 1) * res, y1 - fr * res)
    polys = np.asarray(geoms, dtype=object)
    tree = shapely.STRtree(polys)
    bi, pi = tree.query(boxes, predicate="intersects")
    order = np.lexsort((pi, bi))           # sums in footprint order, whatever the tree (a window's is smaller)
    bi, pi = bi[order], pi[order]
    area = shapely.area(shapely.intersection(boxes[bi], polys[pi]))
    cover = np.bincount(bi, weights=area, minlength=len(boxes)) / (res * res)
    keep = cover > 0
    flat = rows[keep].astype(np.int64) * grid.shape[1] + cols[keep]
    return flat, np.minimum(cover[keep], 1.0).astype(np.float32)


@dataclass(frozen=True)
class _Burn:
    priority: int
    order: int
    rule: str
    cells: np.ndarray            # flat indices
    coverage: np.ndarray | None  # None: full value on every cell (replace / min / legacy line burn)
    value: float | dict[str, float]  # float, or dict sous-trame → float (overlays)
    verte_only: bool = False


def _burns(territory, infra: Infrastructure, grid: Grid) -> list[_Burn]:
    key = (grid.transform, grid.shape)
    if key in infra._burns:
        return infra._burns[key]
    burns: list[_Burn] = []
    order = 0
    lines = infra.lines
    if len(lines):
        groups = lines.groupby(["priority", "rule", "friction", "infra_type"], sort=True, dropna=False)
        for (prio, rule, fr, itype), grp in groups:
            legacy = grp[grp["width_m"].isna()]
            wide = grp[grp["width_m"].notna()]
            if len(legacy):
                r = rasterize_values(legacy.geometry, [1] * len(legacy), grid, fill=0, dtype="uint8",
                                     all_touched=True)
                burns.append(_Burn(int(prio), order, rule, np.flatnonzero(r), None, float(fr), itype == "canal"))
                order += 1
            if len(wide):
                if rule == "max":
                    cells, cov = line_coverage(wide.geometry.values, wide["width_m"].to_numpy(), grid)
                else:
                    fp = shapely.buffer(np.asarray(wide.geometry.values, dtype=object),
                                        wide["width_m"].to_numpy() / 2.0)
                    r = rasterize_values(fp, [1] * len(fp), grid, fill=0, dtype="uint8", all_touched=True)
                    cells, cov = np.flatnonzero(r), None
                burns.append(_Burn(int(prio), order, rule, cells, cov, float(fr), itype == "canal"))
                order += 1
    ov = infra.overlays
    if ov is not None and len(ov):
        for (prio, rule, cls, _name), grp in ov.groupby(["priority", "rule", "class", "overlay"], sort=True):
            value = {st: float(territory.friction.landuse[cls][st]) for st in territory.sous_trames}
            if rule == "max":
                cells, cov = footprint_coverage(grp.geometry.values, grid)
            else:
                r = rasterize_values(grp.geometry, [1] * len(grp), grid, fill=0, dtype="uint8", all_touched=True)
                cells, cov = np.flatnonzero(r), None
            burns.append(_Burn(int(prio), order, rule, cells, cov, value))
            order += 1
    burns.sort(key=lambda b: (b.priority, b.order))
    infra._burns.clear()
    infra._burns[key] = burns
    return burns


def _apply(base: np.ndarray, burn: _Burn, value: float) -> None:
    """Apply one burn in place on a flat float32 raster."""
    cur = base[burn.cells]
    new = np.float32(value) if burn.coverage is None else cur + (np.float32(value) - cur) * burn.coverage
    if burn.rule == "max":
        base[burn.cells] = np.fmax(cur, new)
    elif burn.rule == "min":
        base[burn.cells] = np.fmin(cur, new)
    else:
        base[burn.cells] = new
    base[burn.cells[np.isnan(cur)]] = np.nan      # nothing is burned outside the computation extent


def landuse_friction(territory, sous_trame: str, classes_raster: np.ndarray, classes: list[str]) -> np.ndarray:
    """Float32 friction of each cell's land-use class for the sous-trame; NaN where the class index is -1."""
    lut = np.array([float(territory.friction.landuse[c][sous_trame]) for c in classes] + [np.nan],
                   dtype=np.float32)
    return lut[np.where(classes_raster >= 0, classes_raster, len(classes))]


def infrastructure_friction(territory, sous_trame: str, infra: Infrastructure, grid: Grid) -> np.ndarray:
    """Float32 raster of what the infrastructure lines alone add to a zero background (0 where none): the full
    friction on legacy / replace cells, friction × covered share on barrier footprints. Canals only count for the
    terrestrial sous-trames (``trame: verte``): for the trame bleue they are water habitat."""
    out = np.zeros(grid.shape[0] * grid.shape[1], dtype=np.float32)
    verte = territory.sous_trames[sous_trame].trame == "verte"
    for burn in _burns(territory, infra, grid):
        if isinstance(burn.value, dict) or (burn.verte_only and not verte):
            continue
        _apply(out, burn, burn.value)
    return out.reshape(grid.shape)


def friction_raster(territory, sous_trame: str, classes_raster: np.ndarray, classes: list[str],
                    infra: Infrastructure, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(friction, land-cover friction), float32, NaN outside the computation extent.

    ``friction``: land use, then every element in priority order with its rule. The land-cover friction is the
    land use with the overlays (favourable elements such as cavaliers are land cover) but without the
    infrastructure lines (their crossings are rupture points, not land cover).
    """
    lu = landuse_friction(territory, sous_trame, classes_raster, classes).reshape(-1).copy()
    verte = territory.sous_trames[sous_trame].trame == "verte"
    burns = _burns(territory, infra, grid)
    for burn in burns:                       # overlays first pass: the land-cover friction
        if isinstance(burn.value, dict):
            _apply(lu, burn, burn.value[sous_trame])
    fr = landuse_friction(territory, sous_trame, classes_raster, classes).reshape(-1).copy()
    for burn in burns:
        if burn.verte_only and not verte:
            continue
        _apply(fr, burn, burn.value[sous_trame] if isinstance(burn.value, dict) else burn.value)
    return fr.reshape(grid.shape).astype(np.float32), lu.reshape(grid.shape).astype(np.float32)

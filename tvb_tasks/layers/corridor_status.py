"""Status of a corridor and of its stretches, from the land-use friction along it (docs/method.md, corridors).

As a field ecologist reads a corridor: the **longest unsupported gap** (metres in a row of cells whose land-use
friction is ≥ ``gap_min_friction``: crops, built-up) and the **share of supporting elements** (length share of
cells with friction ≤ ``support_max_friction``) give :func:`corridor_status`; :func:`downgrade_status` lowers a
corridor one step when an untreated rupture point cuts it, never below ``downgrade_floor``. The same reading per
stretch (:func:`stretch_bounds`, :func:`corridor_stretches`: a corridor cut at its long gaps) keeps one short gap
from making a long, mostly supported corridor wholly "to create"; :func:`downgrade_stretches` lowers a short piece
(``downgrade_length_m``) of the stretch around each rupture point, not the whole stretch.

Split from :mod:`tvb_tasks.layers.corridors` (which computes the corridors, uses these and re-exports them).
CRS: territory CRS (EPSG:2154); lengths in metres.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
from shapely import LineString, line_merge
from shapely.ops import substring

from .common import Grid, empty_frame

__all__ = [
    "STATUS_ORDER",
    "STRETCH_COLUMNS",
    "corridor_status",
    "corridor_stretches",
    "downgrade_status",
    "downgrade_stretches",
    "gap_and_support",
    "stretch_bounds",
]

STATUS_ORDER = ("existing", "to_restore", "to_create")


def corridor_status(max_gap_m: float, support_share: float, status_cfg) -> str:
    """existing / to_restore / to_create from the longest unsupported gap (m) and the supporting share (0..1)."""
    if max_gap_m <= status_cfg.existing_max_gap_m and support_share >= status_cfg.existing_min_support_share:
        return "existing"
    if max_gap_m <= status_cfg.restore_max_gap_m and support_share >= status_cfg.restore_min_support_share:
        return "to_restore"
    return "to_create"


def gap_and_support(cells: list[int], W: int, res: float, lu_friction, status_cfg
                    ) -> tuple[float, float, float]:
    """(longest unsupported gap m, supporting length m, total length m) along a chain of flat cell indices.

    Each step's length is shared half and half between its two cells; a cell is unsupported when its land-use
    friction is ≥ ``gap_min_friction``, supporting when ≤ ``support_max_friction``. Lengths in metres.
    ``lu_friction``: a raster, or values along paths with ``ndarray.take``'s interface (flat indices).
    """
    c = np.asarray(cells)
    if len(c) < 2:
        return 0.0, 0.0, 0.0
    lu = lu_friction.take(c).astype(np.float64)
    r, k = np.divmod(c, W)
    step = np.hypot(np.diff(r), np.diff(k)) * res
    share = np.zeros(len(c))
    share[:-1] += step / 2
    share[1:] += step / 2
    bad = lu >= status_cfg.gap_min_friction
    gap = best = 0.0
    for flag, length in zip(bad, share):
        gap = gap + length if flag else 0.0
        best = max(best, gap)
    return float(best), float(share[lu <= status_cfg.support_max_friction].sum()), float(step.sum())


def _lower(status: str, floor: str = "to_restore") -> str:
    """One step down (existing → to_restore → to_create), never below ``floor`` unless already there: with the
    default floor a rupture brings an existing corridor to "to_restore" and leaves the others as they are."""
    i = STATUS_ORDER.index(status)
    return STATUS_ORDER[max(i, min(i + 1, STATUS_ORDER.index(floor)))]


def untreated_ruptures(raw_points: gpd.GeoDataFrame, min_severity: int) -> gpd.GeoDataFrame:
    """The rupture points that lower a corridor or a stretch: severity ≥ ``min_severity`` and not treated
    (``treated`` column false or absent)."""
    pts = raw_points[raw_points["severity"] >= min_severity]
    if "treated" in pts.columns:
        pts = pts[~pts["treated"].fillna(False).astype(bool)]
    return pts


def downgrade_status(corridors: gpd.GeoDataFrame, raw_points: gpd.GeoDataFrame, min_severity: int,
                     floor: str = "to_restore") -> gpd.GeoDataFrame:
    """Lower the status one step (existing → to_restore → to_create), never below ``floor``
    (``corridors.status.downgrade_floor``), of every corridor cut by a rupture point of severity ≥ ``min_severity``
    that is not treated (``treated`` column false or absent); ``downgraded`` = 1 when the status changed. A
    corridor is lowered once whatever the number of points, and not again when already ``downgraded`` (missing
    links, lowered by their barrier in :func:`corridor_lines`). With the default floor a "to restore" corridor
    crossed by a road stays "to restore": the crossing is already its rupture point; only the corridor's own
    unsupported gap (:func:`corridor_status`) makes it "to create"."""
    out = corridors.copy()
    if out.empty or raw_points.empty:
        return out
    pts = untreated_ruptures(raw_points, min_severity)
    done = out["downgraded"].fillna(0).astype(int) == 1 if "downgraded" in out.columns else False
    lowered = out["status"].map(lambda s: _lower(s, floor))
    hit = out["id"].isin(set(pts["corridor_id"])) & ~done & lowered.ne(out["status"])
    out.loc[hit, "status"] = lowered[hit]
    out.loc[hit, "downgraded"] = 1
    return out


STRETCH_COLUMNS = ["id", "corridor_id", "sous_trame", "status", "length_m", "max_gap_m", "support_share",
                   "missing_link", "downgraded"]


def stretch_bounds(cells: list[int], W: int, res: float, lu_friction, status_cfg
                   ) -> list[tuple[int, int, str, float, float, float]]:
    """Stretches of a chain of flat cell indices: ``(first, last, status, length m, max gap m, support share)``.

    The chain is cut at every unsupported gap (cells with land-use friction ≥ ``gap_min_friction``) longer than
    ``existing_max_gap_m``: such a gap is a stretch of its own, "to create" when longer than ``restore_max_gap_m``
    (crops or built land to turn into a corridor), else "to restore" (a field to replant); each stretch between
    gaps gets :func:`corridor_status` of its own gap (≤ ``existing_max_gap_m``) and support share. Lengths share
    each step half and half between its two cells (as :func:`gap_and_support`), so the stretches add up to the
    chain's length.
    """
    c = np.asarray(cells)
    n = len(c)
    if n < 2:
        return []
    lu = np.asarray(lu_friction.take(c), dtype=np.float64)     # a raster, or values gathered along the paths
    r, k = np.divmod(c, W)
    step = np.hypot(np.diff(r), np.diff(k)) * res
    share = np.zeros(n)
    share[:-1] += step / 2
    share[1:] += step / 2
    bad = lu >= status_cfg.gap_min_friction
    good = lu <= status_cfg.support_max_friction
    cuts, i = [], 0
    while i < n:
        if bad[i]:
            j = i
            while j + 1 < n and bad[j + 1]:
                j += 1
            if share[i:j + 1].sum() > status_cfg.existing_max_gap_m:
                cuts.append((i, j))
            i = j + 1
        else:
            i += 1
    pieces, prev = [], 0
    for s, e in cuts:
        if s > prev:
            pieces.append((prev, s - 1, False))
        pieces.append((s, e, True))
        prev = e + 1
    if prev < n:
        pieces.append((prev, n - 1, False))
    out = []
    for s, e, is_gap in pieces:
        length = float(share[s:e + 1].sum())
        if is_gap:
            status = "to_create" if length > status_cfg.restore_max_gap_m else "to_restore"
            out.append((s, e, status, length, length, 0.0))
            continue
        gap = best = 0.0
        for flag, part in zip(bad[s:e + 1], share[s:e + 1]):
            gap = gap + part if flag else 0.0
            best = max(best, gap)
        support = float(share[s:e + 1][good[s:e + 1]].sum() / length) if length > 0 else 0.0
        out.append((s, e, corridor_status(best, support, status_cfg), length, float(best), support))
    return out


def _stretch_line(cells: list[int], s: int, e: int, grid: Grid) -> LineString:
    """Centre line of cells ``s..e`` of a chain, extended to the middle of the steps to its neighbours."""
    r, k = np.divmod(np.asarray(cells), grid.shape[1])
    x, y = grid.cell_centres(r, k)
    xs, ys = list(x[s:e + 1]), list(y[s:e + 1])
    if s > 0:
        xs.insert(0, (x[s - 1] + x[s]) / 2)
        ys.insert(0, (y[s - 1] + y[s]) / 2)
    if e < len(cells) - 1:
        xs.append((x[e] + x[e + 1]) / 2)
        ys.append((y[e] + y[e + 1]) / 2)
    return LineString(np.column_stack([xs, ys]))


def corridor_stretches(corridors: gpd.GeoDataFrame, grid: Grid, lu_friction, status_cfg
                       ) -> gpd.GeoDataFrame:
    """Stretches (:data:`STRETCH_COLUMNS`, ids ``<corridor id>-Snn``) of every corridor's own runs (column
    ``_runs`` written by :func:`corridor_lines`): the status per stretch (:func:`stretch_bounds`), so one short gap
    does not make a long, mostly supported corridor wholly "to create". Rupture points then lower the stretch
    they fall on (:func:`downgrade_stretches`). Lengths in metres, territory CRS. ``lu_friction``: the land-use
    friction raster, or its values at the runs' cells (``take`` of flat indices: the tiled stage's
    :class:`~tvb_tasks.layers.tile_links.CellValues`)."""
    rows, geoms = [], []
    W = grid.shape[1]
    if corridors.empty or "_runs" not in corridors.columns:
        return empty_frame(corridors.crs, STRETCH_COLUMNS)
    for _, c in corridors.iterrows():
        j = 0
        for run in c["_runs"]:
            for s, e, status, length, gap, support in stretch_bounds(run, W, grid.res, lu_friction, status_cfg):
                j += 1
                rows.append({"id": f"{c['id']}-S{j:02d}", "corridor_id": c["id"], "sous_trame": c["sous_trame"],
                             "status": status, "length_m": length, "max_gap_m": gap, "support_share": support,
                             "missing_link": int(c["missing_link"]), "downgraded": 0})
                geoms.append(_stretch_line(run, s, e, grid))
    if not rows:
        return empty_frame(corridors.crs, STRETCH_COLUMNS)
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=corridors.crs)[STRETCH_COLUMNS + ["geometry"]]


def _lowered_intervals(line_length: float, positions: list[float], length_m: float) -> list[tuple[float, float]]:
    """Merged intervals ``(start, end)`` in metres along a line of ``line_length`` m, one of ``length_m`` centred on
    each rupture position (clipped to the line; overlapping intervals merged)."""
    half = length_m / 2
    iv = sorted((max(0.0, p - half), min(line_length, p + half)) for p in positions)
    out: list[tuple[float, float]] = []
    for a, b in iv:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _pieces(line_length: float, lowered: list[tuple[float, float]]) -> list[tuple[float, float, bool]]:
    """The line cut at the lowered intervals: ``(start, end, lowered)`` in metres, covering ``0..line_length``;
    pieces shorter than a millimetre are dropped."""
    out, prev = [], 0.0
    for a, b in lowered:
        if a > prev:
            out.append((prev, a, False))
        out.append((a, b, True))
        prev = b
    if prev < line_length:
        out.append((prev, line_length, False))
    return [p for p in out if p[1] - p[0] > 1e-3]


def downgrade_stretches(stretches: gpd.GeoDataFrame, raw_points: gpd.GeoDataFrame, min_severity: int,
                        floor: str = "to_restore", length_m: float = 300.0) -> gpd.GeoDataFrame:
    """Lower one step, never below ``floor``, a piece of ``length_m`` metres (``corridors.status.downgrade_length_m``)
    centred on each untreated rupture point of severity ≥ ``min_severity``, on the stretch of its corridor nearest
    to the point: the stretch is cut there (a "point de conflit", treated locally as Barrier Mapper scores a barrier
    over a short search window, not along the whole link), the piece at the crossing takes the lowered status
    (``downgraded`` = 1), the rest of the stretch keeps its own. Pieces keep their stretch's ``max_gap_m`` and
    ``support_share``; their ``length_m`` is the stretch's length shared in proportion of the geometry, so lengths
    still add up to the corridor's. A split stretch ``<id>`` gives ``<id>a``, ``<id>b``, … . Metres, territory CRS.
    """
    out = stretches.copy()
    if out.empty or raw_points.empty:
        return out
    pts = untreated_ruptures(raw_points, min_severity)
    hits: dict[int, list] = {}
    for cid, geom in zip(pts["corridor_id"], pts.geometry):
        cand = out[out["corridor_id"] == cid]
        if len(cand):
            i = cand.index[int(np.argmin(cand.distance(geom).to_numpy()))]
            hits.setdefault(i, []).append(geom)
    rows = []
    for i, row in out.iterrows():
        new = _lower(row["status"], floor) if i in hits else row["status"]
        line = row.geometry
        if new == row["status"]:
            rows.append(row)
            continue
        if line.geom_type != "LineString":
            line = line_merge(line)
        if line.geom_type != "LineString" or line.length <= 0:      # cannot be cut: lower the whole stretch
            row = row.copy()
            row["status"], row["downgraded"] = new, 1
            rows.append(row)
            continue
        lowered = _lowered_intervals(line.length, [line.project(p) for p in hits[i]], length_m)
        pieces = _pieces(line.length, lowered)
        for k, (a, b, low) in enumerate(pieces):
            piece = row.copy()
            if len(pieces) > 1:
                piece["id"] = f"{row['id']}{chr(ord('a') + k) if k < 26 else k}"
            piece["length_m"] = float(row["length_m"]) * (b - a) / line.length if "length_m" in row else b - a
            if low:
                piece["status"], piece["downgraded"] = new, 1
            piece["geometry"] = substring(line, a, b)
            rows.append(piece)
    res = gpd.GeoDataFrame(rows, columns=out.columns, crs=out.crs).reset_index(drop=True)
    return res.set_geometry(out.geometry.name)

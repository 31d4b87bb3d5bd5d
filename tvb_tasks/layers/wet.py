"""Wet corridors (corridors de la trame bleue): open watercourses linking wet reservoirs and relays.

Method: the watercourse lines (role ``watercourses``) are noded into a network; culverted / underground sections
(``position`` ≠ ``open``) are removed when ``corridors.wet.open_only``, otherwise kept in the network and flagged
``buse`` (busé): the watercourse continues through the culvert, and each culvert under a road or railway is a wet
rupture point (:func:`tvb_tasks.layers.ruptures.culvert_ruptures`). The network is cut at the outlines of the wet patches (reservoirs + relays of the
``bleue`` sous-trames); a network node within ``corridors.wet.snap_tolerance_m`` metres (one cell when unset) of a patch is attached to it. Each
patch is a source of a multi-source Dijkstra along the network (distance in metres); two patches whose network
zones meet are linked when their distance ≤ the sous-trame's dispersal distance (``max_cost`` / the lowest
friction of its habitat classes); each patch keeps its ``max_links_per_reservoir`` shortest links. A network end on the
territory outline is a terminal too (the watercourse continues to the neighbours' network). The wet corridors are
the network stretches used by the kept links, plus the watercourse stretches through the linked patches.

CRS: territory CRS (EPSG:2154); lengths in metres.
"""
from __future__ import annotations

import itertools

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from shapely import MultiLineString

from .common import clip_to, empty_frame, lines_only

__all__ = ["WET_COLUMNS", "prepare_watercourses", "wet_corridors"]

WET_COLUMNS = ["id", "sous_trame", "name", "kind", "position", "buse", "length_m"]   # buse: culverted section


def prepare_watercourses(watercourses: gpd.GeoDataFrame, boundary) -> gpd.GeoDataFrame:
    """Watercourse lines clipped to the territory with ``name``, ``kind``, ``position`` (missing → '', 'open')."""
    if watercourses.empty:
        return empty_frame(watercourses.crs, ["name", "kind", "position"])
    name = next((c for c in ("name", "nom", "toponyme") if c in watercourses.columns), None)
    out = gpd.GeoDataFrame({
        "name": watercourses[name].fillna("").astype(str).values if name else "",
        "kind": watercourses["kind"].fillna("").astype(str).values if "kind" in watercourses.columns else "",
        "position": (watercourses["position"].fillna("open").astype(str).values
                     if "position" in watercourses.columns else "open"),
    }, geometry=watercourses.geometry.values, crs=watercourses.crs)
    return lines_only(clip_to(out, boundary))


def _node_network(lines: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Split every line at every intersection with another line; keep the attributes of the line split."""
    if lines.empty:
        return lines
    noded = shapely.union_all(np.asarray(lines.geometry.values))
    pieces = gpd.GeoDataFrame(geometry=list(shapely.get_parts(noded)), crs=lines.crs)
    pieces = lines_only(pieces)
    # attribute of each piece: the source line it lies on (midpoint within 1 cm)
    mid = pieces.geometry.interpolate(0.5, normalized=True)
    j = gpd.sjoin_nearest(gpd.GeoDataFrame(geometry=mid, crs=lines.crs), lines, how="left", max_distance=0.01)
    j = j[~j.index.duplicated(keep="first")]
    for col in ("name", "kind", "position"):
        pieces[col] = j[col].reindex(pieces.index).fillna("").values
    return pieces


def _split_by_patches(network: gpd.GeoDataFrame, patch_union) -> gpd.GeoDataFrame:
    """Network pieces cut at the patch outlines, with ``in_patch`` (bool)."""
    outside = network.assign(geometry=network.geometry.difference(patch_union), in_patch=False)
    inside = network.assign(geometry=network.geometry.intersection(patch_union), in_patch=True)
    both = pd.concat([lines_only(outside), lines_only(inside)], ignore_index=True)
    return gpd.GeoDataFrame(both, geometry="geometry", crs=network.crs)


def _keep_links(links: pd.DataFrame, k: int) -> np.ndarray:
    """Indices of the links among the ``k`` cheapest of either end (columns a, b, cost)."""
    ends = pd.concat([links[["a", "cost"]].rename(columns={"a": "r"}).assign(i=links.index),
                      links[["b", "cost"]].rename(columns={"b": "r"}).assign(i=links.index)])
    return np.sort(ends.sort_values(["r", "cost", "i"], kind="stable").groupby("r").head(k)["i"].unique())


def wet_corridors(territory, watercourses: gpd.GeoDataFrame, patches: gpd.GeoDataFrame,
                  wet_sous_trames: list[str], boundary=None) -> tuple[gpd.GeoDataFrame, dict]:
    """Wet corridors (:data:`WET_COLUMNS`) and a summary dict (km of culverted / open network, number of links).

    ``watercourses`` from :func:`prepare_watercourses`; ``patches``: wet reservoirs and relays with a ``patch``
    id column (the reservoir or relay id). ``boundary``: the territory outline; a watercourse leaving the
    territory continues to the neighbours' wet network, so a network end on the outline is a link terminal too
    (a patch–outline link; outline-to-outline stretches touching no patch are not corridors).
    """
    crs = territory.crs
    open_only = territory.corridors.wet.open_only
    summary = {"culverted_km": 0.0, "network_km": 0.0, "links": 0, "outline_links": 0}
    if watercourses.empty or patches.empty or not wet_sous_trames:
        return empty_frame(crs, WET_COLUMNS), summary
    culverted = watercourses["position"] != "open"
    summary["culverted_km"] = float(watercourses.length[culverted].sum() / 1000)
    lines = watercourses[~culverted] if open_only else watercourses
    summary["network_km"] = float(lines.length.sum() / 1000)
    if lines.empty:
        return empty_frame(crs, WET_COLUMNS), summary
    patch_union = shapely.union_all(np.asarray(patches.geometry.values))
    network = _split_by_patches(_node_network(lines), patch_union)
    snap_m = territory.corridors.wet.snap_tolerance_m
    snap = float(territory.resolution_m if snap_m is None else snap_m)
    max_len = min(territory.sous_trames[st].max_cost
                  / min(territory.friction.landuse[c][st] for c in territory.sous_trames[st].habitat)
                  for st in wet_sous_trames)

    def node(xy) -> tuple[float, float]:
        return (round(xy[0], 2), round(xy[1], 2))

    graph = nx.Graph()
    for i, (geom, in_patch) in enumerate(zip(network.geometry, network["in_patch"])):
        a, b = node(geom.coords[0]), node(geom.coords[-1])
        if in_patch or a == b or (graph.has_edge(a, b) and graph[a][b]["weight"] <= geom.length):
            continue
        graph.add_edge(a, b, weight=geom.length, piece=i)
    tree = patches.sindex
    for n in list(graph.nodes):
        for k in tree.query(shapely.Point(n), predicate="dwithin", distance=snap):
            graph.add_edge(n, ("P", int(k)), weight=0.0, piece=-1)
    exits = []
    if boundary is not None:
        ring = boundary.boundary
        exits = [n for n in graph.nodes if not isinstance(n[0], str) and graph.degree(n) == 1
                 and ring.distance(shapely.Point(n)) <= snap]
    sources = [("P", k) for k in range(len(patches)) if graph.has_node(("P", k))]
    if not sources:
        return empty_frame(crs, WET_COLUMNS), summary
    dist, paths = nx.multi_source_dijkstra(graph, sources, cutoff=max_len, weight="weight")
    owner = {n: p[0] for n, p in paths.items()}
    best: dict[tuple, tuple[float, tuple, tuple]] = {}
    for u, v, d in graph.edges(data=True):
        if u not in owner or v not in owner or owner[u] == owner[v]:
            continue
        pa, pb = sorted((owner[u], owner[v]))
        total = dist[u] + d["weight"] + dist[v]
        if total <= max_len and ((pa, pb) not in best or total < best[(pa, pb)][0]):
            best[(pa, pb)] = (total, u, v)
    node_paths = []
    if best:
        links = pd.DataFrame([(a, b, t) for (a, b), (t, _, _) in best.items()], columns=["a", "b", "cost"])
        keep = _keep_links(links, territory.corridors.max_links_per_reservoir)
        for i in keep:
            _, u, v = best[(links.loc[i, "a"], links.loc[i, "b"])]
            node_paths.append(paths[u] + paths[v][::-1])
        summary["links"] = int(len(keep))
    for e in exits:                       # patch → territory outline (continuity with the neighbours)
        if e in paths:
            node_paths.append(paths[e])
            summary["outline_links"] += 1
    used: set[int] = set()
    linked_patches: set[int] = set()
    for nodes in node_paths:
        for x, y in itertools.pairwise(nodes):
            piece = graph[x][y]["piece"]
            if piece >= 0:
                used.add(piece)
        linked_patches.update(n[1] for n in nodes if isinstance(n[0], str))
    if not used:
        return empty_frame(crs, WET_COLUMNS), summary
    # the watercourse stretches through a linked patch belong to the corridor too
    inner = network[network["in_patch"]]
    if len(inner) and linked_patches:
        linked = shapely.union_all(np.asarray(patches.geometry.iloc[sorted(linked_patches)].values))
        mids = inner.geometry.interpolate(0.5, normalized=True)
        used.update(inner.index[mids.within(linked.buffer(0.01))])
    pieces = network.loc[sorted(used)]
    rows, geoms = [], []
    for (name, kind, position), grp in pieces.groupby(["name", "kind", "position"], sort=True):
        merged = shapely.line_merge(MultiLineString(list(grp.geometry)))
        for part in shapely.get_parts(merged):
            rows.append({"name": name, "kind": kind, "position": position, "buse": position == "culverted",
                         "length_m": part.length})
            geoms.append(part)
    out = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)
    out = out.sort_values("length_m", ascending=False, kind="stable").reset_index(drop=True)
    out.insert(0, "id", [f"W{i:03d}" for i in range(1, len(out) + 1)])
    out.insert(1, "sous_trame", wet_sous_trames[0] if len(wet_sous_trames) == 1 else ",".join(wet_sous_trames))
    return out[WET_COLUMNS + ["geometry"]], summary

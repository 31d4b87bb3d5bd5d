"""The priorities of two releases matched by identity (ids are not stable between releases) and the history of
the top priorities (:func:`top_changes`). Split from :mod:`.ranking`, which re-exports these names. CRS: the
territory's (metres).
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


def identity_geometries(priorities: gpd.GeoDataFrame, corridors: gpd.GeoDataFrame | None) -> np.ndarray:
    """What identifies each priority between releases: a corridor's line (from ``corridors`` by id; its point when
    absent), a site's point. Territory CRS (m)."""
    geoms = np.asarray(priorities.geometry.values, dtype=object).copy()
    if corridors is None or corridors.empty:
        return geoms
    lines = dict(zip(corridors["id"].astype(str), corridors.geometry.values))
    for i, (cand, ident) in enumerate(zip(priorities["candidate"], priorities["id"].astype(str))):
        if cand == "corridor" and ident in lines:
            geoms[i] = lines[ident]
    return geoms


def _line_overlap(a, b, buffer_m: float) -> float:
    """Share of each line within ``buffer_m`` of the other, the smaller of the two (0..1)."""
    if a.length <= 0 or b.length <= 0:
        return 0.0
    return float(min(a.intersection(b.buffer(buffer_m)).length / a.length,
                     b.intersection(a.buffer(buffer_m)).length / b.length))


def match_previous(current: pd.DataFrame, cur_geoms: np.ndarray, previous: pd.DataFrame, prev_geoms: np.ndarray,
                   match) -> dict[str, str]:
    """{current id: previous id} of the priorities that are the same object in two releases, whatever their ids.

    A corridor: same sous-trame, each line within ``match.corridor_buffer_m`` of the other over at least
    ``match.corridor_min_overlap`` of its length. A site: same sous-trame and infrastructure, points within
    ``match.site_tolerance_m``. One to one, best pairs first (largest overlap, then nearest). ``match``: a
    :class:`~tvb_tasks.config_sections.HistoryMatch`; geometries from :func:`identity_geometries` (CRS in m)."""
    pairs: list[tuple[float, str, str]] = []
    if not len(current) or not len(previous):
        return {}
    near = shapely.STRtree(prev_geoms).query(cur_geoms, predicate="dwithin",
                                              distance=max(match.corridor_buffer_m, match.site_tolerance_m))
    cur_rows, prev_rows = list(current.itertuples(index=False)), list(previous.itertuples(index=False))
    for i, j in zip(*near):
        c, p = cur_rows[i], prev_rows[j]
        if c.candidate != p.candidate or c.sous_trame != p.sous_trame:
            continue
        a, b = cur_geoms[i], prev_geoms[j]
        if c.candidate == "corridor" and a.geom_type.endswith("LineString") and b.geom_type.endswith("LineString"):
            share = _line_overlap(a, b, match.corridor_buffer_m)
            if share >= match.corridor_min_overlap:
                pairs.append((-share, str(c.id), str(p.id)))
        elif c.candidate != "corridor" and str(c.infrastructure) == str(p.infrastructure):
            d = float(a.distance(b))
            if d <= match.site_tolerance_m:
                pairs.append((d, str(c.id), str(p.id)))
    out: dict[str, str] = {}
    used: set[str] = set()
    for _, cid, pid in sorted(pairs):
        if cid not in out and pid not in used:
            out[cid] = pid
            used.add(pid)
    return out


def top_changes(current: pd.DataFrame, previous: pd.DataFrame | None, top_n: int,
                matches: dict[str, str] | None = None, merged: dict[str, str] | None = None) -> pd.DataFrame:
    """History of the top priorities: every item in the current or previous top ``top_n`` with its id and rank
    then and now and a French ``evolution``: maintenue (in both tops), entrée dans le top, sortie du top, nouvelle
    (no match in the previous release), disparue (no match in this one).

    ``matches`` ({current id: previous id}, :func:`match_previous`) says which items are the same object; ids are
    not stable between releases, so without it items match by id only. ``merged`` ({previous id: current site
    id}): previous corridors that are now crossing-only corridors, carried by that site (evolution "franchissement
    seul", the site's rank)."""
    cols = ["id", "sous_trame", "rank", "score", "id_previous", "rank_previous", "score_previous", "evolution"]
    if previous is None or not len(previous):
        out = current.loc[current["rank"] <= top_n, ["id", "sous_trame", "rank", "score"]].copy()
        out["id_previous"], out["rank_previous"], out["score_previous"] = None, np.nan, np.nan
        out["evolution"] = "première publication"
        return out[cols].sort_values("rank").reset_index(drop=True)
    if matches is None:
        known = set(previous["id"].astype(str))
        matches = {i: i for i in current["id"].astype(str) if i in known}
    prev = previous.assign(id=previous["id"].astype(str)).set_index("id")
    back = {p: c for c, p in matches.items()}
    rows = []
    for r in current.itertuples(index=False):
        pid = matches.get(str(r.id))
        was = prev.loc[pid] if pid is not None else None
        if r.rank > top_n and (was is None or was["rank"] > top_n):
            continue
        rows.append({"id": str(r.id), "sous_trame": r.sous_trame, "rank": r.rank, "score": r.score,
                     "id_previous": pid, "rank_previous": np.nan if was is None else was["rank"],
                     "score_previous": np.nan if was is None else was["score"]})
    site = current.assign(id=current["id"].astype(str)).set_index("id")
    for pid, p in prev[prev["rank"] <= top_n].iterrows():
        if pid not in back:
            carrier = (merged or {}).get(str(pid))
            now = site.loc[carrier] if carrier is not None and carrier in site.index else None
            rows.append({"id": carrier if now is not None else None, "sous_trame": p["sous_trame"],
                         "rank": np.nan if now is None else now["rank"],
                         "score": np.nan if now is None else now["score"], "id_previous": pid,
                         "rank_previous": p["rank"], "score_previous": p["score"], "_merged": now is not None})
    out = pd.DataFrame(rows, columns=[*cols[:-1], "_merged"])
    out["_merged"] = out["_merged"].eq(True)
    now_in = out["rank"] <= top_n
    was_in = out["rank_previous"] <= top_n
    out["evolution"] = np.select(
        [out["_merged"], out["id"].isna(), out["id_previous"].isna(), now_in & was_in, now_in],
        ["franchissement seul", "disparue", "nouvelle", "maintenue", "entrée dans le top"], "sortie du top")
    out = out.drop(columns="_merged")
    return out.sort_values(["rank", "rank_previous"], na_position="last").reset_index(drop=True)

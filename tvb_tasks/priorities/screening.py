"""Project screening ("porter à connaissance"): what a planned project touches in a release, and what it costs.

The project's footprint is the union of its features (lines buffered by ``screening.line_buffer_m``, the half
width of a right-of-way), in the territory CRS (EPSG:2154, metres). Reported:

* reservoirs and relays it overlaps (id, sous-trame, area and share covered, ha);
* corridors and wet corridors it crosses (length inside the footprint, m);
* rupture sites (grouped as in :func:`.ranking.rupture_sites`) with a point inside the footprint;
* per sous-trame, the connectivity loss: ΔPC (%) and ΔEC (ha) of its graph after each touched reservoir loses the
  area covered (a reservoir covered entirely is removed with its links) and each crossed corridor is cut
  (``corridor_effect: remove``) or gets longer by affected length × ``degraded_friction`` (``degrade``) — the
  Graphab "remove the element and measure" logic (dPC) applied to the project's footprint. A watercourse of a trame
  bleue under the footprint is piped as a road culvert would pipe it (``watercourse_effect: culvert``: a culvert
  of the configured passability at the middle of each crossed stretch; ``remove`` cuts it).

Also reported: the release's restoration priorities the project touches (rank, what: :func:`priorities_touched`),
the communes under the footprint, the project's type / stage / date and the line buffer used
(:func:`project_facts`). A project that touches nothing reports empty tables and a loss of 0; one whose footprint
touches no commune of the territory is flagged ``outside_territory`` ("hors du territoire").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.errors import DeterministicError
from tvb_tasks.layers.common import M2_PER_HA

from .config import priorities_config, screening_config
from .network import Network, degradation
from .ranking import rupture_sites, sous_trame_networks


class ScreeningError(DeterministicError, ValueError):
    """The project file cannot be screened; the message names the file and the problem."""


@dataclass
class ScreeningResult:
    """Tables of touched elements (plain DataFrames, no geometry), per-sous-trame loss and the footprint."""

    footprint: object
    reservoirs: pd.DataFrame
    relays: pd.DataFrame
    corridors: pd.DataFrame
    wet_corridors: pd.DataFrame
    rupture_sites: pd.DataFrame
    connectivity: pd.DataFrame
    summary: dict = field(default_factory=dict)
    priorities: pd.DataFrame = field(default_factory=pd.DataFrame)
    project: dict = field(default_factory=dict)

    @property
    def touches_anything(self) -> bool:
        return any(len(t) for t in (self.reservoirs, self.relays, self.corridors, self.wet_corridors,
                                    self.rupture_sites))


def read_project(path: Path, territory: Territory, layer: str | None = None) -> gpd.GeoDataFrame:
    """A project file (any OGR vector: GeoPackage, GeoJSON, Shapefile…) in the territory CRS; one clear error when
    it cannot be read, has no CRS, no features or geometries that are neither polygons nor lines."""
    path = Path(path)
    if not path.exists():
        raise ScreeningError(f"project file {path}: not found")
    try:
        gdf = gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ValueError) as exc:
        raise ScreeningError(f"project file {path}: cannot be read as a vector layer ({exc})") from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise ScreeningError(f"project file {path}: no feature with a geometry")
    if gdf.crs is None:
        raise ScreeningError(f"project file {path}: no CRS (expected {territory.crs} or any declared CRS)")
    kinds = set(gdf.geom_type)
    bad = kinds - {"Polygon", "MultiPolygon", "LineString", "MultiLineString"}
    if bad:
        raise ScreeningError(f"project file {path}: geometries {sorted(bad)} (polygons or lines expected)")
    gdf = gdf.to_crs(territory.crs)
    gdf["geometry"] = shapely.make_valid(gdf.geometry.values)
    return gdf.reset_index(drop=True)


def footprint_of(project: gpd.GeoDataFrame, line_buffer_m: float):
    """Union of the project's polygons and of its lines buffered by ``line_buffer_m`` (m)."""
    geoms = project.geometry.values
    lines = shapely.get_dimensions(geoms) < 2
    geoms = np.where(lines, shapely.buffer(geoms, line_buffer_m, cap_style="flat"), geoms)
    return shapely.union_all(geoms)


def _polygons_hit(layer: gpd.GeoDataFrame, footprint) -> pd.DataFrame:
    cols = ["id", "sous_trame", "libelle", "area_ha", "affected_ha", "affected_share"]
    if layer is None or layer.empty:
        return pd.DataFrame(columns=cols)
    idx = layer.sindex.query(footprint, predicate="intersects")
    sel = layer.iloc[np.sort(idx)]
    affected = shapely.area(shapely.intersection(sel.geometry.values, footprint)) / M2_PER_HA
    area = shapely.area(sel.geometry.values) / M2_PER_HA
    out = pd.DataFrame({"id": sel["id"].astype(str).to_numpy(), "sous_trame": sel["sous_trame"].to_numpy(),
                        "libelle": sel.get("libelle", sel["id"]).astype(str).to_numpy(), "area_ha": area,
                        "affected_ha": affected, "affected_share": np.where(area > 0, affected / area, 0.0)})
    return out[out["affected_ha"] > 0].reset_index(drop=True)


def _lines_hit(layer: gpd.GeoDataFrame, footprint, extra: list[str]) -> pd.DataFrame:
    cols = ["id", "sous_trame", *extra, "libelle", "length_m", "affected_m"]
    if layer is None or layer.empty:
        return pd.DataFrame(columns=cols)
    idx = layer.sindex.query(footprint, predicate="intersects")
    sel = layer.iloc[np.sort(idx)]
    affected = shapely.length(shapely.intersection(sel.geometry.values, footprint))
    out = pd.DataFrame({"id": sel["id"].astype(str).to_numpy(), "sous_trame": sel["sous_trame"].to_numpy(),
                        **{c: sel[c].to_numpy() if c in sel.columns else None for c in extra},
                        "libelle": sel.get("libelle", sel["id"]).astype(str).to_numpy(),
                        "length_m": shapely.length(sel.geometry.values), "affected_m": affected})
    return out[out["affected_m"] > 0].reset_index(drop=True)


def _sites_hit(points: gpd.GeoDataFrame, footprint, tolerance_m: float) -> pd.DataFrame:
    cols = ["site_id", "sous_trame", "infrastructure", "infra_class", "infra_name", "corridor_ids", "n_points"]
    if points is None or points.empty:
        return pd.DataFrame(columns=cols)
    sites = rupture_sites(points, tolerance_m)
    hit_points = set(points.iloc[points.sindex.query(footprint, predicate="intersects")]["id"].astype(str))
    keep = sites["point_ids"].map(lambda ids: bool(hit_points.intersection(ids)))
    out = pd.DataFrame(sites.loc[keep, cols]).reset_index(drop=True)
    out["corridor_ids"] = out["corridor_ids"].map(", ".join)
    return out


def with_project_culverts(territory: Territory, layers: dict[str, gpd.GeoDataFrame], sous_trame: str,
                          footprint) -> gpd.GeoDataFrame:
    """The rupture points plus one culvert (``infrastructure = culvert``, severity
    ``rupture_points.culvert_severity``, ``corridor_kind = aquatique``) at the middle of each piece of watercourse
    inside the footprint (``screening.watercourse_effect: culvert``): a project over a stream pipes it as a road
    culvert does, the wet network keeps the stretch with that culvert's passability
    (``indicators.connectivity.wet_passability.culvert``) instead of losing it."""
    points = layers.get("rupture_points")
    wet = layers["wet_corridors"]
    pieces = [g for g in shapely.get_parts(shapely.intersection(wet.geometry.values, footprint))
              if g.geom_type == "LineString" and g.length > 0]
    if not pieces:
        return points
    culverts = gpd.GeoDataFrame(
        {"id": [f"PROJET-{i + 1}" for i in range(len(pieces))], "sous_trame": sous_trame,
         "corridor_kind": "aquatique", "infrastructure": "culvert", "infra_class": "project",
         "severity": int(territory.rupture_points.culvert_severity or 3)},
        geometry=[g.interpolate(0.5, normalized=True) for g in pieces], crs=wet.crs)
    if points is None or points.empty:
        return culverts
    return gpd.GeoDataFrame(pd.concat([points, culverts], ignore_index=True), geometry="geometry", crs=points.crs)


def wet_network_loss(territory: Territory, layers: dict[str, gpd.GeoDataFrame], sous_trame: str, net: Network,
                     footprint, area_loss_ha: dict[str, float]) -> tuple[float, float] | None:
    """(ΔPC %, ΔEC ha) of a trame-bleue graph built along the wet corridors (network distances, §12–13) when the
    footprint cuts them (the stretch inside it is removed, the links are rebuilt by the indicators' own builder)
    and the touched reservoirs lose their covered area; None when the sous-trame's graph is not that network."""
    from tvb_tasks.indicators import _network_inputs, indicators_config

    from .network import build_network

    wet = layers["wet_corridors"]
    if wet is None or wet.empty or net.pc_sum <= 0:
        return None
    if screening_config(territory).watercourse_effect == "culvert":
        changed = {**layers, "rupture_points": with_project_culverts(territory, layers, sous_trame, footprint)}
    else:
        cut = wet.assign(geometry=shapely.difference(wet.geometry.values, footprint))
        changed = {**layers, "wet_corridors": cut[~cut.geometry.is_empty]}
    nodes, links, kind, threshold = _network_inputs(changed, territory, sous_trame, Path("layers"))
    if kind != "network_m":
        return None
    after = build_network(nodes, links, distance_threshold=threshold,
                          probability_at_threshold=indicators_config(territory).connectivity.probability_at_threshold,
                          min_probability=priorities_config(territory).min_probability)
    dpc, _ = degradation(after, area_loss_ha=area_loss_ha, removed_links=[], lengthened_links=[]) \
        if area_loss_ha else (0.0, 0.0)
    pc_after = after.pc_sum * (1.0 + dpc / 100.0)
    return 100.0 * (pc_after - net.pc_sum) / net.pc_sum, float(np.sqrt(pc_after) - np.sqrt(net.pc_sum))


def connectivity_loss(territory: Territory, layers: dict[str, gpd.GeoDataFrame], networks: dict[str, Network],
                      reservoirs: pd.DataFrame, corridors: pd.DataFrame, wet: pd.DataFrame | None = None,
                      footprint=None) -> pd.DataFrame:
    """Per sous-trame: PC sum and EC before, ΔPC (%) and ΔEC (ha) after the project (≤ 0). A trame-bleue graph
    along the wet corridors is rebuilt with the crossed stretches cut (:func:`wet_network_loss`)."""
    cfg = screening_config(territory)
    by_id = layers["corridors"].set_index(layers["corridors"]["id"].astype(str))
    rows = []
    for st, net in networks.items():
        res = reservoirs[reservoirs["sous_trame"] == st]
        cor = corridors[corridors["sous_trame"] == st]
        loss = dict(zip(res["id"], res["affected_ha"]))
        removed, longer = [], []
        for cid, affected in zip(cor["id"], cor["affected_m"]):
            c = by_id.loc[cid]
            if cfg.corridor_effect == "remove":
                removed.append((str(c["from_id"]), str(c["to_id"])))
            else:
                longer.append((str(c["from_id"]), str(c["to_id"]),
                               float(c["cost"]) + float(affected) * cfg.degraded_friction))
        dpc, dec = degradation(net, area_loss_ha=loss, removed_links=removed, lengthened_links=longer) \
            if (loss or removed or longer) else (0.0, 0.0)
        wet_hit = wet[wet["sous_trame"].astype(str).str.split(",").map(lambda v, st=st: st in v)] \
            if wet is not None and len(wet) and territory.sous_trames[st].trame == "bleue" else None
        if wet_hit is not None and len(wet_hit) and footprint is not None:
            along = wet_network_loss(territory, layers, st, net, footprint, loss)
            if along is not None:
                dpc, dec = along
                cor = pd.concat([cor, wet_hit[["id", "sous_trame"]]])
        rows.append({"sous_trame": st, "libelle": territory.sous_trames[st].label, "ec_ha": net.ec_ha,
                     "delta_pc_pct": min(dpc, 0.0), "delta_ec_ha": min(dec, 0.0),
                     "reservoirs_touched": int(len(res)), "corridors_touched": int(len(cor))})
    return pd.DataFrame(rows, columns=["sous_trame", "libelle", "ec_ha", "delta_pc_pct", "delta_ec_ha",
                                       "reservoirs_touched", "corridors_touched"])


PRIORITY_FIELDS = ["rank", "rank_sous_trame", "id", "candidate", "sous_trame", "libelle", "gain_dpc_pct", "flag"]


def priorities_touched(priorities: pd.DataFrame | None, corridors: pd.DataFrame, sites: pd.DataFrame
                       ) -> pd.DataFrame:
    """The restoration priorities of the release the project touches: a corridor candidate it crosses or a rupture
    site it covers (by rank)."""
    if priorities is None or priorities.empty:
        return pd.DataFrame(columns=PRIORITY_FIELDS)
    ids = set(corridors["id"].astype(str)) | set(sites["site_id"].astype(str))
    hit = pd.DataFrame(priorities)
    hit = hit[hit["id"].astype(str).isin(ids)]
    for col in PRIORITY_FIELDS:
        if col not in hit.columns:
            hit[col] = None
    return hit.sort_values("rank")[PRIORITY_FIELDS].reset_index(drop=True)


def project_facts(project: gpd.GeoDataFrame, footprint, communes: gpd.GeoDataFrame | None,
                  line_buffer_m: float) -> dict:
    """Communes under the footprint (insee, nom), the project's type / stage / date (distinct values joined), the
    line buffer used, and ``outside_territory`` = the footprint touches no commune of the territory."""
    facts: dict = {"line_buffer_m": float(line_buffer_m),
                   "has_lines": bool((shapely.get_dimensions(project.geometry.values) < 2).any())}
    for key, cols in (("type", ("type",)), ("stage", ("stage", "etape", "stade")), ("date", ("date",))):
        col = next((c for c in cols if c in project.columns), None)
        facts[key] = ", ".join(dict.fromkeys(project[col].dropna().astype(str))) if col else ""
    names: list[str] = []
    if communes is not None and len(communes):
        idx = np.sort(communes.sindex.query(footprint, predicate="intersects"))
        names = [f"{n} ({i})" for i, n in zip(communes["insee"].astype(str).to_numpy()[idx],
                                              communes["nom"].astype(str).to_numpy()[idx])]
    facts["communes"] = names
    facts["outside_territory"] = communes is not None and len(communes) > 0 and not names
    return facts


def screen_project(territory: Territory, layers: dict[str, gpd.GeoDataFrame], project: gpd.GeoDataFrame, *,
                   networks: dict[str, Network] | None = None, priorities: pd.DataFrame | None = None
                   ) -> ScreeningResult:
    """Screen ``project`` (features in the territory CRS) against a release's ``layers`` (see module doc);
    ``priorities``: the release's priorities layer (None: not listed)."""
    cfg = screening_config(territory)
    footprint = footprint_of(project, cfg.line_buffer_m)
    shapely.prepare(footprint)
    networks = networks if networks is not None else sous_trame_networks(territory, layers)
    reservoirs = _polygons_hit(layers["reservoirs"], footprint)
    relays = _polygons_hit(layers["relays"], footprint)
    corridors = _lines_hit(layers["corridors"], footprint, ["status"])
    wet = _lines_hit(layers["wet_corridors"], footprint, ["name"])
    sites = _sites_hit(layers["rupture_points"], footprint, priorities_config(territory).site_tolerance_m)
    loss = connectivity_loss(territory, layers, networks, reservoirs, corridors, wet, footprint)
    summary = {
        "footprint_ha": float(footprint.area / M2_PER_HA),
        "reservoirs": int(len(reservoirs)), "reservoirs_affected_ha": float(reservoirs["affected_ha"].sum()),
        "relays": int(len(relays)), "relays_affected_ha": float(relays["affected_ha"].sum()),
        "corridors": int(len(corridors)), "corridors_affected_m": float(corridors["affected_m"].sum()),
        "wet_corridors": int(len(wet)), "wet_corridors_affected_m": float(wet["affected_m"].sum()),
        "rupture_sites": int(len(sites)),
        "max_loss_pc_pct": float(-loss["delta_pc_pct"].min()) if len(loss) else 0.0,
        "loss_ec_ha": float(-loss["delta_ec_ha"].sum()) if len(loss) else 0.0,
        "corridor_effect": cfg.corridor_effect,
    }
    facts = project_facts(project, footprint, layers.get("communes"), cfg.line_buffer_m)
    touched = priorities_touched(priorities, corridors, sites)
    summary["outside_territory"] = facts["outside_territory"]
    summary["priorities"] = int(len(touched))
    return ScreeningResult(footprint=footprint, reservoirs=reservoirs, relays=relays, corridors=corridors,
                           wet_corridors=wet, rupture_sites=sites, connectivity=loss, summary=summary,
                           priorities=touched, project=facts)


def result_json(result: ScreeningResult) -> dict:
    """JSON-safe dict of a screening (tables as records)."""
    from tvb_tasks.indicators import json_value, records

    return json_value({
        "summary": result.summary, "touches_anything": result.touches_anything,
        "reservoirs": records(result.reservoirs), "relays": records(result.relays),
        "corridors": records(result.corridors), "wet_corridors": records(result.wet_corridors),
        "rupture_sites": records(result.rupture_sites), "connectivity": records(result.connectivity),
        "priorities": records(result.priorities), "project_facts": result.project,
        "footprint_wkt": shapely.to_wkt(result.footprint, rounding_precision=2),
    })

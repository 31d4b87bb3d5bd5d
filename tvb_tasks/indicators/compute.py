"""Computing a release's indicators (:func:`compute_indicators`): key figures, fragmentation, connectivity and the
commune table from its ``tvb.gpkg``, the change since the previous release; written as ``indicators.json`` and CSV."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

from tvb_tasks.config import Territory
from tvb_tasks.indicators import change, communes, connectivity, fragmentation, history, key_figures
from tvb_tasks.indicators.common import json_value, records
from tvb_tasks.indicators.layers import read_layers, territory_outline
from tvb_tasks.indicators.settings import distance_threshold_cost, load_published_figures


def _network_inputs(layers: dict[str, gpd.GeoDataFrame], territory: Territory, sous_trame: str, gpkg: Path
                    ) -> tuple[pd.DataFrame, pd.DataFrame, str, float]:
    """(nodes: id, area_ha[, libelle]; links; distance kind; threshold) of a sous-trame: distances are the corridor
    costs; for a trame bleue sous-trame, metres along its wet corridors; else edge-to-edge metres between its
    reservoirs."""
    cfg = territory.indicators.connectivity
    reservoirs = layers["reservoirs"][layers["reservoirs"]["sous_trame"] == sous_trame].reset_index(drop=True)
    nodes = pd.DataFrame({"id": reservoirs["id"].astype(str),
                          "area_ha": shapely.area(reservoirs.geometry.values) / communes.M2_PER_HA})
    if "libelle" in reservoirs.columns:
        nodes["libelle"] = reservoirs["libelle"].to_numpy()
    corridors = layers["corridors"][layers["corridors"]["sous_trame"] == sous_trame]
    links = connectivity.links_from_corridors(corridors, f"{gpkg} layer 'corridors' ({sous_trame})")
    if links is not None:
        return nodes, links, "cost", distance_threshold_cost(territory, sous_trame)
    st = territory.sous_trames[sous_trame]
    wet = layers["wet_corridors"]
    if "sous_trame" in wet.columns:
        wet = wet[wet["sous_trame"].astype(str).str.split(",").map(lambda v: sous_trame in v)]
    if st.trame == "bleue" and len(wet):
        net, max_m, threshold_m = wet_network_of(layers, territory, sous_trame)
        return nodes, connectivity.reservoir_links(net, max_m), "network_m", threshold_m
    max_d = connectivity.euclidean_max_distance(cfg.distance_threshold_m, cfg.probability_at_threshold)
    return nodes, connectivity.euclidean_links(reservoirs, max_d), "euclidean_m", cfg.distance_threshold_m


def wet_network_of(layers: dict[str, gpd.GeoDataFrame], territory: Territory, sous_trame: str
                   ) -> tuple[connectivity.WetNetwork, float, float]:
    """(watercourse graph, link cut-off m, dispersal distance m) of a trame bleue sous-trame: its reservoirs on its
    wet corridors, with its wet rupture points (``corridor_kind`` aquatique: culverts, obstacles, bridges) as
    barriers whose passability (``indicators.connectivity.wet_passability``) multiplies the probability of every
    link through them. Metres = cost / the lowest friction of the habitat (water: 1), as the layers stage."""
    cfg = territory.indicators.connectivity
    st = territory.sous_trames[sous_trame]
    reservoirs = layers["reservoirs"][layers["reservoirs"]["sous_trame"] == sous_trame].reset_index(drop=True)
    wet = layers["wet_corridors"]
    if "sous_trame" in wet.columns:
        wet = wet[wet["sous_trame"].astype(str).str.split(",").map(lambda v: sous_trame in v)]
    per_m = min(territory.friction.landuse[c][sous_trame] for c in st.habitat)
    threshold_m = distance_threshold_cost(territory, sous_trame) / per_m
    k = connectivity.decay_constant(threshold_m, cfg.probability_at_threshold)
    points = layers.get("rupture_points")
    barriers = None
    if points is not None and len(points) and {"sous_trame", "corridor_kind", "severity"} <= set(points.columns):
        on = points[(points["sous_trame"].astype(str) == sous_trame) & (points["corridor_kind"] == "aquatique")]
        table = cfg.wet_passability
        classes = on["infra_class"] if "infra_class" in on.columns else [None] * len(on)
        penalty = [connectivity.passability_penalty_m(table.passability(i, sev, cls), k)
                   for i, sev, cls in zip(on["infrastructure"], on["severity"], classes)]
        barriers = gpd.GeoDataFrame({"id": on["id"].astype(str).to_numpy(), "penalty_m": penalty},
                                    geometry=on.geometry.values, crs=points.crs)
    net = connectivity.wet_network(reservoirs, wet, snap_m=cfg.wet_network_snap_m, barriers=barriers,
                                   barrier_snap_m=cfg.wet_passability.snap_m)
    return net, st.max_cost / per_m, threshold_m


def drop_float_noise(frame: pd.DataFrame, tolerance: float = 1e-12) -> pd.DataFrame:
    """Float columns with |value| ≤ ``tolerance`` set to 0 (a dPC of 6.05e-17 % is rounding noise of PC sums)."""
    out = frame.copy()
    for col in out.select_dtypes(include="float").columns:
        out.loc[out[col].abs() <= tolerance, col] = 0.0
    return out


def _write_csv(frame: pd.DataFrame, path: Path, files: list[str]) -> None:
    frame.to_csv(path, index=False, float_format="%.10g")
    files.append(str(path))


def compute_indicators(territory: Territory, gpkg: Path, out_dir: Path, *, previous_gpkg: Path | None = None,
                       previous_indicators: Path | None = None, provenance: dict | None = None,
                       previous_release_id: str | None = None) -> dict:
    """Compute a release's indicators from its ``tvb.gpkg`` and write them to ``out_dir``.

    Writes indicators.json, key_figures.csv, communes.csv, fragmentation.csv, connectivity_nodes.csv,
    connectivity_links.csv; change.csv when ``previous_indicators`` (the previous release's indicators.json or the
    indicator history, .parquet / .csv) is given, change.gpkg when ``previous_gpkg`` is given. ``provenance``
    (:func:`tvb_tasks.indicators.history.provenance`: snapshot ids, configuration hash, resolution, code version) is
    recorded in indicators.json and compared with the previous release's to say what caused the change.
    ``previous_release_id`` (the live release the previous files come from) fills ``change.previous_release`` when
    the previous indicators do not name their release (they are computed before their release id exists).
    Returns ``{"indicators_json": str, "files": [str, ...], "key_figures": {...}}``.
    """
    gpkg, out_dir = Path(gpkg), Path(out_dir)
    cfg = territory.indicators
    layers = read_layers(gpkg, territory)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    commune_table = communes.commune_measures(layers, territory)
    outline = territory_outline(layers, territory)
    figures = key_figures.key_figures(commune_table)
    published = load_published_figures(territory)
    comparison = key_figures.compare_with_published(figures, published["figures"])
    area_ha = figures["territory_area_ha"]
    details = {
        "landuse_coverage_pct": 100.0 * float(commune_table["landuse_ha"].sum()) / area_ha,
        "n_communes": int(len(commune_table)),
        "sous_trames": records(communes.sous_trame_totals(layers, territory, outline)),
    }

    fragmentation_doc, fragmentation_rows = {}, []
    for st, st_cfg in territory.computed_sous_trames.items():
        whole, per_commune = fragmentation.sous_trame_fragmentation(layers, territory, st, outline,
                                                                    cfg.fragmentation.cut_width_m)
        commune_table[f"meff_cut_{st}_ha"] = per_commune["meff_cut_ha"].to_numpy()
        commune_table[f"meff_cbc_{st}_ha"] = per_commune["meff_cbc_ha"].to_numpy()
        fragmentation_doc[st] = {"libelle": st_cfg.label, "territory": json_value(whole),
                                 "communes": records(per_commune)}
        fragmentation_rows += [
            pd.DataFrame([{"sous_trame": st, "scope": "territory", "unit_id": territory.id, **whole}]),
            per_commune.rename(columns={"insee": "unit_id"}).assign(sous_trame=st, scope="commune"),
        ]

    connectivity_doc, node_frames, link_frames = {}, [], []
    for st, st_cfg in territory.computed_sous_trames.items():
        nodes, links, kind, threshold = _network_inputs(layers, territory, st, gpkg)
        result = connectivity.analyse_network(nodes, links, landscape_area_ha=area_ha, distance_threshold=threshold,
                                              probability_at_threshold=cfg.connectivity.probability_at_threshold,
                                              min_probability=cfg.connectivity.min_probability)
        node_table = result.nodes.assign(sous_trame=st).merge(nodes.drop(columns="area_ha"), on="id", how="left")
        link_table = result.links.assign(sous_trame=st, distance_kind=kind)
        connectivity_doc[st] = {
            "libelle": st_cfg.label, "distance_kind": kind, **result.summary,
            "top_nodes": records(node_table.head(cfg.connectivity.top_n)),
            "top_links": records(link_table.head(cfg.connectivity.top_n)),
        }
        node_frames.append(node_table)
        link_frames.append(link_table)

    doc: dict[str, Any] = {
        "territory": territory.id, "territory_name": territory.name, "source_gpkg": gpkg.name,
        "key_figures": figures, "published": published, "comparison": comparison, "details": details,
        "communes": records(commune_table), "fragmentation": fragmentation_doc, "connectivity": connectivity_doc,
        "provenance": provenance, "change": None,
    }
    doc["change"] = _change(doc, territory, layers, out_dir, files, previous_gpkg, previous_indicators,
                            previous_release_id)

    _write_csv(pd.DataFrame(comparison), out_dir / "key_figures.csv", files)
    _write_csv(commune_table, out_dir / "communes.csv", files)
    _write_csv(pd.concat(fragmentation_rows, ignore_index=True)[["sous_trame", "scope", "unit_id",
                                                                 *fragmentation.METRICS]],
               out_dir / "fragmentation.csv", files)
    _write_csv(pd.concat(node_frames, ignore_index=True), out_dir / "connectivity_nodes.csv", files)
    _write_csv(drop_float_noise(pd.concat(link_frames, ignore_index=True)), out_dir / "connectivity_links.csv",
               files)
    json_path = out_dir / "indicators.json"
    json_path.write_text(json.dumps(json_value(doc), ensure_ascii=False, indent=1), encoding="utf-8")
    files.insert(0, str(json_path))
    return {"indicators_json": str(json_path), "files": files, "key_figures": json_value(figures)}


def _change(doc: dict, territory: Territory, layers: dict[str, gpd.GeoDataFrame], out_dir: Path, files: list[str],
            previous_gpkg: Path | None, previous_indicators: Path | None,
            previous_release_id: str | None = None) -> dict | None:
    """Change since the previous release (table and/or layer), written to change.csv / change.gpkg."""
    if previous_gpkg is None and previous_indicators is None:
        return None
    cfg = territory.indicators.change
    result: dict[str, Any] = {"previous_release": previous_release_id, "table": [], "layers": None,
                              "causes": history.change_causes(None, None)}
    if previous_indicators is not None:
        previous_id, previous = history.previous_rows(Path(previous_indicators))
        causes = history.change_causes(doc.get("provenance"), history.previous_provenance(Path(previous_indicators)))
        result["causes"] = causes
        table = change.change_table(history.flatten_indicators(doc), previous)
        table["method_only"] = bool(causes["method_only"]) & (table["change_abs"].fillna(1) != 0)
        _write_csv(table, out_dir / "change.csv", files)
        result["previous_release"] = previous_id or previous_release_id
        shown = table[(table["scope"] == "territory")]
        result["table"] = records(shown)
    if previous_gpkg is not None:
        previous_layers = read_layers(Path(previous_gpkg), territory, only_configured=True)
        change_layers = change.change_layers(previous_layers, layers, min_overlap_share=cfg.min_overlap_share,
                                             line_tolerance_m=cfg.line_tolerance_m,
                                             point_tolerance_m=cfg.point_tolerance_m)
        path = out_dir / "change.gpkg"
        change.write_change_gpkg(change_layers, path)
        files.append(str(path))
        result["layers"] = change.change_counts(change_layers)
    return result

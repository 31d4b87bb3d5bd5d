"""Observatory indicators of a TVB release: key figures, fragmentation, connectivity, per commune, change, history.

Entry points called by the pipeline (local paths only, no store or network here):

* :func:`compute_indicators` — reads a release's ``tvb.gpkg`` and writes ``indicators.json`` plus CSV tables
  (and ``change.csv`` / ``change.gpkg`` against the previous release);
* :func:`append_history` (in :mod:`.history`) — appends a release's indicators to the indicator history (Parquet + CSV).

All geometry work is in EPSG:2154 (metres); areas are reported in hectares and lengths in kilometres.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
import yaml
from pydantic import ValidationError

from tvb_tasks.config import PROJECT_ROOT, ConfigError, Territory
from tvb_tasks.config_sections import (ChangeConfig, ConnectivityConfig, FragmentationConfig, IndicatorsConfig,
                                       ReportConfig)
from tvb_tasks.errors import DeterministicError

CORRIDOR_STATUSES = ("existing", "to_restore", "to_create")

# layer -> columns the indicators need (the layers stage may write more)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "reservoirs": ("id", "sous_trame"),
    "relays": ("id", "sous_trame"),
    "corridors": ("id", "sous_trame", "status", "from_id", "to_id", "cost"),
    "wet_corridors": ("id",),
    "rupture_points": ("id",),
    "communes": ("insee", "nom"),
    "landuse": ("class",),
}
GEOMETRY_KIND = {
    "reservoirs": "polygon", "relays": "polygon", "landuse": "polygon", "communes": "polygon",
    "corridors": "line", "wet_corridors": "line", "rupture_points": "point", "infrastructure": "line",
    "corridor_areas": "polygon", "habitat_patches": "polygon",
}
OPTIONAL_LAYERS = ("infrastructure", "habitat_patches")   # read when the release has them


class IndicatorsError(DeterministicError, ValueError):
    """A release's layers cannot be turned into indicators; the message names the file, layer and problem."""


# --- configuration: the ``indicators:`` section of the territory YAML (tvb_tasks.config_sections) -------------------
def indicators_config(territory: Territory) -> IndicatorsConfig:
    """The territory's ``indicators:`` section (defaults when absent; a mapping set by ``model_copy`` is validated,
    ConfigError naming the YAML when invalid)."""
    raw = getattr(territory, "indicators", None) or {}
    try:
        return IndicatorsConfig.model_validate(raw)
    except ValidationError as err:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{territory.path}: invalid 'indicators' section: {details}") from None


def distance_threshold_cost(territory: Territory, sous_trame: str) -> float:
    """Cost distance (corridor cost units) at which the link probability is ``probability_at_threshold``."""
    value = indicators_config(territory).connectivity.distance_threshold_cost
    if isinstance(value, dict):
        value = value.get(sous_trame)
    return float(value) if value is not None else float(territory.sous_trames[sous_trame].max_cost)


def load_published_figures(territory: Territory) -> dict[str, Any]:
    """``{"source": path, "figures": {...}}`` from the YAML named by ``indicators.published_figures`` (or empty)."""
    rel = indicators_config(territory).published_figures
    if not rel:
        return {"source": None, "figures": {}}
    path = territory.resolve_path(rel)
    if not path.exists():
        raise ConfigError(f"{territory.path}: indicators.published_figures: no file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    figures = raw.get("figures") if isinstance(raw, dict) else None
    if not isinstance(figures, dict) or not all(isinstance(v, (int, float)) for v in figures.values()):
        raise ConfigError(f"{path}: expected a 'figures' mapping of numbers")
    return {"source": rel, "figures": {k: float(v) for k, v in figures.items()}}


def is_synthetic_landuse(territory: Territory) -> bool:
    """True when the land use is the bundled synthetic sample (a file source under ``sample/``) or flagged
    ``synthetic: true`` in its source configuration."""
    for src in territory.sources_by_role("landuse").values():
        if src.synthetic:
            return True
        if src.kind == "file" and src.path:
            path = territory.resolve_path(src.path).resolve()
            if path.is_relative_to((PROJECT_ROOT / "sample").resolve()):
                return True
    return False


# --- reading a release's layers --------------------------------------------------------------------------------------
def _check_geometry_kind(gdf: gpd.GeoDataFrame, kind: str, where: str) -> None:
    types = set(gdf.geometry.geom_type.dropna().unique())
    allowed = {"polygon": {"Polygon", "MultiPolygon"}, "line": {"LineString", "MultiLineString"},
               "point": {"Point", "MultiPoint"}}[kind]
    if types - allowed:
        raise IndicatorsError(f"{where}: expected {kind} geometries, found {sorted(types - allowed)}")


def read_layer(gpkg: Path, layer: str, crs: str = "EPSG:2154") -> gpd.GeoDataFrame:
    """One layer of a release GeoPackage, checked (columns, geometry kind), valid, in ``crs``; no empty geometries."""
    where = f"{gpkg} layer {layer!r}"
    try:
        gdf = gpd.read_file(gpkg, layer=layer)
    except (pyogrio.errors.DataLayerError, pyogrio.errors.DataSourceError) as exc:
        raise IndicatorsError(f"{where}: cannot read ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS.get(layer, ()) if c not in gdf.columns]
    if missing:
        raise IndicatorsError(f"{where}: missing columns {missing}")
    if gdf.crs is None:
        raise IndicatorsError(f"{where}: no CRS")
    if gdf.crs != crs:
        gdf = gdf.to_crs(crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].reset_index(drop=True)
    _check_geometry_kind(gdf, GEOMETRY_KIND.get(layer, "polygon"), where)
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values, method="structure",
                                                          keep_collapsed=False)
    return gdf


def read_layers(gpkg: Path, territory: Territory, *, only_configured: bool = False) -> dict[str, gpd.GeoDataFrame]:
    """All layers the indicators use, checked against the release schema (see ``REQUIRED_COLUMNS``).

    ``only_configured`` keeps only the features of the territory's sous-trames: used for a previous release when
    this run computes a subset of them, so that the other sous-trames do not show up as "lost".
    """
    gpkg = Path(gpkg)
    if not gpkg.exists():
        raise IndicatorsError(f"no GeoPackage {gpkg}")
    present = {name for name, _ in pyogrio.list_layers(gpkg)}
    absent = [layer for layer in REQUIRED_COLUMNS if layer not in present]
    if absent:
        raise IndicatorsError(f"{gpkg}: missing layers {absent}")
    layers = {layer: read_layer(gpkg, layer, territory.crs) for layer in REQUIRED_COLUMNS}
    layers.update({layer: read_layer(gpkg, layer, territory.crs) for layer in OPTIONAL_LAYERS if layer in present})
    if only_configured:
        for name, gdf in layers.items():
            if "sous_trame" in gdf.columns:
                layers[name] = gdf[gdf["sous_trame"].isin(list(territory.sous_trames))].reset_index(drop=True)
    _check_values(gpkg, layers, territory)
    return layers


def _check_domain(gdf: gpd.GeoDataFrame, column: str, allowed: set[str], where: str) -> None:
    """Every value of ``column`` is one of ``allowed`` (and none is empty)."""
    bad = set(gdf[column].dropna().astype(str).unique()) - allowed
    if bad or gdf[column].isna().any():
        raise IndicatorsError(f"{where}: unknown or empty {column} {sorted(bad)} (known: {sorted(allowed)})")


def _check_values(gpkg: Path, layers: dict[str, gpd.GeoDataFrame], territory: Territory) -> None:
    for layer in ("reservoirs", "relays", "corridors"):
        _check_domain(layers[layer], "sous_trame", set(territory.sous_trames), f"{gpkg} layer {layer!r}")
    _check_domain(layers["corridors"], "status", set(CORRIDOR_STATUSES), f"{gpkg} layer 'corridors'")
    _check_domain(layers["landuse"], "class", set(territory.landuse.classes), f"{gpkg} layer 'landuse'")
    if layers["communes"].empty:
        raise IndicatorsError(f"{gpkg} layer 'communes': no commune")
    if layers["communes"]["insee"].duplicated().any():
        raise IndicatorsError(f"{gpkg} layer 'communes': duplicated insee codes")


# --- JSON helpers ----------------------------------------------------------------------------------------------------
def json_value(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars → Python, NaN / ±inf → None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts."""
    return [json_value(r) for r in df.to_dict(orient="records")]


# --- entry point (the submodules import the helpers above, so they are imported here, after them) -------------------
from tvb_tasks.indicators import change, communes, connectivity, fragmentation, history, key_figures  # noqa: E402
from tvb_tasks.indicators.history import append_history  # noqa: E402,F401

__all__ = ["compute_indicators", "append_history", "read_layers", "indicators_config", "IndicatorsError",
           "IndicatorsConfig", "ConnectivityConfig", "ChangeConfig", "FragmentationConfig", "ReportConfig"]


def territory_outline(layers: dict[str, gpd.GeoDataFrame], territory: Territory) -> gpd.GeoDataFrame:
    """The territory as one polygon (union of its communes), column ``insee`` = the territory id."""
    union = shapely.union_all(layers["communes"].geometry.values)
    return gpd.GeoDataFrame({"insee": [territory.id]}, geometry=[union], crs=layers["communes"].crs)


def _network_inputs(layers: dict[str, gpd.GeoDataFrame], territory: Territory, sous_trame: str, gpkg: Path
                    ) -> tuple[pd.DataFrame, pd.DataFrame, str, float]:
    """(nodes: id, area_ha[, libelle]; links; distance kind; threshold) of a sous-trame: distances are the corridor
    costs; for a trame bleue sous-trame, metres along its wet corridors; else edge-to-edge metres between its
    reservoirs."""
    cfg = indicators_config(territory).connectivity
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
        # along the watercourses: metres = cost / the lowest friction of the habitat (water: 1), as the layers stage
        per_m = min(territory.friction.landuse[c][sous_trame] for c in st.habitat)
        links = connectivity.network_links(reservoirs, wet, snap_m=cfg.wet_network_snap_m,
                                           max_distance_m=st.max_cost / per_m)
        return nodes, links, "network_m", distance_threshold_cost(territory, sous_trame) / per_m
    max_d = connectivity.euclidean_max_distance(cfg.distance_threshold_m, cfg.probability_at_threshold)
    return nodes, connectivity.euclidean_links(reservoirs, max_d), "euclidean_m", cfg.distance_threshold_m


def _write_csv(frame: pd.DataFrame, path: Path, files: list[str]) -> None:
    frame.to_csv(path, index=False, float_format="%.10g")
    files.append(str(path))


def compute_indicators(territory: Territory, gpkg: Path, out_dir: Path, *, previous_gpkg: Path | None = None,
                       previous_indicators: Path | None = None, provenance: dict | None = None) -> dict:
    """Compute a release's indicators from its ``tvb.gpkg`` and write them to ``out_dir``.

    Writes indicators.json, key_figures.csv, communes.csv, fragmentation.csv, connectivity_nodes.csv,
    connectivity_links.csv; change.csv when ``previous_indicators`` (the previous release's indicators.json or the
    indicator history, .parquet / .csv) is given, change.gpkg when ``previous_gpkg`` is given. ``provenance``
    (:func:`tvb_tasks.indicators.history.provenance`: snapshot ids, configuration hash, resolution, code version) is
    recorded in indicators.json and compared with the previous release's to say what caused the change.
    Returns ``{"indicators_json": str, "files": [str, ...], "key_figures": {...}}``.
    """
    gpkg, out_dir = Path(gpkg), Path(out_dir)
    cfg = indicators_config(territory)
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
    for st, st_cfg in territory.sous_trames.items():
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
    for st, st_cfg in territory.sous_trames.items():
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
    doc["change"] = _change(doc, territory, layers, out_dir, files, previous_gpkg, previous_indicators)

    _write_csv(pd.DataFrame(comparison), out_dir / "key_figures.csv", files)
    _write_csv(commune_table, out_dir / "communes.csv", files)
    _write_csv(pd.concat(fragmentation_rows, ignore_index=True)[["sous_trame", "scope", "unit_id",
                                                                 *fragmentation.METRICS]],
               out_dir / "fragmentation.csv", files)
    _write_csv(pd.concat(node_frames, ignore_index=True), out_dir / "connectivity_nodes.csv", files)
    _write_csv(pd.concat(link_frames, ignore_index=True), out_dir / "connectivity_links.csv", files)
    json_path = out_dir / "indicators.json"
    json_path.write_text(json.dumps(json_value(doc), ensure_ascii=False, indent=1), encoding="utf-8")
    files.insert(0, str(json_path))
    return {"indicators_json": str(json_path), "files": files, "key_figures": json_value(figures)}


def _change(doc: dict, territory: Territory, layers: dict[str, gpd.GeoDataFrame], out_dir: Path, files: list[str],
            previous_gpkg: Path | None, previous_indicators: Path | None) -> dict | None:
    """Change since the previous release (table and/or layer), written to change.csv / change.gpkg."""
    if previous_gpkg is None and previous_indicators is None:
        return None
    cfg = indicators_config(territory).change
    result: dict[str, Any] = {"previous_release": None, "table": [], "layers": None,
                              "causes": history.change_causes(None, None)}
    if previous_indicators is not None:
        previous_id, previous = history.previous_rows(Path(previous_indicators))
        causes = history.change_causes(doc.get("provenance"), history.previous_provenance(Path(previous_indicators)))
        result["causes"] = causes
        table = change.change_table(history.flatten_indicators(doc), previous)
        table["method_only"] = bool(causes["method_only"]) & (table["change_abs"].fillna(1) != 0)
        _write_csv(table, out_dir / "change.csv", files)
        result["previous_release"] = previous_id
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

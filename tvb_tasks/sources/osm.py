"""OpenStreetMap source: a regional ``.osm.pbf`` extract → roads, railways, watercourses and land-use layers.

The extract is downloaded with conditional requests (``If-None-Match`` / ``If-Modified-Since``: an unchanged
extract is not downloaded again), read with GDAL's OSM driver through pyogrio (a configuration file generated
from the tag rules selects the tags to read), clipped to the territory (outline buffered by ``clip_buffer_m``,
default 1000 m), reprojected to the territory CRS and turned into the sample-layer schemas with the YAML tag rules
of ``config/osm_tags.yaml``:

* roads: ``id, name, importance (1..5), nature``; railways: ``id, name, status (in_use | disused)``;
* watercourses: ``id, name, kind (river | stream | canal | ditch), position (open | culverted)``;
* landuse: ``id, code_cs, code_us, millesime`` (OCS2D level-3 codes; role ``landuse_overlay``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import SourceError

log = logging.getLogger("tvb_tasks.sources.osm")

DERIVED_LAYERS = ("roads", "railways", "watercourses", "landuse")
DERIVED_ROLES = {"roads": "roads", "railways": "railways", "watercourses": "watercourses",
                 "landuse": "landuse_overlay"}
DEFAULT_POLYGON_KEYS = ("aeroway", "amenity", "boundary", "building", "craft", "geological", "historic", "landuse",
                        "leisure", "military", "natural", "office", "place", "shop", "sport", "tourism")


# --- tag rules --------------------------------------------------------------------------------------------------
class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoadRules(_Rule):
    osm_layer: Literal["lines"] = "lines"
    key: str = "highway"
    importance: dict[str, int]

    @field_validator("importance")
    @classmethod
    def _check(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: i for k, i in v.items() if not 1 <= i <= 5}
        if bad:
            raise ValueError(f"importance must be 1..5, got {bad}")
        return v


class RailwayRules(_Rule):
    osm_layer: Literal["lines"] = "lines"
    key: str = "railway"
    status: dict[str, Literal["in_use", "disused"]]


class WatercourseRules(_Rule):
    osm_layer: Literal["lines"] = "lines"
    key: str = "waterway"
    kind: dict[str, Literal["river", "stream", "canal", "ditch"]]
    culverted_when: dict[str, list[str]] = Field(default_factory=dict)


class LanduseRule(_Rule):
    tags: dict[str, str | list[str]]
    code_cs: str
    code_us: str


class LanduseRules(_Rule):
    osm_layer: Literal["multipolygons"] = "multipolygons"
    millesime_from: Literal["extract"] = "extract"
    rules: list[LanduseRule]


class TagRules(_Rule):
    """The validated content of ``config/osm_tags.yaml``."""

    version: int = 1
    roads: RoadRules
    railways: RailwayRules
    watercourses: WatercourseRules
    landuse: LanduseRules

    def line_keys(self) -> list[str]:
        keys = [self.roads.key, self.railways.key, self.watercourses.key, *self.watercourses.culverted_when]
        return list(dict.fromkeys(keys))

    def polygon_keys(self) -> list[str]:
        return list(dict.fromkeys(k for r in self.landuse.rules for k in r.tags))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def load_tag_rules(path: str | Path, valid_codes: set[str] | None = None) -> TagRules:
    """Load and validate tag rules; ``valid_codes`` (OCS2D codes) checks the land-use codes. Errors name the file."""
    path = Path(path)
    from ..config import ConfigError, load_yaml, read_config_text, yaml_problem

    try:
        raw = load_yaml(read_config_text(path, "OSM tag rules"))
    except ConfigError as exc:
        raise SourceError(str(exc)) from None
    except yaml.YAMLError as exc:               # the problem and its line, never the file's text
        raise SourceError(f"OSM tag rules {path}: not valid YAML ({yaml_problem(exc)})") from None
    try:
        rules = TagRules.model_validate(raw)
    except ValidationError as err:
        lines = [f"  - {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SourceError(f"invalid OSM tag rules {path}:\n" + "\n".join(lines)) from None
    if valid_codes:
        unknown = sorted({c for r in rules.landuse.rules for c in (r.code_cs, r.code_us) if c not in valid_codes})
        if unknown:
            raise SourceError(f"OSM tag rules {path}: land-use codes {unknown} are not in the nomenclature")
    return rules


def osm_config_text(rules: TagRules) -> str:
    """A GDAL OSM driver configuration (osmconf.ini) reading exactly the tags the rules use."""
    polygon_keys = list(dict.fromkeys([*DEFAULT_POLYGON_KEYS, *rules.polygon_keys()]))
    common = "osm_id=yes\nosm_version=no\nosm_timestamp=no\nosm_uid=no\nosm_user=no\nosm_changeset=no\n"
    return (
        "[general]\n"
        f"closed_ways_are_polygons={','.join(polygon_keys)}\n"
        f"[points]\n{common}attributes=name\nother_tags=no\n"
        f"[lines]\n{common}attributes={','.join(['name', *rules.line_keys()])}\nother_tags=no\n"
        f"[multipolygons]\n{common}attributes={','.join(['name', *rules.polygon_keys()])}\nother_tags=no\n"
        f"[multilinestrings]\n{common}attributes=name\nother_tags=no\n"
        f"[other_relations]\n{common}attributes=name\nother_tags=no\n"
    )


# --- reading ----------------------------------------------------------------------------------------------------
def read_osm_layer(pbf: str | Path, layer: str, rules: TagRules, *, bbox_4326: tuple | None = None,
                   where: str | None = None) -> gpd.GeoDataFrame:
    """One layer (``lines`` / ``multipolygons``) of an OSM extract, EPSG:4326, invalid geometries dropped.

    ``bbox_4326`` is an envelope filter (lon/lat); an envelope, not a geometry mask, because GDAL would run GEOS on
    raw OSM geometries, some of which are invalid (2-point rings).
    """
    with tempfile.TemporaryDirectory(prefix="tvb-osm-") as tmp:
        conf = Path(tmp) / "osmconf.ini"
        conf.write_text(osm_config_text(rules), encoding="utf-8")
        try:
            gdf = pyogrio.read_dataframe(pbf, layer=layer, where=where, bbox=bbox_4326, on_invalid="ignore",
                                         CONFIG_FILE=str(conf))
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise SourceError(f"OSM extract {pbf}: cannot read layer {layer!r} ({exc})") from None
    missing = gdf.geometry.isna()
    if missing.any():
        log.warning("OSM %s: %d features with invalid geometry dropped", layer, int(missing.sum()))
        gdf = gdf[~missing]
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    return gdf.reset_index(drop=True)


def _column(gdf: pd.DataFrame, name: str) -> pd.Series:
    return gdf[name] if name in gdf.columns else pd.Series([None] * len(gdf), index=gdf.index, dtype=object)


def _way_ids(gdf: pd.DataFrame) -> pd.Series:
    return "w" + _column(gdf, "osm_id").astype(str)


def _polygon_ids(gdf: pd.DataFrame) -> pd.Series:
    rel, way = _column(gdf, "osm_id"), _column(gdf, "osm_way_id")
    return pd.Series(["r" + str(r) if pd.notna(r) else "w" + str(w) for r, w in zip(rel, way)], index=gdf.index,
                     dtype=object)


def _frame(data: dict, geometry: Any, crs: Any) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geometry, crs=crs).values, crs=crs)


def roads_from_osm(lines: gpd.GeoDataFrame, rules: RoadRules) -> gpd.GeoDataFrame:
    """Roads ``id, name, importance, nature`` from OSM lines (``highway`` values not in the rules are dropped)."""
    value = _column(lines, rules.key)
    keep = value.isin(list(rules.importance))
    sub = lines[keep]
    return _frame({"id": _way_ids(sub).to_numpy(), "name": _column(sub, "name").to_numpy(),
                   "importance": value[keep].map(rules.importance).astype("int64").to_numpy(),
                   "nature": value[keep].astype(str).to_numpy()}, sub.geometry.values, lines.crs)


def railways_from_osm(lines: gpd.GeoDataFrame, rules: RailwayRules) -> gpd.GeoDataFrame:
    """Railways ``id, name, status`` (``in_use`` / ``disused``) from OSM lines."""
    value = _column(lines, rules.key)
    keep = value.isin(list(rules.status))
    sub = lines[keep]
    return _frame({"id": _way_ids(sub).to_numpy(), "name": _column(sub, "name").to_numpy(),
                   "status": value[keep].map(rules.status).to_numpy()}, sub.geometry.values, lines.crs)


def watercourses_from_osm(lines: gpd.GeoDataFrame, rules: WatercourseRules) -> gpd.GeoDataFrame:
    """Watercourses ``id, name, kind, position`` (``culverted`` when a ``culverted_when`` tag matches, else open)."""
    value = _column(lines, rules.key)
    keep = value.isin(list(rules.kind))
    sub = lines[keep]
    culverted = pd.Series(False, index=sub.index)
    for tag, values in rules.culverted_when.items():
        culverted |= _column(sub, tag).isin(values)
    return _frame({"id": _way_ids(sub).to_numpy(), "name": _column(sub, "name").to_numpy(),
                   "kind": value[keep].map(rules.kind).to_numpy(),
                   "position": culverted.map({True: "culverted", False: "open"}).to_numpy()},
                  sub.geometry.values, lines.crs)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygonal part of each geometry (``make_valid`` may return collections); None when there is none."""
    out = np.array(geoms, dtype=object)
    for i, g in enumerate(out):
        if g is None or g.geom_type in ("Polygon", "MultiPolygon"):
            continue
        parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
        out[i] = shapely.union_all(parts) if parts else None     # degenerate rings become lines: dropped
    return out


def _rule_mask(polys: pd.DataFrame, tags: Mapping[str, str | list[str]]) -> pd.Series:
    mask = pd.Series(True, index=polys.index)
    for key, values in tags.items():
        mask &= _column(polys, key).isin([values] if isinstance(values, str) else list(values))
    return mask


def landuse_from_osm(polys: gpd.GeoDataFrame, rules: LanduseRules, millesime: int) -> gpd.GeoDataFrame:
    """Land use ``id, code_cs, code_us, millesime`` from OSM multipolygons (first matching rule wins)."""
    code_cs = pd.Series([None] * len(polys), index=polys.index, dtype=object)
    code_us = code_cs.copy()
    for rule in rules.rules:
        hit = _rule_mask(polys, rule.tags) & code_cs.isna()
        code_cs[hit] = rule.code_cs
        code_us[hit] = rule.code_us
    keep = code_cs.notna()
    sub = polys[keep]
    geoms = polygonal(shapely.make_valid(np.asarray(sub.geometry.values, dtype=object)))
    return _frame({"id": _polygon_ids(sub).to_numpy(), "code_cs": code_cs[keep].to_numpy(),
                   "code_us": code_us[keep].to_numpy(),
                   "millesime": pd.Series(millesime, index=sub.index, dtype="int64").to_numpy()},
                  geoms, polys.crs)


def _clip(gdf: gpd.GeoDataFrame, crs: str, clip_geom: Any, polygons: bool) -> gpd.GeoDataFrame:
    gdf = gdf[gdf.geometry.notna()].to_crs(crs)
    if clip_geom is not None and len(gdf):
        gdf = gpd.clip(gdf, clip_geom, keep_geom_type=True)
    gdf = gdf[~gdf.geometry.is_empty & gdf.geometry.notna()]
    if polygons:
        gdf = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
    return gdf.reset_index(drop=True)


def extract_layers(pbf: str | Path, rules: TagRules, *, crs: str, clip_geom: Any = None, millesime: int
                   ) -> dict[str, gpd.GeoDataFrame]:
    """The four TVB layers from an extract, in ``crs``, clipped to ``clip_geom`` (a shapely geometry in ``crs``)."""
    bbox = None
    if clip_geom is not None:
        bbox = tuple(gpd.GeoSeries([clip_geom], crs=crs).to_crs("EPSG:4326").total_bounds)
    line_where = " OR ".join(f'"{k}" IS NOT NULL' for k in (rules.roads.key, rules.railways.key,
                                                               rules.watercourses.key))
    lines = read_osm_layer(pbf, "lines", rules, bbox_4326=bbox, where=line_where)
    poly_where = " OR ".join(f'"{k}" IS NOT NULL' for k in rules.polygon_keys())
    polys = read_osm_layer(pbf, "multipolygons", rules, bbox_4326=bbox, where=poly_where or None)
    log.info("OSM %s: %d candidate lines, %d candidate polygons", Path(pbf).name, len(lines), len(polys))
    layers = {
        "roads": _clip(roads_from_osm(lines, rules.roads), crs, clip_geom, False),
        "railways": _clip(railways_from_osm(lines, rules.railways), crs, clip_geom, False),
        "watercourses": _clip(watercourses_from_osm(lines, rules.watercourses), crs, clip_geom, False),
        "landuse": _clip(landuse_from_osm(polys, rules.landuse, millesime), crs, clip_geom, True),
    }
    for name, gdf in layers.items():
        log.info("OSM %s: %d features", name, len(gdf))
    return layers

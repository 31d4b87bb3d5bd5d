"""Publication formats: GeoPackage French labels, GeoParquet per layer, Cloud-Optimized GeoTIFF, PMTiles.

Vector layers stay in their CRS (EPSG:2154) in the GeoPackage and GeoParquet; PMTiles are Web Mercator tiles
(GDAL's PMTiles driver reprojects to EPSG:3857 itself).
"""
from __future__ import annotations

import gzip
import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path

from ..errors import DeterministicError, TVBError
from .styles import FIELD_LABELS, PUBLISHED_LAYERS, STATUS_ALIASES, STATUS_STYLES, VALUE_LABELS

log = logging.getLogger(__name__)

COG_BLOCKSIZE = 256


class FormatError(TVBError, RuntimeError):
    """A file could not be converted to, or checked as, a publication format; the message names the file."""


class UnpublishableData(FormatError, DeterministicError):
    """The data cannot go into a publication format (a layer without CRS, nothing to tile, no vector layer, an
    unexpected tile encoding): the same files fail the same way, so the task fails without a retry."""


# --- GeoPackage -------------------------------------------------------------------------------------------------
def vector_layers(gpkg: Path) -> list[str]:
    """Names of the layers with a geometry in a GeoPackage."""
    import pyogrio

    try:
        return [name for name, geom in pyogrio.list_layers(gpkg) if geom is not None]
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{gpkg}: cannot read as a GeoPackage ({exc})") from None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def add_french_labels(gpkg: Path, sous_trame_labels: dict[str, str]) -> dict[str, list[str]]:
    """Add French label columns and titles to a GeoPackage in place.

    * ``libelle_sous_trame`` (from ``sous_trame`` via ``sous_trame_labels``) and ``libelle_statut`` (from
      ``status``: Existant / À restaurer / À créer) where those columns exist;
    * French layer titles in ``gpkg_contents.identifier`` and column titles in ``gpkg_data_columns`` (GeoPackage
      schema extension). Returns {layer: [added columns]}.
    """
    titles = {layer["name"]: layer["title"] for layer in PUBLISHED_LAYERS}
    added: dict[str, list[str]] = {}
    con = sqlite3.connect(gpkg)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM gpkg_contents WHERE data_type = 'features'")]
        con.execute("""CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL,
            column_name TEXT NOT NULL, name TEXT, title TEXT, description TEXT, mime_type TEXT,
            constraint_name TEXT, CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name),
            CONSTRAINT gdc_tn UNIQUE (table_name, name))""")
        con.execute("""CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,
            extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
            CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))""")
        if not con.execute("SELECT 1 FROM gpkg_extensions WHERE table_name = 'gpkg_data_columns' AND "
                           "extension_name = 'gpkg_schema'").fetchone():
            con.execute("INSERT INTO gpkg_extensions VALUES ('gpkg_data_columns', NULL, 'gpkg_schema', "
                        "'http://www.geopackage.org/spec/#extension_schema', 'read-write')")
        for table in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({_q(table)})")]
            new: list[str] = []
            # the spatial-index triggers call SpatiaLite-style functions plain sqlite3 lacks; the geometry is not
            # touched here, so they are dropped for the attribute updates and re-created as they were
            triggers = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
                                   "AND name LIKE 'rtree%'", (table,)).fetchall()
            for name, _ in triggers:
                con.execute(f"DROP TRIGGER {_q(name)}")
            if "sous_trame" in cols and "libelle_sous_trame" not in cols:
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN libelle_sous_trame TEXT")
                for code, label in sous_trame_labels.items():
                    con.execute(f"UPDATE {_q(table)} SET libelle_sous_trame = ? WHERE sous_trame = ?", (label, code))
                new.append("libelle_sous_trame")
            if "status" in cols and "libelle_statut" not in cols:
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN libelle_statut TEXT")
                for raw, code in STATUS_ALIASES.items():
                    con.execute(f"UPDATE {_q(table)} SET libelle_statut = ? WHERE lower(trim(status)) = ?",
                                (STATUS_STYLES[code][0], raw))
                con.execute(f"UPDATE {_q(table)} SET libelle_statut = status WHERE libelle_statut IS NULL")
                if "candidate" in cols:     # priorities: a rupture site has no corridor status
                    con.execute(f"UPDATE {_q(table)} SET libelle_statut = 'Site de rupture (franchissement)' "
                                "WHERE libelle_statut IS NULL AND candidate = 'rupture_site'")
                new.append("libelle_statut")
            if "libelle" in cols and "infrastructure" in cols:      # "(culvert N47 …)" → "(busage N47 …)"
                for code, word in VALUE_LABELS["infrastructure"].items():
                    con.execute(f"UPDATE {_q(table)} SET libelle = replace(libelle, ?, ?) WHERE infrastructure = ?",
                                (f"({code} ", f"({word} ", code))
            for _, sql in triggers:
                con.execute(sql)
            added[table] = new
            if table in titles:
                con.execute("UPDATE gpkg_contents SET identifier = ?, description = ? WHERE table_name = ?",
                            (titles[table], f"{titles[table]} (trame verte et bleue)", table))
            used_names: set[str] = set()
            for col in cols + new:
                title = FIELD_LABELS.get(col)
                if not title:
                    continue
                name = title if title not in used_names else f"{title} ({col})"
                used_names.add(name)
                con.execute("INSERT OR REPLACE INTO gpkg_data_columns (table_name, column_name, name, title) "
                            "VALUES (?, ?, ?, ?)", (table, col, name, title))
        con.commit()
    except sqlite3.Error as exc:
        raise FormatError(f"{gpkg}: cannot add French labels ({exc})") from None
    finally:
        con.close()
    return added


# --- GeoParquet -------------------------------------------------------------------------------------------------
def write_geoparquet(gpkg: Path, out_dir: Path, layers: list[str] | None = None) -> dict[str, Path]:
    """One GeoParquet file per layer (``<out_dir>/<layer>.parquet``, CRS kept, GeoParquet 1.x metadata)."""
    import geopandas as gpd

    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for layer in layers or vector_layers(gpkg):
        gdf = gpd.read_file(gpkg, layer=layer, engine="pyogrio")
        path = out_dir / f"{layer}.parquet"
        gdf.to_parquet(path, index=False, compression="zstd", write_covering_bbox=True)
        out[layer] = path
    return out


# --- Cloud-Optimized GeoTIFF ------------------------------------------------------------------------------------
def check_cog(path: Path) -> dict:
    """Validate a COG (rio-cogeo: tiled, overviews, IFD order). Returns {"valid", "errors", "warnings",
    "tiled", "overviews", "blocksize"}."""
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    try:
        valid, errors, warnings = cog_validate(str(path), quiet=True)
        with rasterio.open(path) as src:
            tiled = src.profile.get("tiled", False) or (src.block_shapes[0][0] < src.height
                                                          and src.block_shapes[0][1] < src.width)
            overviews = src.overviews(1)
            blocksize = list(src.block_shapes[0])
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{path}: cannot read as a GeoTIFF ({exc})") from None
    return {"valid": bool(valid), "errors": list(errors), "warnings": list(warnings), "tiled": bool(tiled),
            "overviews": list(overviews), "blocksize": blocksize}


def ensure_cog(src: Path, dst: Path, *, blocksize: int = COG_BLOCKSIZE) -> dict:
    """Copy ``src`` to ``dst`` if it is already a valid COG, else convert it (deflate, internal overviews).

    Raises :class:`FormatError` naming the file if the result is not a valid COG. Returns the check dict plus
    ``converted`` (bool).
    """
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    dst.parent.mkdir(parents=True, exist_ok=True)
    before = check_cog(src)
    if before["valid"] and before["tiled"] and (before["overviews"] or not _needs_overviews(src, blocksize)):
        shutil.copyfile(src, dst)
        return {**before, "converted": False}
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=blocksize, blockysize=blocksize, predictor=2 if _is_int(src) else 3)
    try:
        cog_translate(str(src), str(dst), profile, overview_resampling="average", quiet=True,
                      config={"GDAL_NUM_THREADS": "1", "GDAL_TIFF_OVR_BLOCKSIZE": str(blocksize)})
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{src}: conversion to COG failed ({exc})") from None
    after = check_cog(dst)
    if not after["valid"]:
        raise FormatError(f"{dst}: not a valid COG after conversion: {after['errors']}")
    return {**after, "converted": True}


def _needs_overviews(path: Path, blocksize: int) -> bool:
    import rasterio

    with rasterio.open(path) as src:
        return max(src.width, src.height) > blocksize


def _is_int(path: Path) -> bool:
    import rasterio

    with rasterio.open(path) as src:
        return src.dtypes[0].startswith(("int", "uint"))


# --- PMTiles ----------------------------------------------------------------------------------------------------
def write_pmtiles(gpkg: Path, out_path: Path, layers: list[str] | None = None, *, minzoom: int = 8,
                  maxzoom: int = 14) -> dict:
    """One PMTiles v3 archive (MVT, gzip) holding every layer of ``gpkg`` as a vector-tile source-layer.

    GDAL's PMTiles driver (pyogrio) writes one layer per dataset and reprojects to EPSG:3857 itself, so each
    layer is written to its own archive and the archives are merged tile by tile: an MVT tile is a protobuf
    message whose layers are a repeated field, so concatenating the decoded tiles of several archives is a valid
    tile holding all their layers. Returns {"layers": [...], "tiles": n, "minzoom", "maxzoom", "bounds"}.
    """
    import geopandas as gpd
    import pyogrio
    from pmtiles.reader import MmapSource, Reader, all_tiles
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    names = list(layers or vector_layers(gpkg))
    tiles: dict[int, list[bytes]] = {}
    metas, headers, written = [], [], []
    with tempfile.TemporaryDirectory(prefix="tvb-pmtiles-") as tmp:
        for name in names:
            gdf = gpd.read_file(gpkg, layer=name, engine="pyogrio")
            gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
            if gdf.empty:
                log.info("layer %s is empty: not in the PMTiles archive", name)
                continue
            if gdf.crs is None:
                raise UnpublishableData(f"{gpkg}, layer {name}: no CRS, cannot tile")
            part = Path(tmp) / f"{name}.pmtiles"
            try:
                pyogrio.write_dataframe(gdf, part, driver="PMTiles", layer=name,
                                        dataset_options={"MINZOOM": str(minzoom), "MAXZOOM": str(maxzoom),
                                                         "NAME": name})
            except Exception as exc:  # noqa: BLE001
                raise FormatError(f"{gpkg}, layer {name}: PMTiles writing failed ({exc})") from None
            with open(part, "rb") as f:
                reader = Reader(MmapSource(f))
                header = reader.header()
                if header["tile_compression"] != Compression.GZIP or header["tile_type"] != TileType.MVT:
                    raise UnpublishableData(f"{part}: unexpected tile encoding {header['tile_compression']}")
                headers.append(header)
                metas.append(reader.metadata())
                for (z, x, y), data in all_tiles(MmapSource(f)):
                    tiles.setdefault(zxy_to_tileid(z, x, y), []).append(gzip.decompress(data))
            written.append(name)
        if not tiles:
            raise UnpublishableData(f"{gpkg}: no features to tile")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        bounds = [min(h["min_lon_e7"] for h in headers), min(h["min_lat_e7"] for h in headers),
                  max(h["max_lon_e7"] for h in headers), max(h["max_lat_e7"] for h in headers)]
        header = dict(headers[0])
        header.update(min_lon_e7=bounds[0], min_lat_e7=bounds[1], max_lon_e7=bounds[2], max_lat_e7=bounds[3],
                      center_lon_e7=(bounds[0] + bounds[2]) // 2, center_lat_e7=(bounds[1] + bounds[3]) // 2,
                      center_zoom=min(max(minzoom, 11), maxzoom), tile_compression=Compression.GZIP,
                      tile_type=TileType.MVT)
        lon = [b / 1e7 for b in bounds]
        metadata = {
            "name": "tvb", "format": "pbf", "type": "overlay", "minzoom": str(minzoom), "maxzoom": str(maxzoom),
            "bounds": ",".join(f"{v:.7f}" for v in lon),
            "vector_layers": [vl for m in metas for vl in m.get("vector_layers", [])],
            "tilestats": {"layerCount": len(written),
                          "layers": [tl for m in metas for tl in (m.get("tilestats") or {}).get("layers", [])]},
        }
        with open(out_path, "wb") as f:
            w = Writer(f)
            for tile_id in sorted(tiles):
                w.write_tile(tile_id, gzip.compress(b"".join(tiles[tile_id]), mtime=0))
            w.finalize(header, metadata)
    return {"layers": written, "tiles": len(tiles), "minzoom": minzoom, "maxzoom": maxzoom,
            "bounds": [b / 1e7 for b in bounds]}

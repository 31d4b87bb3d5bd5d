"""Arrange a release folder from the pipeline's outputs (local files only; nothing is uploaded here)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .formats import UnpublishableData, add_french_labels, ensure_cog, vector_layers, write_geoparquet, write_pmtiles
from .styles import LAYER_NAMES

log = logging.getLogger(__name__)


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy the regular files of ``src`` into ``dst`` (hidden files and symlinks skipped). Returns the count."""
    n = 0
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_symlink() or not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
        n += 1
    return n


def stage_release(territory, staging_dir: Path, *, gpkg: Path, rasters: list[Path], indicators_dir: Path,
                  validation_dir: Path | None = None, report_dir: Path | None = None,
                  release_id: str | None = None, released_at: str | None = None) -> Path:
    """Build the release folder ``staging_dir`` (must be absent or empty) and return it.

    Contents: ``tvb.gpkg`` (copy of ``gpkg`` with French labels), ``parquet/<layer>.parquet`` (GeoParquet,
    EPSG:2154), ``rasters/*.tif`` (valid COGs: checked, converted when needed), ``indicators/``, ``validation/``,
    ``report/`` (copies), ``web/`` (index.html, app, vendored MapLibre + PMTiles, ``tvb.pmtiles``,
    ``indicators.json``) and ``qgis/tvb.qgs`` + ``tvb.qgs.cfg`` (Lizmap). ``release_id`` is only used for labels
    in the web page header and the QGIS project abstract (optional: the id may not be known yet).
    """
    from .qgis import write_qgis_project
    from .stac import wgs84_bounds
    from .webmap import build_webmap

    staging_dir = Path(staging_dir)
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise FileExistsError(f"staging folder {staging_dir} is not empty")
    staging_dir.mkdir(parents=True, exist_ok=True)
    gpkg = Path(gpkg)
    if not gpkg.is_file():
        raise FileNotFoundError(f"GeoPackage {gpkg} not found")
    rid = release_id or ""

    target = staging_dir / "tvb.gpkg"
    shutil.copyfile(gpkg, target)
    layers = vector_layers(target)
    if not layers:
        raise UnpublishableData(f"{gpkg}: no vector layer to publish")
    missing = [n for n in LAYER_NAMES if n not in layers]
    if missing:
        log.warning("%s has no layer(s) %s: they are absent from the web map and QGIS project", gpkg, missing)
    add_french_labels(target, {k: v.label for k, v in territory.sous_trames.items()})
    write_geoparquet(target, staging_dir / "parquet", layers)

    for src in rasters:
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"raster {src} not found")
        ensure_cog(src, staging_dir / "rasters" / (src.stem + ".tif"))

    indicators_dir = Path(indicators_dir)
    if not indicators_dir.is_dir():
        raise FileNotFoundError(f"indicators folder {indicators_dir} not found")
    _copy_tree(indicators_dir, staging_dir / "indicators")
    if validation_dir is not None and Path(validation_dir).is_dir():
        _copy_tree(Path(validation_dir), staging_dir / "validation")
        from .datadocs import tidy_data_docs

        tidy_data_docs(staging_dir / "validation")      # no CDN, no broken link, French banner and verdict
    if report_dir is not None and Path(report_dir).is_dir():
        _copy_tree(Path(report_dir), staging_dir / "report")

    web = staging_dir / "web"
    tiled = [n for n in LAYER_NAMES if n in layers]
    info = write_pmtiles(target, web / "tvb.pmtiles", tiled)
    build_webmap(territory, web, release_id=rid, released_at=released_at, available_layers=info["layers"],
                 bounds=wgs84_bounds(target), indicators_json=staging_dir / "indicators" / "indicators.json",
                 gpkg=target)
    write_qgis_project(territory, target, staging_dir / "qgis", release_id=rid)
    return staging_dir

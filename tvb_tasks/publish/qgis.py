"""QGIS project (.qgs XML) and Lizmap configuration (.qgs.cfg JSON) for a release, written without QGIS.

The project reads the release's ``tvb.gpkg`` by *relative* path (``./../tvb.gpkg|layername=…`` from ``qgis/``),
so the folder can be served by QGIS Server / Lizmap as it is. Styles: reservoirs and relays categorised by
sous-trame, corridors by status (Existant / À restaurer / À créer), wet corridors in blue, rupture points in red.
Field aliases are French. The Lizmap config follows the Lizmap plugin's JSON layout (metadata / options / layers);
it was not checked against a running Lizmap Web Client here. The project itself is checked against a real QGIS
Server (WMS GetCapabilities / GetMap / GetFeatureInfo / GetLegendGraphic, WFS GetFeature) in
``tests/test_qgis_server.py``.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .styles import FIELD_LABELS, PUBLISHED_LAYERS, STATUS_ALIASES, STATUS_STYLES, sous_trame_colors

# The QGIS version the project declares: QGIS warns when a project "saved with a newer version" is loaded, so this is
# the oldest version the XML below was checked with (Debian bookworm's QGIS Server 3.22), not the newest.
QGIS_VERSION = "3.22.0-Białowieża"
QGIS_VERSION_INT = 32200
LIZMAP_TARGET = 30800        # Lizmap Web Client 3.8
# a feature's display name (QGIS preview expression): the first of these fields that the layer has
DISPLAY_FIELDS = ("libelle", "nom", "name", "libelle_statut", "libelle_sous_trame", "id")


def _rgba(hex_color: str, alpha: int = 255) -> str:
    h = hex_color.lstrip("#")
    return f"{int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha}"


def _spatialrefsys(parent: ET.Element, crs: str) -> None:
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    srs = ET.SubElement(parent, "spatialrefsys", nativeFormat="Wkt")
    ET.SubElement(srs, "wkt").text = c.to_wkt()
    ET.SubElement(srs, "proj4").text = _proj4(crs)
    epsg = c.to_epsg()
    ET.SubElement(srs, "srid").text = str(epsg or 0)
    ET.SubElement(srs, "authid").text = f"EPSG:{epsg}" if epsg else crs
    ET.SubElement(srs, "description").text = c.name
    ET.SubElement(srs, "geographicflag").text = "true" if c.is_geographic else "false"


def _options(parent: ET.Element, values: dict[str, str]) -> None:
    opt = ET.SubElement(parent, "Option", type="Map")
    for k, v in values.items():
        ET.SubElement(opt, "Option", name=k, type="QString", value=str(v))


def _symbol(parent: ET.Element, name: str, geometry: str, color: str, style: dict) -> None:
    sym_type = {"polygon": "fill", "line": "line", "point": "marker"}[geometry]
    sym = ET.SubElement(parent, "symbol", type=sym_type, name=name, alpha="1", clip_to_extent="1",
                        force_rhr="0", frame_rate="10", is_animated="0")
    if geometry == "polygon":
        layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
        fill_alpha = int(255 * (style.get("fill_opacity") if style.get("fill_opacity") is not None else 0.5))
        _options(layer, {"color": _rgba(color, fill_alpha), "outline_color": _rgba(color),
                         "outline_width": "0.4", "outline_width_unit": "MM", "style": "solid",
                         "outline_style": "solid", "joinstyle": "bevel"})
    elif geometry == "line":
        layer = ET.SubElement(sym, "layer", {"class": "SimpleLine", "enabled": "1", "locked": "0", "pass": "0"})
        _options(layer, {"line_color": _rgba(color), "line_width": "0.9", "line_width_unit": "MM",
                         "line_style": "solid", "capstyle": "round", "joinstyle": "round"})
    else:
        layer = ET.SubElement(sym, "layer", {"class": "SimpleMarker", "enabled": "1", "locked": "0", "pass": "0"})
        _options(layer, {"color": _rgba(color), "name": "circle", "size": "3", "size_unit": "MM",
                         "outline_color": "255,255,255,255", "outline_width": "0.4", "outline_width_unit": "MM"})


def _categories(layer: dict, st_labels: dict[str, str], values_present: set[str] | None) -> list[tuple[str, str, str]]:
    """(value, French label, colour) categories of a layer's ``by`` attribute."""
    if layer.get("by") == "sous_trame":
        colors = sous_trame_colors(list(st_labels))
        return [(code, label, colors[code]) for code, label in st_labels.items()]
    if layer.get("by") == "status":
        out = []
        present = values_present or set(STATUS_STYLES)
        for raw in sorted(present):
            code = STATUS_ALIASES.get(str(raw).strip().lower())
            if code:
                out.append((raw, STATUS_STYLES[code][0], STATUS_STYLES[code][1]))
        # keep the canonical order Existant, À restaurer, À créer
        order = list(STATUS_STYLES)
        return sorted(out, key=lambda c: order.index(STATUS_ALIASES[c[0].strip().lower()]))
    return []


def _renderer(maplayer: ET.Element, layer: dict, cats: list[tuple[str, str, str]]) -> None:
    if cats:
        r = ET.SubElement(maplayer, "renderer-v2", type="categorizedSymbol", attr=layer["by"], symbollevels="0",
                          enableorderby="0", forceraster="0", referencescale="-1")
        ce = ET.SubElement(r, "categories")
        for i, (value, label, _) in enumerate(cats):
            ET.SubElement(ce, "category", render="true", symbol=str(i), value=value, label=label, type="string")
        syms = ET.SubElement(r, "symbols")
        for i, (_, _, color) in enumerate(cats):
            _symbol(syms, str(i), layer["geometry"], color, layer)
        src = ET.SubElement(r, "source-symbol")
        _symbol(src, "0", layer["geometry"], layer["color"], layer)
    else:
        r = ET.SubElement(maplayer, "renderer-v2", type="singleSymbol", symbollevels="0", enableorderby="0",
                          forceraster="0", referencescale="-1")
        syms = ET.SubElement(r, "symbols")
        _symbol(syms, "0", layer["geometry"], layer["color"], layer)


def _aliases(fields: list[str]) -> dict[str, str]:
    """French alias per field, unique within a layer (a WMS GetFeatureInfo JSON answer is keyed by alias).

    When a code column and its ``libelle_*`` column share a label (``status`` / ``libelle_statut`` → "Statut"), the
    ``libelle_*`` column keeps the plain label and the code column becomes "<label> (code)"; other clashes get
    "<label> (<field>)". Fields without a known label get no alias (QGIS shows the field name).
    """
    labels = {f: FIELD_LABELS[f] for f in fields if FIELD_LABELS.get(f)}
    out: dict[str, str] = {}
    for field, label in labels.items():
        clash = [f for f, lab in labels.items() if lab == label and f != field]
        if not clash:
            out[field] = label
        elif field.startswith("libelle"):
            out[field] = label
        elif any(f.startswith("libelle") for f in clash):
            out[field] = f"{label} (code)"
        else:
            out[field] = f"{label} ({field})"
    return out


def _wkb_type(info: dict, fallback: str) -> str:
    """QGIS wkbType name of a layer from pyogrio's geometry type ("Polygon Z" → "PolygonZ")."""
    geom = str(info.get("geometry_type") or "").replace(" ", "")
    return geom if geom and geom.lower() != "unknown" else fallback


def _display_field(fields: list[str]) -> str | None:
    """Field QGIS shows as a feature's name (Lizmap tooltips, attribute table titles): the first French label."""
    return next((f for f in DISPLAY_FIELDS if f in fields), None)


def _layer_id(name: str) -> str:
    """Stable QGIS layer id. QGIS ignores an id of 10 characters or fewer (it mints a random one, so the layer
    tree, WFS list and Lizmap config would no longer match): ``tvb_<name>_layer`` is always longer."""
    return f"tvb_{re.sub(r'[^A-Za-z0-9_]', '_', name)}_layer"


def write_qgis_project(territory, gpkg: Path, out_dir: Path, *, release_id: str,
                       gpkg_relpath: str = "../tvb.gpkg") -> dict:
    """Write ``out_dir/tvb.qgs`` and ``out_dir/tvb.qgs.cfg`` (Lizmap) for the layers present in ``gpkg``.

    ``gpkg_relpath`` is the GeoPackage's path relative to ``out_dir``. Returns {"project", "lizmap", "layers"}.
    """
    import pyogrio

    out_dir.mkdir(parents=True, exist_ok=True)
    present = {name: geom for name, geom in pyogrio.list_layers(gpkg) if geom is not None}
    st_labels = {k: v.label for k, v in territory.sous_trames.items()}
    title = f"Trame verte et bleue — {territory.name}"
    root = ET.Element("qgis", projectname=title, version=QGIS_VERSION)
    ET.SubElement(root, "homePath", path="")
    ET.SubElement(root, "title").text = title
    ET.SubElement(root, "projectFlags", set="")
    pcrs = ET.SubElement(root, "projectCrs")
    _spatialrefsys(pcrs, territory.crs)
    tree = ET.SubElement(root, "layer-tree-group")
    ET.SubElement(tree, "customproperties")
    projectlayers = ET.Element("projectlayers")
    layers_cfg, order, full_extent = {}, [], None
    ordered = [l for l in PUBLISHED_LAYERS if l["name"] in present]
    for layer in reversed(ordered):            # layer tree: top of the list is drawn on top
        name = layer["name"]
        info = pyogrio.read_info(gpkg, layer=name, force_total_bounds=True)
        lid = _layer_id(name)
        source = f"./{gpkg_relpath}|layername={name}"
        ET.SubElement(tree, "layer-tree-layer", id=lid, name=layer["title"], source=source, providerKey="ogr",
                      checked="Qt::Checked", expanded="1")
        geom_attr = {"polygon": "Polygon", "line": "Line", "point": "Point"}[layer["geometry"]]
        ml = ET.SubElement(projectlayers, "maplayer", type="vector", geometry=geom_attr,
                           wkbType=_wkb_type(info, geom_attr), simplifyDrawingHints="1",
                           hasScaleBasedVisibilityFlag="0", styleCategories="AllStyleCategories")
        tb = info.get("total_bounds")
        ext = ET.SubElement(ml, "extent")
        if tb is not None and info.get("features"):
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), tb):
                ET.SubElement(ext, k).text = f"{float(v):.3f}"
            full_extent = list(tb) if full_extent is None else [min(full_extent[0], tb[0]), min(full_extent[1], tb[1]),
                                                               max(full_extent[2], tb[2]), max(full_extent[3], tb[3])]
        ET.SubElement(ml, "id").text = lid
        ET.SubElement(ml, "datasource").text = source
        ET.SubElement(ml, "shortname").text = name
        ET.SubElement(ml, "title").text = layer["title"]
        ET.SubElement(ml, "abstract").text = f"{layer['title']} — publication {release_id}"
        ET.SubElement(ml, "layername").text = layer["title"]
        srs = ET.SubElement(ml, "srs")
        _spatialrefsys(srs, info.get("crs") or territory.crs)
        ET.SubElement(ml, "provider", encoding="UTF-8").text = "ogr"
        values = None
        if layer.get("by") == "status" and "status" in info["fields"]:
            values = set(str(v) for v in pyogrio.read_dataframe(gpkg, layer=name, columns=["status"],
                                                                read_geometry=False)["status"].dropna().unique())
        cats = _categories(layer, st_labels, values) if layer.get("by") in info["fields"] else []
        _renderer(ml, layer, cats)
        display = _display_field([str(f) for f in info["fields"]])
        if display:
            ET.SubElement(ml, "previewExpression").text = f'"{display}"'
        aliases = ET.SubElement(ml, "aliases")
        french = _aliases([str(f) for f in info["fields"]])
        for i, field in enumerate(info["fields"]):
            ET.SubElement(aliases, "alias", field=str(field), index=str(i), name=french.get(str(field), ""))
        order.append(lid)
        layers_cfg[layer["title"]] = {
            "id": lid, "name": layer["title"], "type": "layer", "title": layer["title"],
            "abstract": "", "link": "", "geometryType": layer["geometry"], "extent": [float(v) for v in tb] if tb is not None else None,
            "crs": info.get("crs") or territory.crs, "toggled": "True", "popup": "True", "popupSource": "auto",
            "popupTemplate": "", "popupMaxFeatures": 10, "popupDisplayChildren": "False", "noLegendImage": "False",
            "groupAsLayer": "False", "baseLayer": "False", "displayInLegend": "True", "singleTile": "True",
            "imageFormat": "image/png", "cached": "False", "serverFrame": None, "clientCacheExpiration": 300,
        }
    full_extent = full_extent or [0, 0, 0, 0]
    canvas = ET.SubElement(root, "mapcanvas", name="theMapCanvas", annotationsVisible="1")
    ET.SubElement(canvas, "units").text = "meters"
    ext = ET.SubElement(canvas, "extent")
    for k, v in zip(("xmin", "ymin", "xmax", "ymax"), full_extent):
        ET.SubElement(ext, k).text = f"{float(v):.3f}"
    ET.SubElement(canvas, "rotation").text = "0"
    dst = ET.SubElement(canvas, "destinationsrs")
    _spatialrefsys(dst, territory.crs)
    root.append(projectlayers)
    lo = ET.SubElement(root, "layerorder")
    for lid in order:
        ET.SubElement(lo, "layer", id=lid)
    props = ET.SubElement(root, "properties")
    paths = ET.SubElement(props, "Paths")
    ET.SubElement(paths, "Absolute", type="bool").text = "false"
    ET.SubElement(props, "WMSServiceTitle", type="QString").text = title
    ET.SubElement(props, "WMSServiceAbstract", type="QString").text = (
        f"Trame verte et bleue de {territory.name}, publication {release_id}")
    ET.SubElement(props, "WMSServiceCapabilities", type="bool").text = "true"
    # WMS name of the root layer (else the project title, spaces and all); one GetMap LAYERS=<root> draws everything
    ET.SubElement(props, "WMSRootName", type="QString").text = f"tvb_{territory.id}"
    # geometry in GetFeatureInfo answers: Lizmap highlights the clicked feature with it
    ET.SubElement(props, "WMSAddWktGeometry", type="bool").text = "true"
    ET.SubElement(props, "WMSUseLayerIDs", type="bool").text = "false"
    wext = ET.SubElement(props, "WMSExtent", type="QStringList")
    for v in full_extent:
        ET.SubElement(wext, "value").text = f"{float(v):.3f}"
    crsl = ET.SubElement(props, "WMSCrsList", type="QStringList")
    for c in (territory.crs, "EPSG:3857", "EPSG:4326"):
        ET.SubElement(crsl, "value").text = c
    wfs = ET.SubElement(props, "WFSLayers", type="QStringList")
    for lid in order:
        ET.SubElement(wfs, "value").text = lid
    ET.indent(root)
    project = out_dir / "tvb.qgs"
    body = ET.tostring(root, encoding="unicode")
    project.write_text("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body + "\n", encoding="utf-8")

    lizmap = {
        "metadata": {"qgis_desktop_version": QGIS_VERSION_INT, "lizmap_plugin_version_str": "4.4.0",
                     "lizmap_plugin_version": 40400, "lizmap_web_client_target_version": LIZMAP_TARGET,
                     "lizmap_web_client_target_status": "Stable", "project_valid": True},
        "warnings": {},
        "options": {"projection": {"proj4": _proj4(territory.crs), "ref": territory.crs},
                    "bbox": [f"{v:.3f}" for v in full_extent], "initialExtent": [float(v) for v in full_extent],
                    "mapScales": [5000, 10000, 25000, 50000, 100000, 250000], "minScale": 1000, "maxScale": 500000,
                    "use_native_zoom_levels": False, "hide_numeric_scale_value": False,
                    "hideProject": "False", "pointTolerance": 25, "lineTolerance": 10, "polygonTolerance": 5,
                    "tmTimeFrameSize": 10, "tmTimeFrameType": "seconds", "tmAnimationFrameLength": 1000,
                    "datavizLocation": "dock", "theme": "light", "fixed_scale_overview_map": True,
                    "dxfExportEnabled": "False", "popupLocation": "dock"},
        "layers": layers_cfg,
    }
    cfg = out_dir / "tvb.qgs.cfg"
    cfg.write_text(json.dumps(lizmap, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"project": project, "lizmap": cfg, "layers": [l["name"] for l in ordered]}


def _proj4(crs: str) -> str:
    """PROJ string of a CRS (QGIS and Lizmap still want it beside the WKT)."""
    import warnings

    from pyproj import CRS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return CRS.from_user_input(crs).to_proj4()

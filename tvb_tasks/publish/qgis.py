"""QGIS project (.qgs XML) and Lizmap configuration (.qgs.cfg JSON) for a release, written without QGIS.

The project reads the release's ``tvb.gpkg`` by *relative* path (``./../tvb.gpkg|layername=…`` from ``qgis/``),
so the folder can be served by QGIS Server / Lizmap as it is. Styles: reservoirs (solid) and relays (hatched,
dashed outline) categorised by sous-trame, corridors by status (Existant / À restaurer / À créer), wet corridors in
blue, rupture points by infrastructure. Communes and watercourses are labelled. Field aliases are French; codes are
shown as French words (value maps) and measures as formatted text with units (expression fields), the raw columns
being left out of WMS feature info (they stay in WFS). A print layout "Carte A4" (title, map, legend, scale bar,
credits) serves QGIS Server GetPrint and Lizmap printing; the base map of the territory's profile, when configured,
is an XYZ layer. The Lizmap config follows the Lizmap plugin's JSON layout (metadata / options / layers);
it was not checked against a running Lizmap Web Client here. The project itself is checked against a real QGIS
Server (WMS GetCapabilities / GetMap / GetFeatureInfo / GetLegendGraphic, WFS GetFeature) in
``tests/test_qgis_server.py``.

Why one module over 500 lines: the .qgs document is one XML tree whose parts refer to each other by id (layers,
renderers, layer tree, print layout, Lizmap config); the shared vocabulary (styles, labels) already lives in
:mod:`.styles`.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .styles import (
    FIELD_LABELS,
    INFRA_COLORS,
    POPUP_FIELDS,
    POPUP_HIDDEN,
    PUBLISHED_LAYERS,
    STATUS_ALIASES,
    STATUS_STYLES,
    VALUE_LABELS,
    basemap_config,
    credit_line,
    palette,
    sous_trame_colors,
    value_label,
)

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
    if geometry == "polygon" and style.get("name") == "communes":
        layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
        _options(layer, {"color": "0,0,0,0", "outline_color": "74,74,74,255", "outline_width": "0.5",
                         "outline_width_unit": "MM", "style": "no", "outline_style": "solid", "joinstyle": "bevel"})
    elif geometry == "polygon":
        layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
        opacity = style.get("fill_opacity")
        fill_alpha = int(255 * (0.5 if opacity is None else opacity))
        hatch = bool(style.get("hatch"))            # relays: diagonal hatching, dashed outline
        _options(layer, {"color": _rgba(color, 255 if hatch else fill_alpha), "outline_color": _rgba(color),
                         "outline_width": "0.5" if hatch else "0.3", "outline_width_unit": "MM",
                         "style": "b_diagonal" if hatch else "solid", "outline_style": "dash" if hatch else "solid",
                         "joinstyle": "bevel"})
    elif geometry == "line":
        layer = ET.SubElement(sym, "layer", {"class": "SimpleLine", "enabled": "1", "locked": "0", "pass": "0"})
        _options(layer, {"line_color": _rgba(color), "line_width": "0.9", "line_width_unit": "MM",
                         "line_style": "solid", "capstyle": "round", "joinstyle": "round"})
    else:
        layer = ET.SubElement(sym, "layer", {"class": "SimpleMarker", "enabled": "1", "locked": "0", "pass": "0"})
        triangle = style.get("symbol") == "triangle"     # points de vigilance: as on the report's map
        _options(layer, {"color": _rgba(color), "name": "triangle" if triangle else "circle",
                         "size": "3.2" if triangle else "3", "size_unit": "MM",
                         "outline_color": _rgba(style.get("stroke") or "#ffffff"),
                         "outline_width": "0.3" if triangle else "0.4", "outline_width_unit": "MM"})


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
    if layer.get("by") == "infrastructure":
        colors = palette(sorted(values_present or INFRA_COLORS), INFRA_COLORS)
        return [(code, value_label("infrastructure", code).capitalize(), colors[code])
                for code in sorted(values_present or INFRA_COLORS)]
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
        if not clash or field.startswith("libelle"):
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


# --- reader-facing fields: French words for codes, formatted measures, labels --------------------------------------
# popup formats (styles.POPUP_FIELDS) → QGIS expression giving a French text with its unit
_FORMATS = {
    "ha": "replace(to_string(round(\"{f}\", 1)), '.', ',') || ' ha'",
    "km": "replace(to_string(round(\"{f}\" / 1000, 2)), '.', ',') || ' km'",
    "m": "to_string(round(\"{f}\")) || ' m'",
    "cost": "to_string(round(\"{f}\", 0)) || ' unités de coût (friction × m)'",
    "friction": "replace(to_string(round(\"{f}\", 1)), '.', ',') || ' (échelle 1 à 10 000)'",
}
_FORMATS["km_pos"], _FORMATS["m_pos"] = _FORMATS["km"], _FORMATS["m"]
_FORMATS["share"] = "to_string(round(\"{f}\" * 100)) || ' %'"
LABELLED = {"communes": ("nom", 9.0, True), "wet_corridors": ("name", 7.5, False)}   # layer: (field, size pt, bold)


def _field_setup(layer_name: str, fields: list[str], values: dict[str, set[str]]) -> tuple[dict, list, list]:
    """(value maps {field: {code: French}}, expression fields [(name, alias, expression)], fields hidden from WMS
    feature info) of a layer."""
    value_maps = {f: {v: value_label(f, v) for v in sorted(values.get(f, set()))} for f in fields
                  if f in VALUE_LABELS and values.get(f)}
    expressions, hidden = [], [f for f in fields if f in POPUP_HIDDEN]
    for field, label, fmt in POPUP_FIELDS.get(layer_name, []):
        if field in fields and fmt in _FORMATS:
            expressions.append((f"{field}_texte", label, _FORMATS[fmt].format(f=field)))
            hidden.append(field)
    return value_maps, expressions, hidden


def _field_configuration(ml: ET.Element, value_maps: dict[str, dict[str, str]]) -> None:
    fc = ET.SubElement(ml, "fieldConfiguration")
    for field, mapping in value_maps.items():
        f = ET.SubElement(fc, "field", name=field, configurationFlags="None")
        widget = ET.SubElement(f, "editWidget", type="ValueMap")
        config = ET.SubElement(widget, "config")
        top = ET.SubElement(config, "Option", type="Map")
        lst = ET.SubElement(top, "Option", name="map", type="List")
        for code, label in mapping.items():
            item = ET.SubElement(lst, "Option", type="Map")
            ET.SubElement(item, "Option", name=label, type="QString", value=code)


def _labeling(ml: ET.Element, field: str, size: float, bold: bool, geometry: str) -> None:
    ml.set("labelsEnabled", "1")
    lab = ET.SubElement(ml, "labeling", type="simple")
    settings = ET.SubElement(lab, "settings", calloutType="simple")
    style = ET.SubElement(settings, "text-style", fieldName=field, isExpression="0", fontFamily="DejaVu Sans",
                          fontSize=str(size), fontSizeUnit="Point", fontWeight="75" if bold else "50",
                          fontItalic="0" if bold else "1", textColor="34,34,34,255" if bold else "31,120,180,255",
                          textOpacity="1", namedStyle="Bold" if bold else "Oblique", blendMode="0",
                          multilineHeight="1", previewBkgrdColor="255,255,255,255", capitalization="0")
    ET.SubElement(style, "text-buffer", bufferDraw="1", bufferSize="0.8", bufferSizeUnits="MM",
                  bufferColor="255,255,255,255", bufferOpacity="0.85", bufferNoFill="1", bufferJoinStyle="128",
                  bufferBlendMode="0")
    ET.SubElement(settings, "text-format", wrapChar="", multilineAlign="3", autoWrapLength="18",
                  useMaxLineLengthForAutoWrap="1", addDirectionSymbol="0", formatNumbers="0", decimals="3",
                  plussign="0")
    ET.SubElement(settings, "placement", placement="2" if geometry == "line" else "1",
                  placementFlags="10" if geometry == "line" else "0", dist="0", distUnits="MM", priority="5",
                  centroidInside="1", centroidWhole="0", repeatDistance="0", overrunDistance="0")
    ET.SubElement(settings, "rendering", obstacle="1", obstacleFactor="1", obstacleType="1", displayAll="0",
                  upsidedownLabels="0", limitNumLabels="0", maxNumLabels="2000", mergeLines="1" if geometry == "line" else "0",
                  minFeatureSize="0", scaleVisibility="0", fontLimitPixelSize="0", labelPerPart="0", drawLabels="1",
                  zIndex="0")


def _basemap_layer(base: dict) -> tuple[ET.Element, str]:
    """XYZ raster layer of the configured base map (QGIS "wms" provider, ``type=xyz``)."""
    from urllib.parse import quote

    lid = "tvb_basemap_layer"
    source = f"type=xyz&url={quote(base['tiles'], safe='')}&zmax={int(base.get('max_zoom', 19))}&zmin=0"
    ml = ET.Element("maplayer", type="raster", hasScaleBasedVisibilityFlag="0", styleCategories="AllStyleCategories")
    ET.SubElement(ml, "id").text = lid
    ET.SubElement(ml, "datasource").text = source
    ET.SubElement(ml, "shortname").text = "fond_de_carte"
    ET.SubElement(ml, "title").text = base.get("title") or "Fond de carte"
    ET.SubElement(ml, "layername").text = base.get("title") or "Fond de carte"
    ET.SubElement(ml, "attribution").text = base.get("attribution") or ""
    srs = ET.SubElement(ml, "srs")
    _spatialrefsys(srs, "EPSG:3857")
    ET.SubElement(ml, "provider").text = "wms"
    return ml, source


def _layout_object(item: ET.Element) -> None:
    obj = ET.SubElement(item, "LayoutObject")
    ddp = ET.SubElement(obj, "dataDefinedProperties")
    opt = ET.SubElement(ddp, "Option", type="Map")
    ET.SubElement(opt, "Option", name="name", type="QString", value="")
    ET.SubElement(opt, "Option", name="properties")
    ET.SubElement(opt, "Option", name="type", type="QString", value="collection")
    ET.SubElement(obj, "customproperties")


def _item(parent: ET.Element, kind: int, uuid: str, x: float, y: float, w: float, h: float, z: int,
          **attrs: str) -> ET.Element:
    item = ET.SubElement(parent, "LayoutItem", dict(type=str(kind), uuid=uuid, templateUuid=uuid, id=attrs.pop("id", ""),
                         position=f"{x},{y},mm", positionOnPage=f"{x},{y},mm", size=f"{w},{h},mm", zValue=str(z),
                         referencePoint="0", frame="false", background=attrs.pop("background", "false"),
                         visibility="1", opacity="1", blendMode="0", itemRotation="0", positionLock="false",
                         outlineWidthM="0.3,mm", frameJoinStyle="miter", excludeFromExports="0", groupUuid="",
                         **attrs))
    ET.SubElement(item, "FrameColor", red="0", green="0", blue="0", alpha="255")
    ET.SubElement(item, "BackgroundColor", red="255", green="255", blue="255", alpha="255")
    _layout_object(item)
    return item


def _label_item(parent: ET.Element, uuid: str, text: str, x: float, y: float, w: float, h: float, size: int,
                bold: bool = False) -> None:
    item = _item(parent, 65641, uuid, x, y, w, h, 5, labelText=text, htmlState="0", halign="1", valign="32",
                 marginX="1", marginY="1")
    ET.SubElement(item, "LabelFont", description=f"DejaVu Sans,{size},-1,5,{75 if bold else 50},0,0,0,0,0",
                  style="")
    ET.SubElement(item, "FontColor", red="34", green="34", blue="34", alpha="255")


PRINT_LAYOUT = "carte_a4"


def _print_layout(root: ET.Element, title: str, extent: list[float], credits: str, release_id: str) -> None:
    """A4 landscape print layout: title, map of the full extent, legend (follows the layer tree), scale bar,
    credits. QGIS layout item types: page 65638, map 65639, label 65641, legend 65642, scale bar 65646."""
    layouts = ET.SubElement(root, "Layouts")
    lay = ET.SubElement(layouts, "Layout", name=PRINT_LAYOUT, units="mm", printResolution="150", worldFileMap="")
    pages = ET.SubElement(lay, "PageCollection")
    _item(pages, 65638, "{7c0d2f1e-0000-4000-8000-000000000001}", 0, 0, 297, 210, 0, background="true")
    ET.SubElement(pages, "GuideCollection", visible="1")
    map_uuid = "{7c0d2f1e-0000-4000-8000-000000000002}"
    mw, mh = 215.0, 172.0
    xmin, ymin, xmax, ymax = extent
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    scale = max((xmax - xmin) / mw, (ymax - ymin) / mh) * 1.05       # map units per mm, with a margin
    m = _item(lay, 65639, map_uuid, 6, 22, mw, mh, 2, id="map0", background="true", keepLayerSet="false",
              followPreset="false", followPresetName="", drawCanvasItems="true", mapRotation="0", mapFlags="0",
              labelMargin="0,mm")
    m.set("frame", "true")
    ET.SubElement(m, "Extent", xmin=f"{cx - scale * mw / 2:.3f}", ymin=f"{cy - scale * mh / 2:.3f}",
                  xmax=f"{cx + scale * mw / 2:.3f}", ymax=f"{cy + scale * mh / 2:.3f}")
    ET.SubElement(m, "LayerSet")
    ET.SubElement(m, "AtlasMap", atlasDriven="0", scalingMode="2", margin="0.1")
    ET.SubElement(m, "labelBlockingItems")
    _label_item(lay, "{7c0d2f1e-0000-4000-8000-000000000003}", title, 6, 5, 285, 10, 16, bold=True)
    _label_item(lay, "{7c0d2f1e-0000-4000-8000-000000000004}", f"Publication {release_id}", 6, 14, 200, 6, 9)
    leg = _item(lay, 65642, "{7c0d2f1e-0000-4000-8000-000000000005}", 226, 22, 66, 150, 4, title="Légende",
                map_uuid=map_uuid, resizeToContents="1", symbolWidth="6", symbolHeight="3.5", wrapChar="",
                columnCount="1", splitLayer="1", equalColumnWidth="0", boxSpace="2", columnSpace="2",
                lineSpacing="1", legendFilterByAtlas="0", titleAlignment="1", symbolAlignment="1",
                rasterBorder="1", rasterBorderColor="0,0,0,255", rasterBorderWidth="0", fontColor="#000000",
                wmsLegendWidth="50", wmsLegendHeight="25")
    styles = ET.SubElement(leg, "styles")
    for name, size in (("title", 11), ("group", 9), ("subgroup", 8), ("symbol", 7), ("symbolLabel", 7)):
        st = ET.SubElement(styles, "style", name=name, alignment="1", marginTop="1.5")
        ET.SubElement(st, "styleFont", description=f"DejaVu Sans,{size},-1,5,{75 if name != 'symbolLabel' else 50},"
                                                   "0,0,0,0,0", style="")
    sb = _item(lay, 65646, "{7c0d2f1e-0000-4000-8000-000000000006}", 8, 182, 70, 10, 6, mapUuid=map_uuid,
               style="Single Box", unitType="km", unitLabel=" km", numMapUnitsPerScaleBarUnit="1000",
               numSegments="4", numSegmentsLeft="0", numSubdivisions="1", segmentSizeMode="0", minBarWidth="40",
               maxBarWidth="60", numUnitsPerSegment="2", height="2", labelBarSpace="2", boxContentSpace="1",
               alignment="0", outlineWidth="0.3", lineJoinStyle="miter", lineCapStyle="square",
               labelVerticalPlacement="0", labelHorizontalPlacement="0")
    ET.SubElement(sb, "fillColor", red="0", green="0", blue="0", alpha="255")
    ET.SubElement(sb, "fillColor2", red="255", green="255", blue="255", alpha="255")
    ET.SubElement(sb, "strokeColor", red="0", green="0", blue="0", alpha="255")
    _label_item(lay, "{7c0d2f1e-0000-4000-8000-000000000007}", credits + " — Projection Lambert-93 (EPSG:2154)",
                6, 196, 285, 10, 6)


def write_qgis_project(territory, gpkg: Path, out_dir: Path, *, release_id: str,
                       gpkg_relpath: str = "../tvb.gpkg") -> dict:
    """Write ``out_dir/tvb.qgs`` and ``out_dir/tvb.qgs.cfg`` (Lizmap) for the layers present in ``gpkg``.

    ``gpkg_relpath`` is the GeoPackage's path relative to ``out_dir``. Returns {"project", "lizmap", "layers"}.
    """
    import pyogrio

    out_dir.mkdir(parents=True, exist_ok=True)
    present = {name: geom for name, geom in pyogrio.list_layers(gpkg) if geom is not None}
    st_labels = {k: v.label for k, v in territory.computed_sous_trames.items()}
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
    ordered = [lyr for lyr in PUBLISHED_LAYERS if lyr["name"] in present]
    for layer in reversed(ordered):            # layer tree: top of the list is drawn on top
        name = layer["name"]
        info = pyogrio.read_info(gpkg, layer=name, force_total_bounds=True)
        lid = _layer_id(name)
        source = f"./{gpkg_relpath}|layername={name}"
        # corridors give way to their stretches when the release has them (styles.shown_at_start); the other
        # layers all start checked (QGIS users switch priorities themselves)
        checked = layer.get("replaced_by") not in present
        ET.SubElement(tree, "layer-tree-layer", id=lid, name=layer["title"], source=source, providerKey="ogr",
                      checked="Qt::Checked" if checked else "Qt::Unchecked", expanded="1")
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
        fields = [str(f) for f in info["fields"]]
        coded = [f for f in fields if f in VALUE_LABELS or f == layer.get("by")]
        distinct: dict[str, set[str]] = {}
        if coded and info.get("features"):
            frame = pyogrio.read_dataframe(gpkg, layer=name, columns=coded, read_geometry=False)
            distinct = {f: {str(v) for v in frame[f].dropna().unique()} for f in coded}
        values = distinct.get(layer.get("by")) if layer.get("by") in ("status", "infrastructure") else None
        cats = _categories(layer, st_labels, values) if layer.get("by") in info["fields"] else []
        _renderer(ml, layer, cats)
        value_maps, expressions, wms_hidden = _field_setup(name, fields, distinct)
        _field_configuration(ml, value_maps)
        if name in LABELLED and LABELLED[name][0] in fields:
            _labeling(ml, *LABELLED[name], layer["geometry"])
        display = _display_field([str(f) for f in info["fields"]])
        if display:
            ET.SubElement(ml, "previewExpression").text = f'"{display}"'
        aliases = ET.SubElement(ml, "aliases")
        french = _aliases(fields)
        for field in wms_hidden:          # a raw measure keeps a distinct alias (WFS) from its formatted text (WMS)
            if field in french and any(label == french[field] for _, label, _ in expressions):
                french[field] = f"{french[field]} (valeur)"
        for i, field in enumerate(fields):
            ET.SubElement(aliases, "alias", field=field, index=str(i), name=french.get(field, ""))
        for j, (field, label, _) in enumerate(expressions):
            ET.SubElement(aliases, "alias", field=field, index=str(len(fields) + j), name=label)
        excluded = ET.SubElement(ml, "excludeAttributesWMS")
        for field in [*wms_hidden, "fid"]:
            ET.SubElement(excluded, "attribute").text = field
        ET.SubElement(ml, "excludeAttributesWFS")
        exprs = ET.SubElement(ml, "expressionfields")
        for field, _, expression in expressions:
            ET.SubElement(exprs, "field", name=field, expression=expression, type="10", typeName="string",
                          length="0", precision="0", comment="", subType="0")
        order.append(lid)
        layers_cfg[layer["title"]] = {
            "id": lid, "name": layer["title"], "type": "layer", "title": layer["title"],
            "abstract": "", "link": "", "geometryType": layer["geometry"], "extent": [float(v) for v in tb] if tb is not None else None,
            "crs": info.get("crs") or territory.crs, "toggled": str(checked), "popup": "True", "popupSource": "auto",
            "popupTemplate": "", "popupMaxFeatures": 10, "popupDisplayChildren": "False", "noLegendImage": "False",
            "groupAsLayer": "False", "baseLayer": "False", "displayInLegend": "True", "singleTile": "True",
            "imageFormat": "image/png", "cached": "False", "serverFrame": None, "clientCacheExpiration": 300,
        }
    full_extent = full_extent or [0, 0, 0, 0]
    base = basemap_config(territory)
    if base:                                   # drawn below everything (last in the layer tree)
        ml, source = _basemap_layer(base)
        projectlayers.append(ml)
        ET.SubElement(tree, "layer-tree-layer", id="tvb_basemap_layer", name=base.get("title") or "Fond de carte",
                      source=source, providerKey="wms", checked="Qt::Checked", expanded="0")
        order.append("tvb_basemap_layer")
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
        if lid != "tvb_basemap_layer":
            ET.SubElement(wfs, "value").text = lid
    credits = credit_line(territory, f"Observatoire TVB {territory.short_name or territory.name}")
    ET.SubElement(props, "WMSContactOrganization", type="QString").text = f"Observatoire TVB {territory.name}"
    ET.SubElement(props, "WMSFees", type="QString").text = credits
    _print_layout(root, title, full_extent, credits, release_id)
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
                    "dxfExportEnabled": "False", "popupLocation": "dock", "emptyBaselayer": "True",
                    "startupBaselayer": "tvb_basemap_layer" if base else "empty"},
        "layers": layers_cfg,
        "layouts": {"config": {"default_popup_print": False},
                    "list": [{"layout": PRINT_LAYOUT, "enabled": True, "allowed_groups": [],
                              "formats_available": ["pdf", "png"], "default_format": "pdf",
                              "dpi_available": ["100", "150", "300"], "default_dpi": "150", "icon": ""}]},
    }
    cfg = out_dir / "tvb.qgs.cfg"
    cfg.write_text(json.dumps(lizmap, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"project": project, "lizmap": cfg, "layers": [lyr["name"] for lyr in ordered]}


def _proj4(crs: str) -> str:
    """PROJ string of a CRS (QGIS and Lizmap still want it beside the WKT)."""
    import warnings

    from pyproj import CRS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return CRS.from_user_input(crs).to_proj4()

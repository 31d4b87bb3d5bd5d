"""Static web map of a release: MapLibre GL JS (vendored, see vendor/VENDOR.md) reading the release's PMTiles.

``web/`` is self-contained (index.html, app.js, app.css, vendor/, tvb.pmtiles, indicators.json) so that the same
files work inside the release and in the ``releases/<t>/latest/web/`` mirror; the links to the report, GeoPackage
and STAC Item (``href="../…"``) are rewritten to ``../../<release_id>/…`` in the mirror (see
:func:`rewrite_for_mirror`).
"""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ...indicators.key_figures import KEY_FIGURES
from ..styles import (
    BOOLEAN_FIELDS,
    COMMUNE_FIGURES,
    FIELD_LABELS,
    INFRA_COLORS,
    ORIGIN_NAME_WORDS,
    POPUP_FIELDS,
    POPUP_HIDDEN,
    PUBLISHED_LAYERS,
    SEVERITY_RADIUS,
    STATUS_ALIASES,
    STATUS_STYLES,
    UNIT_NOTES,
    VALUE_LABELS,
    basemap_config,
    palette,
    reference_label,
    shown_at_start,
    source_credits,
    sous_trame_colors,
)

HERE = Path(__file__).resolve().parent
VENDOR_FILES = ("maplibre-gl.js", "maplibre-gl.css", "pmtiles.js", "LICENSE-maplibre-gl.txt", "LICENSE-pmtiles.txt",
                "LICENSE-fflate.txt", "VENDOR.md")
HIDDEN_FIELDS = sorted(POPUP_HIDDEN)
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre"]
# French labels and units of the key figures: the indicators stage's own table (one definition for report and map)
FIGURE_LABELS = {key: label for key, (label, _unit) in KEY_FIGURES.items()}
FIGURE_UNITS = {key: ("" if unit == "nombre" else unit) for key, (_label, unit) in KEY_FIGURES.items()}


def layer_config(territory, available: list[str]) -> list[dict]:
    """Web-map layer definitions (French titles, colours, categories) for the layers present in the tiles."""
    st_labels = {k: v.label for k, v in territory.computed_sous_trames.items()}
    st_colors = sous_trame_colors(list(st_labels))
    out = []
    for layer in PUBLISHED_LAYERS:
        if layer["name"] not in available:
            continue
        cfg = {k: layer.get(k) for k in ("name", "title", "geometry", "color", "fill_opacity", "width", "radius",
                                          "by", "size_by")}
        cfg["fill_opacity"] = cfg["fill_opacity"] if cfg["fill_opacity"] is not None else 0.5
        cfg["visible"] = shown_at_start(layer, available)
        cfg["stroke"] = layer.get("stroke")
        cfg["symbol"] = layer.get("symbol") or ("circle" if layer["geometry"] == "point" else None)
        if layer.get("label") and not layer.get("zero_by"):
            cfg["label"] = layer["label"]      # the legend row of a one-colour layer
        if layer.get("zero_by"):       # one colour, grey where the field is 0
            cfg.update({k: layer[k] for k in ("zero_by", "zero_color", "zero_label", "label")})
        cfg["hatch"] = bool(layer.get("hatch"))
        cats = []
        if layer.get("by") == "sous_trame":
            cats = [{"values": [code], "label": label, "color": st_colors[code]} for code, label in st_labels.items()]
        elif layer.get("by") == "status":
            for code, (label, color) in STATUS_STYLES.items():
                values = sorted({a for a, c in STATUS_ALIASES.items() if c == code} | {label})
                cats.append({"values": values, "label": label, "color": color})
        elif layer.get("by") == "infrastructure":
            words = VALUE_LABELS["infrastructure"]
            colors = palette(list(INFRA_COLORS), INFRA_COLORS)
            cats = [{"values": [code], "label": words.get(code, code).capitalize(), "color": color}
                    for code, color in colors.items()]
        if layer.get("size_by") == "severity":
            cfg["sizes"] = [{"value": v, "radius": r, "label": f"Gravité {VALUE_LABELS['severity'][str(v)]}"}
                            for v, r in SEVERITY_RADIUS.items()]
        cfg["categories"] = cats
        out.append(cfg)
    return out


def french_datetime(iso: str | None) -> str:
    """``2026-11-30T11:39:59Z`` → ``30 novembre 2026 à 11 h 39 UTC`` ('' when missing or unreadable)."""
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    day = "1er" if when.day == 1 else str(when.day)
    return f"{day} {MONTHS_FR[when.month - 1]} {when.year} à {when.hour} h {when.minute:02d} UTC"


def commune_label_points(gpkg: Path | None) -> list[dict]:
    """One label point per commune (inside its polygon), EPSG:4326: [{"nom", "insee", "lon", "lat"}]."""
    if gpkg is None or not Path(gpkg).exists():
        return []
    import geopandas as gpd
    import pyogrio

    if "communes" not in {name for name, _ in pyogrio.list_layers(gpkg)}:
        return []
    communes = gpd.read_file(gpkg, layer="communes")
    if communes.empty or "nom" not in communes.columns:
        return []
    points = communes.geometry.representative_point().to_crs("EPSG:4326")
    return [{"nom": str(n), "insee": str(i) if i is not None else "", "lon": round(p.x, 6), "lat": round(p.y, 6)}
            for n, i, p in zip(communes["nom"], communes.get("insee", [None] * len(communes)), points)]


def build_webmap(territory, web_dir: Path, *, release_id: str, released_at: str | None, available_layers: list[str],
                 bounds: list[float] | None, indicators_json: Path | None, gpkg: Path | None = None,
                 synthetic: bool | None = None) -> dict:
    """Write ``web_dir``: index.html, app.js, app.css, vendor/, indicators.json (copy). The PMTiles archive
    ``web_dir/tvb.pmtiles`` is written by the caller. ``bounds``: [west, south, east, north] in EPSG:4326.
    ``gpkg`` (the release's GeoPackage) gives the commune name positions; ``synthetic`` shows the synthetic-data
    banner (default: :func:`tvb_tasks.indicators.is_synthetic_landuse`)."""
    if synthetic is None:
        from ...indicators import is_synthetic_landuse

        synthetic = is_synthetic_landuse(territory)
    web_dir.mkdir(parents=True, exist_ok=True)
    (web_dir / "vendor").mkdir(exist_ok=True)
    for name in VENDOR_FILES:
        shutil.copyfile(HERE / "vendor" / name, web_dir / "vendor" / name)
    for name in ("app.js", "app.css"):
        shutil.copyfile(HERE / name, web_dir / name)
    if indicators_json is not None and indicators_json.exists():
        shutil.copyfile(indicators_json, web_dir / "indicators.json")
    else:
        (web_dir / "indicators.json").write_text("{}\n", encoding="utf-8")
    label = territory.short_name or territory.name
    credits = source_credits(territory)
    config = {
        "territory": territory.id, "release_id": release_id, "pmtiles": "tvb.pmtiles",
        "indicators": "indicators.json", "bounds": [[bounds[0], bounds[1]], [bounds[2], bounds[3]]] if bounds else None,
        "layers": layer_config(territory, available_layers), "field_labels": FIELD_LABELS,
        "hidden_fields": HIDDEN_FIELDS, "figure_labels": FIGURE_LABELS, "figure_units": FIGURE_UNITS,
        "popup_fields": POPUP_FIELDS, "value_labels": VALUE_LABELS, "unit_notes": UNIT_NOTES,
        "boolean_fields": BOOLEAN_FIELDS, "origin_name_words": ORIGIN_NAME_WORDS,
        "commune_figures": [{"key": k, "label": lab, "unit": u, "decimals": d} for k, lab, u, d in COMMUNE_FIGURES],
        "commune_labels": commune_label_points(gpkg), "basemap": basemap_config(territory),
        "attribution": " · ".join([f"Observatoire TVB {label}", *credits]),
        "reference_label": reference_label(territory),
    }
    env = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("index.html.j2").render(
        title=f"Trame verte et bleue — {territory.name}", release_id=release_id,
        released_at=french_datetime(released_at), synthetic=synthetic, credits=credits,
        config_json=_script_json(config), report_href="../report/index.html", gpkg_href="../tvb.gpkg",
        stac_href="../stac/item.json")
    (web_dir / "index.html").write_text(html, encoding="utf-8")
    return {"layers": [c["name"] for c in config["layers"]], "files": sorted(
        p.relative_to(web_dir).as_posix() for p in web_dir.rglob("*") if p.is_file())}


def _script_json(obj) -> Markup:
    """JSON safe to embed in a <script type="application/json"> element."""
    text = json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def rewrite_for_mirror(html: str, release_id: str) -> str:
    """index.html for ``releases/<t>/latest/web/``: ``href="../x"`` → ``href="../../<release_id>/x"``."""
    return html.replace('href="../', f'href="../../{release_id}/')

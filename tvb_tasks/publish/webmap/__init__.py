"""Static web map of a release: MapLibre GL JS (vendored, see vendor/VENDOR.md) reading the release's PMTiles.

``web/`` is self-contained (index.html, app.js, app.css, vendor/, tvb.pmtiles, indicators.json) so that the same
files work inside the release and in the ``releases/<t>/latest/web/`` mirror; the links to the report, GeoPackage
and STAC Item (``href="../…"``) are rewritten to ``../../<release_id>/…`` in the mirror (see
:func:`rewrite_for_mirror`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ...indicators.key_figures import KEY_FIGURES
from ..styles import FIELD_LABELS, PUBLISHED_LAYERS, STATUS_ALIASES, STATUS_STYLES, sous_trame_colors

HERE = Path(__file__).resolve().parent
VENDOR_FILES = ("maplibre-gl.js", "maplibre-gl.css", "pmtiles.js", "LICENSE-maplibre-gl.txt", "LICENSE-pmtiles.txt",
                "LICENSE-fflate.txt", "VENDOR.md")
HIDDEN_FIELDS = ["sous_trame", "status", "fid"]
# French labels and units of the key figures: the indicators stage's own table (one definition for report and map)
FIGURE_LABELS = {key: label for key, (label, _unit) in KEY_FIGURES.items()}
FIGURE_UNITS = {key: ("" if unit == "nombre" else unit) for key, (_label, unit) in KEY_FIGURES.items()}


def layer_config(territory, available: list[str]) -> list[dict]:
    """Web-map layer definitions (French titles, colours, categories) for the layers present in the tiles."""
    st_labels = {k: v.label for k, v in territory.sous_trames.items()}
    st_colors = sous_trame_colors(list(st_labels))
    out = []
    for layer in PUBLISHED_LAYERS:
        if layer["name"] not in available:
            continue
        cfg = {k: layer.get(k) for k in ("name", "title", "geometry", "color", "fill_opacity", "width", "radius",
                                          "by")}
        cfg["fill_opacity"] = cfg["fill_opacity"] if cfg["fill_opacity"] is not None else 0.5
        cfg["visible"] = True
        cats = []
        if layer.get("by") == "sous_trame":
            cats = [{"values": [code], "label": label, "color": st_colors[code]} for code, label in st_labels.items()]
        elif layer.get("by") == "status":
            for code, (label, color) in STATUS_STYLES.items():
                values = sorted({a for a, c in STATUS_ALIASES.items() if c == code} | {label})
                cats.append({"values": values, "label": label, "color": color})
        cfg["categories"] = cats
        out.append(cfg)
    return out


def build_webmap(territory, web_dir: Path, *, release_id: str, released_at: str | None, available_layers: list[str],
                 bounds: list[float] | None, indicators_json: Path | None) -> dict:
    """Write ``web_dir``: index.html, app.js, app.css, vendor/, indicators.json (copy). The PMTiles archive
    ``web_dir/tvb.pmtiles`` is written by the caller. ``bounds``: [west, south, east, north] in EPSG:4326."""
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
    config = {
        "territory": territory.id, "release_id": release_id, "pmtiles": "tvb.pmtiles",
        "indicators": "indicators.json", "bounds": [[bounds[0], bounds[1]], [bounds[2], bounds[3]]] if bounds else None,
        "layers": layer_config(territory, available_layers), "field_labels": FIELD_LABELS,
        "hidden_fields": HIDDEN_FIELDS, "figure_labels": FIGURE_LABELS, "figure_units": FIGURE_UNITS,
        "attribution": f"Observatoire TVB — {label}" + (f" · {credits}" if (credits := _credit_line(territory))
                                                        else ""),
    }
    env = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("index.html.j2").render(
        title=f"Trame verte et bleue — {territory.name}", release_id=release_id, released_at=released_at,
        config_json=_script_json(config), report_href="../report/index.html", gpkg_href="../tvb.gpkg",
        stac_href="../stac/item.json")
    (web_dir / "index.html").write_text(html, encoding="utf-8")
    return {"layers": [c["name"] for c in config["layers"]], "files": sorted(
        p.relative_to(web_dir).as_posix() for p in web_dir.rglob("*") if p.is_file())}


def _credit_line(territory) -> str:
    """Sources' attributions from their schemas (empty for the bundled sample)."""
    from tvb_tasks.sources.schemas import credit_line

    return credit_line(territory)


def _script_json(obj) -> "Markup":
    """JSON safe to embed in a <script type="application/json"> element."""
    from markupsafe import Markup

    text = json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def rewrite_for_mirror(html: str, release_id: str) -> str:
    """index.html for ``releases/<t>/latest/web/``: ``href="../x"`` → ``href="../../<release_id>/x"``."""
    return html.replace('href="../', f'href="../../{release_id}/')

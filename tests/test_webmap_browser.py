"""The published web map in headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

A release is published to a local store, whose folder is served by a small threaded HTTP server with Range
support (PMTiles reads byte ranges; Python's http.server has none). Checked: the page loads with no console error,
no failed request; the PMTiles tiles are fetched with 206 responses; the layers are drawn (map area not blank); a
real mouse click on a corridor opens a popup with French labels; the key-figures panel shows indicators.json; the
layer switcher hides a layer; the ``latest/web/`` mirror loads too.
"""
from __future__ import annotations

import base64
import html as html_lib
import io
import json
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from helpers.chromium import CDP, CHROMIUM, TIMEOUT, chromium  # noqa: F401  (shared headless-Chromium helper)
from helpers.release_outputs import VIGILANCE_XY, X0, Y0, do_publish, make_outputs, territory
from tvb_tasks import publish
from tvb_tasks.store import LocalStore

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")]


# --- HTTP server with Range support -----------------------------------------------------------------------------
class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (206 / 416). Logs requests on the server."""

    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".json": "application/json",
                      ".pmtiles": "application/octet-stream", ".css": "text/css", ".html": "text/html"}

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        rng = self.headers.get("Range")
        if not rng or not path.is_file():
            self.server.log.append((self.command, self.path, None))
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        size = path.stat().st_size
        if not m or (m.group(1) == "" and m.group(2) == ""):
            self.send_error(416)
            return None
        if m.group(1) == "":
            start, end = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.server.log.append((self.command, self.path, 206))
        return io.BytesIO(body)


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = lambda *a, **kw: RangeHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.log = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# the DevTools-protocol client is tests/helpers/chromium.py's (shared with test_readers.py)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    staged = publish.stage_release(territory(), tmp / "release", **make_outputs(tmp / "in"),
                                   release_id="20261125T181600Z-1a7bbb3c")
    store = LocalStore(tmp / "store")
    r = do_publish(store, staged, 1)
    server, base = serve(store.root)
    yield {"base": base, "rid": r["release_id"], "server": server}
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with chromium() as cdp:          # tests/helpers/chromium.py: headless Chromium, DevTools on, 1280 × 800
        yield cdp


def open_page(cdp: CDP, url: str) -> None:
    cdp.events.clear()
    cdp.send("Page.navigate", {"url": url})
    cdp.wait_for("document.readyState === 'complete' && !!window.tvbState")
    cdp.wait_for("window.tvbState.idle === true")


def map_pixels(cdp: CDP) -> np.ndarray:
    from PIL import Image

    rect = cdp.eval("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                    " return [r.left, r.top, r.width, r.height]; })()")
    shot = cdp.send("Page.captureScreenshot", {"format": "png", "clip": {
        "x": rect[0], "y": rect[1], "width": rect[2], "height": rect[3], "scale": 1}})
    img = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    if os.environ.get("TVB_SCREENSHOT_DIR"):
        img.save(Path(os.environ["TVB_SCREENSHOT_DIR"]) / "webmap.png")
    return np.asarray(img).astype(float)


def test_web_map_in_chromium(browser: CDP, site):
    cdp, rid = browser, site["rid"]
    open_page(cdp, f"{site['base']}/releases/call/{rid}/web/index.html")
    assert cdp.console_errors() == []
    # tiles came from the PMTiles archive through Range requests
    ranged = [p for (_, p, status) in site["server"].log if p.endswith("tvb.pmtiles") and status == 206]
    assert len(ranged) >= 2
    rendered = cdp.eval("tvbMap.queryRenderedFeatures().map(f => f.sourceLayer)")
    assert {"reservoirs", "corridor_stretches", "wet_corridors", "rupture_points", "vigilance_points",
            "communes"} <= set(rendered)
    assert "corridors" not in rendered                  # whole corridors give way to their stretches at start

    # the map area is not blank: many pixels differ from the background colour, with some variance
    px = map_pixels(cdp)
    background = np.array([0xF4, 0xF1, 0xEA], dtype=float)
    drawn = np.abs(px - background).sum(axis=2) > 30
    assert px.std() > 10 and drawn.mean() > 0.02, (px.std(), drawn.mean())

    # points de vigilance are orange triangles (the report's colour) drawn where they are
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    vlon, vlat = to_wgs84.transform(*VIGILANCE_XY[1])
    vx, vy = cdp.eval(f"(() => {{ const p = tvbMap.project([{vlon}, {vlat}]); return [p.x, p.y]; }})()")
    window = px[int(vy) - 2:int(vy) + 3, int(vx) - 2:int(vx) + 3]
    assert (np.abs(window - np.array([0xFD, 0xAE, 0x61])).max(axis=2) < 30).any(), window.reshape(-1, 3)
    assert cdp.eval("tvbMap.getStyle().layers.find(l => l.id === 'vigilance_points-symbol').type") == "symbol"

    # a real click on the "to restore" stretch of corridor 2 opens a popup with French labels
    lon, lat = to_wgs84.transform(X0 + 400 + 0.3 * 1300, Y0 + 500 + 0.3 * 2000)
    x, y = cdp.eval(f"(() => {{ const p = tvbMap.project([{lon}, {lat}]);"
                    " const r = tvbMap.getCanvas().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; })()")
    cdp.click(x, y)
    text = cdp.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
    assert "Tronçons de corridor" in text and "Statut du tronçon" in text and "À restaurer" in text, text
    assert "Tronçon à restaurer (2)" in text and "Part d'éléments support" in text and "55 %" in text, text
    assert "Longueur" in text and "km" in text and "to_restore" not in text
    if os.environ.get("TVB_SCREENSHOT_DIR"):           # for a person to look at
        shot = cdp.send("Page.captureScreenshot", {"format": "png"})
        (Path(os.environ["TVB_SCREENSHOT_DIR"]) / "webmap-popup.png").write_bytes(base64.b64decode(shot["data"]))

    # key figures from indicators.json, French number format
    cdp.wait_for("window.tvbState.figures > 0", timeout=20)
    figures = cdp.eval("document.getElementById('tvb-figures-body').innerText")
    assert "Surface des réservoirs" in figures and "61,5\xa0ha" in figures
    legend = cdp.eval("document.getElementById('tvb-legend-body').innerText")
    assert all(s in legend for s in ("Existant", "À restaurer", "À créer", "Sous-trame forestière",
                                     "Points de vigilance", "Tronçons de corridor", "Corridors écologiques"))
    assert cdp.eval("document.querySelectorAll('.tvb-swatch.tvb-triangle[data-layer=vigilance_points]').length") == 1

    # the layer switcher shows the whole corridors (off at start) and hides the stretches
    assert cdp.eval("document.getElementById('tvb-toggle-corridors').checked") is False
    cdp.eval("document.getElementById('tvb-toggle-corridors').click()")
    assert cdp.eval("tvbMap.getLayoutProperty('corridors-line', 'visibility')") == "visible"
    cdp.eval("document.getElementById('tvb-toggle-corridor_stretches').click()")
    assert cdp.eval("tvbMap.getLayoutProperty('corridor_stretches-line', 'visibility')") == "none"
    assert cdp.console_errors() == []


def test_latest_mirror_page(browser: CDP, site):
    cdp = browser
    open_page(cdp, f"{site['base']}/releases/call/latest/web/index.html")
    assert cdp.console_errors() == []
    assert cdp.eval("tvbMap.queryRenderedFeatures().length") > 0
    href = cdp.eval("document.querySelector('.tvb-links a').getAttribute('href')")
    assert href == f"../../{site['rid']}/report/index.html"
    status = cdp.eval(f"fetch({json.dumps(href)}).then(r => r.status)")
    assert status == 200


# Properties as published for CALL (tvb.gpkg of a real release): every popup value must read in French, with units.
POPUP_CASES = {
    "priorities": {"id": "S0021", "candidate": "rupture_site", "sous_trame": "mining", "status": None,
                   "corridor_ids": "mining-C026", "infrastructure": "road", "infra_name": "A21 (Rocade minière)",
                   "length_m": 0.0, "n_points": 1, "gain_dpc_pct": 0.0, "gain_ec_ha": 0.0,
                   "gain_method": "corridor_restored", "cost_proxy": 4000.0, "conflict": 0.0, "projects": "",
                   "score": -0.0000001, "rank": 1, "rank_sous_trame": 1, "commune": "Liévin",
                   "libelle": "Priorité 1 – site de rupture (route A21) – Sous-trame minière (terrils) (S0021)",
                   "libelle_sous_trame": "Sous-trame minière (terrils)"},
    "rupture_points": {"id": "P0300", "infrastructure": "culvert", "infra_class": "road", "severity": 2,
                       "missing_link": 0, "libelle_sous_trame": "Sous-trame des zones humides"},
    "reservoirs": {"id": "forest-R001", "libelle_sous_trame": "Sous-trame forestière", "area_ha": 12.5,
                   "origin": "habitat_patch+protected_area",
                   "origin_name": "N2000_ZPS Marais de la Souchez (site synthétique); patch 1; patch 19"},
    "vigilance_points": {"id": "V0012", "corridor_id": "forest-C009", "sous_trame": "forest", "infrastructure": "road",
                         "infra_class": "4", "infra_name": "Route secondaire Éleu-dit-Leauwette – Givenchy",
                         "severity": 2, "n_merged": 1, "libelle_sous_trame": "Sous-trame forestière",
                         "libelle": "Point de vigilance – route d'importance 4 – Sous-trame forestière – sévérité "
                                    "moyenne"},
    "corridor_stretches": {"id": "forest-C009-S02", "corridor_id": "forest-C009", "sous_trame": "forest",
                           "status": "to_restore", "length_m": 412.5, "max_gap_m": 150.0, "support_share": 0.4375,
                           "missing_link": 0, "downgraded": 1, "libelle_statut": "À restaurer",
                           "libelle_sous_trame": "Sous-trame forestière",
                           "libelle": "Tronçon à restaurer – Sous-trame forestière (forest-C009, 412 m)"},
    "corridor_areas": {"id": "forest-C001-A", "corridor_id": "forest-C001", "status": "to_create",
                       "missing_link": 1, "cost_margin": 2500.0, "area_ha": 28.75, "mean_width_m": 212.4,
                       "libelle": "Emprise du corridor à créer – Sous-trame forestière (forest-C001)",
                       "libelle_statut": "À créer"},
}


def test_popups_read_in_french(browser: CDP, site):
    """Popups of the real layers: no internal code, no English word, booleans oui/non, never "-0", units shown."""
    cdp = browser
    open_page(cdp, f"{site['base']}/releases/call/{site['rid']}/web/index.html")
    text = {}
    for layer, props in POPUP_CASES.items():
        html = cdp.eval(f"tvbPopupHtml({json.dumps(layer)}, {json.dumps(props)})")
        text[layer] = html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))
    for layer, t in text.items():
        t = t.replace(layer, "")       # the fixture release has no priorities layer: its kind line is the layer name
        for code in ("corridor_restored", "rupture_site", "culvert", "road", "N2000_ZPS", "patch", "-0", "−0"):
            assert code not in t, (layer, code, t)
    p = text["priorities"]
    assert "Priorité 1 – site de rupture" in p and "gain nul" in p and "Conflit avec un projet non" in p
    assert "Score de priorité 0 " in p and "corridor remis en état" in p and "Longueur" not in p   # a site: no 0 km
    tiny = cdp.eval("tvbPopupHtml('priorities', {gain_dpc_pct: 0.0004, gain_ec_ha: 0.12, length_m: 2720})")
    assert "&lt; 0,01 %" in tiny and "0,1 ha" in tiny and "2,72 km" in tiny
    assert "busage sous une route" in text["rupture_points"] and "Liaison manquante à rétablir non" in text[
        "rupture_points"]
    assert "Natura 2000 (ZPS) Marais" in text["reservoirs"] and "tache d'habitat 19" in text["reservoirs"]
    v = text["vigilance_points"]
    assert v.startswith("Points de vigilance Point de vigilance – route") and "Gravité moyenne" in v, v
    assert "importance 4 (1 = autoroute" in v and "Corridor franchi forest-C009" in v, v
    st = text["corridor_stretches"]
    assert "Statut du tronçon À restaurer" in st and "0,41 km" in st and "Plus longue discontinuité 150 m" in st, st
    assert "Part d'éléments support 44 %" in st and "Statut abaissé par un point de rupture oui" in st, st
    a = text["corridor_areas"]
    assert "Liaison manquante (fracture) oui" in a and re.search(r"2\s500 unités de coût", a)
    # priorities start hidden (they would cover the rupture points) and are drawn under them; culverts have a legend
    layers = cdp.eval("tvbMap.getStyle().layers.map(l => l.id)")
    if "priorities-circle" in layers:
        assert cdp.eval("tvbMap.getLayoutProperty('priorities-circle', 'visibility')") == "none"
        assert layers.index("priorities-circle") < layers.index("rupture_points-circle")
    assert "Busage" in cdp.eval("document.getElementById('tvb-legend-body').innerText")


def test_zero_gain_priorities_drawn_grey():
    """A priority without connectivity gain is grey on the map and has its own legend row."""
    from tvb_tasks.publish.webmap import layer_config

    cfg = {c["name"]: c for c in layer_config(territory(), ["priorities"])}["priorities"]
    assert cfg["visible"] is False and cfg["zero_by"] in ("gain_ec_ha", "gain_dpc_pct")
    assert cfg["zero_color"] != cfg["color"] and "Gain nul" in cfg["zero_label"]


def test_phone_width_credits_start_collapsed(browser: CDP, site):
    """At 390 px the map's attribution and the panel's "Sources" start collapsed (they would cover the map)."""
    cdp = browser
    cdp.send("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 800, "deviceScaleFactor": 1,
                                                    "mobile": True})
    try:
        open_page(cdp, f"{site['base']}/releases/call/{site['rid']}/web/index.html")
        assert cdp.eval("document.getElementById('tvb-credits').open") is False
        attrib = cdp.eval("(() => { const a = document.querySelector('.maplibregl-ctrl-attrib');"
                          " return [a.classList.contains('maplibregl-compact'),"
                          " a.classList.contains('maplibregl-compact-show') || a.hasAttribute('open')]; })()")
        assert attrib == [True, False], attrib
        assert cdp.eval("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    finally:
        cdp.send("Emulation.clearDeviceMetricsOverride")
    open_page(cdp, f"{site['base']}/releases/call/{site['rid']}/web/index.html")
    assert cdp.eval("document.getElementById('tvb-credits').open") is True        # wide screens: open

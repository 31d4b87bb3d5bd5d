"""The published outputs as a reader meets them, on a real CALL release (the bundled sample through the whole
pipeline), served by ``tvb serve``:

* HTTP: byte ranges (PMTiles), 404 / 416, nothing outside the store;
* every ``href`` / ``src`` of the report, its 36 commune sheets and the web map resolves through the server;
* the PDF: A4 only, numbered pages; 36 commune sheets in the release;
* the web map in headless Chromium: clicking a commune and a corridor opens French popups without internal codes;
  the legend shows distinct reservoir and relay swatches; key figures (calculé / publié) visible without scrolling
  at 1400×900; usable at phone width; credits of every source;
* the CLI: ``releases show`` summary, ``list`` header and legend, ``prune`` reasons, one-sentence errors.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest

from helpers.chromium import CHROMIUM, chromium
from helpers.sample_release import copy_sample_release
from tvb_tasks.cli import main as tvb
from tvb_tasks.config import PROJECT_ROOT

# one pipeline run of the whole bundled sample, served by `tvb serve`, read in headless Chromium
pytestmark = pytest.mark.integration
INTERNAL_CODES = re.compile(r"\b(habitat_patch|protected_area|road|railway|stream|river|ditch|canal_kind|open|"
                            r"culverted|to_restore|to_create|existing|terrestrial|N2000_SIC|ZNIEFF1|in_use)\b")


# --- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(sample_release_master, tmp_path_factory):
    """One pipeline run of the CALL sample in a local store (this module's copy of the session's run)."""
    tmp, result = copy_sample_release(sample_release_master, tmp_path_factory.mktemp("readers"))
    rid = result["release_id"]
    return {"store": tmp / "store", "uri": (tmp / "store").as_uri(), "rid": rid,
            "root": tmp / "store" / "releases" / "call" / rid, "result": result}


@pytest.fixture(scope="module")
def served(release):
    """``tvb serve --port 0`` on the store, as a user starts it; yields its base URL."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tvb_tasks.cli", "serve", "--store", release["uri"], "--port", "0",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=PROJECT_ROOT)
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# --- serving ------------------------------------------------------------------------------------------------------
def test_serve_answers_byte_ranges_and_nothing_else(release, served):
    base = f"{served}/releases/call/{release['rid']}"
    size = (release["root"] / "web" / "tvb.pmtiles").stat().st_size
    status, headers, body = get(f"{base}/web/tvb.pmtiles", {"Range": "bytes=0-126"})
    assert status == 206 and len(body) == 127 and body[:7] == b"PMTiles"
    assert headers["Content-Range"] == f"bytes 0-126/{size}" and headers["Accept-Ranges"] == "bytes"
    status, _, body = get(f"{base}/web/tvb.pmtiles", {"Range": "bytes=-10"})
    assert status == 206 and len(body) == 10
    assert get(f"{base}/web/tvb.pmtiles", {"Range": f"bytes={size}-"})[0] == 416
    status, headers, body = get(f"{base}/web/")                     # folder → index.html
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"tvb-config" in body
    assert get(f"{served}/releases/call/nothing.json")[0] == 404
    assert get(f"{served}/releases/call/../../../etc/passwd")[0] == 404
    assert get(f"{served}/.locks/x")[0] == 404


def test_published_links_are_http(release):
    result = release["result"]
    for key in ("report_url", "web_url", "release_url"):
        assert result[key].startswith("http://") or result[key].startswith("https://"), result[key]


# --- every link resolves ---------------------------------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append((name, value))
            if name == "id" and value:
                self.ids.add(value)


def test_every_href_and_src_resolves(release, served):
    base = f"{served}/releases/call/{release['rid']}/"
    pages = ["report/index.html", "web/index.html"] + [
        f"report/communes/{p.name}" for p in sorted((release["root"] / "report" / "communes").glob("*.html"))]
    assert len(pages) == 38
    checked, missing = set(), []
    for page in pages:
        url = urljoin(base, page)
        status, _, body = get(url)
        assert status == 200, url
        parser = _Links()
        parser.feed(body.decode("utf-8"))
        for attr, link in parser.links:
            if link.startswith(("data:", "mailto:")):
                continue
            assert not link.startswith("file:"), (page, link)
            if link.startswith(("http://", "https://")):
                assert attr == "href", (page, link)           # nothing loaded from outside; licence texts are links
                continue
            if link.startswith("#"):
                if link[1:] not in parser.ids:
                    missing.append((page, link))
                continue
            target = urljoin(url, link).split("#")[0]
            if target in checked:
                continue
            checked.add(target)
            if get(target, {"Range": "bytes=0-0"})[0] not in (200, 206):
                missing.append((page, link))
    assert missing == [] and len(checked) > 40
    assert any("validation/sources/data_docs/index.html" in c for c in checked)
    assert any("validation/outputs/data_docs/index.html" in c for c in checked)


# --- report -------------------------------------------------------------------------------------------------------
def test_36_commune_sheets_in_the_release(release):
    manifest = json.loads((release["root"] / "manifest.json").read_text(encoding="utf-8"))
    paths = {f["path"] for f in manifest["files"]}
    sheets = [p for p in paths if re.fullmatch(r"report/communes/62\d{3}\.html", p)]
    maps = [p for p in paths if re.fullmatch(r"report/maps/communes/62\d{3}\.png", p)]
    assert len(sheets) == 36 and len(maps) == 36
    lens = (release["root"] / "report" / "communes" / "62498.html").read_text(encoding="utf-8")
    assert "<h1>Lens</h1>" in lens and "Points de rupture" in lens and "Données synthétiques" in lens


def test_pdf_is_a4_numbered_with_contents(release):
    if not shutil.which("pdfinfo"):
        pytest.skip("poppler-utils not installed")
    pdf = release["root"] / "report" / "report.pdf"
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    assert set(re.findall(r"Page +\d+ size: +([\d.]+ x [\d.]+)", info)) == {"841.68 x 595.44"}
    n = int(re.search(r"Pages: +(\d+)", info).group(1))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout.split("\f")
    assert all(f"page {i} / {n}" in text[i - 1] for i in range(1, n + 1))
    assert "En bref" in text[0] and "Sommaire" in text[1]
    first_sheet = int(re.search(r"Fiches communales\s*\.*\s*(\d+)", text[1]).group(1))
    assert n - first_sheet + 1 == 36
    assert n < 36 + 30                                   # no long run of half-empty pages


def test_report_reads_in_french_for_a_planner(release):
    html = (release["root"] / "report" / "index.html").read_text(encoding="utf-8")
    assert html.index('id="en-bref"') < html.index('id="chiffres-cles"')
    assert "points de rupture" in html and "passage à faune" in html and "Routes, voies ferrées" in html      # summary, credits
    assert "Carte interactive" in html
    png = release["root"] / "report" / "maps" / "points_de_rupture.png"
    assert png.stat().st_size > 50_000


# --- web map in Chromium ---------------------------------------------------------------------------------------
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


def _open_map(page, url: str) -> None:
    page.open(url, "document.readyState === 'complete' && !!window.tvbState")
    page.wait_for("window.tvbState.idle === true && window.tvbState.figures > 0")


def _screen_point_of(page, layer: str, pick: str) -> tuple[float, float, dict]:
    """Viewport coordinates of a rendered point of ``layer`` where that layer's feature is the top one."""
    return page.eval(f"""(() => {{
      const canvas = tvbMap.getCanvas().getBoundingClientRect();
      const layers = tvbMap.getStyle().layers.map(l => l.id).filter(id => !id.startsWith('background'));
      const w = canvas.width, h = canvas.height;
      for (let y = 40; y < h - 40; y += 6) for (let x = 40; x < w - 40; x += 6) {{
        const f = tvbMap.queryRenderedFeatures([[x - 4, y - 4], [x + 4, y + 4]], {{layers: layers.filter(id => tvbMap.getLayer(id))}});
        if (f.length && f[0].layer.id === '{layer}' && ({pick})(f[0])) return [canvas.left + x, canvas.top + y, f[0].properties];
      }}
      return null; }})()""")


@needs_chromium
def test_web_map_popups_are_french_without_codes(release, served):
    url = f"{served}/releases/call/{release['rid']}/web/index.html"
    with chromium(1400, 900) as page:
        _open_map(page, url)
        assert page.console_errors() == []
        assert page.eval("window.tvbState.labels") >= 20                   # commune names shown
        # a commune
        x, y, props = _screen_point_of(page, "communes-fill", "f => true")
        page.click(x, y)
        text = page.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
        assert props["nom"] in text and "Commune" in text and "Surface" in text and " ha" in text, text
        assert "Points de rupture" in text and not INTERNAL_CODES.search(text), text
        page.eval("document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
        # a corridor stretch (shown by default: the status of each stretch), then a point de vigilance
        x, y, props = _screen_point_of(page, "corridor_stretches-line", "f => true")
        page.click(x, y)
        text = page.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
        assert "Tronçons de corridor" in text and "Statut du tronçon" in text and " km" in text, text
        assert "Part d'éléments support" in text and props["corridor_id"] in text, text
        assert not INTERNAL_CODES.search(text) and text.count("Longueur") == 1, text
        page.eval("document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
        x, y, props = _screen_point_of(page, "vigilance_points-symbol", "f => true")
        page.click(x, y)
        text = page.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
        assert "Points de vigilance" in text and "importance 4" in text and "Gravité" in text, text
        assert not INTERNAL_CODES.search(text), text
        page.eval("document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
        # a whole corridor: switched on from the legend (the stretches switched off)
        page.eval("window.tvbState.idle = false; document.getElementById('tvb-toggle-corridors').click();"
                  "document.getElementById('tvb-toggle-corridor_stretches').click()")
        page.wait_for("window.tvbState.idle === true")                  # redrawn
        x, y, props = _screen_point_of(page, "corridors-line", "f => true")
        page.click(x, y)
        text = page.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
        assert "Corridors écologiques" in text and "Statut" in text and " km" in text and "unités de coût" in text
        assert not INTERNAL_CODES.search(text) and text.count("Longueur") == 1, text
        page.eval("document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
        # a rupture point: infrastructure and severity in words
        x, y, props = _screen_point_of(page, "rupture_points-circle", "f => true")
        page.click(x, y)
        text = page.wait_for("(document.querySelector('.maplibregl-popup-content') || {}).innerText", timeout=20)
        assert "Gravité" in text and ("route" in text or "voie ferrée" in text or "canal" in text) and not INTERNAL_CODES.search(text)
        # header, banner, credits
        header = page.eval("document.getElementById('tvb-header').innerText")
        assert re.search(r"Publiée le \d{1,2}(er)? \w+ 20\d\d à \d+ h \d\d UTC", header), header
        assert "synthétique" in page.eval("document.getElementById('tvb-synthetic').innerText")
        credits = page.eval("document.querySelector('.maplibregl-ctrl-attrib-inner').innerText")
        assert all(s in credits for s in ("IGN", "OpenStreetMap (ODbL)", "Mission Bassin Minier")), credits
        # key figures, calculé and publié, visible without scrolling
        box = page.eval("(() => { const r = document.querySelector('.tvb-fig').getBoundingClientRect();"
                        " return [r.top, r.bottom]; })()")
        assert box[1] <= 900, box
        head = page.eval("document.querySelector('.tvb-fig thead').innerText")
        assert "Calculé" in head and "Publié" in head
        if os.environ.get("TVB_SCREENSHOT_DIR"):
            Path(os.environ["TVB_SCREENSHOT_DIR"], "webmap-call.png").write_bytes(page.screenshot())
        assert page.console_errors() == []


@needs_chromium
def test_legend_swatches_tell_reservoirs_from_relays(release, served):
    from PIL import Image

    url = f"{served}/releases/call/{release['rid']}/web/index.html"
    with chromium(1400, 900) as page:
        _open_map(page, url)
        shots = {}
        for layer in ("reservoirs", "relays"):
            rect = page.eval(f"(() => {{ const s = document.querySelector('.tvb-swatch[data-layer=\"{layer}\"]');"
                             " s.scrollIntoView(); const r = s.getBoundingClientRect();"
                             " return {x: r.left, y: r.top, width: r.width, height: r.height}; })()")
            img = Image.open(io.BytesIO(page.screenshot(rect))).convert("RGB")
            shots[layer] = np.asarray(img).astype(float)
        res, rel = shots["reservoirs"], shots["relays"]
        assert res.shape == rel.shape
        # same sous-trame colour, yet different swatches: relays are hatched (striped), reservoirs plain
        assert np.abs(res - rel).mean() > 20
        inner = lambda a: a[3:-3, 3:-3]          # noqa: E731
        assert inner(rel).std() > 2 * inner(res).std() + 5


@needs_chromium
def test_web_map_at_phone_width(release, served):
    url = f"{served}/releases/call/{release['rid']}/web/index.html"
    with chromium(390, 844) as page:
        page.viewport(390, 844, mobile=True)
        _open_map(page, url)
        sizes = page.eval("(() => { const m = document.getElementById('map').getBoundingClientRect();"
                          " const p = document.getElementById('tvb-panel').getBoundingClientRect();"
                          " return [m.width, m.height, p.top, document.documentElement.scrollWidth]; })()")
        assert sizes[0] >= 380 and sizes[1] >= 300 and sizes[2] >= sizes[1] and sizes[3] <= 392, sizes
        if os.environ.get("TVB_SCREENSHOT_DIR"):
            Path(os.environ["TVB_SCREENSHOT_DIR"], "webmap-phone.png").write_bytes(page.screenshot())


# --- CLI ----------------------------------------------------------------------------------------------------------
def test_cli_release_tools_speak_to_people(release, capsys):
    uri, rid = release["uri"], release["rid"]
    assert tvb(["releases", "list", "--store", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["RELEASE", "PUBLISHED", "(UTC)", "FILES", "SIZE"]
    assert out[1].startswith(f"* {rid}") and out[-1].startswith("* = live release")
    assert tvb(["releases", "show", rid, "--store", uri]) == 0
    shown = capsys.readouterr().out
    assert len(shown.splitlines()) < 40 and "(live)" in shown and "Points de rupture" in shown
    assert f"http://127.0.0.1:8000/releases/call/{rid}/web/index.html" in shown and "tvb serve" in shown
    assert tvb(["releases", "show", rid, "--store", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["release_id"] == rid
    assert tvb(["releases", "prune", "--keep", "1", "--store", uri]) == 0
    assert re.search(rf"kept +{rid} +one of the 1 newest \(--keep 1\), live release", capsys.readouterr().out)
    # errors: one sentence, no Python class name; 2 = usage, 1 = failure
    assert tvb(["releases", "show", "--store", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tvb: error: ") and "needs a RELEASE_ID" in err and "Error" not in err.split(":", 2)[2]
    assert tvb(["releases", "show", "20200101T000000Z-deadbeef", "--store", uri]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tvb: error: ") and "ReleaseNotFound" not in err and len(err.splitlines()) == 1

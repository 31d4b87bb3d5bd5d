"""The published QGIS project served by a real QGIS Server (what Lizmap runs on).

A release folder is built with the real ``stage_release`` on the small fake pipeline outputs of
``test_publish_formats`` (six layers, EPSG:2154); ``qgis/tvb.qgs`` is then served by Debian's
``qgis_mapserv.fcgi`` run as a plain CGI program, one subprocess per request (as a CGI web server would), with
``QGIS_PROJECT_FILE`` pointing at the release. Checked: WMS GetCapabilities (every layer, French titles), GetMap
(not blank, corridor colours by status, also in EPSG:3857), GetFeatureInfo (French attributes of a known corridor),
GetLegendGraphic (French status labels), WFS GetCapabilities / GetFeature (feature counts) and the server log (no
invalid layer, no unreadable source). A broken copy of the project proves the log check can fail.

Skipped only when the QGIS Server binary is absent (Debian package ``qgis-server``).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pyogrio
import pytest

from helpers.release_outputs import VIGILANCE_XY, X0, Y0, make_outputs, territory
from tvb_tasks.publish.styles import PUBLISHED_LAYERS, STATUS_STYLES


def _find_mapserv() -> str | None:
    for candidate in (shutil.which("qgis_mapserv.fcgi"), "/usr/lib/cgi-bin/qgis_mapserv.fcgi"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


MAPSERV = _find_mapserv()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(MAPSERV is None, reason="QGIS Server (qgis_mapserv.fcgi, Debian package "
                                                         "'qgis-server') is not installed")]

# drawing order, bottom first; the scene of make_outputs has no priorities layer (published only when computed)
LAYERS = [layer["name"] for layer in PUBLISHED_LAYERS if layer["name"] != "priorities"]
TITLES = {layer["name"]: layer["title"] for layer in PUBLISHED_LAYERS if layer["name"] in LAYERS}
RES = 10.0                                                       # GetMap resolution, metres per pixel
WMS_NS = {"wms": "http://www.opengis.net/wms"}
# what QGIS Server / GDAL write when a layer of the project cannot be loaded or read
LOG_PROBLEM = re.compile(r"not valid|unable to open|cannot open|could not open|failed to (?:open|load)|"
                         r"CRITICAL|saved with a newer version|problems may occur|invalid layer", re.IGNORECASE)


# --- a CGI call -------------------------------------------------------------------------------------------------
class Answer:
    """A parsed CGI answer: HTTP status, headers (lower-case names), body bytes, and the process's stderr."""

    def __init__(self, raw: bytes, stderr: str):
        sep = b"\r\n\r\n" if b"\r\n\r\n" in raw[:4096] else b"\n\n"
        head, _, self.body = raw.partition(sep)
        self.headers = {}
        for line in head.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self.status = int(self.headers.get("status", "200").split()[0])
        self.stderr = stderr

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> dict:
        return json.loads(self.body)

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)

    def image(self) -> np.ndarray:
        from PIL import Image

        assert self.content_type.startswith("image/png"), (self.content_type, self.body[:500])
        return np.asarray(Image.open(io.BytesIO(self.body)).convert("RGBA"))


class QgisServer:
    """Runs ``qgis_mapserv.fcgi`` as a CGI program against one project, logging to ``log``."""

    def __init__(self, project: Path, home: Path, log: Path):
        self.project, self.home, self.log = project, home, log
        home.mkdir(parents=True, exist_ok=True)
        runtime = home / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.stderr: list[str] = []

    def __call__(self, **params: object) -> Answer:
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.home / "runtime"),
            "LC_ALL": "C.UTF-8", "QT_QPA_PLATFORM": "offscreen",
            "QGIS_PROJECT_FILE": str(self.project), "QGIS_SERVER_LOG_FILE": str(self.log),
            "QGIS_SERVER_LOG_LEVEL": "0", "QGIS_SERVER_LOG_STDERR": "0", "QGIS_SERVER_IGNORE_BAD_LAYERS": "false",
            "REQUEST_METHOD": "GET", "QUERY_STRING": urlencode({k: str(v) for k, v in params.items()}),
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "SCRIPT_NAME": "/cgi-bin/qgis_mapserv.fcgi", "GATEWAY_INTERFACE": "CGI/1.1",
        }
        proc = subprocess.run([MAPSERV], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        stderr = proc.stderr.decode("utf-8", "replace")
        self.stderr.append(stderr)
        assert proc.returncode == 0, f"qgis_mapserv.fcgi exited {proc.returncode}: {stderr[-2000:]}"
        return Answer(proc.stdout, stderr)


def log_problems(*texts: str) -> list[str]:
    """Lines of QGIS Server logs / stderr that say a layer or its data source could not be loaded."""
    return [line for text in texts for line in text.splitlines() if LOG_PROBLEM.search(line)]


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    from tvb_tasks.publish import stage_release

    tmp = tmp_path_factory.mktemp("qgis_server")
    out = make_outputs(tmp / "in")
    return stage_release(territory(), tmp / "release", **out, release_id="20261125T181500Z-abcdef12")


@pytest.fixture(scope="module")
def server(release: Path, tmp_path_factory) -> QgisServer:
    tmp = tmp_path_factory.mktemp("qgis_home")
    return QgisServer(release / "qgis" / "tvb.qgs", tmp / "home", tmp / "qgis_server.log")


@pytest.fixture(scope="module")
def grid(release: Path) -> dict:
    """Full extent of the published layers (EPSG:2154) on a RES-metre pixel grid: bbox, width, height."""
    bounds = np.array([pyogrio.read_info(release / "tvb.gpkg", layer=name, force_total_bounds=True)["total_bounds"]
                       for name in LAYERS])
    xmin, ymin = np.floor(bounds[:, :2].min(axis=0) / RES) * RES
    xmax, ymax = np.ceil(bounds[:, 2:].max(axis=0) / RES) * RES
    width, height = int(round((xmax - xmin) / RES)), int(round((ymax - ymin) / RES))
    return {"bbox": (xmin, ymin, xmax, ymax), "width": width, "height": height}


def pixel(grid: dict, x: float, y: float) -> tuple[int, int]:
    """(column, row) of a Lambert-93 point in a GetMap image of ``grid``."""
    xmin, _, _, ymax = grid["bbox"]
    return int((x - xmin) / RES), int((ymax - y) / RES)


def getmap(server: QgisServer, grid: dict, layers: list[str], *, transparent: bool = False) -> np.ndarray:
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetMap", LAYERS=",".join(layers),
                 STYLES=",".join("" for _ in layers), CRS="EPSG:2154", BBOX=",".join(f"{v:.0f}" for v in grid["bbox"]),
                 WIDTH=grid["width"], HEIGHT=grid["height"], FORMAT="image/png",
                 TRANSPARENT="true" if transparent else "false")
    assert ans.status == 200, ans.body[:1000]
    img = ans.image()
    assert img.shape[:2] == (grid["height"], grid["width"])
    return img


def rgb(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)])


def colour_mask(img: np.ndarray, hex_color: str, tol: int = 4) -> np.ndarray:
    """Opaque pixels within ``tol`` (per channel) of a colour."""
    return (np.abs(img[..., :3].astype(int) - rgb(hex_color)).max(axis=-1) <= tol) & (img[..., 3] == 255)


# --- WMS --------------------------------------------------------------------------------------------------------
def test_wms_capabilities_list_every_layer_with_french_title(server: QgisServer):
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetCapabilities")
    assert ans.status == 200 and "xml" in ans.content_type
    root = ans.xml()
    top = root.find("wms:Capability/wms:Layer", WMS_NS)
    assert top.findtext("wms:Name", namespaces=WMS_NS) == "tvb_call"
    assert top.findtext("wms:Title", namespaces=WMS_NS).startswith("Trame verte et bleue")
    crs = {c.text for c in top.findall("wms:CRS", WMS_NS)}
    assert {"EPSG:2154", "EPSG:3857"} <= crs
    found = {}
    for layer in top.iter("{http://www.opengis.net/wms}Layer"):
        name = layer.findtext("wms:Name", namespaces=WMS_NS)
        if name in TITLES:
            found[name] = layer
    assert set(found) == set(LAYERS), f"layers published by QGIS Server: {sorted(found)}"
    for name, layer in found.items():
        assert layer.findtext("wms:Title", namespaces=WMS_NS) == TITLES[name]
        assert layer.get("queryable") == "1"
        geo = layer.find("wms:EX_GeographicBoundingBox", WMS_NS)
        west = float(geo.findtext("wms:westBoundLongitude", namespaces=WMS_NS))
        south = float(geo.findtext("wms:southBoundLatitude", namespaces=WMS_NS))
        assert 2.7 < west < 2.9 and 50.3 < south < 50.45, (name, west, south)     # Lens


def test_getmap_full_extent_is_drawn_with_status_colours(server: QgisServer, grid: dict):
    img = getmap(server, grid, LAYERS)
    assert img[..., :3].std() > 20, "GetMap image is (nearly) uniform"
    colours = {tuple(c) for c in img[..., :3].reshape(-1, 3)[::7]}
    assert len(colours) > 10
    to_create = STATUS_STYLES["to_create"][1]
    assert colour_mask(img, to_create).sum() >= 30, "the 'À créer' corridor colour is missing from the map"
    # the wet corridor (blue line) and the rupture points (red markers) are drawn too
    assert colour_mask(img, next(lyr["color"] for lyr in PUBLISHED_LAYERS if lyr["name"] == "wet_corridors")).sum() >= 30
    assert colour_mask(img, next(lyr["color"] for lyr in PUBLISHED_LAYERS if lyr["name"] == "rupture_points")).sum() >= 10


def test_getmap_corridors_coloured_by_status_where_they_are(server: QgisServer, grid: dict):
    img = getmap(server, grid, ["corridors"], transparent=True)
    # midpoints of the three fake corridors (see test_publish_formats.make_layers_gpkg)
    midpoints = {"existing": (X0 + 1900, Y0 + 300), "to_restore": (X0 + 1050, Y0 + 1500),
                 "to_create": (X0 + 2450, Y0 + 1500)}
    for status, (x, y) in midpoints.items():
        col, row = pixel(grid, x, y)
        window = img[max(row - 3, 0):row + 4, max(col - 3, 0):col + 4]
        colour = STATUS_STYLES[status][1]
        assert colour_mask(window, colour).any(), f"{status} corridor not drawn in {colour} at pixel {col},{row}"
        others = [STATUS_STYLES[s][1] for s in STATUS_STYLES if s != status]
        assert not any(colour_mask(window, c).any() for c in others)
    assert (img[..., 3] == 0).mean() > 0.8          # only the corridors are drawn: the rest stays transparent


def _along(a: tuple[float, float], b: tuple[float, float], f: float) -> tuple[float, float]:
    return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])


def test_getmap_stretches_show_the_status_of_each_stretch(server: QgisServer, grid: dict):
    """Corridor stretches are drawn in the corridors' status colours, per stretch: the "to restore" corridor 2 is
    orange on its first half and green on its supported second half (see test_publish_formats.stretch_rows)."""
    img = getmap(server, grid, ["corridor_stretches"], transparent=True)
    c2, c3 = ((X0 + 400, Y0 + 500), (X0 + 1700, Y0 + 2500)), ((X0 + 1700, Y0 + 2500), (X0 + 3200, Y0 + 500))
    probes = {"to_restore": [_along(*c2, 0.25), _along(*c3, 0.15)], "existing": [_along(*c2, 0.75)],
              "to_create": [_along(*c3, 0.65)]}
    for status, points in probes.items():
        for x, y in points:
            col, row = pixel(grid, x, y)
            window = img[max(row - 3, 0):row + 4, max(col - 3, 0):col + 4]
            assert colour_mask(window, STATUS_STYLES[status][1]).any(), f"{status} stretch not drawn at {col},{row}"
            others = [STATUS_STYLES[s][1] for s in STATUS_STYLES if s != status]
            assert not any(colour_mask(window, c).any() for c in others), (status, x, y)


def test_vigilance_points_are_orange_triangles_with_french_info(server: QgisServer, grid: dict):
    from tvb_tasks.publish.styles import VIGILANCE_COLOR

    img = getmap(server, grid, ["vigilance_points"], transparent=True)
    orange = colour_mask(img, VIGILANCE_COLOR, tol=6)
    for x, y in VIGILANCE_XY:
        col, row = pixel(grid, x, y)
        blob = orange[max(row - 8, 0):row + 9, max(col - 8, 0):col + 9]
        assert blob.sum() >= 6, (x, y)
        rows = np.nonzero(blob.any(axis=1))[0]
        top, bottom = blob[rows[0]].sum(), blob[rows[-1]].sum()
        assert bottom > top, (top, bottom)             # a triangle, point up: wider at its base than at its tip
    assert orange.sum() < 200                           # two small markers, nothing else
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetLegendGraphic", LAYERS="vigilance_points,corridor_stretches",
                 STYLES="", FORMAT="application/json")
    assert ans.status == 200, ans.body[:1000]
    titles = [n["title"] for n in ans.json()["nodes"]]
    assert TITLES["vigilance_points"] == "Points de vigilance" and TITLES["vigilance_points"] in titles
    stretch_node = next(n for n in ans.json()["nodes"] if n["title"] == TITLES["corridor_stretches"])
    assert [s["title"] for s in stretch_node["symbols"]] == ["Existant", "À restaurer", "À créer"]
    col, row = pixel(grid, *VIGILANCE_XY[0])
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetFeatureInfo", LAYERS="vigilance_points",
                 QUERY_LAYERS="vigilance_points", STYLES="", CRS="EPSG:2154",
                 BBOX=",".join(f"{v:.0f}" for v in grid["bbox"]), WIDTH=grid["width"], HEIGHT=grid["height"],
                 I=col, J=row, FEATURE_COUNT=5, FI_POINT_TOLERANCE=8, INFO_FORMAT="application/json")
    props = [f["properties"] for f in ans.json()["features"]]
    assert len(props) == 1, props
    assert props[0]["Identifiant"] == "V0001" and props[0]["Infrastructure"] == "route", props
    assert props[0]["Gravité"] == "moyenne" and props[0]["Libellé"].startswith("Point de vigilance"), props


def test_getfeatureinfo_on_a_stretch_gives_its_own_status(server: QgisServer, grid: dict):
    col, row = pixel(grid, *_along((X0 + 400, Y0 + 500), (X0 + 1700, Y0 + 2500), 0.75))
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetFeatureInfo", LAYERS="corridor_stretches",
                 QUERY_LAYERS="corridor_stretches", STYLES="", CRS="EPSG:2154",
                 BBOX=",".join(f"{v:.0f}" for v in grid["bbox"]), WIDTH=grid["width"], HEIGHT=grid["height"],
                 I=col, J=row, FEATURE_COUNT=5, FI_LINE_TOLERANCE=6, INFO_FORMAT="application/json")
    assert ans.status == 200, ans.body[:1000]
    props = [f["properties"] for f in ans.json()["features"]]
    assert len(props) == 1, props
    p = props[0]
    assert p["Statut"] == "Existant" and p["Identifiant"] == "2-S02", p      # its corridor is "à restaurer"
    assert p["Part d'éléments support"] == "92 %" and p["Longueur du tronçon"].endswith(" km"), p
    assert "existing" not in json.dumps(p, ensure_ascii=False)


def test_getmap_web_mercator(server: QgisServer, grid: dict):
    """Lizmap draws over web base maps: the project must render in EPSG:3857 too."""
    from pyproj import Transformer

    xmin, ymin, xmax, ymax = grid["bbox"]
    t = Transformer.from_crs("EPSG:2154", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = t.transform([xmin, xmax], [ymin, ymax])
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetMap", LAYERS="tvb_call", STYLES="", CRS="EPSG:3857",
                 BBOX=f"{x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}", WIDTH=400, HEIGHT=400, FORMAT="image/png",
                 TRANSPARENT="false")
    assert ans.status == 200, ans.body[:1000]
    img = ans.image()
    assert img[..., :3].std() > 20
    assert colour_mask(img, STATUS_STYLES["to_create"][1]).sum() >= 10


def test_getfeatureinfo_on_a_corridor_gives_french_attributes(server: QgisServer, grid: dict):
    col, row = pixel(grid, X0 + 2450, Y0 + 1500)             # middle of the "to_create" corridor
    common = dict(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetFeatureInfo", LAYERS="corridors",
                  QUERY_LAYERS="corridors", STYLES="", CRS="EPSG:2154",
                  BBOX=",".join(f"{v:.0f}" for v in grid["bbox"]), WIDTH=grid["width"], HEIGHT=grid["height"],
                  I=col, J=row, FEATURE_COUNT=10, FI_LINE_TOLERANCE=6, WITH_GEOMETRY="true")
    ans = server(**common, INFO_FORMAT="application/json")
    assert ans.status == 200, ans.body[:1000]
    features = ans.json()["features"]
    assert len(features) == 1, features
    props = features[0]["properties"]
    assert props["Statut"] == "À créer" and props["Sous-trame"] == "Sous-trame minière (terrils)"
    # measures as French text with their unit; codes and raw duplicates left out of WMS feature info
    assert props["Longueur"] == "2,6 km" and props["Friction moyenne le long du tracé"].startswith("250 ")
    assert not {"Statut (code)", "Longueur (m)", "fid", "sous_trame", "status"} & set(props), props
    assert "to_create" not in json.dumps(props, ensure_ascii=False)
    assert features[0]["geometry"]["type"] == "LineString"
    # XML answer (what Lizmap's popups parse): French names, and the WKT geometry the project allows
    xml = server(**common, INFO_FORMAT="text/xml").xml()
    attrs = {a.get("name"): a.get("value") for a in xml.iter("Attribute")}
    assert attrs["Statut"] == "À créer" and attrs["Longueur"] == "2,6 km"
    assert attrs["geometry"].startswith("LineString")
    # an empty spot answers no feature
    col, row = pixel(grid, X0 + 4000, Y0 + 3800)
    empty = server(**{**common, "I": col, "J": row}, INFO_FORMAT="application/json").json()
    assert empty["features"] == []


def test_legend_has_french_status_labels(server: QgisServer):
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetLegendGraphic", LAYERS="corridors,reservoirs",
                 STYLES="", FORMAT="application/json")
    assert ans.status == 200, ans.body[:1000]
    nodes = {n["title"]: n for n in ans.json()["nodes"]}
    assert [s["title"] for s in nodes[TITLES["corridors"]]["symbols"]] == ["Existant", "À restaurer", "À créer"]
    labels = {s["title"] for s in nodes[TITLES["reservoirs"]]["symbols"]}
    assert "Sous-trame forestière" in labels and "Sous-trame minière (terrils)" in labels


def test_relays_and_reservoirs_have_distinct_legend_symbols(server: QgisServer):
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetLegendGraphic", LAYERS="reservoirs,relays",
                 STYLES="", FORMAT="application/json")
    assert ans.status == 200, ans.body[:1000]
    nodes = {n["title"]: n for n in ans.json()["nodes"]}
    res = {s["title"]: s["icon"] for s in nodes[TITLES["reservoirs"]]["symbols"]}
    rel = {s["title"]: s["icon"] for s in nodes[TITLES["relays"]]["symbols"]}
    for label in rel:                        # same sous-trame colour, different symbol (hatched relays)
        assert rel[label] != res[label], label


def test_commune_names_are_drawn(server: QgisServer, grid: dict):
    """The communes layer carries labels: its map has dark text pixels inside the polygons, not only outlines."""
    img = getmap(server, grid, ["communes"], transparent=True)
    dark = (img[..., :3].max(axis=-1) < 90) & (img[..., 3] == 255)
    outlines = colour_mask(img, "#4a4a4a", tol=10)
    assert dark.sum() > outlines.sum() * 0.05 and dark.sum() > 20


def test_print_layout_through_getprint(server: QgisServer):
    """The project's print layout (Lizmap printing) is listed and rendered by QGIS Server: title, legend, credits.
    (Without a ``map0:EXTENT`` QGIS Server leaves the map frame out of the print.)"""
    settings = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetProjectSettings")
    assert settings.status == 200
    templates = [t.get("name") for t in settings.xml().iter("{http://www.opengis.net/wms}ComposerTemplate")]
    assert templates == ["carte_a4"]
    ans = server(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetPrint", TEMPLATE="carte_a4", FORMAT="png",
                 CRS="EPSG:2154")
    assert ans.status == 200 and ans.content_type.startswith("image/png"), ans.body[:500]
    img = ans.image()
    h, w = img.shape[:2]
    assert abs(w / h - 297 / 210) < 0.02                                  # A4 landscape
    title = img[int(0.03 * h):int(0.07 * h), int(0.02 * w):int(0.5 * w), :3]
    legend = img[int(0.12 * h):int(0.5 * h), int(0.77 * w):int(0.97 * w), :3]
    credits = img[int(0.93 * h):int(0.98 * h), int(0.02 * w):int(0.6 * w), :3]
    for name, part in (("title", title), ("legend", legend), ("credits", credits)):
        assert (part.max(axis=-1) < 160).mean() > 0.003, name              # some dark text
    # the legend shows the status colours of the corridors
    legend_rgba = np.dstack([legend, np.full(legend.shape[:2], 255)])
    assert colour_mask(legend_rgba, STATUS_STYLES["to_create"][1], tol=30).sum() > 3


# --- WFS --------------------------------------------------------------------------------------------------------
def test_wfs_publishes_every_layer(server: QgisServer):
    ans = server(SERVICE="WFS", VERSION="1.1.0", REQUEST="GetCapabilities")
    assert ans.status == 200
    ns = {"wfs": "http://www.opengis.net/wfs"}
    types = {ft.findtext("wfs:Name", namespaces=ns): ft.findtext("wfs:Title", namespaces=ns)
             for ft in ans.xml().iter("{http://www.opengis.net/wfs}FeatureType")}
    assert types == TITLES


def test_wfs_getfeature_counts(server: QgisServer, release: Path):
    for name in ("rupture_points", "corridors"):
        expected = pyogrio.read_info(release / "tvb.gpkg", layer=name)["features"]
        ans = server(SERVICE="WFS", VERSION="1.1.0", REQUEST="GetFeature", TYPENAME=name, OUTPUTFORMAT="GeoJSON")
        assert ans.status == 200, ans.body[:1000]
        fc = json.loads(ans.text())
        assert len(fc["features"]) == expected, name
        if name == "rupture_points":
            assert len(fc["features"]) == 2
            assert sorted(f["properties"]["obstacle_type"] for f in fc["features"]) == ["route", "voie ferrée"]
    hits = server(SERVICE="WFS", VERSION="1.1.0", REQUEST="GetFeature", TYPENAME="rupture_points",
                  RESULTTYPE="hits").xml()
    assert hits.get("numberOfFeatures") == "2"


# --- logs -------------------------------------------------------------------------------------------------------
def test_server_log_has_no_layer_error(release: Path, tmp_path: Path, grid: dict):
    srv = QgisServer(release / "qgis" / "tvb.qgs", tmp_path / "home", tmp_path / "server.log")
    assert srv(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetCapabilities").status == 200
    getmap(srv, grid, LAYERS)
    log = srv.log.read_text(encoding="utf-8", errors="replace")
    assert log.count("Request finished") == 2                # the log is the one of these requests
    assert "QGIS_PROJECT_FILE: " + str(release / "qgis" / "tvb.qgs") in log
    assert log_problems(log, *srv.stderr) == []


def test_broken_datasource_is_caught(release: Path, tmp_path: Path):
    """A project whose GeoPackage is missing is refused by QGIS Server, and the log check above sees it."""
    (tmp_path / "qgis").mkdir()
    text = (release / "qgis" / "tvb.qgs").read_text(encoding="utf-8")
    assert text.count("./../tvb.gpkg|layername=relays") >= 1
    (tmp_path / "qgis" / "tvb.qgs").write_text(text.replace("./../tvb.gpkg|layername=relays",
                                                            "./../missing.gpkg|layername=relays"), encoding="utf-8")
    srv = QgisServer(tmp_path / "qgis" / "tvb.qgs", tmp_path / "home", tmp_path / "server.log")
    ans = srv(SERVICE="WMS", VERSION="1.3.0", REQUEST="GetCapabilities")
    assert ans.status == 500 and b"not valid" in ans.body
    problems = log_problems(srv.log.read_text(encoding="utf-8", errors="replace"), *srv.stderr)
    assert any("missing.gpkg" in p for p in problems) and any("not valid" in p for p in problems)

#!/usr/bin/env python
"""Deterministic generator of the SYNTHETIC layers of the bundled CALL sample.

Run from the project root::

    python sample/generate.py                 # (re)write sample/call/{landuse,protected_areas,roads,railways,watercourses}.gpkg
    python sample/generate.py --out /tmp/x    # write elsewhere (inputs are still read from sample/call)
    python sample/generate.py --check         # regenerate into a temp dir and compare with the committed files

Nothing written by this script is real data.  It builds plausible layers ON THE REAL CALL outline
(``territory.gpkg`` layer ``epci``) and re-uses a few real layers of the sample (communes and their
populations, Mission Bassin Minier terrils / espaces néo-naturels / cités minières / parvis agricoles /
cavaliers, and the OSM Canal de la Deûle).  See ``sample/call/SOURCES.md``, section "Synthetic layers".

Method (one seeded numpy ``default_rng`` stream per step, derived from ``SEED``):

1. watercourses: hand-placed control points (Souchez / Canal de Lens, tributaries, marsh ditches),
   smoothed (Chaikin) and given meanders (sum of sines), joined to the real Canal de la Deûle;
   culverted (busé) through central Lens and for 40 m where a stream crosses a motorway, a
   national road or an in-use railway.
2. main roads / railways: motorways A21 and A1 and the national / main departmental roads from
   control points; three in-use railway lines from Lens; the real mining railways (``zt_cavaliers``)
   as disused lines.
3. landuse: a Voronoi tessellation of a jittered 250 m grid of seed points (denser, down to 125 m,
   where the urban intensity is high), noded with the real outline, the real terrils and the real
   espaces néo-naturels (snap-rounded to a 1 cm grid), polygonized, slivers < 300 m² merged into a
   neighbour.  Classes: the real terrils keep their own outline (mining / natural / built by their
   ``forme``), the real néo-natural parks get a natural mix; the Voronoi cells are ranked by an urban
   intensity field (Gaussian kernels around commune centres, radius ∝ √population) + smooth noise and
   the best ones become artificial until 45 % of the area is reached (cités minières are forced
   artificial, parvis agricoles are kept agricultural); natural habitat (wetlands along open water,
   named woods grown cell by cell on the Artois ridge, calcicole grasslands, friches, small woods)
   is then added until 11 % natural (terrils included); the rest is farmland (arable, meadows near
   villages and streams).
4. local roads (importance 5) are Voronoi edges between built cells; importance 3 / 4 are the
   minimum spanning tree / short Delaunay edges between commune centres.
5. protected areas: built over the generated natural patches and the real terrils / parks.

Every output is written with pyogrio and ``OGR_CURRENT_DATE`` pinned, so the files are byte-identical
from one run to the next with the same library versions.  Because GDAL / GEOS updates may change the
bytes, ``CHECKSUMS.sha256`` holds a canonical hash per layer (rows sorted by id, attributes as JSON,
geometry as ISO WKB), which is what ``--check`` and ``tests/test_sample.py`` compare.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPoint, Point, box
from shapely.ops import substring

try:  # only needed to print the proportions with the territory's own rules
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample" / "call"
NOMENCLATURE = ROOT / "config" / "nomenclatures" / "ocs2d.csv"
TERRITORY_CONFIG = ROOT / "config" / "territories" / "call.yaml"

SEED = 246200364            # the CALL's SIREN
MILLESIME = 2021
CRS = "EPSG:2154"
GRID = 0.01                 # coordinate precision of every output (m)
CELL_M = 250.0              # base spacing of the Voronoi seeds (m)
MIN_PART_M2 = 300.0         # landuse parts smaller than this are merged into a neighbour
TARGET_ARTIFICIAL = 0.45
TARGET_NATURAL = 0.11
OGR_DATE = "2021-01-01T00:00:00.000Z"   # pinned GeoPackage timestamp (byte-stable output)

LAYERS = ("landuse", "protected_areas", "roads", "railways", "watercourses")
CHECKSUM_FILE = "CHECKSUMS.sha256"

# Column order of every output layer (geometry last).
COLUMNS = {
    "landuse": ["id", "code_cs", "code_us", "millesime", "source"],
    "protected_areas": ["id", "name", "protection_type", "source"],
    "roads": ["id", "name", "importance", "nature", "source"],
    "railways": ["id", "name", "status", "source", "src_id", "src_name"],
    "watercourses": ["id", "name", "kind", "position", "source"],
}

SYNTH = "synthetic"


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def rng_for(step: str) -> np.random.Generator:
    """One independent, reproducible stream per generation step."""
    sub = int(hashlib.sha256(step.encode()).hexdigest()[:8], 16)
    return np.random.default_rng([SEED, sub])


def rnd(geom):
    return shapely.set_precision(geom, GRID)


def chaikin(xy: np.ndarray, iterations: int = 3) -> np.ndarray:
    for _ in range(iterations):
        if len(xy) < 3:
            return xy
        q = 0.75 * xy[:-1] + 0.25 * xy[1:]
        r = 0.25 * xy[:-1] + 0.75 * xy[1:]
        mid = np.empty((2 * (len(xy) - 1), 2))
        mid[0::2], mid[1::2] = q, r
        xy = np.vstack([xy[:1], mid[1:-1], xy[-1:]])
    return xy


def curvy(points, rng, amp: float, wavelength: float, step: float = 25.0, smooth: int = 3) -> LineString:
    """Smooth a polyline through control points and add lateral meanders (endpoints unchanged)."""
    xy = chaikin(np.asarray(points, dtype=float), smooth)
    line = LineString(xy)
    length = line.length
    n = max(int(length / step), 2)
    d = np.linspace(0.0, length, n + 1)
    pts = shapely.get_coordinates(shapely.line_interpolate_point(line, d))
    if amp > 0:
        t = np.gradient(pts, axis=0)
        t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)[:, None]
        normal = np.c_[-t[:, 1], t[:, 0]]
        off = np.zeros_like(d)
        for f, a in ((1.0, 1.0), (0.47, 0.6), (2.3, 0.35)):
            off += a * np.sin(2 * math.pi * d / (wavelength * f) + rng.uniform(0, 2 * math.pi))
        taper = np.clip(np.minimum(d, length - d) / max(wavelength / 2, 1.0), 0, 1)
        pts = pts + normal * (amp * off * taper / 1.95)[:, None]
    return rnd(LineString(pts))


class Noise:
    """Smooth value noise: cubic interpolation of coarse random grids (a few octaves), std ≈ 1."""

    def __init__(self, rng, bounds, octaves=((1600.0, 1.0), (700.0, 0.6), (300.0, 0.35))):
        from scipy.ndimage import map_coordinates  # noqa: F401 (import check)

        self.minx, self.miny = bounds[0] - 2000, bounds[1] - 2000
        w, h = bounds[2] - bounds[0] + 4000, bounds[3] - bounds[1] + 4000
        self.octaves = []
        for spacing, amp in octaves:
            grid = rng.standard_normal((int(h / spacing) + 3, int(w / spacing) + 3))
            self.octaves.append((spacing, amp, grid))
        self.norm = math.sqrt(sum(a * a for _, a, _ in self.octaves)) * 0.8

    def __call__(self, x, y):
        from scipy.ndimage import map_coordinates

        x, y = np.asarray(x, float), np.asarray(y, float)
        out = np.zeros_like(x)
        for spacing, amp, grid in self.octaves:
            out += amp * map_coordinates(grid, [(y - self.miny) / spacing, (x - self.minx) / spacing],
                                         order=3, mode="nearest")
        return out / self.norm


def load_nomenclature(path: Path = NOMENCLATURE) -> set[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["code_n3"] for row in csv.DictReader(f)}


GENERATOR_LANDUSE = ROOT / "sample" / "generator_landuse.yaml"


def load_rules(path: Path = GENERATOR_LANDUSE):
    """The ``landuse`` section (classes, rules) the generator calibrates with: by default the frozen copy in
    ``sample/generator_landuse.yaml`` (the bundled sample stays byte-stable when the pipeline's rules change); a
    territory YAML path reads that territory's rules (``nomenclature: <id>`` → config/nomenclatures/<id>.yaml)."""
    if yaml is None:
        raise RuntimeError("pyyaml is needed to read the land-use rules")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    landuse = dict(cfg["landuse"])
    if "rules" not in landuse:   # `nomenclature: <id>`: the rules live in config/nomenclatures/<id>.yaml
        with open(ROOT / "config" / "nomenclatures" / f"{cfg['nomenclature']}.yaml", encoding="utf-8") as f:
            nomenclature = yaml.safe_load(f)
        landuse.update(rules=nomenclature["rules"], default_class=nomenclature.get("default_class", "farmland"))
    return landuse


def classify(code_cs: str, code_us: str, landuse_cfg) -> str:
    """First matching rule wins; a rule matches when every given column starts with its code."""
    values = {"code_cs": code_cs or "", "code_us": code_us or ""}
    for rule in landuse_cfg["rules"]:
        conds = {k: v for k, v in rule.items() if k != "class"}
        if all(values.get(k, "").startswith(v) for k, v in conds.items()):
            return rule["class"]
    return landuse_cfg.get("default_class", "farmland")


# ---------------------------------------------------------------------------------------------
# inputs (real layers of the sample)
# ---------------------------------------------------------------------------------------------
def load_inputs(src: Path) -> dict:
    bm = src / "bassin_minier.gpkg"
    outline = gpd.read_file(src / "territory.gpkg", layer="epci", engine="pyogrio").geometry.iloc[0]
    outline = rnd(shapely.make_valid(outline))
    communes = gpd.read_file(src / "communes.gpkg", layer="communes", engine="pyogrio")
    communes = communes.sort_values("insee").reset_index(drop=True)
    rp = communes.geometry.representative_point()
    communes["px"], communes["py"] = rp.x.to_numpy(), rp.y.to_numpy()
    read = lambda layer: gpd.read_file(bm, layer=layer, engine="pyogrio")  # noqa: E731
    canal = gpd.read_file(src / "waterways.gpkg", layer="waterways_osm_canals", engine="pyogrio")
    return {
        "outline": outline,
        "buffer": outline.buffer(1000.0),
        "communes": communes,
        "terrils": read("terrils"),
        "zt_terrils": read("zt_terrils"),
        "neonat": read("espaces_neonaturels"),
        "zt_neonat": read("zt_espaces_neonaturels"),
        "cites": shapely.union_all(list(read("cites_minieres").geometry) + list(read("zt_cites_minieres").geometry)),
        "parvis": shapely.union_all(list(read("zt_parvis_agricoles").geometry)),
        "zt_cavaliers": read("zt_cavaliers"),
        "canal": canal,
        "canal_line": shapely.line_merge(shapely.union_all(list(canal.geometry))),
    }


def commune_xy(inp, name: str):
    c = inp["communes"]
    row = c[c["nom"] == name].iloc[0]
    return (float(row.px), float(row.py))


# ---------------------------------------------------------------------------------------------
# 1. watercourses (before culverts)
# ---------------------------------------------------------------------------------------------
# (name, kind, control points, meander amplitude m, wavelength m, join_to)
STREAMS = [
    ("La Souchez", "river",
     [(677900, 7033250), (679000, 7033150), (680300, 7032850), (681700, 7033050), (682800, 7033700),
      (683900, 7034350), (684900, 7034900), (685900, 7035150), (686900, 7035450), (687700, 7036100),
      (688350, 7037000), (688900, 7037850)], 35, 420, None),
    ("Canal de Lens (Souchez canalisée)", "canal",
     [(688900, 7037850), (689700, 7038500), (690700, 7039050), (691700, 7039550), (692600, 7040250),
      (693300, 7040900), (693800, 7041200)], 8, 900, "canal"),
    ("Ruisseau de Carency", "stream",
     [(676300, 7030450), (677200, 7030900), (678300, 7031450), (679300, 7031900), (680300, 7032500),
      (680900, 7032880)], 25, 300, "La Souchez"),
    ("Ruisseau d'Ablain", "stream",
     [(677300, 7034300), (677900, 7033900), (678500, 7033400)], 18, 260, "La Souchez"),
    ("Ruisseau de Givenchy", "stream",
     [(684300, 7032400), (684550, 7033300), (684750, 7034100), (684950, 7034850)], 20, 280, "La Souchez"),
    ("Ruisseau du Surgeon", "stream",
     [(677000, 7036700), (676100, 7037100), (675200, 7037600), (674300, 7038300), (673600, 7038900)], 22, 300, None),
    ("Ruisseau de Servins", "stream",
     [(675000, 7033200), (674300, 7033900), (673700, 7034700), (673100, 7035400)], 18, 260, None),
    ("Fossé du marais de Wingles", "ditch",
     [(687600, 7043700), (688600, 7044100), (689600, 7044550), (690600, 7044850), (691500, 7044900)], 6, 500, "canal"),
    ("Fossé de la plaine d'Hulluch", "ditch",
     [(685600, 7043000), (686500, 7043350), (687600, 7043700)], 5, 500, "Fossé du marais de Wingles"),
    ("Fossé de Meurchin", "ditch",
     [(693300, 7044000), (692600, 7043700), (691800, 7043350)], 5, 400, "canal"),
    ("Fossé de Vendin", "ditch",
     [(689000, 7041600), (689900, 7041900), (690800, 7042200), (691400, 7042350)], 5, 450, "canal"),
    ("Fossé des marais d'Annay", "ditch",
     [(690300, 7040300), (691100, 7040650), (691900, 7041000), (692500, 7041300)], 5, 450, "canal"),
    ("Fossé d'Estevelles", "ditch",
     [(693700, 7043000), (694200, 7042300), (694500, 7041550)], 5, 400, "canal"),
    ("Courant de Billy-Montigny", "ditch",
     [(693100, 7035700), (693400, 7036600), (693250, 7037500), (692900, 7038300), (692400, 7039150)], 6, 400, "Canal de Lens (Souchez canalisée)"),
]
# culverted stretch of the Souchez under central Lens (between the two projected points)
LENS_CULVERT = ((687250, 7035650), (688600, 7037350))


def build_watercourse_lines(inp) -> list[dict]:
    rng = rng_for("watercourses")
    lines: dict[str, dict] = {}
    for name, kind, pts, amp, wl, join in STREAMS:
        pts = [tuple(map(float, p)) for p in pts]
        if join == "canal":
            target = inp["canal_line"]
        elif join is not None:
            target = lines[join]["geom"]
        else:
            target = None
        if target is not None:  # snap the mouth onto the receiving watercourse
            end = target.interpolate(target.project(Point(pts[-1])))
            pts[-1] = (end.x, end.y)
        geom = curvy(pts, rng, amp, wl)
        if target is not None:  # keep the exact snapped mouth after rounding
            xy = shapely.get_coordinates(geom)
            xy[-1] = np.round(pts[-1], 2)
            geom = LineString(xy)
        lines[name] = {"name": name, "kind": kind, "geom": geom, "source": SYNTH}
    return list(lines.values())


def split_culverts(wc: list[dict], crossers, inp) -> list[dict]:
    """Split synthetic watercourses into open / culverted pieces."""
    out = []
    cross = shapely.union_all(list(crossers)) if crossers else None
    for w in wc:
        line = w["geom"]
        L = line.length
        intervals = []
        if w["name"] == "La Souchez":
            a, b = (line.project(Point(p)) for p in LENS_CULVERT)
            intervals.append((min(a, b), max(a, b)))
        if w["name"].startswith("Canal de Lens"):
            intervals.append((0.0, 350.0))  # start of the old canal, filled in under Lens
        if cross is not None:
            pts = shapely.get_parts(shapely.intersection(line, cross))
            for p in pts:
                if p.geom_type != "Point":
                    continue
                d = line.project(p)
                intervals.append((max(d - 20.0, 0.0), min(d + 20.0, L)))
        intervals.sort()
        merged = []
        for a, b in intervals:
            if merged and a <= merged[-1][1] + 5.0:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        cursor = 0.0
        pieces = []
        for a, b in merged:
            if a - cursor > 1.0:
                pieces.append((cursor, a, "open"))
            pieces.append((a, b, "culverted"))
            cursor = b
        if L - cursor > 1.0:
            pieces.append((cursor, L, "open"))
        for a, b, pos in pieces:
            g = rnd(substring(line, a, b))
            if g.is_empty or g.length < 0.5:
                continue
            out.append({**w, "geom": g, "position": pos})
    return out


# ---------------------------------------------------------------------------------------------
# 2. motorways / main roads / railways (independent of the land use)
# ---------------------------------------------------------------------------------------------
MAJOR_ROADS = [
    ("A21 (Rocade minière)", 1, "Type autoroutier",
     [(672300, 7042900), (674500, 7041900), (677200, 7040500), (680400, 7038700), (683300, 7037500),
      (685800, 7036700), (688400, 7035800), (690900, 7034900), (693600, 7034600), (697300, 7035000)]),
    ("A1 (Autoroute du Nord)", 1, "Type autoroutier",
     [(692700, 7027900), (693700, 7031200), (694500, 7034000), (695100, 7037000), (695300, 7040000),
      (695900, 7043200), (696800, 7046700)]),
    ("N17 Lens – Arras", 2, "Route à 2 chaussées", ["Lens", "Éleu-dit-Leauwette", "Vimy", (687300, 7028600)]),
    ("N47 Lens – La Bassée", 2, "Route à 2 chaussées", ["Lens", (686600, 7040600), "Hulluch", (685900, 7046600)]),
    ("D943 Lens – Béthune", 2, "Route à 2 chaussées",
     ["Lens", "Liévin", "Grenay", "Bully-les-Mines", "Sains-en-Gohelle", (672300, 7039900)]),
    ("D917 Lens – Hénin-Beaumont", 2, "Route à 2 chaussées",
     ["Lens", "Sallaumines", "Billy-Montigny", (696900, 7035200)]),
    ("D947 Lens – Carvin", 2, "Route à 1 chaussée", ["Lens", "Harnes", (696800, 7040300)]),
    ("D937 Béthune – Arras", 3, "Route à 1 chaussée",
     [(674000, 7039600), "Aix-Noulette", "Souchez", (683200, 7028900)]),
    ("D39 Wingles – Pont-à-Vendin", 3, "Route à 1 chaussée",
     ["Hulluch", "Wingles", "Meurchin", "Estevelles", (695000, 7043600)]),
]

RAILWAYS_IN_USE = [
    ("Ligne Lens – Béthune", [(687300, 7038250), (685600, 7038900), (683800, 7039350), (681900, 7039700),
                              (680200, 7039900), (677800, 7040600), (675200, 7041500), (672300, 7042300)]),
    ("Ligne Lens – Douai (Hénin-Beaumont)", [(687300, 7038250), (688800, 7037700), (690600, 7037000),
                                             (692400, 7036200), (694400, 7035700), (697000, 7035500)]),
    ("Ligne Lens – Arras", [(687300, 7038250), (687000, 7036800), (687250, 7035000), (686950, 7033200),
                            (686600, 7031500), (686300, 7028500)]),
]


def resolve(inp, pts):
    return [commune_xy(inp, p) if isinstance(p, str) else (float(p[0]), float(p[1])) for p in pts]


def build_major_roads(inp) -> list[dict]:
    rng = rng_for("major_roads")
    out = []
    for name, imp, nature, pts in MAJOR_ROADS:
        amp, wl = (25, 2500) if imp == 1 else (45, 1200)
        geom = curvy(resolve(inp, pts), rng, amp, wl, step=30.0, smooth=3 if imp == 1 else 2)
        out.append({"name": name, "importance": imp, "nature": nature, "geom": geom, "source": SYNTH})
    return out


def build_railways(inp) -> list[dict]:
    rng = rng_for("railways")
    out = []
    for name, pts in RAILWAYS_IN_USE:
        geom = curvy(pts, rng, 12, 3000, step=30.0, smooth=4)
        geom = shapely.intersection(geom, inp["buffer"], grid_size=GRID)
        out.append({"name": name + " (tracé synthétique)", "status": "in_use", "source": SYNTH,
                    "src_id": None, "src_name": None, "geom": shapely.force_2d(geom)})
    cav = inp["zt_cavaliers"].sort_values("src_id", key=lambda s: s.astype(int)).reset_index(drop=True)
    for _, r in cav.iterrows():
        out.append({"name": "Cavalier minier", "status": "disused",
                    "source": "Mission Bassin Minier, zt_cavaliers (real geometry, Licence Ouverte 2.0)",
                    "src_id": str(r["id_troncon"]), "src_name": r["nom"], "geom": r.geometry})
    for r in out:  # one geometry type for the whole layer
        g = r["geom"]
        r["geom"] = g if g.geom_type == "MultiLineString" else MultiLineString(
            [p for p in shapely.get_parts(g) if p.geom_type == "LineString"])
    return out


# ---------------------------------------------------------------------------------------------
# 3. land use
# ---------------------------------------------------------------------------------------------
ACTIVITY_ZONES = [  # (centre, radius m, kind) – synthetic economic zones
    ((690900, 7041900), 800, "industrial"),   # Vendin-le-Vieil / Pont-à-Vendin, by the Deûle
    ((689300, 7044000), 600, "industrial"),   # Wingles
    ((689300, 7040300), 550, "commercial"),   # Vendin-le-Vieil shopping zone
    ((683200, 7037600), 650, "industrial"),   # Liévin, by the A21
    ((679900, 7041500), 600, "industrial"),   # Mazingarbe chemical site
    ((691600, 7034400), 600, "commercial"),   # Méricourt, by the A21
    ((693800, 7040300), 550, "industrial"),   # Harnes
    ((690500, 7037500), 450, "commercial"),   # Noyelles-sous-Lens
]
NAMED_WOODS = [  # (seed, target ha) on the Artois ridge and in the south-west
    ((675900, 7035200), 170), ((679100, 7035000), 70), ((680500, 7033900), 60), ((684700, 7032300), 80),
    ((686300, 7030400), 120), ((677500, 7031900), 45), ((674300, 7033400), 40), ((682800, 7031400), 35),
]
RIDGE = [(673800, 7035600), (676800, 7034700), (679500, 7034300), (682500, 7033300), (684600, 7032500),
         (686600, 7031000), (689000, 7030000)]
PARK_MIX = {  # class mix of the real espaces néo-naturels (by name prefix)
    "Parc de Wingles": {"water": 0.35, "wetland": 0.30, "forest": 0.20, "grassland": 0.15},
    "Parc de la Glissoire": {"grassland": 0.40, "forest": 0.35, "wetland": 0.15, "water": 0.10},
    "Val de Souchez": {"wetland": 0.40, "forest": 0.30, "grassland": 0.20, "water": 0.10},
}
CODES = {  # generator kinds → (code_cs, code_us) choices with weights
    "water": [(("CS3.1.1", "US7.0.0"), 0.85), (("CS3.1.1", "US1.4.0"), 0.15)],
    "wetland": [(("CS6.4.1", "US7.0.0"), 0.40), (("CS6.1.2", "US1.1.1"), 0.25), (("CS4.1.3", "US7.0.0"), 0.20),
                (("CS5.1.2", "US7.0.0"), 0.15)],
    "forest": [(("CS4.1.2", "US7.0.0"), 0.65), (("CS4.3.2", "US7.0.0"), 0.20), (("CS4.2.2", "US1.2.4"), 0.08),
               (("CS4.1.2", "US1.2.2"), 0.07)],
    "grassland": [(("CS6.2.0", "US7.0.0"), 0.45), (("CS5.1.1", "US7.0.0"), 0.30), (("CS6.1.1", "US7.0.0"), 0.25)],
    "friche": [(("CS6.6.0", "US6.2.1"), 0.65), (("CS5.1.1", "US6.2.1"), 0.35)],
    "mining": [(("CS6.2.0", "US1.3.2"), 0.5), (("CS5.1.1", "US1.3.2"), 0.5)],
}


def pick(rng, kind):
    choices = CODES[kind]
    w = np.array([p for _, p in choices])
    return choices[int(rng.choice(len(choices), p=w / w.sum()))][0]


def urban_intensity(inp, x, y):
    c = inp["communes"]
    keep = np.ones_like(np.asarray(x, float))
    for cx, cy, pop in zip(c.px, c.py, c.population_municipale):
        r = 11.0 * math.sqrt(pop)
        keep *= 1.0 - np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r ** 2)
    return 1.0 - keep


def zone_bonus(x, y):
    b = np.zeros_like(np.asarray(x, float))
    for (zx, zy), r, _ in ACTIVITY_ZONES:
        b = np.maximum(b, np.exp(-((x - zx) ** 2 + (y - zy) ** 2) / r ** 2))
    return b


def seed_points(inp, rng):
    outline = inp["outline"]
    minx, miny, maxx, maxy = outline.bounds
    s = CELL_M
    xs = np.arange(minx - s, maxx + s, s)
    ys = np.arange(miny - s, maxy + s, s)
    gx, gy = np.meshgrid(xs + s / 2, ys + s / 2)
    gx, gy = gx.ravel(), gy.ravel()
    u = urban_intensity(inp, gx, gy)
    pts = []
    for x0, y0, ui in zip(gx, gy, u):
        k = 1 + int(min(3.0, 3.0 * ui + rng.random()))
        if k == 1:
            pts.append((x0 + rng.uniform(-0.35, 0.35) * s, y0 + rng.uniform(-0.35, 0.35) * s))
        else:
            subs = rng.permutation(4)[:k]
            for q in subs:
                sx = x0 + (-0.25 if q % 2 == 0 else 0.25) * s
                sy = y0 + (-0.25 if q < 2 else 0.25) * s
                pts.append((sx + rng.uniform(-0.18, 0.18) * s, sy + rng.uniform(-0.18, 0.18) * s))
    pts = np.round(np.array(pts), 2)
    inside = shapely.contains_xy(outline.buffer(300.0), pts[:, 0], pts[:, 1])
    return pts[inside]


def real_regions(inp):
    """Mining sites (terrils ∪ zt_terrils, dissolved) and néo-natural parks, cut to the outline."""
    outline = inp["outline"]
    t, z = inp["terrils"], inp["zt_terrils"]
    feats = [(g, r["nom"], r["forme"], 0) for g, (_, r) in zip(t.geometry, t.iterrows())]
    feats += [(g, r["nom"], r["forme"], 1) for g, (_, r) in zip(z.geometry, z.iterrows())]
    mining_union = shapely.intersection(shapely.union_all([f[0] for f in feats], grid_size=GRID), outline,
                                        grid_size=GRID)
    sites = []
    for part in sorted(shapely.get_parts(mining_union), key=lambda g: (round(g.centroid.x), round(g.centroid.y))):
        if part.area < 500.0:
            continue
        best = max(feats, key=lambda f: (shapely.intersection(f[0], part).area, -f[3]))
        sites.append({"geom": part, "name": best[1], "forme": best[2]})
    parks = []
    for gdf in (inp["neonat"], inp["zt_neonat"]):
        for g, name in zip(gdf.geometry, gdf["nom"]):
            p = shapely.difference(shapely.intersection(g, outline, grid_size=GRID), mining_union, grid_size=GRID)
            if p.area > 1000.0:
                parks.append({"geom": p, "name": name})
    return sites, parks, mining_union


def landuse_faces(inp, pts, sites, parks, log):
    """Faces of the Voronoi cells of ``pts`` noded with the outline and the real terrils and parks, inside the
    outline: ``(faces, a point on each face)``."""
    outline = inp["outline"]
    env = box(*outline.buffer(3000.0).bounds)
    edges = shapely.voronoi_polygons(MultiPoint(pts), extend_to=env, only_edges=True)
    edges = shapely.intersection(edges, box(*outline.buffer(50.0).bounds))
    lines = [edges, outline.exterior] + [g["geom"].boundary for g in sites] + [p["geom"].boundary for p in parks]
    noded = shapely.union_all(lines, grid_size=GRID)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    rp = shapely.point_on_surface(faces)
    inside = shapely.contains(outline, rp) & (shapely.area(faces) > 0)
    faces, rp = faces[inside], rp[inside]
    log(f"  {len(faces)} faces after noding")
    return faces, rp


def face_parts(faces, rp, pts, sites, parks):
    """The faces merged by key — ``("M", terril, -1)``, ``("P", park, cell)`` or ``("C", -1, cell)`` — and cut
    into polygons: ``(part geometries, part keys)``."""
    from scipy.spatial import cKDTree

    fxy = shapely.get_coordinates(rp)
    _, cell_of = cKDTree(pts).query(fxy)
    site_of = np.full(len(faces), -1)
    park_of = np.full(len(faces), -1)
    if sites:
        fi, si = shapely.STRtree([s["geom"] for s in sites]).query(rp, predicate="within")
        site_of[fi] = si
    if parks:
        fi, pi = shapely.STRtree([p["geom"] for p in parks]).query(rp, predicate="within")
        park_of[fi] = pi
    keys = []
    for i in range(len(faces)):
        if site_of[i] >= 0:
            keys.append(("M", int(site_of[i]), -1))
        elif park_of[i] >= 0:
            keys.append(("P", int(park_of[i]), int(cell_of[i])))
        else:
            keys.append(("C", -1, int(cell_of[i])))
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    part_geoms, part_keys = [], []
    for k in sorted(groups):
        idx = groups[k]
        g = faces[idx[0]] if len(idx) == 1 else shapely.union_all(faces[idx], grid_size=GRID)
        for p in shapely.get_parts(g):
            if p.geom_type == "Polygon" and p.area > 0:
                part_geoms.append(p)
                part_keys.append(k)
    return np.array(part_geoms, dtype=object), part_keys


def merge_slivers(part_geoms, part_keys, log):
    """Parts under ``MIN_PART_M2`` merged into the neighbour sharing the longest boundary (the merged polygon takes
    the key of its largest part): ``(polygons, keys)``."""
    n = len(part_geoms)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    areas = shapely.area(part_geoms)
    tree = shapely.STRtree(part_geoms)
    small = [i for i in np.argsort(areas, kind="stable") if areas[i] < MIN_PART_M2]
    bnd = shapely.boundary(part_geoms)
    for i in small:
        nbs = [j for j in tree.query(part_geoms[i], predicate="intersects") if j != i]
        best, best_len = None, 0.0
        for j in sorted(nbs):
            if find(j) == find(i):
                continue
            length = shapely.intersection(bnd[i], bnd[j]).length
            if length > best_len + 1e-9:
                best, best_len = j, length
        if best is not None:
            parent[find(i)] = find(best)
    merged: dict[int, list[int]] = {}
    for i in range(n):
        merged.setdefault(find(i), []).append(i)
    final_geoms, final_keys = [], []
    for root in sorted(merged):
        idx = merged[root]
        big = max(idx, key=lambda j: (areas[j], -j))
        g = part_geoms[idx[0]] if len(idx) == 1 else shapely.union_all(part_geoms[idx], grid_size=GRID)
        for p in shapely.get_parts(g):
            if p.geom_type == "Polygon" and p.area > 0:
                final_geoms.append(p)
                final_keys.append(part_keys[big])
    final_geoms = np.array(final_geoms, dtype=object)
    log(f"  {len(final_geoms)} polygons after sliver merge")
    return final_geoms, final_keys


class LandUnits:
    """The units that get one land-use code each (one per key of the polygons), with what the coding rules read:
    area, a point on the unit (``ux``, ``uy``), urban intensity ``U``, noise ``N1``, Voronoi adjacency, shares
    inside cités minières / parvis agricoles, distances to water, the canal and the ridge, crossings of motorways
    and railways. ``codes[i]`` is the unit's ``(code_cs, code_us)``, None until coded."""

    def __init__(self, inp, final_geoms, final_keys, pts, noise, open_water_lines, motorways, rails_in_use):
        from scipy.spatial import Delaunay

        self.total_area = inp["outline"].area
        unit_parts: dict[tuple, list[int]] = {}
        for i, k in enumerate(final_keys):
            unit_parts.setdefault(k, []).append(i)
        units = sorted(unit_parts)
        self.unit_parts, self.units = unit_parts, units
        self.uid = uid = {k: i for i, k in enumerate(units)}
        self.u_area = u_area = np.array([sum(final_geoms[j].area for j in unit_parts[k]) for k in units])
        u_geom = [final_geoms[max(unit_parts[k], key=lambda j: final_geoms[j].area)] for k in units]
        u_xy = shapely.get_coordinates(shapely.point_on_surface(np.array(u_geom, dtype=object)))
        self.ux, self.uy = ux, uy = u_xy[:, 0], u_xy[:, 1]
        self.U = urban_intensity(inp, ux, uy)
        self.N1 = noise(ux, uy)
        self.codes: list[tuple[str, str] | None] = [None] * len(units)
        self.is_cell = np.array([k[0] for k in units]) == "C"

        # cell adjacency (Voronoi neighbours = Delaunay edges of the seeds)
        cell_unit = {k[2]: uid[k] for k in units if k[0] == "C"}
        self.adj = adj = {i: [] for i in range(len(units))}
        pairs = set()
        for simplex in Delaunay(pts).simplices:
            for a in range(3):
                for b in range(a + 1, 3):
                    p, q = int(simplex[a]), int(simplex[b])
                    if p in cell_unit and q in cell_unit:
                        pairs.add((min(p, q), max(p, q)))
        for p, q in sorted(pairs):
            adj[cell_unit[p]].append(cell_unit[q])
            adj[cell_unit[q]].append(cell_unit[p])

        # fractions of each cell inside cités minières / parvis agricoles
        ug = [shapely.union_all([final_geoms[j] for j in unit_parts[k]]) if len(unit_parts[k]) > 1
              else final_geoms[unit_parts[k][0]] for k in units]
        self.ug = ug = np.array(ug, dtype=object)
        shapely.prepare(inp["cites"])
        self.frac_cite = shapely.area(shapely.intersection(ug, inp["cites"])) / u_area
        self.frac_parvis = shapely.area(shapely.intersection(ug, inp["parvis"])) / u_area
        self.d_water = shapely.distance(shapely.points(u_xy), shapely.union_all(open_water_lines))
        self.d_canal = shapely.distance(shapely.points(u_xy), inp["canal_line"])
        self.d_ridge = shapely.distance(shapely.points(u_xy), LineString(RIDGE))
        self.hits_motorway = (shapely.intersects(ug, shapely.union_all(motorways)) if motorways
                              else np.zeros(len(units), bool))
        self.hits_rail = (shapely.intersects(ug, shapely.union_all(rails_in_use)) if rails_in_use
                          else np.zeros(len(units), bool))

    def __len__(self) -> int:
        return len(self.units)

    def free(self, i) -> bool:
        """A Voronoi cell not coded yet."""
        return self.codes[i] is None and self.is_cell[i]

    def share(self, pred) -> float:
        """Share of the territory's area in units whose code satisfies ``pred``."""
        return sum(self.u_area[i] for i in range(len(self)) if self.codes[i] is not None
                   and pred(self.codes[i])) / self.total_area


def code_real_regions(lu: LandUnits, sites, parks, rng) -> None:
    """Terrils by their form (Mission Bassin Minier), espaces néo-naturels by the class mix of their kind."""
    for k in lu.units:
        i = lu.uid[k]
        if k[0] == "M":
            forme = str(sites[k[1]]["forme"] or "")
            if forme == "Arasé construit":
                lu.codes[i] = ("CS1.1.1", "US2.1.1")
            elif forme == "Arasé":
                lu.codes[i] = pick(rng, "friche")
            elif forme == "Bassin de décantation":
                lu.codes[i] = ("CS6.4.1", "US7.0.0")
            elif forme == "Plat" and rng.random() < 0.5:
                lu.codes[i] = pick(rng, "forest")
            else:
                lu.codes[i] = pick(rng, "mining")
        elif k[0] == "P":
            name = parks[k[1]]["name"]
            mix = next(v for p, v in PARK_MIX.items() if name.startswith(p))
            cls = list(mix)
            c = cls[int(rng.choice(len(cls), p=np.array([mix[x] for x in cls])))]
            lu.codes[i] = pick(rng, c)


def code_artificial(lu: LandUnits, is_art, rng) -> None:
    """Artificial land up to ``TARGET_ARTIFICIAL``: scattered farms and hamlets first, then the cells ranked by
    urban intensity, noise, activity zones and cités minières, then labelled (housing, activity, transport…)."""
    U, u_area = lu.U, lu.u_area
    art_target = TARGET_ARTIFICIAL * lu.total_area - lu.share(is_art) * lu.total_area
    rural = [i for i in range(len(lu)) if lu.free(i) and U[i] < 0.08 and lu.frac_parvis[i] < 0.5
             and lu.frac_cite[i] < 0.5]
    got = 0.0
    for i in rng.permutation(rural):
        if got > 0.03 * art_target:
            break
        if u_area[i] > 40000:
            continue
        lu.codes[i] = ("CS1.1.1", "US1.1.7") if rng.random() < 0.5 else ("CS1.1.1", "US5.2.3")
        got += u_area[i]
    score = U + 0.22 * lu.N1 + 0.55 * zone_bonus(lu.ux, lu.uy) + 10.0 * (lu.frac_cite > 0.5)
    score[lu.frac_parvis > 0.5] = -np.inf
    order = np.argsort(-score, kind="stable")
    for i in order:
        if got >= art_target:
            break
        if not lu.free(i) or not np.isfinite(score[i]):
            continue
        lu.codes[i] = ("ART", "")  # placeholder, labelled below
        got += u_area[i]
    for i in [i for i in range(len(lu)) if lu.codes[i] == ("ART", "")]:
        lu.codes[i] = artificial_label(lu, i, rng)


def artificial_label(lu: LandUnits, i: int, rng) -> tuple[str, str]:
    """The code of an artificial cell, from where it lies (cité minière, motorway, railway, activity zone, urban
    intensity)."""
    U = lu.U
    r = rng.random()
    x, y = lu.ux[i], lu.uy[i]
    zone = None
    for (zx, zy), rad, zk in ACTIVITY_ZONES:
        if (x - zx) ** 2 + (y - zy) ** 2 <= rad ** 2:
            zone = zk
            break
    if lu.frac_cite[i] > 0.5:
        return ("CS1.1.1", "US5.2.2") if r < 0.8 else ("CS1.1.1", "US5.2.1")
    if lu.hits_motorway[i] and r < 0.6:
        return ("CS1.1.2", "US4.1.1")
    if lu.hits_rail[i] and r < 0.35:
        return ("CS1.2.1", "US4.2.1")
    if zone is not None and r < 0.85:
        if zone == "industrial":
            return ("CS1.1.1", "US2.1.1") if rng.random() < 0.6 else ("CS1.1.2", "US2.1.1")
        return ("CS1.1.1", "US2.2.0") if rng.random() < 0.55 else ("CS1.1.2", "US3.1.4")
    if r < 0.09:
        return [("CS1.1.1", "US3.1.1"), ("CS6.6.0", "US3.1.3"), ("CS6.6.0", "US3.2.1"),
                ("CS4.1.2", "US3.2.1"), ("CS6.6.0", "US3.2.2"), ("CS1.1.2", "US3.1.4"),
                ("CS1.1.1", "US3.1.2")][int(rng.integers(7))]
    if U[i] > 0.85:
        return ("CS1.1.1", "US5.1.1") if rng.random() < 0.35 else ("CS1.1.1", "US5.1.2")
    if U[i] > 0.6:
        q = rng.random()
        return ("CS1.1.1", "US5.3.1") if q < 0.08 else (("CS1.1.1", "US5.1.3") if q < 0.35 else ("CS1.1.1", "US5.2.1"))
    if U[i] > 0.3:
        return ("CS1.1.1", "US5.2.2")
    return ("CS6.6.0", "US5.2.3") if rng.random() < 0.3 else ("CS1.1.1", "US5.2.3")


class Nature:
    """Natural habitat coded so far (m²) towards ``TARGET_NATURAL``."""

    def __init__(self, lu: LandUnits, is_nat, rng):
        self.lu, self.rng = lu, rng
        self.target = TARGET_NATURAL * lu.total_area
        self.area = lu.share(is_nat) * lu.total_area

    def set(self, i, kind) -> None:
        self.lu.codes[i] = pick(self.rng, kind)
        self.area += self.lu.u_area[i]

    def grow(self, seed_xy, target_m2, kind_main, fringe=None) -> None:
        """A patch grown cell by cell from the cell nearest ``seed_xy`` (nearer and noisier first), with a fringe of
        grassland (each neighbour with probability ``fringe``)."""
        lu, rng = self.lu, self.rng
        cands = [i for i in range(len(lu)) if lu.free(i)]
        if not cands:
            return
        start = min(cands, key=lambda i: ((lu.ux[i] - seed_xy[0]) ** 2 + (lu.uy[i] - seed_xy[1]) ** 2, i))
        heap = [(0.0, start)]
        seen = {start}
        area = 0.0
        while heap and area < target_m2:
            _, i = heapq.heappop(heap)
            if not lu.free(i):
                continue
            self.set(i, kind_main)
            area += lu.u_area[i]
            for j in lu.adj[i]:
                if j not in seen and lu.free(j):
                    seen.add(j)
                    d = math.hypot(lu.ux[j] - seed_xy[0], lu.uy[j] - seed_xy[1])
                    heapq.heappush(heap, (d / 400.0 - lu.N1[j] + 0.3 * rng.random(), j))
        if fringe:
            ring = sorted({j for i in seen if lu.codes[i] is not None for j in lu.adj[i] if lu.free(j)})
            for j in ring:
                if rng.random() < fringe:
                    self.set(j, "grassland")


def code_natural(lu: LandUnits, is_nat, rng) -> None:
    """Natural habitat up to ``TARGET_NATURAL``: (a) wetlands and ponds along open water, (b) the named woods with
    grassland fringes, (c) calcicole grasslands on the ridge, (d) friches on the urban fringe, (e) small woods in the
    farmland, then existing patches grown until the target."""
    nat = Nature(lu, is_nat, rng)
    U, d_water, d_canal, d_ridge = lu.U, lu.d_water, lu.d_canal, lu.d_ridge
    # (a) wetlands and ponds along open water, outside towns
    wet_cands = [i for i in np.argsort(d_water, kind="stable") if lu.free(i) and d_water[i] < 150.0 and U[i] < 0.5]
    wet_budget = nat.area + 0.30 * (nat.target - nat.area)
    for i in wet_cands:
        if nat.area >= wet_budget:
            break
        if rng.random() < 0.55:
            nat.set(i, "water" if (d_canal[i] < 600.0 and rng.random() < 0.45) else "wetland")
    for i in [i for i in np.argsort(d_canal, kind="stable") if lu.free(i) and d_canal[i] < 900.0 and U[i] < 0.6]:
        if nat.area >= wet_budget + 0.05 * (nat.target - nat.area):
            break
        if rng.random() < 0.3:
            nat.set(i, "water")
    # (b) named woods grown cell by cell, with calcicole grassland fringes on the ridge
    for seed_xy, ha in NAMED_WOODS:
        if nat.area >= nat.target:
            break
        nat.grow(seed_xy, ha * 1e4, "forest", fringe=0.35)
    # (c) calcicole grasslands along the ridge
    ridge_cells = [i for i in np.argsort(d_ridge, kind="stable") if lu.free(i) and d_ridge[i] < 500.0]
    for i in ridge_cells:
        if nat.area >= nat.target - 0.25 * (nat.target - lu.share(is_nat) * lu.total_area) or nat.area >= nat.target:
            break
        if rng.random() < 0.25:
            nat.set(i, "grassland")
    # (d) friches on the urban fringe
    fringe_cells = [i for i in range(len(lu)) if lu.free(i) and U[i] > 0.25 and lu.frac_parvis[i] < 0.5]
    for i in rng.permutation(fringe_cells):
        if nat.area >= nat.target - 0.12 * nat.target:
            break
        if rng.random() < 0.35:
            nat.set(i, "friche")
    # (e) small woods scattered in the farmland, then fill by growing existing patches
    small_cands = [i for i in range(len(lu)) if lu.free(i) and 1e4 <= lu.u_area[i] <= 1e5 and U[i] < 0.2]
    for i in rng.permutation(small_cands)[:25]:
        if nat.area >= nat.target:
            break
        nat.set(i, "forest")
    guard = 0
    while nat.area < nat.target and guard < 10000:
        guard += 1
        border = sorted({j for i in range(len(lu)) if lu.codes[i] is not None and is_nat(lu.codes[i])
                         for j in lu.adj[i] if lu.free(j) and U[j] < 0.5})
        if not border:
            break
        for j in rng.permutation(border):
            if nat.area >= nat.target:
                break
            if rng.random() < 0.15:
                nat.set(j, "forest" if d_ridge[j] < 1500 and rng.random() < 0.6 else "grassland")


def code_farmland(lu: LandUnits, is_art, rng) -> None:
    """Every unit still without a code: arable land, meadows (more likely near buildings and water), gardens."""
    codes = lu.codes
    art_mask = np.array([c is not None and c != ("ART", "") and is_art(c) for c in codes])
    near_built = np.zeros(len(lu), bool)
    for i in np.where(art_mask)[0]:
        for j in lu.adj[i]:
            near_built[j] = True
    for i in range(len(lu)):
        if codes[i] is None:
            r = rng.random()
            p_meadow = 0.35 if (near_built[i] or lu.d_water[i] < 200.0) else 0.06
            if near_built[i] and r < 0.02:
                codes[i] = ("CS4.4.0", "US1.1.5")
            elif r < p_meadow:
                codes[i] = ("CS6.1.1", "US1.1.1")
            else:
                codes[i] = ("CS6.3.0", "US1.1.3")


def build_landuse(inp, open_water_lines, motorways, rails_in_use, landuse_cfg, log):
    """The synthetic land-use layer: Voronoi cells around seeds denser in towns, noded with the real terrils and
    parks (:func:`landuse_faces`, :func:`face_parts`, :func:`merge_slivers`), then coded unit by unit
    (:class:`LandUnits`): real regions, artificial land, natural habitat, farmland. Returns ``(rows, meta)``."""
    rng = rng_for("landuse")
    noise = Noise(rng_for("landuse-noise"), inp["outline"].bounds)

    pts = seed_points(inp, rng)
    log(f"  {len(pts)} Voronoi seeds")
    sites, parks, _ = real_regions(inp)
    faces, rp = landuse_faces(inp, pts, sites, parks, log)
    part_geoms, part_keys = face_parts(faces, rp, pts, sites, parks)
    final_geoms, final_keys = merge_slivers(part_geoms, part_keys, log)

    lu = LandUnits(inp, final_geoms, final_keys, pts, noise, open_water_lines, motorways, rails_in_use)
    is_art = lambda c: classify(*c, landuse_cfg) == "artificial"  # noqa: E731
    is_nat = lambda c: landuse_cfg["classes"][classify(*c, landuse_cfg)]["natural"]  # noqa: E731
    code_real_regions(lu, sites, parks, rng)
    code_artificial(lu, is_art, rng)
    code_natural(lu, is_nat, rng)
    code_farmland(lu, is_art, rng)

    src_of = {"M": "synthetic codes on a real terril outline (Mission Bassin Minier, Licence Ouverte 2.0)",
              "P": "synthetic codes inside a real espace néo-naturel outline (Mission Bassin Minier, Licence Ouverte 2.0)",
              "C": SYNTH}
    rows = []
    for j, g in enumerate(final_geoms):
        k = final_keys[j]
        cs, us = lu.codes[lu.uid[k]]
        rows.append({"code_cs": cs, "code_us": us, "millesime": MILLESIME, "source": src_of[k[0]], "geom": g})
    rows.sort(key=lambda r: (-round(r["geom"].centroid.y, 1), round(r["geom"].centroid.x, 1)))
    meta = {"units": lu.units, "codes": lu.codes, "unit_geom": lu.ug, "adj": lu.adj, "ux": lu.ux, "uy": lu.uy,
            "U": lu.U, "sites": sites, "parks": parks, "unit_parts": lu.unit_parts}
    return rows, meta


# ---------------------------------------------------------------------------------------------
# 4. roads 3..5
# ---------------------------------------------------------------------------------------------
def build_minor_roads(inp, meta, major, landuse_cfg, log):
    rng = rng_for("roads")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial import Delaunay

    c = inp["communes"]
    xy = np.c_[c.px.to_numpy(), c.py.to_numpy()]
    names = list(c["nom"])
    tri = Delaunay(xy)
    edges = set()
    for s in tri.simplices:
        for a in range(3):
            for b in range(a + 1, 3):
                edges.add((min(int(s[a]), int(s[b])), max(int(s[a]), int(s[b]))))
    edges = sorted(edges)
    w = np.array([np.hypot(*(xy[a] - xy[b])) for a, b in edges])
    m = coo_matrix((w, ([a for a, _ in edges], [b for _, b in edges])), shape=(len(xy), len(xy)))
    mst = minimum_spanning_tree(m).tocoo()
    mst_edges = {(min(a, b), max(a, b)) for a, b in zip(mst.row, mst.col)}
    # skip pairs already joined by a major road (consecutive communes in its control list)
    major_pairs = set()
    for _, _, _, pts in MAJOR_ROADS:
        cn = [names.index(p) for p in pts if isinstance(p, str)]
        for a, b in itertools.pairwise(cn):
            major_pairs.add((min(a, b), max(a, b)))
    out = []
    for (a, b), length in zip(edges, w):
        if (a, b) in major_pairs:
            continue
        if (a, b) in mst_edges:
            imp = 3
        elif length < 4000.0:
            imp = 4
        else:
            continue
        geom = curvy([tuple(xy[a]), tuple(xy[b])], rng, 60 if imp == 4 else 45, 900, step=30.0, smooth=0)
        label = "Route départementale" if imp == 3 else "Route secondaire"
        out.append({"name": f"{label} {names[a]} – {names[b]}", "importance": imp,
                    "nature": "Route à 1 chaussée", "geom": geom, "source": SYNTH})
    # exits towards the neighbouring towns (secondary roads)
    exits = [("Servins", (672600, 7033600)), ("Villers-au-Bois", (675600, 7029300)), ("Carency", (679600, 7029400)),
             ("Acheville", (694300, 7030800)), ("Méricourt", (692000, 7031400)), ("Meurchin", (692000, 7046400)),
             ("Mazingarbe", (679800, 7043600)), ("Bouvigny-Boyeffles", (673400, 7037300)),
             ("Vendin-le-Vieil", (688200, 7046000)), ("Fouquières-lès-Lens", (696700, 7038000))]
    for nm, end in exits:
        geom = curvy([commune_xy(inp, nm), end], rng, 50, 900, step=30.0, smooth=0)
        out.append({"name": f"Route secondaire {nm} – extérieur", "importance": 4,
                    "nature": "Route à 1 chaussée", "geom": geom, "source": SYNTH})

    # local streets: Voronoi edges between built cells (or on the edge of town), thinned at random
    units, codes, ug, adj = meta["units"], meta["codes"], meta["unit_geom"], meta["adj"]
    art = np.array([classify(*cd, landuse_cfg) == "artificial" for cd in codes])
    is_cell = np.array([k[0] == "C" for k in units])
    pa, pb = [], []
    for i in range(len(units)):
        for j in adj[i]:
            if i < j and is_cell[i] and is_cell[j] and (art[i] or art[j]):
                p = 0.50 if (art[i] and art[j]) else 0.15
                if rng.random() < p:
                    pa.append(i)
                    pb.append(j)
    shared = shapely.intersection(shapely.boundary(ug[pa]), shapely.boundary(ug[pb]), grid_size=GRID)
    segs = [g for g in shapely.get_parts(shapely.line_merge(shapely.union_all(
        [s for s in shapely.get_parts(shared) if s.geom_type in ("LineString", "MultiLineString")], grid_size=GRID)))
        if g.geom_type == "LineString" and g.length > 20.0]
    segs.sort(key=lambda g: (round(g.centroid.y, 1), round(g.centroid.x, 1)))
    for g in segs:
        out.append({"name": "Voie communale", "importance": 5, "nature": "Route à 1 chaussée",
                    "geom": rnd(g), "source": SYNTH})
    log(f"  {len(segs)} local street lines")
    return out


# ---------------------------------------------------------------------------------------------
# 5. protected areas
# ---------------------------------------------------------------------------------------------
PROTECTED = [  # (id, name, type, how, params)
    ("SYNTH-FR9300901", "Terril de Pinchonvalles (site synthétique)", "RNR", "terril", ["Pinchonvalles"]),
    ("SYNTH-FR3800901", "Marais de Meurchin (site synthétique)", "APB", "patch",
     ((691800, 7043700), 800, {"wetland", "water", "forest"})),
    ("SYNTH-FR3800902", "Coteau calcaire de Lorette (site synthétique)", "APB", "patch",
     ((680500, 7033900), 650, {"grassland", "forest"})),
    ("SYNTH-310099001", "Bois de Bouvigny et de Noulette (site synthétique)", "ZNIEFF1", "patch",
     ((676800, 7035100), 1700, {"forest", "grassland"})),
    ("SYNTH-310099002", "Coteau de Vimy et bois de Givenchy (site synthétique)", "ZNIEFF1", "patch",
     ((685600, 7031400), 1500, {"forest", "grassland"})),
    ("SYNTH-310099003", "Terrils jumeaux du 11/19 (site synthétique)", "ZNIEFF1", "terril",
     ["11/19 de Lens Est", "11/19 de Lens Ouest", "11/19 de Lens Nouveau"]),
    ("SYNTH-310099004", "Étangs et marais de Wingles (site synthétique)", "ZNIEFF1", "patch",
     ((690300, 7045000), 1100, {"wetland", "water", "forest", "grassland"})),
    ("SYNTH-310099005", "Vallée de la Souchez (site synthétique)", "ZNIEFF1", "patch",
     ((685900, 7035100), 1300, {"wetland", "water", "forest", "grassland", "mining"})),
    ("SYNTH-ENS62-001", "Parc de la Glissoire (ENS synthétique)", "ENS", "park", "Parc de la Glissoire"),
    ("SYNTH-ENS62-002", "Val de Souchez (ENS synthétique)", "ENS", "park", "Val de Souchez"),
    ("SYNTH-ENS62-003", "Parc des étangs de Wingles (ENS synthétique)", "ENS", "park", "Parc de Wingles"),
    ("SYNTH-ENS62-004", "Bois de Carency (ENS synthétique)", "ENS", "patch",
     ((677500, 7031900), 900, {"forest", "grassland"})),
    ("SYNTH-FR3100901", "Coteaux et bois de l'Artois (site Natura 2000 synthétique)", "N2000_SIC", "halo",
     ((679500, 7034000), 2600, {"forest", "grassland"}, 300.0)),
    ("SYNTH-FR3100902", "Marais de la Deûle (site Natura 2000 synthétique)", "N2000_ZPS", "canal", 650.0),
]


def build_protected(inp, meta, landuse_rows, landuse_cfg, log):
    outline = inp["outline"]
    geoms = np.array([r["geom"] for r in landuse_rows], dtype=object)
    cls = np.array([classify(r["code_cs"], r["code_us"], landuse_cfg) for r in landuse_rows])
    tree = shapely.STRtree(geoms)
    t = inp["terrils"]
    parks = inp["neonat"], inp["zt_neonat"]
    out = []

    def finish(g):
        g = shapely.intersection(shapely.make_valid(g), outline)
        g = shapely.simplify(g, 3.0)
        g = shapely.make_valid(rnd(g))
        polys = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 2000.0]
        return shapely.MultiPolygon(polys)

    for pid, name, ptype, how, params in PROTECTED:
        if how == "terril":
            g = shapely.union_all(list(t[t["nom"].isin(params)].geometry)).buffer(15.0)
        elif how == "park":
            g = None
            for gdf in parks:
                sel = gdf[gdf["nom"].str.startswith(params)]
                if len(sel):
                    g = shapely.union_all(list(sel.geometry)).buffer(10.0)
        elif how in ("patch", "halo"):
            seed, radius, classes = params[:3]
            circle = Point(seed).buffer(radius)
            idx = [i for i in tree.query(circle, predicate="intersects") if cls[i] in classes]
            u = shapely.union_all(geoms[idx], grid_size=GRID).buffer(25.0).buffer(-15.0)
            parts = sorted(shapely.get_parts(u), key=lambda p: (-p.area, p.centroid.x))
            # keep the components near the seed (largest first)
            keep = [p for p in parts if p.distance(Point(seed)) < radius * 0.8 and p.area > 3e4][:4] or parts[:1]
            g = shapely.union_all(keep)
            if how == "halo":
                g = g.buffer(params[3]).intersection(circle.buffer(params[3]))
        elif how == "canal":
            g = inp["canal_line"].buffer(params)
        out.append({"id": pid, "name": name, "protection_type": ptype, "source": SYNTH, "geom": finish(g)})
    return out


# ---------------------------------------------------------------------------------------------
# writing and canonical checksums
# ---------------------------------------------------------------------------------------------
def write_layer(rows: list[dict], path: Path, layer: str):
    cols = COLUMNS[layer]
    df = gpd.GeoDataFrame({c: [r.get(c) for r in rows] for c in cols},
                          geometry=[r["geom"] for r in rows], crs=CRS)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    for c in cols:
        if c in ("id", "importance", "millesime") and layer != "protected_areas":
            df[c] = df[c].astype("int64")
        elif c != "id":
            df[c] = df[c].astype(object)
    if path.exists():
        path.unlink()
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": OGR_DATE})
    try:
        df.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def _canon(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def layer_digest(path: Path, layer: str) -> str:
    """sha256 of a canonical form: CRS, column names, then per row (sorted by id) JSON attributes + ISO WKB."""
    df = pyogrio.read_dataframe(path, layer=layer)
    info = pyogrio.read_info(path, layer=layer)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    cols = [c for c in df.columns if c != "geometry"]
    h = hashlib.sha256()
    h.update(json.dumps({"crs": info["crs"], "columns": cols, "n": len(df)}).encode())
    wkb = shapely.to_wkb(df.geometry.values, output_dimension=2, byte_order=1, flavor="iso")
    for rec, g in zip(df[cols].itertuples(index=False, name=None), wkb):
        h.update(json.dumps([_canon(v) for v in rec], ensure_ascii=False).encode())
        h.update(g)
    return h.hexdigest()


def digests(out_dir: Path) -> dict[str, str]:
    return {f"{name}.gpkg#{name}": layer_digest(out_dir / f"{name}.gpkg", name) for name in LAYERS}


def write_checksums(out_dir: Path, d: dict[str, str]):
    lines = ["# Canonical content hashes of the synthetic layers (see sample/generate.py, layer_digest).",
             "# Not a plain file hash: sha256 over CRS + column names + rows sorted by id (JSON attributes + ISO WKB).",
             "# Verify with: python sample/generate.py --check"]
    lines += [f"{v}  {k}" for k, v in sorted(d.items())]
    (out_dir / CHECKSUM_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_checksums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            v, k = line.split(None, 1)
            out[k.strip()] = v
    return out


# ---------------------------------------------------------------------------------------------
# main entry points
# ---------------------------------------------------------------------------------------------
def generate(out_dir: Path | str = SAMPLE_DIR, src_dir: Path | str = SAMPLE_DIR, verbose: bool = True,
             write_checksum_file: bool = True) -> dict:
    """Generate the five synthetic GeoPackages into ``out_dir``; return statistics."""
    t0 = time.time()
    out_dir, src_dir = Path(out_dir), Path(src_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)
    landuse_cfg = load_rules()
    valid_codes = load_nomenclature()
    inp = load_inputs(src_dir)

    log("watercourses, main roads, railways …")
    wc_lines = build_watercourse_lines(inp)
    major = build_major_roads(inp)
    rails = build_railways(inp)
    crossers = [r["geom"] for r in major if r["importance"] <= 2] + \
               [r["geom"] for r in rails if r["status"] == "in_use"]
    wc = split_culverts(wc_lines, crossers, inp)
    canal_rows = []
    for g in inp["canal"].sort_values("src_name").geometry:
        canal_rows.append({"name": "Canal de la Deûle", "kind": "canal", "position": "open",
                           "source": "OpenStreetMap via EnzoCem/french-canals-map (real geometry, ODbL 1.0)",
                           "geom": g})
    wc_all = canal_rows + wc
    open_lines = [w["geom"] for w in wc_all if w["position"] == "open"]

    log("landuse …")
    motorways = [r["geom"] for r in major if r["importance"] == 1]
    rails_in_use = [r["geom"] for r in rails if r["status"] == "in_use"]
    lu_rows, meta = build_landuse(inp, open_lines, motorways, rails_in_use, landuse_cfg, log)
    bad = {c for r in lu_rows for c in (r["code_cs"], r["code_us"])} - valid_codes
    if bad:
        raise RuntimeError(f"codes not in the nomenclature: {sorted(bad)}")

    log("roads …")
    roads = major + build_minor_roads(inp, meta, major, landuse_cfg, log)
    buf = inp["buffer"]
    for r in roads:
        r["geom"] = shapely.intersection(r["geom"], buf, grid_size=GRID)
    road_rows = []
    for r in roads:
        for p in shapely.get_parts(r["geom"]):
            if p.geom_type == "LineString" and p.length > 1.0:
                road_rows.append({**r, "geom": p})

    log("protected areas …")
    pa_rows = build_protected(inp, meta, lu_rows, landuse_cfg, log)

    for i, r in enumerate(lu_rows, 1):
        r["id"] = i
    for i, r in enumerate(road_rows, 1):
        r["id"] = i
    for i, r in enumerate(rails, 1):
        r["id"] = i
    for i, r in enumerate(wc_all, 1):
        r["id"] = i

    write_layer(lu_rows, out_dir / "landuse.gpkg", "landuse")
    write_layer(pa_rows, out_dir / "protected_areas.gpkg", "protected_areas")
    write_layer(road_rows, out_dir / "roads.gpkg", "roads")
    write_layer(rails, out_dir / "railways.gpkg", "railways")
    write_layer(wc_all, out_dir / "watercourses.gpkg", "watercourses")

    d = digests(out_dir)
    if write_checksum_file:
        write_checksums(out_dir, d)

    # --- statistics
    outline = inp["outline"]
    total = outline.area
    areas = {}
    for r in lu_rows:
        c = classify(r["code_cs"], r["code_us"], landuse_cfg)
        areas[c] = areas.get(c, 0.0) + r["geom"].area
    art = sum(a for c, a in areas.items() if landuse_cfg["classes"][c]["artificial"])
    nat = sum(a for c, a in areas.items() if landuse_cfg["classes"][c]["natural"])
    lu_union = shapely.union_all([r["geom"] for r in lu_rows], grid_size=GRID)
    farm_in_n2000 = {}
    lu_geoms = np.array([r["geom"] for r in lu_rows], dtype=object)
    lu_cls = np.array([classify(r["code_cs"], r["code_us"], landuse_cfg) for r in lu_rows])
    for p in pa_rows:
        inter = shapely.area(shapely.intersection(lu_geoms, p["geom"]))
        farm_in_n2000[p["id"]] = {"type": p["protection_type"], "area_ha": round(p["geom"].area / 1e4, 1),
                                  "farmland_share": round(float(inter[lu_cls == "farmland"].sum() / max(p["geom"].area, 1)), 3)}
    wc_in = lambda pos: sum(shapely.intersection(w["geom"], outline).length for w in wc_all if w["position"] == pos)  # noqa: E731
    stats = {
        "landuse_polygons": len(lu_rows),
        "area_ha": round(total / 1e4, 1),
        "landuse_area_ha": round(sum(r["geom"].area for r in lu_rows) / 1e4, 1),
        "landuse_union_ha": round(lu_union.area / 1e4, 1),
        "class_share": {c: round(a / total, 4) for c, a in sorted(areas.items())},
        "artificial_share": round(art / total, 4),
        "natural_share": round(nat / total, 4),
        "protected_areas": len(pa_rows),
        "protected_detail": farm_in_n2000,
        "roads": len(road_rows),
        "road_km": round(sum(r["geom"].length for r in road_rows) / 1e3, 1),
        "road_km_by_importance": {i: round(sum(r["geom"].length for r in road_rows if r["importance"] == i) / 1e3, 1)
                                  for i in range(1, 6)},
        "railways": len(rails),
        "railway_km": {s: round(sum(r["geom"].length for r in rails if r["status"] == s) / 1e3, 1)
                       for s in ("in_use", "disused")},
        "watercourses": len(wc_all),
        "watercourse_km_open_total": round(sum(w["geom"].length for w in wc_all if w["position"] == "open") / 1e3, 2),
        "watercourse_km_open_in_call": round(wc_in("open") / 1e3, 2),
        "watercourse_km_culverted_in_call": round(wc_in("culverted") / 1e3, 2),
        "sizes_bytes": {n: (out_dir / f"{n}.gpkg").stat().st_size for n in LAYERS},
        "digests": d,
        "seconds": round(time.time() - t0, 1),
    }
    log(json.dumps(stats, indent=1, ensure_ascii=False))
    return stats


def check(committed: Path = SAMPLE_DIR) -> bool:
    """Regenerate into a temporary directory and compare with the committed files."""
    expected = read_checksums(committed / CHECKSUM_FILE)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), SAMPLE_DIR, verbose=False, write_checksum_file=False)
        fresh = digests(Path(tmp))
        on_disk = digests(committed)
        for k in sorted(set(expected) | set(fresh)):
            same = expected.get(k) == fresh.get(k) == on_disk.get(k)
            name = k.split("#")[0]
            byte_same = (Path(tmp) / name).read_bytes() == (committed / name).read_bytes()
            print(f"{'OK ' if same else 'DIFF'} {k}  (bytes {'identical' if byte_same else 'differ'})")
            ok &= same
    return ok


# --- synthetic regions (benchmarks only) ----------------------------------------------------------------------
REGION_AREA_KM2 = 31_800      # Hauts-de-France (the SRCE the CALL study refines)


def region_layout(copies: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid holding ``copies`` CALL copies (row-major, last row may be short)."""
    if copies < 1:
        raise ValueError(f"a region needs at least one copy of the CALL, got {copies}")
    nx = math.ceil(math.sqrt(copies))
    return nx, math.ceil(copies / nx)


def region_copies(scale: str | float) -> int:
    """Number of CALL copies for ``scale``: a factor (``4``, ``16``) or ``region`` (31,800 km², ≈ 132)."""
    if str(scale).lower() in ("region", "hdf"):
        call = gpd.read_file(SAMPLE_DIR / "territory.gpkg", layer="epci", engine="pyogrio")
        return max(1, round(REGION_AREA_KM2 / (call.geometry.area.sum() / 1e6)))
    n = round(float(scale))
    if n < 1 or abs(n - float(scale)) > 1e-9:
        raise ValueError(f"region scale must be a whole factor >= 1 or 'region', got {scale!r}")
    return n


def _suffix_ids(df: gpd.GeoDataFrame, k: int, columns: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Make identifier columns unique across copies: integers + k·10⁷, strings + ``_k`` (copy 0 unchanged)."""
    if k == 0:
        return df
    for c in columns:
        if c in df.columns:
            if df[c].dtype.kind in "iu":
                df[c] = df[c] + k * 10_000_000
            else:
                df[c] = df[c].astype(object).map(lambda v: v if v is None else f"{v}_{k}")
    return df


def _drop_profiles(raw: dict) -> None:
    """Remove the source profiles of a copied territory mapping (its sources are the sample's copies) and what is
    keyed by them (``publish.credits`` / ``publish.basemap`` of a profile other than ``default``: refused by the
    configuration checks as an unknown profile)."""
    raw.pop("profiles", None)
    publish = raw.get("publish") or {}
    for key in ("credits", "basemap"):
        if isinstance(publish.get(key), dict):
            publish[key] = {name: value for name, value in publish[key].items() if name == "default"}


def generate_region(scale: str | float, out_dir: Path | str, src_dir: Path | str = SAMPLE_DIR,
                    territory_yaml: Path | str = TERRITORY_CONFIG) -> Path:
    """A synthetic region for benchmarks ONLY: ``n`` translated copies of the CALL sample in a grid.

    Every layer read by the territory's ``file`` sources is copied ``n`` times (:func:`region_copies`), shifted by
    the CALL outline's bounding box rounded up to 100 m (so the 5, 10, 25 m grids stay aligned); identifiers are
    made unique. The land-use shares are therefore exactly the CALL's, and the area ``n`` times its 240 km².
    Copies do not touch (their outlines leave the bounding box's corners empty): each is connected to its
    neighbours only where the outlines meet, as in a mosaic of EPCIs. Deterministic (pure translation, pinned
    GeoPackage timestamp). Writes the files and ``call_x<n>.yaml`` (the CALL configuration with id ``call_x<n>``
    and its sources pointing to them) into ``out_dir``; returns the YAML path.
    """
    import yaml as _yaml

    n = region_copies(scale)
    nx, _ny = region_layout(n)
    raw = _yaml.safe_load(Path(territory_yaml).read_text(encoding="utf-8"))
    dx, dy = _copy_step(Path(src_dir))
    offsets = [((k % nx) * dx, -(k // nx) * dy) for k in range(n)]
    _write_translated_sources(raw, offsets, Path(out_dir))
    raw["id"] = f"call_x{n}"
    raw["name"] = f"Région synthétique ({n} × CALL, benchmarks)"
    raw["short_name"] = f"CALL×{n}"
    _drop_profiles(raw)
    return _write_yaml(raw, Path(out_dir) / f"call_x{n}.yaml", "--region: synthetic, for benchmarks only")


NEIGHBOUR_ID = "call_voisin"


def generate_neighbour(out_dir: Path | str, src_dir: Path | str = SAMPLE_DIR,
                       territory_yaml: Path | str = TERRITORY_CONFIG) -> Path:
    """A synthetic neighbour of the CALL for tests and benchmarks ONLY: the CALL sample translated one step east.

    One copy shifted by the width of the CALL outline's bounding box rounded up to 100 m (the step of
    :func:`generate_region`, whose translation code this reuses): it lies east of the CALL, its outline meeting the
    CALL's bounding box edge (the outlines touch where they reach that edge). Identifiers are suffixed ``_1`` (or
    + 10⁷), so they differ from the CALL's. Writes the files and ``call_voisin.yaml`` (id ``call_voisin``, the
    CALL's method settings, sources pointing to the copies) into ``out_dir`` — never into ``config/territories/``,
    where production would get its DAGs; returns the YAML path.
    """
    import yaml as _yaml

    raw = _yaml.safe_load(Path(territory_yaml).read_text(encoding="utf-8"))
    dx, _dy = _copy_step(Path(src_dir))
    _write_translated_sources(raw, [(dx, 0)], Path(out_dir), first_copy=1)
    raw["id"] = NEIGHBOUR_ID
    raw["name"] = "Voisin synthétique de la CALL (copie translatée vers l'est, tests uniquement)"
    raw["short_name"] = "Voisin synthétique"
    raw.pop("siren", None)
    _drop_profiles(raw)
    return _write_yaml(raw, Path(out_dir) / f"{NEIGHBOUR_ID}.yaml", "--neighbour: synthetic, for tests only")


def _copy_step(src_dir: Path) -> tuple[int, int]:
    """(dx, dy) in metres between two copies: the CALL outline's bounding box rounded up to 100 m (so the 5, 10,
    25 m grids stay aligned)."""
    outline = gpd.read_file(src_dir / "territory.gpkg", layer="epci", engine="pyogrio")
    xmin, ymin, xmax, ymax = outline.total_bounds
    return math.ceil((xmax - xmin) / 100) * 100, math.ceil((ymax - ymin) / 100) * 100


def _write_translated_sources(raw: dict, offsets: list[tuple[float, float]], out_dir: Path,
                              first_copy: int = 0) -> None:
    """Write, for every ``file`` source of the territory mapping ``raw``, its layer copied once per offset (copy
    ``first_copy + k`` translated by ``offsets[k]``, identifiers made unique by :func:`_suffix_ids`) into
    ``out_dir``, and point the source at that file (absolute path). Deterministic (pinned GeoPackage timestamp)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    id_cols = ("id", "insee", "siren", "src_id")
    done: dict[tuple[str, str], str] = {}
    for source in raw["sources"].values():  # a fresh file per run (layers are added one by one)
        if source.get("kind") == "file":
            (out_dir / Path(source["path"]).name).unlink(missing_ok=True)
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": OGR_DATE})
    try:
        for _name, source in raw["sources"].items():
            if source.get("kind") != "file":
                continue
            rel = Path(source["path"])
            key = (rel.name, source["layer"])
            dest = out_dir / rel.name
            if key not in done:
                base = gpd.read_file(ROOT / rel if not rel.is_absolute() else rel, layer=source["layer"],
                                     engine="pyogrio")
                parts = [_suffix_ids(base.set_geometry(base.geometry.translate(ox, oy)), first_copy + k, id_cols)
                         for k, (ox, oy) in enumerate(offsets)]
                region = gpd.GeoDataFrame(pd_concat(parts), geometry=base.geometry.name, crs=base.crs)
                region.to_file(dest, layer=source["layer"], driver="GPKG", engine="pyogrio")
                done[key] = str(dest)
            source["path"] = str(dest.resolve())
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def _write_yaml(raw: dict, path: Path, what: str) -> Path:
    import yaml as _yaml

    path.write_text(f"# GENERATED by sample/generate.py {what}\n"
                    + _yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(SAMPLE_DIR), help="output directory (default: sample/call)")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with sample/call")
    ap.add_argument("--region", metavar="SCALE",
                    help="write a synthetic region of SCALE × CALL (4, 16, … or 'region' = 31,800 km²) into --out "
                         "instead (benchmarks only)")
    ap.add_argument("--neighbour", action="store_true",
                    help="write the synthetic neighbour call_voisin (the CALL translated east) into --out instead "
                         "(tests only)")
    args = ap.parse_args(argv)
    if args.check:
        sys.exit(0 if check() else 1)
    if args.neighbour:
        if Path(args.out).resolve() == SAMPLE_DIR.resolve():
            ap.error("--neighbour needs --out (the bundled sample is not overwritten)")
        print(generate_neighbour(Path(args.out)))
        return
    if args.region:
        if Path(args.out).resolve() == SAMPLE_DIR.resolve():
            ap.error("--region needs --out (the bundled sample is not overwritten)")
        print(generate_region(args.region, Path(args.out)))
        return
    generate(Path(args.out), SAMPLE_DIR)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Deterministic generator of the SYNTHETIC planning layers of the CALL sample (projects, managed sectors, a ZAC).

Run from the project root::

    python sample/generate_planning.py            # (re)write sample/call/planning.gpkg, screening_zac.gpkg and
                                                  # sample/call/CHECKSUMS_planning.sha256
    python sample/generate_planning.py --check    # regenerate into a temp dir and compare canonical hashes

Nothing written here is real data. The CALL's PLU zones, ZAC and road projects and its managed green spaces are
not available offline; these layers stand in for them so that the priorities and screening stages have something
to cross. They are built on the real outline and on the (synthetic) sample roads and watercourses:

* ``planning.gpkg`` layer ``projects`` (polygons and lines; ``id, name, type, stage, date, source``): hand-placed
  PLU "à urbaniser" zones (1AU → ``programmed``, 2AU → ``planned``), two ZAC, one road bypass (line) — placed
  near corridors of the 25 m sample run so that some priorities are threatened (see SOURCES.md);
* ``planning.gpkg`` layer ``maintenance`` (polygons; ``id, name, kind, manager, practice, source``): verges of the
  departmental roads (importance 2–3, 8 m each side, every second road section in id order), banks of the open
  streams and rivers (10 m), and five hand-placed municipal green spaces;
* ``screening_zac.gpkg`` layer ``projet``: one synthetic ZAC (≈ 7.5 ha) over the forest corridor between the
  woods of the Artois ridge (to try ``tvb screen``).

Geometry is rounded to a 1 cm grid and the GeoPackage timestamp pinned (``OGR_CURRENT_DATE``), like
``sample/generate.py``, whose canonical layer hash (``layer_digest``) is reused for the checksums.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from shapely.geometry import LineString, Point, box

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample" / "call"
CRS = "EPSG:2154"
GRID = 0.01
OGR_DATE = "2021-01-01T00:00:00.000Z"
CHECKSUM_FILE = "CHECKSUMS_planning.sha256"
LAYERS = {"planning.gpkg": ("projects", "maintenance"), "screening_zac.gpkg": ("projet",)}
SYNTH = "synthetic"

# (id, name, type, stage, date, geometry): hand-placed, coordinates in EPSG:2154
PROJECTS = [
    ("PRJ-001", "Zone 1AU des Hauts de Liévin", "plu_au", "programmed", "2027-01-01",
     box(684500, 7033400, 685100, 7033750)),
    ("PRJ-002", "Zone 2AU du Marais", "plu_au", "planned", "2032-01-01", box(683550, 7031450, 683950, 7031800)),
    ("PRJ-003", "Zone 1AU du Bois Bernard", "plu_au", "programmed", "2026-06-01",
     box(681950, 7033200, 682400, 7033500)),
    ("PRJ-004", "ZAC des Renards", "zac", "authorised", "2026-09-01", box(679250, 7032950, 679750, 7033350)),
    ("PRJ-005", "ZAC de la Gare", "zac", "programmed", "2028-01-01", box(688200, 7038400, 688800, 7038800)),
    ("PRJ-006", "Contournement nord (RD projetée)", "infrastructure", "planned", "2030-01-01",
     LineString([(682900, 7038300), (683500, 7038900), (684300, 7039300)])),
]
GREEN_SPACES = [  # (id suffix, name, manager, practice, centre, radius m)
    ("G1", "Parc des Cytises", "Ville de Liévin", "gestion différenciée, fauche tardive", (685812, 7031918), 220),
    ("G2", "Coulée verte des Glissoires", "CALL", "fauche tardive, zéro phyto", (678625, 7034188), 180),
    ("G3", "Square de la Souchez", "Ville de Lens", "tonte raisonnée", (686900, 7036800), 120),
    ("G4", "Parc des Berges", "CALL", "gestion différenciée, prairie fleurie", (683766, 7031612), 200),
    ("G5", "Jardin du 11/19", "Ville de Loos-en-Gohelle", "écopâturage", (680600, 7035800), 150),
]


def _digest_module():
    spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "sample" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rnd(geom):
    return shapely.set_precision(geom, GRID)


def build_projects() -> gpd.GeoDataFrame:
    rows = [{"id": i, "name": n, "type": t, "stage": s, "date": d, "source": SYNTH, "geometry": rnd(g)}
            for i, n, t, s, d, g in PROJECTS]
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)


def build_maintenance(src: Path) -> gpd.GeoDataFrame:
    outline = gpd.read_file(src / "territory.gpkg", layer="epci").geometry.union_all()
    roads = gpd.read_file(src / "roads.gpkg").sort_values("id", kind="stable")
    water = gpd.read_file(src / "watercourses.gpkg").sort_values("id", kind="stable")
    rows = []
    verges = roads[roads["importance"].isin([2, 3])].iloc[::2]
    for rid, name, geom in zip(verges["id"], verges["name"], verges.geometry):
        g = geom.buffer(8, cap_style="flat").intersection(outline)
        if not g.is_empty:
            rows.append({"id": f"MNT-V{int(rid):05d}", "name": f"Accotements – {name or 'route'}", "kind": "verge",
                         "manager": "Département du Pas-de-Calais", "practice": "fauche raisonnée (tardive)",
                         "geometry": g})
    banks = water[water["kind"].isin(["stream", "river"]) & (water["position"] == "open")]
    for wid, name, geom in zip(banks["id"], banks["name"], banks.geometry):
        g = geom.buffer(10, cap_style="flat").intersection(outline)
        if not g.is_empty:
            rows.append({"id": f"MNT-B{wid!s}", "name": f"Berges – {name or 'cours d eau'}", "kind": "bank",
                         "manager": "SAGE Marque-Deûle / CALL", "practice": "entretien de la ripisylve",
                         "geometry": g})
    for suffix, name, manager, practice, (x, y), r in GREEN_SPACES:
        rows.append({"id": f"MNT-{suffix}", "name": name, "kind": "green_space", "manager": manager,
                     "practice": practice, "geometry": Point(x, y).buffer(r, quad_segs=8)})
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)
    gdf["source"] = SYNTH
    gdf["geometry"] = [rnd(shapely.make_valid(g)) for g in gdf.geometry]
    gdf = gdf[~gdf.geometry.is_empty & gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    return gdf[["id", "name", "kind", "manager", "practice", "source", "geometry"]].reset_index(drop=True)


def build_screening_zac() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame([{"id": "ZAC-TEST", "name": "ZAC synthétique des Bois d'Angres", "type": "zac",
                              "stage": "programmed", "date": "2027-03-01", "source": SYNTH,
                              "geometry": rnd(box(677400, 7035000, 677700, 7035250))}], geometry="geometry", crs=CRS)


def _write(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": OGR_DATE})
    try:
        gdf.sort_values("id", kind="stable").to_file(path, layer=layer, driver="GPKG", engine="pyogrio",
                                                     promote_to_multi=gdf.geom_type.str.contains("Polygon").all()
                                                     or None)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def generate(out_dir: Path = SAMPLE_DIR, src_dir: Path = SAMPLE_DIR, write_checksum_file: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in LAYERS:
        (out_dir / name).unlink(missing_ok=True)
    _write(build_projects(), out_dir / "planning.gpkg", "projects")
    _write(build_maintenance(Path(src_dir)), out_dir / "planning.gpkg", "maintenance")
    _write(build_screening_zac(), out_dir / "screening_zac.gpkg", "projet")
    d = digests(out_dir)
    if write_checksum_file:
        lines = ["# Canonical content hashes of the synthetic planning layers (sample/generate_planning.py).",
                 "# Same canonical form as CHECKSUMS.sha256 (sample/generate.py layer_digest).",
                 "# Verify with: python sample/generate_planning.py --check"]
        lines += [f"{v}  {k}" for k, v in sorted(d.items())]
        (out_dir / CHECKSUM_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def digests(out_dir: Path) -> dict[str, str]:
    gen = _digest_module()
    return {f"{f}#{layer}": gen.layer_digest(Path(out_dir) / f, layer) for f, layers in LAYERS.items()
            for layer in layers}


def check(committed: Path = SAMPLE_DIR) -> bool:
    expected = _digest_module().read_checksums(committed / CHECKSUM_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), SAMPLE_DIR, write_checksum_file=False)
    on_disk = digests(committed)
    ok = True
    for k in sorted(set(expected) | set(fresh)):
        same = expected.get(k) == fresh.get(k) == on_disk.get(k)
        print(f"{'OK ' if same else 'DIFF'} {k}")
        ok &= same
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh generation with the committed files")
    args = parser.parse_args(argv)
    if args.check:
        return 0 if check() else 1
    for k, v in generate().items():
        print(v[:12], k)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the layers' key figures of the bundled CALL sample at one or more resolutions (docs/method.md tables).

Usage: ``python bench/method_figures.py 25 10 5`` (resolutions in metres). Besides the engine's counts, areas and
lengths it measures what issue 12 asks about: km of mining corridors within 15 m of a cavalier line, terrils (MBM
polygons, built-over excluded) reached by no mining corridor, nature-en-ville area, wet rupture points at culverts.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd

from tvb_tasks.config import load_territory
from tvb_tasks.layers import engine
from tvb_tasks.layers.common import load_boundary


def figures(resolution: float, overrides: dict | None = None) -> dict:
    t = load_territory("call")
    t = t.model_copy(update={"resolution_m": float(resolution), **(overrides or {})})
    inputs = engine.sample_inputs(t)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = engine.compute_layers(t, inputs, Path(tmp))
        elapsed = time.perf_counter() - t0
        gpkg = out["gpkg"]
        cor = gpd.read_file(gpkg, layer="corridors")
        pts = gpd.read_file(gpkg, layer="rupture_points")
        lu = gpd.read_file(gpkg, layer="landuse")
    boundary = load_boundary(t, inputs)
    rail = gpd.read_file(inputs["railways"])
    cav = rail[rail["status"] == "disused"].geometry.union_all().buffer(15).intersection(boundary)
    mining = cor[cor["sous_trame"] == "mining"]
    along = float(mining.geometry.intersection(cav).length.sum() / 1000)
    ter = gpd.read_file(inputs["terrils"], layer="terrils")
    ter = ter[(ter["forme"] != "Arasé construit") & ter.intersects(boundary)]
    reached = ter.geometry.buffer(30).intersects(mining.geometry.union_all()) if len(mining) else ter.geometry.is_empty
    return {
        "resolution_m": resolution, "seconds": round(elapsed, 1),
        "reservoirs_ha": out["areas_ha"]["reservoirs"], "relays_ha": out["areas_ha"]["relays"],
        **{f"reservoirs_{s}_ha": out["areas_ha"].get(f"reservoirs_{s}") for s in t.sous_trames},
        "corridors_km": out["lengths_km"]["corridors"],
        **{k: out["lengths_km"][k] for k in out["lengths_km"] if k.startswith("corridors_")},
        "mining_corridors_along_cavaliers_km": round(along, 2),
        "unesco_terrils_without_mining_corridor": int((~reached).sum()), "unesco_terrils": int(len(ter)),
        "wet_corridors_km": out["lengths_km"]["wet_corridors"],
        "rupture_points": int(len(pts)), "rupture_sites": int(out["counts"]["rupture_sites"]),
        "terrestrial_reservoirs_relays_ha": out["areas_ha"]["terrestrial_reservoirs_relays"],
        "wet_reservoirs_relays_ha": out["areas_ha"]["wet_reservoirs_relays"],
        "severity_4_infrastructures": sorted(set(pts.loc[pts["severity"] == 4, "infra_name"].astype(str)))
        if len(pts) else [],
        "rupture_points_by_kind": {f"{a}/{b}": int(n) for (a, b), n in pts.groupby(["corridor_kind", "infrastructure"]).size().items()} if len(pts) else {},
        "rupture_points_by_severity": {int(k): int(v) for k, v in pts["severity"].value_counts().sort_index().items()} if len(pts) else {},
        "nature_en_ville_ha": round(float(lu.loc[lu["class"] == "nature_en_ville"].area.sum() / 1e4), 1),
        "artificial_ha": round(float(lu.loc[lu["class"] == "artificial"].area.sum() / 1e4), 1),
    }


if __name__ == "__main__":
    for res in sys.argv[1:] or ["25"]:
        print(json.dumps(figures(float(res)), ensure_ascii=False, default=str), flush=True)

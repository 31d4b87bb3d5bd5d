"""Checks of the bundled CALL sample's synthetic layers (sample/generate.py → sample/call/*.gpkg)."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "call"
LAYERS = ("landuse", "protected_areas", "roads", "railways", "watercourses")
REQUIRED_COLUMNS = {
    "landuse": ["id", "code_cs", "code_us", "millesime"],
    "protected_areas": ["id", "name", "protection_type"],
    "roads": ["id", "name", "importance", "nature"],
    "railways": ["id", "name", "status"],
    "watercourses": ["id", "name", "kind", "position"],
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "sample" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generator():
    return _load_generator()


@pytest.fixture(scope="module")
def config():
    from tvb_tasks.config import resolve_nomenclature

    with open(ROOT / "config" / "territories" / "call.yaml", encoding="utf-8") as f:
        return resolve_nomenclature(yaml.safe_load(f))    # `nomenclature: ocs2d` → code list + rules


@pytest.fixture(scope="module")
def outline():
    df = pyogrio.read_dataframe(SAMPLE / "territory.gpkg", layer="epci")
    return df.geometry.iloc[0]


@pytest.fixture(scope="module")
def layers():
    return {name: pyogrio.read_dataframe(SAMPLE / f"{name}.gpkg", layer=name) for name in LAYERS}


def classify(code_cs: str, code_us: str, landuse_cfg: dict) -> str:
    """Independent re-implementation of the call.yaml rule semantics: first rule whose every
    given column starts with the given code wins."""
    values = {"code_cs": code_cs or "", "code_us": code_us or ""}
    for rule in landuse_cfg["rules"]:
        if all(values[k].startswith(v) for k, v in rule.items() if k != "class"):
            return rule["class"]
    return landuse_cfg["default_class"]


@pytest.mark.integration          # regenerates the whole bundled sample
@pytest.mark.slow
def test_committed_files_match_generator(generator, tmp_path):
    generator.generate(tmp_path, SAMPLE, verbose=False, write_checksum_file=False)
    fresh = generator.digests(tmp_path)
    committed = generator.digests(SAMPLE)
    recorded = generator.read_checksums(SAMPLE / "CHECKSUMS.sha256")
    assert set(recorded) == {f"{n}.gpkg#{n}" for n in LAYERS}
    assert committed == recorded, "sample/call/*.gpkg differ from CHECKSUMS.sha256: run python sample/generate.py"
    assert fresh == recorded, "the generator no longer reproduces the committed files"


@pytest.mark.parametrize("name", LAYERS)
def test_layer_crs_and_schema(name):
    path = SAMPLE / f"{name}.gpkg"
    assert [str(x) for x in pyogrio.list_layers(path)[:, 0]] == [name]
    info = pyogrio.read_info(path, layer=name)
    assert info["crs"] == "EPSG:2154"
    assert list(info["fields"][: len(REQUIRED_COLUMNS[name])]) == REQUIRED_COLUMNS[name]
    df = pyogrio.read_dataframe(path, layer=name)
    assert df["id"].is_unique
    assert df.geometry.is_valid.all() and not df.geometry.is_empty.any()
    assert list(df["id"]) == sorted(df["id"])


def test_total_size_below_10_mb():
    assert sum((SAMPLE / f"{n}.gpkg").stat().st_size for n in LAYERS) < 10 * 1024 * 1024


def test_landuse_tiles_the_outline(layers, outline):
    geoms = layers["landuse"].geometry.values
    assert set(shapely.get_type_id(geoms)) == {3}  # Polygon
    union = shapely.union_all(geoms)
    total = outline.area
    assert shapely.symmetric_difference(union, outline).area < 0.005 * total
    overlap = shapely.area(geoms).sum() - union.area
    assert overlap < 1e-5 * total  # no overlaps (up to the 1 cm coordinate grid)
    assert len(geoms) >= 2000


def test_landuse_codes_in_nomenclature(layers, config):
    with open(ROOT / config["nomenclature"]["file"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    col = config["nomenclature"]["code_column"]
    cs = {r[col] for r in rows if r["dimension"] == "couverture"}
    us = {r[col] for r in rows if r["dimension"] == "usage"}
    lu = layers["landuse"]
    assert set(lu["code_cs"]) <= cs
    assert set(lu["code_us"]) <= us
    assert set(lu["millesime"]) == {2021}


def test_landuse_proportions(layers, config, outline):
    cfg = config["landuse"]
    lu = layers["landuse"]
    area = shapely.area(lu.geometry.values)
    cls = np.array([classify(a, b, cfg) for a, b in zip(lu["code_cs"], lu["code_us"])])
    total = area.sum()
    art = area[[cfg["classes"][c]["artificial"] for c in cls]].sum() / total
    nat = area[[cfg["classes"][c]["natural"] for c in cls]].sum() / total
    assert 0.40 <= art <= 0.50, art
    assert 0.07 <= nat <= 0.15, nat
    # every class of the config occurs (or is given by an overlay / the extra habitat sources: cavaliers,
    # terrils), and farmland is the rest
    burned = {ov["class"] for ov in config["friction"].get("overlays", {}).values()}
    burned |= {st["habitat"][0] for st in config["sous_trames"].values() if st.get("extra_habitat_sources")}
    assert set(cls) <= set(cfg["classes"]) and set(cls) | burned == set(cfg["classes"])
    assert area[cls == "farmland"].sum() / total > 0.35


def test_roads(layers):
    roads = layers["roads"]
    assert set(roads["importance"]) <= {1, 2, 3, 4, 5}
    assert {1, 2, 3, 4, 5} <= set(roads["importance"])
    assert roads["nature"].notna().all()
    assert set(roads.geometry.geom_type) == {"LineString"}
    km = shapely.length(roads.geometry.values).sum() / 1e3
    assert 600 <= km <= 1200, km


def test_railways(layers):
    rail = layers["railways"]
    assert set(rail["status"]) == {"in_use", "disused"}
    assert (rail.loc[rail["status"] == "disused", "name"] == "Cavalier minier").all()
    assert 2 <= (rail["status"] == "in_use").sum() <= 3


def test_watercourses(layers, outline):
    wc = layers["watercourses"]
    assert set(wc["position"]) == {"open", "culverted"}
    assert set(wc["kind"]) <= {"river", "stream", "canal", "ditch"}
    assert "Canal de la Deûle" in set(wc["name"])
    open_km = shapely.length(shapely.intersection(wc.loc[wc["position"] == "open"].geometry.values, outline)).sum() / 1e3
    assert 50 <= open_km <= 70, open_km


def test_protected_areas(layers, config, outline):
    pa = layers["protected_areas"]
    types = set(config["protected_areas"]["always_reservoir"]) | set(config["protected_areas"]["case_by_case"])
    assert set(pa["protection_type"]) <= types
    assert 10 <= len(pa) <= 20
    assert pa["id"].str.startswith("SYNTH").all()
    assert 1 <= pa["protection_type"].isin(["APB", "RNR"]).sum() <= 3
    assert pa["protection_type"].str.startswith("N2000").any()
    # one Natura 2000 site lies partly over farmland (exercises the case-by-case rule)
    cfg = config["landuse"]
    lu = layers["landuse"]
    farm = lu[[classify(a, b, cfg) == "farmland" for a, b in zip(lu["code_cs"], lu["code_us"])]]
    farm_union = shapely.union_all(farm.geometry.values)
    shares = [shapely.intersection(g, farm_union).area / g.area
              for g, t in zip(pa.geometry, pa["protection_type"]) if t.startswith("N2000")]
    assert max(shares) > 0.2

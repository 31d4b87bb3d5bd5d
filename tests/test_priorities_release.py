"""Priorities in the pipeline and the store: the stage writes a validated ``priorities`` layer, the fiches, the
report section; ``tvb screen`` writes its sheet under ``screenings/`` and never touches the release; the source
suites accept the sample planning layers and refuse bad ones; the synthetic sample layers are reproducible."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from helpers.priorities_scene import RID, bx, project, scene, write_scene
from helpers.servers import static_server
from tvb_tasks.config import PROJECT_ROOT
from tvb_tasks.store import open_store


@pytest.fixture()
def scene_store(tmp_path, monkeypatch):
    """A local store holding the scene as the live release of ``call``."""
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    store = open_store(str(tmp_path / "store"))
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    store.put_file(f"releases/call/{RID}/tvb.gpkg", gpkg)
    store.put_bytes("releases/call/latest.json", json.dumps({"release_id": RID}).encode())
    return store


# --- tvb screen -----------------------------------------------------------------------------------------------------
def test_cli_screen_prints_affected_elements_and_writes_the_sheet_outside_the_release(scene_store, tmp_path,
                                                                                       capsys):
    from tvb_tasks.cli import main

    path = tmp_path / "zac.gpkg"
    project(bx(1400, 300, 1600, 700), name="ZAC des Tests").to_file(path, layer="projet")
    release_before = scene_store.list(f"releases/call/{RID}/")
    assert main(["screen", "--store", scene_store.uri, str(path)]) == 0
    out = capsys.readouterr().out
    assert "ZAC des Tests" in out and "corridor forest-CL (sous-trame forestière, à restaurer) : 200 m" in out
    assert "connectivité – Sous-trame forestière : ΔPC -" in out
    assert "to_restore" not in out and "(forest," not in out            # review 15 point 8: no English codes
    keys = scene_store.list(f"screenings/call/{RID}/")
    names = {k.rsplit("/", 1)[1] for k in keys}
    assert {"fiche.html", "fiche.pdf", "fiche.png", "screening.json", "emprise.gpkg"} <= names
    assert scene_store.list(f"releases/call/{RID}/") == release_before            # the release is untouched
    pdf = next(k for k in keys if k.endswith("fiche.pdf"))
    assert scene_store.get_bytes(pdf)[:5] == b"%PDF-"
    html = scene_store.get_bytes(next(k for k in keys if k.endswith("fiche.html"))).decode()
    assert "Porter à connaissance TVB – ZAC des Tests" in html and "forest-CL" in html and "data:image/png" in html
    doc = json.loads(scene_store.get_bytes(next(k for k in keys if k.endswith("screening.json"))))
    assert doc["release_id"] == RID and doc["touches_anything"] and doc["corridors"][0]["id"] == "forest-CL"


def test_cli_screen_leaves_no_scratch_in_the_checkout_or_the_work_dir(scene_store, tmp_path, monkeypatch):
    import tempfile

    from tvb_tasks.cli import main

    path = tmp_path / "zac.gpkg"
    project(bx(1400, 300, 1600, 700)).to_file(path, layer="projet")
    checkout = PROJECT_ROOT / "var" / "work" / "screenings"
    before = sorted(checkout.rglob("*")) if checkout.exists() else []
    assert main(["screen", "--store", scene_store.uri, str(path)]) == 0          # TVB_WORK_DIR set: used, cleaned
    work = tmp_path / "work"
    assert not work.exists() or not any(work.iterdir())
    monkeypatch.delenv("TVB_WORK_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert main(["screen", "--store", scene_store.uri, str(path)]) == 0          # else the system temp, cleaned
    assert not any((tmp_path / "tmp").iterdir())
    assert (sorted(checkout.rglob("*")) if checkout.exists() else []) == before   # the checkout is never written
    assert len({k.split("/")[3] for k in scene_store.list(f"screenings/call/{RID}/")}) == 1


def test_cli_screen_far_project_reports_nothing(scene_store, tmp_path, capsys):
    from tvb_tasks.cli import main

    path = tmp_path / "loin.geojson"
    project(bx(3200, 2000, 3400, 2200)).to_crs("EPSG:4326").to_file(path)
    assert main(["screen", "--store", scene_store.uri, "--release", RID, str(path)]) == 0
    assert "Aucun élément de la trame verte et bleue touché." in capsys.readouterr().out


def test_cli_screen_reads_a_project_from_the_store_and_reports_bad_input(scene_store, tmp_path, capsys):
    from tvb_tasks.cli import main

    path = tmp_path / "zac.gpkg"
    project(bx(1400, 300, 1600, 700)).to_file(path)
    scene_store.put_file("uploads/call/zac.gpkg", path)
    assert main(["screen", "--store", scene_store.uri, "uploads/call/zac.gpkg"]) == 0
    assert main(["screen", "--store", scene_store.uri, "uploads/call/absent.gpkg"]) == 1   # bad input (2: usage)
    err = capsys.readouterr().err
    assert "tvb: error: project 'uploads/call/absent.gpkg': not a local file" in err


# --- pipeline stage -------------------------------------------------------------------------------------------------
@pytest.mark.integration             # stages end to end: the priorities stage then the output validation (GX)
def test_priorities_stage_writes_a_layer_that_passes_its_suite_and_one_that_fails(territory, tmp_path):
    from tvb_tasks.priorities.stage import priorities_stage, read_priorities, write_layer
    from tvb_tasks.validate import validate_outputs

    gpkg = write_scene(tmp_path / "tvb.gpkg")
    inputs = {}
    zac = tmp_path / "projects.parquet"
    project(bx(600, 10050, 800, 10300)).to_parquet(zac)
    inputs["projects"] = zac
    result = priorities_stage(territory, gpkg, tmp_path / "ind", inputs=inputs)
    assert result["priorities"] == 6 and result["threatened"] == 2     # corridor CT and its crossing
    prio = read_priorities(gpkg)
    assert pyogrio.read_info(gpkg, layer="priorities")["geometry_type"] == "Point"
    assert (tmp_path / "ind" / "priorities.csv").exists()
    top = pd.read_csv(tmp_path / "ind" / "priorities_top.csv")
    assert set(top["evolution"]) == {"première publication"}
    outline = shapely.union_all(scene()["communes"].geometry.values)
    summary = validate_outputs(territory, gpkg, None, tmp_path / "val", boundary=outline)
    assert summary["sources"]["priorities"]["success"], summary["sources"]["priorities"]["critical_failures"]
    bad = prio.copy()
    bad.loc[0, "gain_dpc_pct"] = -1.0
    bad.loc[1, "rank"] = bad.loc[0, "rank"]
    write_layer(bad, gpkg)
    summary = validate_outputs(territory, gpkg, None, tmp_path / "val2", boundary=outline)
    failed = {f["expectation"] for f in summary["sources"]["priorities"]["critical_failures"]}
    assert not summary["sources"]["priorities"]["success"]
    assert any("gain_dpc_pct" in f for f in failed) and any("[rank]" in f for f in failed), failed


def test_history_of_top_priorities_between_releases(territory, tmp_path):
    from tvb_tasks.priorities.stage import priorities_stage

    first = write_scene(tmp_path / "first.gpkg")
    priorities_stage(territory, first, tmp_path / "ind1", inputs={})
    layers = scene()
    layers["corridors"] = layers["corridors"][layers["corridors"]["id"] != "forest-CL"]
    layers["rupture_points"] = layers["rupture_points"][layers["rupture_points"]["corridor_id"] != "forest-CL"]
    second = write_scene(tmp_path / "second.gpkg", layers)
    priorities_stage(territory, second, tmp_path / "ind2", inputs={}, previous_gpkg=first)
    top = pd.read_csv(tmp_path / "ind2" / "priorities_top.csv")
    assert top.loc[top["id_previous"] == "forest-CL", "evolution"].tolist() == ["disparue"]
    cs = top.set_index("id").loc["forest-CS"]
    assert cs["evolution"] == "maintenue" and cs["id_previous"] == "forest-CS"
    assert cs["rank"] < cs["rank_previous"]


def test_history_matches_priorities_by_identity_not_id(territory, tmp_path):
    """Second release: corridors CS and CT swap ids (and so do their sites, named by their first point); corridor
    id forest-CL now names a new corridor 400 m north of the old one, with its crossing. The history follows the
    objects: CS/CT and their sites "maintenue" under their new ids, the old CL and its site "disparue", the new
    one "nouvelle" — never the same id taken as the same object."""
    from shapely.geometry import LineString, Point

    from helpers.priorities_scene import X0, Y0
    from tvb_tasks.priorities.stage import priorities_stage

    first = write_scene(tmp_path / "first.gpkg")
    priorities_stage(territory, first, tmp_path / "ind1", inputs={})
    layers = scene()
    cor, pts = layers["corridors"], layers["rupture_points"]
    cor["id"] = cor["id"].replace({"forest-CS": "forest-CT", "forest-CT": "forest-CS"})
    cor.loc[cor["id"] == "forest-CL", "geometry"] = LineString([(X0 + 1000, Y0 + 900), (X0 + 2000, Y0 + 900)])
    pts["id"] = ["P1", "P3", "P2"]
    pts["corridor_id"] = ["forest-CL", "forest-CT", "forest-CS"]
    pts.loc[0, "geometry"] = Point(X0 + 1500, Y0 + 900)
    second = write_scene(tmp_path / "second.gpkg", layers)
    priorities_stage(territory, second, tmp_path / "ind2", inputs={}, previous_gpkg=first)
    top = pd.read_csv(tmp_path / "ind2" / "priorities_top.csv")
    rows = {(r.id if isinstance(r.id, str) else None, r.id_previous if isinstance(r.id_previous, str) else None):
            r.evolution for r in top.itertuples()}
    assert rows[("forest-CT", "forest-CS")] == "maintenue"
    assert rows[("forest-CS", "forest-CT")] == "maintenue"
    # sites are named by their first point: the crossing at y 5100 was S002 (P2), is now S003 (P3), and back
    assert rows[("forest-S003", "forest-S002")] == "maintenue"
    assert rows[("forest-S002", "forest-S003")] == "maintenue"
    assert rows[("forest-S001", None)] == "nouvelle" and rows[(None, "forest-S001")] == "disparue"
    assert rows[("forest-CL", None)] == "nouvelle"
    assert rows[(None, "forest-CL")] == "disparue"
    assert ("forest-CL", "forest-CL") not in rows and ("forest-S001", "forest-S001") not in rows


@pytest.mark.integration             # stages end to end: the priorities stage then the fiches stage (HTML and PDF)
def test_fiches_one_per_sous_trame_with_recommendations_from_yaml(territory, tmp_path):
    from tvb_tasks.priorities.stage import fiches_stage, priorities_stage, report_tables

    gpkg = write_scene(tmp_path / "tvb.gpkg")
    assert fiches_stage(territory, gpkg, tmp_path / "none", release_id=RID) == []      # no layer yet: no fiche
    priorities_stage(territory, gpkg, tmp_path / "ind", inputs={})
    files = fiches_stage(territory, gpkg, tmp_path / "fiches", release_id=RID)
    html = sorted(Path(f).name for f in files if f.endswith(".html") and "fiche_" in f)
    assert html == [f"fiche_{st}.html" for st in sorted(territory.sous_trames)]
    assert len([f for f in files if f.endswith(".pdf")]) == 4
    forest = (tmp_path / "fiches" / "fiche_forest.html").read_text(encoding="utf-8")
    general = territory.fiches["forest"].general.split(";")[0]
    assert "Préconisations de gestion" in forest and general in forest and "forest-CL" in forest
    assert (tmp_path / "fiches" / "fiche_forest.pdf").read_bytes()[:5] == b"%PDF-"
    # readable: plural labels, named elements (code in parentheses), links back to the report and the list
    assert "Corridors existants" in forest and "Corridors existant<" not in forest
    assert "Corridor à restaurer" in forest or "Corridor à créer" in forest or "Franchissement" in forest
    assert "<td>forest-CL</td>" not in forest and "(forest-CL)" in forest
    assert 'href="../index.html"' in forest and 'href="index.html"' in forest
    index = (tmp_path / "fiches" / "index.html").read_text(encoding="utf-8")
    assert "<style>" in index and 'href="../index.html"' in index and "fiche_forest.pdf" in index
    tables = report_tables(tmp_path / "ind")
    assert tables[0].title == "Priorités de restauration (territoire)" and len(tables[0].rows) == 6


def test_priorities_layer_is_published_with_french_labels(territory):
    from tvb_tasks.publish.styles import FIELD_LABELS, LAYER_NAMES
    from tvb_tasks.publish.webmap import layer_config

    assert "priorities" in LAYER_NAMES
    cfg = {c["name"]: c for c in layer_config(territory, ["priorities", "corridors"])}
    assert cfg["priorities"]["title"] == "Priorités de restauration" and cfg["priorities"]["geometry"] == "point"
    for col in ("score", "rank", "gain_dpc_pct", "cost_proxy", "conflict", "maintenance_share"):
        assert col in FIELD_LABELS, col


# --- sources --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["projects", "maintenance"])
def test_source_suites_accept_the_sample_planning_layers(territory, tmp_path, name):
    from tvb_tasks.validate.gate import validate_source

    cfg = territory.sources[name]
    snap = tmp_path / f"{name}.parquet"
    gpd.read_file(PROJECT_ROOT / cfg.path, layer=cfg.layer).to_parquet(snap)
    summary = validate_source(territory, name, snap, previous_path=None, out_dir=tmp_path)
    assert summary["success"], summary["critical_failures"]
    assert summary["evaluated"] >= 14


def test_source_suite_refuses_an_unknown_project_stage(territory, tmp_path):
    from tvb_tasks.validate.gate import validate_source

    cfg = territory.sources["projects"]
    gdf = gpd.read_file(PROJECT_ROOT / cfg.path, layer=cfg.layer)
    gdf.loc[0, "stage"] = "someday"
    snap = tmp_path / "projects.parquet"
    gdf.to_parquet(snap)
    summary = validate_source(territory, "projects", snap, previous_path=None, out_dir=tmp_path)
    assert not summary["success"]
    assert any("stage" in f["expectation"] for f in summary["critical_failures"])


def test_sample_planning_layers_match_their_generator(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_planning", PROJECT_ROOT / "sample" / "generate_planning.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path, gen.SAMPLE_DIR, write_checksum_file=False)
    recorded = gen._digest_module().read_checksums(gen.SAMPLE_DIR / gen.CHECKSUM_FILE)
    assert fresh == recorded == gen.digests(gen.SAMPLE_DIR)
    projects = gpd.read_file(gen.SAMPLE_DIR / "planning.gpkg", layer="projects")
    assert set(projects["source"]) == {"synthetic"}


def test_resolve_project_downloads_an_http_url(tmp_path):
    from tvb_tasks.priorities.stage import resolve_project

    served = tmp_path / "www"
    served.mkdir()
    project(bx(1400, 300, 1600, 700)).to_file(served / "zac.geojson")
    with static_server(served) as base:
        store = open_store(str(tmp_path / "store"))
        path = resolve_project(f"{base}/zac.geojson", store, tmp_path / "work")
        assert path.name == "zac.geojson" and path.read_bytes() == (served / "zac.geojson").read_bytes()


def test_qgis_project_has_a_priorities_layer_with_french_aliases(territory, tmp_path):
    from tvb_tasks.priorities.stage import priorities_stage
    from tvb_tasks.publish.qgis import write_qgis_project

    gpkg = write_scene(tmp_path / "tvb.gpkg")
    priorities_stage(territory, gpkg, tmp_path / "ind", inputs={})
    write_qgis_project(territory, gpkg, tmp_path / "qgis", release_id=RID)
    qgs = (tmp_path / "qgis" / "tvb.qgs").read_text(encoding="utf-8")
    assert "Priorités de restauration" in qgs and "layername=priorities" in qgs
    for alias in ("Score de priorité", "Rang (territoire)", "Gain de connectivité ΔPC (%)",
                  "Conflit avec un projet"):
        assert alias in qgs, alias


def test_history_says_a_corridor_left_to_its_crossing_is_carried_by_its_site(territory, tmp_path):
    """Corridor CS ranked in the first release; in the second its stretches show no gap of its own (only the piece
    its road crossing lowered): it is no longer a land candidate and the history says its site carries it."""
    from helpers.priorities_scene import ln
    from tvb_tasks.priorities.stage import priorities_stage

    first = write_scene(tmp_path / "first.gpkg")
    priorities_stage(territory, first, tmp_path / "ind1", inputs={})
    layers = scene()
    layers["corridor_stretches"] = gpd.GeoDataFrame(
        {"id": ["forest-CS-S01", "forest-CS-S02", "forest-CS-S03"], "corridor_id": "forest-CS",
         "sous_trame": "forest", "status": ["existing", "to_restore", "existing"], "length_m": [450.0, 100.0, 450.0],
         "max_gap_m": 0.0, "support_share": 1.0, "missing_link": 0, "downgraded": [0, 1, 0]},
        geometry=[ln((200, 5100), (650, 5100)), ln((650, 5100), (750, 5100)), ln((750, 5100), (1200, 5100))],
        crs="EPSG:2154")
    second = write_scene(tmp_path / "second.gpkg", layers)
    priorities_stage(territory, second, tmp_path / "ind2", inputs={}, previous_gpkg=first)
    doc = json.loads((tmp_path / "ind2" / "priorities.json").read_text(encoding="utf-8"))
    assert doc["crossing_only_corridors"] == ["forest-CS"]
    top = pd.read_csv(tmp_path / "ind2" / "priorities_top.csv")
    row = top[top["id_previous"] == "forest-CS"]
    assert row["evolution"].tolist() == ["franchissement seul"] and row["id"].tolist() == ["forest-S002"]

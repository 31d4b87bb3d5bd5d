"""The release report: self-contained HTML with maps, key figures beside the published values, history, per
commune table, validation summary and change; PNG maps and a PDF export."""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import pytest
import yaml

from test_indicators_scene import scene_territory, write_scene
from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.indicators import append_history, compute_indicators, is_synthetic_landuse
from tvb_tasks.publish.report import build_report, fr_number, validation_tables
from tvb_tasks.publish.report.maps import nice_length

VALIDATION = {
    "success": False, "critical_failures": 1, "warnings": 1, "results_path": "/work/x/results.json",
    "docs_path": "/work/x/data_docs/index.html",
    "sources": {
        "landuse": {"source": "landuse", "suite": "landuse", "success": False, "evaluated": 12, "successful": 10,
                    "critical_failures": [{"expectation": "geometry_valid", "message": "3 géométries <invalides>"}],
                    "warnings": [{"expectation": "row_count_drift", "message": "dérive de 25 %"}]},
        "communes": {"source": "communes", "suite": "communes", "success": True, "evaluated": 8, "successful": 8,
                     "critical_failures": [], "warnings": []},
    },
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two releases of the scene (the second without reservoir R4), history of both, report of the second."""
    tmp = tmp_path_factory.mktemp("report")
    territory = scene_territory(tmp)
    old, new = write_scene(tmp / "old.gpkg"), write_scene(tmp / "new.gpkg", drop_reservoir="R4")
    compute_indicators(territory, old, tmp / "ind1")
    compute_indicators(territory, new, tmp / "ind2", previous_gpkg=old, previous_indicators=tmp / "ind1" /
                       "indicators.json")
    history = append_history(None, tmp / "ind1" / "indicators.json", release_id="2026-01-05T030000Z",
                             released_at="2026-01-05T03:00:00Z", snapshot_ids={}, out_path=tmp / "h1.parquet")
    history = append_history(history, tmp / "ind2" / "indicators.json", release_id="2026-01-12T030000Z",
                             released_at="2026-01-12T03:00:00Z", snapshot_ids={}, out_path=tmp / "h2.parquet")
    result = build_report(territory, new, tmp / "ind2", tmp / "report", validation_summary=VALIDATION,
                          history_path=history, release_id="2026-01-12T030000Z")
    html = (tmp / "report" / "index.html").read_text(encoding="utf-8")
    return tmp, result, html


def _text(html: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html))    # keeps (narrow) no-break spaces


def test_files(report):
    tmp, result, _ = report
    names = {p.split("/report/")[-1] for p in result["files"]}
    assert result["html"] == str(tmp / "report" / "index.html")
    assert {"index.html", "report.pdf", "maps/occupation_du_sol.png", "maps/trame_verte.png", "maps/corridors.png",
            "maps/trame_bleue.png", "maps/corridors_humides.png", "maps/points_de_rupture.png",
            "maps/connectivite_dpc.png", "maps/evolutions.png", "maps/evolution_indicateurs.png"} == names
    for png in (tmp / "report" / "maps").glob("*.png"):
        height, width = mpimg.imread(png).shape[:2]
        assert width > 600 and height > 400, png
    pdf = (tmp / "report" / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 12


def test_html_is_self_contained_and_french(report):
    _, _, html = report
    assert html.count("data:image/png;base64,") == 9          # 7 maps + change map + history chart
    assert not re.search(r"""(src|href)=["']https?://""", html)    # nothing fetched from the network
    text = _text(html)
    for title in ("Chiffres clés", "Cartes", "Fragmentation des habitats", "Connectivité des réservoirs",
                  "Évolution des indicateurs", "Indicateurs par commune", "Validation des données",
                  "Changements depuis la publication précédente"):
        assert title in text, title
    assert "© IGN" in text and "Mission Bassin Minier" in text and "OpenStreetMap" in text


def test_key_figures_beside_published_values(report):
    _, _, html = report
    text = _text(html)
    # artificialised share: 30 % computed, 45 % published → −15 points, −33,3 %
    assert re.search(r"Part des espaces artificialisés % 30,0 ≈\xa045 -15,0 -33,3", text)
    assert re.search(r"Superficie du territoire ha 200 ≈\xa023\u202f940 -23\u202f740", text)
    assert re.search(r"Points de rupture nombre 0 ≈\xa0190 -190 -100,0", text)


def test_synthetic_note_follows_the_landuse_source(report, tmp_path):
    _, _, html = report
    assert "données synthétiques" in html                       # the bundled sample's land use
    raw = yaml.safe_load((PROJECT_ROOT / "config" / "territories" / "call.yaml").read_text(encoding="utf-8"))
    raw["sources"]["landuse"]["path"] = str(tmp_path / "ocs2d_real.gpkg")
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert not is_synthetic_landuse(load_territory(path, profile="default"))
    raw["sources"]["landuse"]["synthetic"] = True
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert is_synthetic_landuse(load_territory(path, profile="default"))


def test_history_change_communes_and_validation_sections(report):
    _, _, html = report
    text = _text(html)
    assert "2 publication(s)" in text
    assert re.search(r"Réservoirs perdus 1 ", text) and re.search(r"Corridors disparus 2 ", text)
    assert re.search(r"Réservoirs et zones relais terrestres 49,50 45,50 -4,00 -8,1", text)
    assert "Aville" in text and "62002" in text
    assert "ÉCHEC" in text and "3 géométries &lt;invalides&gt;" in html      # escaped
    assert '<p class="ko">Validation : des anomalies critiques' in html
    assert "dérive de 25 %" in text and "/work/x" not in html                  # local paths not shown
    assert "../validation/data_docs/index.html" in html


def test_report_without_history_validation_or_previous(tmp_path):
    territory = scene_territory(tmp_path)
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    compute_indicators(territory, gpkg, tmp_path / "ind")
    result = build_report(territory, gpkg, tmp_path / "ind", tmp_path / "rep", validation_summary=None,
                          history_path=None, release_id="r1")
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "Pas de publication précédente" in html and "Aucun résumé de validation" in html
    assert "Première publication" in html and html.count("data:image/png;base64,") == 8
    assert not (tmp_path / "rep" / "maps" / "evolutions.png").exists()
    assert result["files"][0].endswith("index.html")


def test_validation_tables_of_compact_summaries():
    ok, status, tables = validation_tables({"success": True, "critical_failures": 0, "warnings": 2,
                                            "results_path": "/tmp/x"})
    assert ok and status.startswith("Validation réussie")
    assert tables[0].rows == [["Réussite", "oui"], ["Échecs critiques", "0"], ["Avertissements", "2"]]
    ok, status, tables = validation_tables({"sources": {"success": True, "critical_failures": 0},
                                            "outputs": {"success": False, "critical_failures": 3}})
    assert ok is False and "anomalies critiques" in status
    assert validation_tables(None)[0] is None
    assert ["Couches produites – Échecs critiques", "3"] in tables[0].rows


def test_formatting_helpers():
    assert fr_number(23940, 0) == "23\u202f940"
    assert fr_number(-0.5, 1, sign=True) == "-0,5" and fr_number(2.0, 2, sign=True) == "+2,00"
    assert fr_number(0.000443, None) == "0,000443" and fr_number(None) == "–" and fr_number(float("nan")) == "–"
    assert nice_length(4300) == 2000 and nice_length(999) == 500 and nice_length(10_000) == 10_000

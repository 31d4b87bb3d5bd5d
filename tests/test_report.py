"""The release report: HTML opening on a plain-language summary, maps, key figures beside the published values,
history, change (why, sorted, folded, marks), per commune table and sheets, French validation messages; PNG maps
and a PDF export on A4 landscape with numbered pages and a table of contents."""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import pytest

from helpers.indicators_scene import scene_territory, write_scene
from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.indicators import append_history, compute_indicators, is_synthetic_landuse
from tvb_tasks.publish.report import build_report, data_docs_links, fr_number, validation_tables
from tvb_tasks.publish.report.maps import nice_length
from tvb_tasks.publish.report.reading import (
    change_rows,
    french_message,
    previous_release_in,
    provenance,
    provenance_explanation,
    provenance_rows,
)

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
    import html as html_lib

    return html_lib.unescape(re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html)))   # keeps no-break spaces


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_files(report):
    tmp, result, _ = report
    names = {p.split("/report/")[-1] for p in result["files"]}
    assert result["html"] == str(tmp / "report" / "index.html")
    assert {"index.html", "report.pdf", "maps/occupation_du_sol.png", "maps/trame_verte.png", "maps/corridors.png",
            "maps/trame_bleue.png", "maps/corridors_humides.png", "maps/points_de_rupture.png",
            "maps/connectivite_dpc.png", "maps/evolutions.png", "maps/evolution_indicateurs.png",
            "maps/communes/62001.png", "maps/communes/62002.png", "communes/62001.html", "communes/62002.html"} == names
    for png in (tmp / "report" / "maps").glob("*.png"):
        height, width = mpimg.imread(png).shape[:2]
        assert width > 600 and height > 400, png
    pdf = (tmp / "report" / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and result["pages"] >= 12


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_html_is_self_contained_and_french(report):
    _, _, html = report
    assert html.count("data:image/png;base64,") == 9          # 7 maps + change map + history chart
    assert not re.search(r"""src=["']https?://""", html)           # nothing fetched from the network
    assert all("licence" in h.lower() or "etalab" in h.lower() or "opendatacommons" in h.lower() or "gouv" in h
               for h in re.findall(r"""href=["'](https?://[^"']+)""", html))   # only licence texts link out
    text = _text(html)
    for title in ("Chiffres clés", "Cartes", "Fragmentation des habitats", "Connectivité des réservoirs",
                  "Évolution des indicateurs", "Indicateurs par commune", "Validation des données",
                  "Changements depuis la publication précédente"):
        assert title in text, title
    assert "© IGN" in text and "Mission Bassin Minier" in text and "OpenStreetMap" in text
    # the plain-language summary comes first, before any table
    assert html.index('id="en-bref"') < html.index('id="chiffres-cles"') < html.index("<table")
    assert "points de rupture marquent les endroits" in text


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_key_figures_beside_published_values(report):
    _, _, html = report
    text = _text(html)
    # artificialised share: 30 % computed, 45 % published → −15 points, −33,3 %
    assert re.search(r"Part des espaces artificialisés % 30,0 ≈\xa045 -15,0 -33,3", text)
    assert re.search(r"Superficie du territoire ha 200 ≈\xa023\u202f940 -23\u202f740", text)
    assert re.search(r"Points de rupture nombre 0 ≈\xa0190 -190 -100,0", text)


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_synthetic_note_follows_the_landuse_source(report, tmp_path):
    _, _, html = report
    assert "données synthétiques" in html                       # the bundled sample's land use
    raw = load_yaml((PROJECT_ROOT / "config" / "territories" / "call.yaml").read_text(encoding="utf-8"))
    raw["sources"]["landuse"]["path"] = str(tmp_path / "ocs2d_real.gpkg")
    path = tmp_path / "real.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    assert not is_synthetic_landuse(load_territory(path, profile="default"))
    raw["sources"]["landuse"]["synthetic"] = True
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    assert is_synthetic_landuse(load_territory(path, profile="default"))


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_history_change_communes_and_validation_sections(report):
    _, _, html = report
    text = _text(html)
    assert "2 publication(s)" in text
    assert re.search(r"Corridors disparus 2 ", text) and re.search(r"Réservoirs perdus 1 ", text)
    assert text.index("Corridors disparus") < text.index("Réservoirs perdus")          # largest first
    # units, mark, sorted by size: the reservoirs & relays row with its unit and a "down" mark
    assert re.search(r"▼ Réservoirs et zones relais terrestres 49,5\xa0ha 45,5\xa0ha -4,0\xa0ha -8,1\xa0%", text)
    assert "Pourquoi les chiffres ont changé" in text and "Données d'entrée" in text
    assert "Aville" in text and "62002" in text
    assert "ÉCHEC" in text and "3 géométries &lt;invalides&gt;" in html      # escaped
    assert '<p class="ko">Validation : des anomalies critiques' in html
    assert "dérive de 25 %" in text and "/work/x" not in html                  # local paths not shown
    assert 'href="../validation/sources/data_docs/index.html"' in html
    assert 'href="communes/62001.html"' in html


@pytest.mark.integration             # a whole report build: indicators, every map, the PDF
def test_report_without_history_validation_or_previous(tmp_path):
    territory = scene_territory(tmp_path)
    gpkg = write_scene(tmp_path / "tvb.gpkg")
    compute_indicators(territory, gpkg, tmp_path / "ind")
    result = build_report(territory, gpkg, tmp_path / "ind", tmp_path / "rep", validation_summary=None,
                          history_path=None, release_id="r1")
    html = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "Pas de publication précédente" in html and "Aucun résumé de validation" in html
    assert "Première publication" in html and html.count("data:image/png;base64,") == 8
    assert "C&#39;est la première publication" in html and result["pages"] >= 10
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


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_pdf_pages_are_a4_numbered_with_contents(report):
    import shutil
    import subprocess

    tmp, result, _ = report
    pdf = tmp / "report" / "report.pdf"
    if not shutil.which("pdfinfo"):
        pytest.skip("poppler-utils not installed")
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    sizes = set(re.findall(r"Page +\d+ size: +([\d.]+ x [\d.]+)", info))
    assert sizes == {"841.68 x 595.44"}, sizes                       # A4 landscape, every page
    n = int(re.search(r"Pages: +(\d+)", info).group(1))
    assert n == result["pages"]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    for i, page in enumerate(pages[:n], start=1):
        assert f"page {i} / {n}" in page, i
    assert "Sommaire" in pages[1] and "Fiches communales" in pages[1] and "En bref" in pages[0]
    first_sheet = int(re.search(r"Fiches communales\s*\.*\s*(\d+)", pages[1]).group(1))
    assert n - first_sheet + 1 == 2                                     # one sheet per commune closes the PDF
    methods = next(p for p in pages if "Sources et licences" in p)        # "Méthodes et sources" with the licences
    assert "Méthodes et sources" in pages[1]
    from tvb_tasks.publish.styles import sources_table

    for row in sources_table(scene_territory(tmp)):
        assert row["source"] in methods, row


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_commune_sheets(report):
    tmp, _, _ = report
    sheet = (tmp / "report" / "communes" / "62001.html").read_text(encoding="utf-8")
    assert 'src="../maps/communes/62001.png"' in sheet and 'href="../index.html#fiches"' in sheet
    assert "Surface" in sheet and "Points de rupture" in sheet
    for href in re.findall(r'(?:href|src)="([^"#]+)', sheet):
        if not href.startswith("../../"):                               # ../../web/ exists in a release only
            assert (tmp / "report" / "communes" / href).resolve().exists(), href


def test_a_commune_sheet_drawn_on_the_shared_page_is_the_sheet_drawn_alone(tmp_path):
    """The sheets share one page drawn once (the layers, outlines, credit line); each sheet adds and then removes its
    own parts. A sheet drawn after another on that page has the very pixels of the same sheet drawn alone, in its PNG
    and its PDF page (nothing of the previous commune left: its outline, name, figures, legend)."""
    import numpy as np
    from PIL import Image

    from tvb_tasks.indicators import read_layers
    from tvb_tasks.publish.report.maps import SHEET_LAYERS, MapContext, PdfBook, commune_sheet, sheet_base

    territory = scene_territory(tmp_path)
    layers = read_layers(write_scene(tmp_path / "scene.gpkg"), territory)
    st_labels = {st: s.label for st, s in territory.sous_trames.items()}
    communes = layers["communes"]
    sheet_layers = {k: layers.get(k) for k in SHEET_LAYERS}

    def sheets(out, order, shared):
        ctx = MapContext(communes, "Crédits de test", tmp_path / out, PdfBook())
        base = sheet_base(ctx, sheet_layers, st_labels) if shared else None
        paths = {}
        for i in order:
            row = communes.iloc[i]
            rows = [("Surface", f"{100 + i} ha"), (f"Ligne propre à {row['nom']}", str(i))]
            paths[i] = commune_sheet(ctx, row, sheet_layers, st_labels, rows, title=row["nom"],
                                     subtitle=f"Commune {row['insee']}", name=row["insee"], base=base)
        pdf_pixels = {i: page.axes[0].get_images()[0].get_array() for i, (_, page) in zip(order, ctx.pdf.pages)}
        return {i: np.asarray(Image.open(p)) for i, p in paths.items()}, pdf_pixels

    together, together_pdf = sheets("together", [0, 1], shared=True)
    for i in (0, 1):
        alone, _ = sheets(f"alone{i}", [i], shared=False)
        assert together[i].shape == (661, 935, 3)                       # A4 landscape at 80 dpi, opaque RGB
        assert np.array_equal(together[i], alone[i]), f"sheet {i} differs from the sheet drawn alone"
        assert np.array_equal(np.asarray(together_pdf[i]), together[i])   # the PDF page: the PNG's pixels
    assert not np.array_equal(together[0], together[1])


def test_report_provenance_and_indicator_causes_are_one_comparison():
    """The HTML's provenance (from the history rows) and indicators.json's causes (from the provenance records) come
    from the same comparison: they agree on the same two releases, including what is unknown."""
    import json

    import pandas as pd

    from tvb_tasks.indicators.history import change_causes
    from tvb_tasks.indicators.history import provenance as record

    def rows(rid, rec):
        return pd.DataFrame([{"release_id": rid, "snapshot_ids": json.dumps(rec["snapshot_ids"]),
                              "config_hash": rec["config_hash"], "resolution_m": rec["resolution_m"],
                              "code_version": rec["code_version"]}])

    base = record({"landuse": "1", "roads": "1"}, "h1", 25.0, "v1")
    for cur in (record({"landuse": "1", "roads": "1"}, "h2", 10.0, "v1"),      # method only
                record({"landuse": "2", "roads": "1"}, "h1", 25.0, "v2"),      # inputs and code
                record({"landuse": "1", "roads": "1"}, "h1", 25.0, "v1"),      # nothing
                record({"landuse": "1", "roads": "2"}, "", None, "")):         # method not recorded
        p = provenance(pd.concat([rows("a", base), rows("b", cur)]), "b", "a")
        causes = change_causes(cur, base)
        assert (p.inputs_changed is None) == (causes["inputs_changed"] is None)
        assert bool(p.inputs_changed) == bool(causes["inputs_changed"])
        assert p.config_changed == causes["configuration_changed"] and p.code_changed == causes["code_changed"]
        assert (p.resolution is not None) == bool(causes["resolution_changed"])
    assert p.inputs_changed == ["roads"] and p.config_changed is None and causes["method_only"] is None


def test_provenance_explains_why_figures_moved():
    import pandas as pd

    def rows(rid, snaps, **extra):
        return pd.DataFrame([{"release_id": rid, "snapshot_ids": snaps, **extra}])

    both = pd.concat([rows("a", '{"landuse": "1", "roads": "1"}', config_hash="h", resolution_m=25.0,
                           code_version="v1"),
                      rows("b", '{"landuse": "1", "roads": "1"}', config_hash="h2", resolution_m=10.0,
                           code_version="v1")])
    p = provenance(both, "b", "a")
    assert p.inputs_changed == [] and p.resolution == (25.0, 10.0) and p.code_changed is False
    assert "résolution de calcul a changé" in provenance_explanation(p) and "méthode" in provenance_explanation(p)
    inputs_only = pd.concat([rows("a", '{"landuse": "1"}'), rows("b", '{"landuse": "2"}')])
    p = provenance(inputs_only, "b", "a")          # no config / code columns: those stay unknown
    assert p.inputs_changed == ["landuse"] and p.config_changed is None and p.code_changed is None
    assert "pas entièrement enregistrée" in provenance_explanation(p)
    assert provenance(None, "b", "a").inputs_changed is None
    same_inputs = pd.concat([rows("a", '{"landuse": "1"}'), rows("b", '{"landuse": "1"}')])
    p = provenance(same_inputs, "b", "a")
    assert p.inputs_changed == [] and "paramètres ou de méthode" in provenance_explanation(p)
    # only the resolution changed (same parameters hash): the configuration row says so, not "paramètres modifiés"
    res_only = pd.concat([rows("a", '{"landuse": "1"}', config_hash="h", resolution_m=25.0, parameters_hash="p"),
                          rows("b", '{"landuse": "1"}', config_hash="h2", resolution_m=10.0, parameters_hash="p")])
    config = dict(provenance_rows(provenance(res_only, "b", "a")))["Configuration"]
    assert config == "résolution de calcul passée de 25 m à 10 m, autres paramètres du territoire inchangés"
    tuned = res_only.assign(parameters_hash=["p", "q"])
    assert dict(provenance_rows(provenance(tuned, "b", "a")))["Configuration"].endswith(
        "et autres paramètres du territoire modifiés")
    dated = pd.concat([rows("a", "{}").assign(released_at="2026-01-01"), rows("b", "{}").assign(released_at="2026-02-01"),
                       rows("c", "{}").assign(released_at="2026-03-01")])
    assert previous_release_in(dated, "c") == "b" and previous_release_in(dated, "a") is None
    assert previous_release_in(dated, "new") == "c"


def test_change_rows_sorted_with_units_and_small_ones_folded():
    table = [
        {"family": "key_figures", "scope": "territory", "indicator": "wet_corridors_km", "sous_trame": "",
         "previous": 40.0, "current": 30.0, "change_abs": -10.0, "change_pct": -25.0},
        {"family": "key_figures", "scope": "territory", "indicator": "rupture_points", "sous_trame": "",
         "previous": 100.0, "current": 150.0, "change_abs": 50.0, "change_pct": 50.0},
        {"family": "connectivity", "scope": "territory", "indicator": "pc", "sous_trame": "forest",
         "previous": 0.01, "current": 0.01001, "change_abs": 0.00001, "change_pct": 0.1},
        {"family": "connectivity", "scope": "commune", "indicator": "pc", "sous_trame": "forest",
         "previous": 1, "current": 2, "change_abs": 1, "change_pct": 100.0},
    ]
    rows = change_rows(table, {"pc": "PC"}, {"forest": "Forêt"}, {("connectivity", "pc")}, small_pct=1.0)
    assert [r.label for r in rows] == ["Points de rupture", "Corridors humides (cours d'eau à ciel ouvert)",
                                       "PC – Forêt"]
    assert [r.direction for r in rows] == ["up", "down", "up"] and [r.small for r in rows] == [False, False, True]
    assert rows[1].change == "-10,0\xa0km" and rows[1].previous == "40,0\xa0km" and rows[0].change == "+50"


def test_validation_messages_in_french():
    msg = french_message({"expectation": "expect_column_values_to_not_be_null", "column": "nom",
                          "message": "3 of 36 rows fail (expected mostly=1.0)"})
    assert msg == "Valeurs manquantes (colonne « nom ») : 3 entité(s) sur 36 en défaut (attendu : mostly=1.0)"
    assert french_message({"expectation": "row_count_drift", "message": "observed 25.0"}) == \
        "Variation du nombre d'entités depuis l'instantané précédent : valeur observée : 25.0"
    assert "évaluation impossible" in french_message({"expectation": "x", "message": "could not be evaluated: boom"})
    assert data_docs_links({"sources": {"success": True, "docs_path": "/w/s/index.html", "sources": {}},
                            "outputs": {"success": True, "sources": {}}}) == [
        ("Rapport détaillé de validation – données sources (Data Docs)", "../validation/sources/data_docs/index.html")]


def test_rupture_map_legend_is_french_and_culverts_not_railway_purple():
    from tvb_tasks.publish.report.maps import rupture_kind_styles

    styles = rupture_kind_styles(["canal", "culvert", "railway", "road"])
    assert styles["culvert"][0] == "busage" and styles["railway"][0] == "voie ferrée"
    assert len({color for _label, color in styles.values()}) == 4


def test_numbers_plain_never_scientific_nor_minus_zero():
    assert fr_number(1.23e-05, None) == "0,0000123" and fr_number(123456.0, None) == "123\u202f456"
    assert fr_number(-0.0001, 2) == "0,00" and fr_number(-1e-9, None) != "-0"


def test_rupture_points_versus_sites_explained():
    import geopandas as gpd
    from shapely.geometry import Point

    from tvb_tasks.publish.report.reading import rupture_counts, rupture_explanation

    pts = gpd.GeoDataFrame({"sous_trame": ["forest", "mining", "forest", "forest", "forest"],
                            "site_id": ["S1", "S1", "S2", "S2", "S3"]},
                           geometry=[Point(0, 0), Point(0, 0), Point(5, 5), Point(5, 5), Point(9, 9)], crs=2154)
    c = rupture_counts(pts)
    assert c == {"points": 5, "sites": 3, "places": 3, "shared_places": 1, "same_st_places": 1, "points_at_shared": 4,
                 "kinds": None}
    text = rupture_explanation(c)
    assert "3 sites de franchissement" in text and "4 points partagent leur emplacement" in text
    assert "1 emplacement(s) portent des points de plusieurs sous-trames" in text and "géométries en double" in text


def test_data_docs_pages_tidied_self_contained_links_resolve(tmp_path):
    """GX pages as GX writes them (CDN styling, links to a GX site tree, "Failed" on a warning) become
    self-contained, every relative link resolves, and a French banner gives the gate's verdict."""
    import json

    from tvb_tasks.publish.datadocs import tidy_data_docs

    docs = tmp_path / "validation" / "outputs" / "data_docs"
    docs.mkdir(parents=True)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("<html></html>")
    gx = ('<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap.min.css"/>'
          '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
          '<link rel="shortcut icon" href="../../../static/images/favicon.ico" type="image/x-icon"/>'
          "<style>.l{background: url('https://great-expectations-web-assets.s3.amazonaws.com/logo.png')}</style>"
          '</head><body class="x"><img src="https://great-expectations-web-assets.s3.amazonaws.com/logo-long.png">'
          '<script>$(".ge-walkthrough-modal").modal();</script>'
          '<a class="navbar-brand" href="../../../../index.html">Home</a>'
          '<a href="../../../../expectations/output_rupture_points.html">output_rupture_points</a>'
          '<a href="#section-1">Overview</a><a href="https://greatexpectations.io/">GX</a>'
          '<h1>Failed</h1></body></html>')
    (docs / "output-rupture_points.html").write_text(gx)
    (docs / "index.html").write_text('<html><head></head><body><a href="output-rupture_points.html">page</a></body>'
                                     '</html>')
    (docs.parent / "outputs_results.json").write_text(json.dumps({"summary": {"success": True, "sources": {
        "rupture_points": {"success": True, "critical_failures": [], "warnings": [{"expectation": "x"}],
                           "docs_path": "/elsewhere/data_docs/output-rupture_points.html"}}}}))
    pages = tidy_data_docs(tmp_path / "validation")
    assert len(pages) == 2
    for page in pages:
        html = page.read_text()
        assert not re.search(r'<(link|script|img)[^>]*(href|src)="https?://', html) and "url('http" not in html
        assert "<script" not in html
        for href in re.findall(r'href="([^"#][^"]*)"', html):
            if not href.startswith("http"):
                assert (page.parent / href).resolve().is_file(), (page.name, href)
        assert "Page technique de Great Expectations (en anglais)" in html
    html = (docs / "output-rupture_points.html").read_text()
    assert "Résultat retenu par l'observatoire : <strong>réussie</strong>, 1 avertissement(s)" in html
    assert "non bloquant" in html and 'href="index.html">Home' in html and ">output_rupture_points</a>" in html
    assert tidy_data_docs(tmp_path / "validation") == []          # idempotent


def test_every_call_source_credited_with_licence():
    """12 sources for CALL, each in the table with a licence; projects / maintenance marked synthetic."""
    from tvb_tasks.publish.styles import credit_line, sources_table

    call = load_territory("call")
    rows = {r["source"]: r for r in sources_table(call)}
    assert set(rows) == set(call.sources) and len(rows) == 12
    assert all(r["licence"] and r["attribution"] for r in rows.values()), rows
    for name in ("projects", "maintenance"):
        assert "synthétique" in rows[name]["licence"] and rows[name]["attribution"] in credit_line(call)


@pytest.mark.integration             # a whole report build: indicators of two releases, every map, the PDF
def test_report_links_to_the_fiches_when_priorities_exist(report, tmp_path):
    """The scene has no priorities layer: no link; with one, the report links to fiches/index.html."""
    import shutil

    import geopandas as gpd
    from shapely.geometry import Point

    tmp, _result, html = report
    assert "fiches/index.html" not in html
    gpkg = tmp_path / "tvb.gpkg"
    shutil.copyfile(tmp / "new.gpkg", gpkg)
    gpd.GeoDataFrame({"id": ["S1"]}, geometry=[Point(0, 0)], crs=2154).to_file(gpkg, layer="priorities")
    territory = scene_territory(tmp)
    build_report(territory, gpkg, tmp / "ind2", tmp_path / "report", validation_summary=None, history_path=None,
                 release_id="2026-01-12T030000Z")
    assert 'href="fiches/index.html"' in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


def test_history_chart_legends_and_labels_do_not_overlap():
    """Five releases with long ids, four sous-trames: no legend leaves its panel, no x label reaches the credit
    line or another panel, the labels are short dates (not the release ids)."""
    import pandas as pd

    from tvb_tasks.publish.report.maps import HISTORY_PANELS, history_figure

    sts = {"forest": "Sous-trame forestière", "grassland": "Sous-trame des milieux ouverts et calcicoles",
           "mining": "Sous-trame minière (terrils)", "wetland": "Sous-trame des zones humides"}
    rows = []
    for i in range(5):
        rid = f"2026113{i}T130222Z-b2b678f4-307f8b8{i}"
        for _title, _unit, series in HISTORY_PANELS:
            for family, indicator, st_filter, _label in series:
                for st in (sts if st_filter == "*" else [st_filter]):
                    rows.append({"release_id": rid, "released_at": f"2026-11-{10 + i}T13:02:22Z", "scope": "territory",
                                 "family": family, "indicator": indicator, "sous_trame": st, "value": 100.0 + i})
    fig = history_figure(pd.DataFrame(rows), sts, "Crédits : " + "source très longue · " * 30)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = fig.axes
    credit = fig.texts[-1].get_window_extent(renderer)
    for ax in axes:
        box = ax.get_window_extent(renderer)
        legend = ax.get_legend().get_window_extent(renderer)
        assert box.x0 - 1 <= legend.x0 and legend.x1 <= box.x1 + 1 and box.y0 - 1 <= legend.y0 and \
            legend.y1 <= box.y1 + 1, ax.get_title()
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all("T130222Z" not in t.get_text() for t in labels)
        for t in labels:
            ext = t.get_window_extent(renderer)
            assert not ext.overlaps(credit), t.get_text()
            for other in axes:
                if other is not ax:
                    assert not ext.overlaps(other.get_window_extent(renderer)), (t.get_text(), other.get_title())


@pytest.mark.integration             # headless Chromium
def test_report_at_phone_width_tables_scroll_inside(report):
    """At 390 px the report page keeps the screen width: wide tables scroll inside their container."""
    import shutil as _shutil

    if not (_shutil.which("chromium") or _shutil.which("chromium-browser")):
        pytest.skip("chromium not installed")
    from helpers.chromium import chromium

    tmp, _result, _html = report
    with chromium(390, 800) as page:
        page.viewport(390, 800, mobile=True)
        page.open((tmp / "report" / "index.html").as_uri())
        widths = page.eval("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], widths


def test_fractures_culverts_and_vigilance_points_are_presented():
    """The report section on what the method builds: severity-4 points by infrastructure, missing links with their
    own and combined scores, culverts, vigilance points; the summary splits the rupture points by kind."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    from tvb_tasks.publish.report.fractures import fracture_tables
    from tvb_tasks.publish.report.reading import plain_summary, rupture_counts

    def p(i, kind, infra, name, sev, ml=0, cid="forest-C001", cls="1", own=0.0):
        return {"id": f"P{i}", "corridor_id": cid, "sous_trame": "forest", "corridor_kind": kind,
                "infrastructure": infra, "infra_class": cls, "infra_name": name, "severity": sev,
                "missing_link": ml, "barrier_m": 25.0 if ml else 0.0, "cost_saved": own,
                "improvement_score": own / 25 if ml else 0.0, "geometry": Point(i, 0)}

    pts = gpd.GeoDataFrame([p(1, "terrestre", "road", "A21", 4, 1, own=250000.0),
                            p(2, "terrestre", "railway", "Ligne", 4, 1, cls="in_use"),
                            p(3, "reservoir", "road", "A21", 4, cid="forest-R001"),
                            p(4, "terrestre", "road", "D58", 3, cid="forest-C002", cls="3"),
                            p(5, "aquatique", "culvert", "D58", 3, cid="hors corridor", cls="road"),
                            p(6, "aquatique", "road", "N17", 2, cid="W001", cls="2")], crs=2154)
    cor = gpd.GeoDataFrame({"id": ["forest-C001"], "from_id": ["R1"], "to_id": ["R2"], "length_m": [1500.0],
                            "cost_saved": [260000.0]}, geometry=[LineString([(0, 0), (1, 1)])], crs=2154)
    vig = gpd.GeoDataFrame({"id": ["V0001", "V0002"], "sous_trame": ["forest", "forest"],
                            "infra_name": ["Voie communale", "Voie communale"]},
                           geometry=[Point(0, 1), Point(0, 2)], crs=2154)
    tables = fracture_tables({"rupture_points": pts, "corridors": cor, "vigilance_points": vig},
                             {"forest": "Sous-trame forestière"})
    titles = [t.title for t in tables]
    assert titles[0].startswith("Fractures") and "Liaisons manquantes" in titles[1]
    assert "Ouvrages busés" in titles[2] and "Points de vigilance" in titles[3]
    assert tables[0].rows[0][:5] == ["Route", "A21", "2", "1", "1"]          # by infrastructure, most points first
    assert tables[1].rows[0][3] == "Route A21"                              # type + name, never "Canal Canal …"
    a21 = next(r for r in tables[1].rows if "A21" in r[3])
    assert a21[4] == "1,50" and a21[5] == "260\u202f000" and a21[7] == "250\u202f000" and a21[8] == "10\u202f000"
    rail = next(r for r in tables[1].rows if "Ligne" in r[3])
    assert rail[7] == "0" and rail[8] == "0"                                # the railway alone saves nothing
    assert tables[2].rows == [["P5", "Route D58", "hors corridor", "3"]]
    assert tables[3].rows[-1] == ["Total", "2", "1"]
    counts = rupture_counts(pts)
    assert counts["kinds"] == {"corridor": 3, "reservoir": 1, "culvert": 1, "obstacle": 0, "bridge": 1,
                               "severity_4": 3, "missing_link": 2}
    doc = {"key_figures": {"rupture_points": 6, "vigilance_points": 2}}
    line = next(x for x in plain_summary("Scène", doc, synthetic=False, validation_ok=None, change=[], explanation="",
                                         n_communes=1, ruptures=counts) if "points de rupture" in x)
    assert "1 où une autoroute, une voie ferrée ou un canal traverse un réservoir" in line
    assert "1 ouvrages busés" in line and "1 ponts" in line and "3 sont des fractures" in line
    assert "2 points de vigilance" in line


def test_rupture_map_sets_fractures_and_vigilance_apart(tmp_path):
    import geopandas as gpd
    import matplotlib.pyplot as plt
    from shapely.geometry import LineString, Point

    from tvb_tasks.publish.report.fractures import draw_fractures

    pts = gpd.GeoDataFrame({"severity": [4, 3]}, geometry=[Point(0, 0), Point(1, 1)], crs=2154)
    cor = gpd.GeoDataFrame({"missing_link": [1, 0]}, geometry=[LineString([(0, 0), (2, 2)])] * 2, crs=2154)
    vig = gpd.GeoDataFrame({"severity": [2]}, geometry=[Point(2, 0)], crs=2154)
    fig, ax = plt.subplots()
    labels = [h.get_label() for h in draw_fractures(ax, pts, cor, vig)]
    plt.close(fig)
    assert labels == ["Liaison manquante (fracture) à rétablir", "Fracture : point de gravité 4",
                      "Point de vigilance (route locale, gravité 2)"]
    assert draw_fractures(plt.subplots()[1], pts.iloc[1:], cor.iloc[1:], None) == []


def test_fragmentation_note_explains_cbc_equal_to_cut():
    from tvb_tasks.publish.report import fragmentation_table

    doc = {"fragmentation": {
        "forest": {"libelle": "Forêt", "territory": {"meff_cut_ha": 2.0966, "meff_cbc_ha": 2.0966001}},
        "mining": {"libelle": "Terrils", "territory": {"meff_cut_ha": 0.44, "meff_cbc_ha": 0.45}}}}
    note = fragmentation_table(doc).note
    assert "CBC = CUT pour : Forêt." in note and "Terrils" not in note and "limite du territoire" in note

"""The production profile's configuration checks, without servers: every configuration problem printed on its own
line at default verbosity (source, field, value), the ``landuse_overlays`` checked against the publishers' schemas,
``open_values`` code lists (the ROE's descriptive labels), ``allow_empty`` optional layers (a protected-area layer
with no site in the territory) and the INPN PatriNat typenames.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from pydantic import ValidationError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from tvb_tasks.config import PROJECT_ROOT, load_territory
from tvb_tasks.sources import schemas
from tvb_tasks.sources.errors import SourceError

CALL = PROJECT_ROOT / "config" / "territories" / "call.yaml"
PROTECTED = ("znieff1", "sic", "zps", "apb", "rnn", "rnr")


def _config_dir(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """A copy of call.yaml with each (old, new) replaced once, in its own TVB_CONFIG_DIR."""
    text = CALL.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / "call.yaml").write_text(text, encoding="utf-8")
    return folder


# --- 1. every problem on its own line, without -v ----------------------------------------------------------------
def test_check_config_prints_every_problem_on_its_own_line(tmp_path, monkeypatch, capsys):
    from tvb_tasks.cli import main

    folder = _config_dir(tmp_path, ('"Forêt ouverte": forest, "Peupleraie": forest, "Haie": forest,',
                                    '"Forêt ouverte": forest, "Peupleraie": forest, "Haies": forest,'),
                         ('"Ecoulement naturel": stream, "Canal": canal,', '"Fossé": ditch, "Ecoulement naturel": stream, '
                                                                          '"Canal": canal,'),
                         ("      - source: water_surfaces\n        column: nature",
                          "      - source: water_surfaces\n        column: natur"))
    monkeypatch.setenv("TVB_CONFIG_DIR", str(folder))
    assert main(["check-config", "call", "--profile", "production"]) == 1      # a failure (usage errors exit 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "run with -v" not in err and "…" not in err, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("tvb: error: ") and "publishers' schemas" in lines[0], err
    details = lines[1:]
    assert len(details) == 3, err                          # one line per problem, none dropped or truncated
    assert any("'watercourses'" in d and "'nature'" in d and "'Fossé'" in d for d in details), err
    assert any("landuse_overlays[0]" in d and "'vegetation'" in d and "'nature'" in d and "'Haies'" in d
               for d in details), err
    assert any("landuse_overlays[1]" in d and "'water_surfaces'" in d and "'natur'" in d for d in details), err


def test_error_sentence_keeps_a_single_detail_on_the_line():
    from tvb_tasks.cli import error_sentence

    assert error_sentence(ValueError("validation failed:\n  - source 'roads': bad CRS")) == \
        "validation failed: source 'roads': bad CRS"
    many = error_sentence(ValueError("bad config:\n  - a\n  - b\n  - c"))
    assert many.splitlines() == ["bad config:", "  - a", "  - b", "  - c"]


# --- 2. landuse_overlays against the schemas ------------------------------------------------------------------------
def _overlays(territory, overlays):
    from tvb_tasks.config import LanduseOverlayConfig

    return territory.model_copy(update={"landuse_overlays": [LanduseOverlayConfig(**o) for o in overlays]})


def test_overlays_of_the_production_profile_pass():
    assert schemas.check_overlays(load_territory("call", "production")) == []


def test_overlay_class_key_and_column_are_checked_against_the_schema():
    t = load_territory("call", "production")
    bad = _overlays(t, [{"source": "vegetation", "column": "nature", "classes": {"Haies": "forest", "Bois": "forest"}},
                        {"source": "water_surfaces", "column": "natur", "classes": {"Mare": "water"}},
                        {"source": "vegetation", "column": "id", "classes": {"x": "forest"}},
                        {"source": "vegetation", "column": "cleabs", "classes": {"x": "forest"}}])
    errors = schemas.check_overlays(bad)
    assert len(errors) == 4, errors
    assert "landuse_overlays[3]" in errors[3] and "'cleabs'" in errors[3] and "'id'" in errors[3]
    assert "landuse_overlays[0]" in errors[0] and "'vegetation'" in errors[0] and "'Haies'" in errors[0] \
        and "'nature'" in errors[0]
    assert "landuse_overlays[1]" in errors[1] and "'natur'" in errors[1] and "bdtopo_surface_hydrographique" in errors[1]
    # `id` is the target of columns {id: cleabs}: its field cleabs has no code list
    assert "landuse_overlays[2]" in errors[2] and "'cleabs'" in errors[2] and "no code list" in errors[2]
    assert all(e in schemas.check_territory(bad) for e in errors)


def test_overlay_mapped_to_an_unknown_land_use_class_is_refused(tmp_path):
    from tvb_tasks.config import ConfigError

    folder = _config_dir(tmp_path, ('"Lande ligneuse": grassland}', '"Lande ligneuse": heath}'))
    with pytest.raises((ConfigError, ValueError)) as exc:
        load_territory(str(folder / "call.yaml"), "production")
    assert "landuse_overlays.0.classes.Lande ligneuse: unknown land-use class 'heath'" in str(exc.value)


# --- 4. open code lists -----------------------------------------------------------------------------------------------
def _roe(label: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"CdObstEcoul": ["ROE13740"], "NomPrincipalObstEcoul": ["Clapet de Chouzy"],
                             "CdTypeOuvrage": ["1.2"], "LbTypeOuvrage": [label], "LbEtOuvrage": ["Existant"],
                             "HautChutEtObstEcoul": [0.8], "LbHautChutClObstEcoul": ["De 0.5m à inférieure à 1m"],
                             "CdTypeDispFranchPiscicole1": [""], "LbTypeDispFranchPiscicole1": [""]},
                            geometry=[shapely.Point(0, 0)], crs=2154)


def test_roe_sub_type_label_is_accepted_and_an_unlisted_one_warned(caplog):
    cfg = load_territory("call", "production").sources["river_obstacles"]
    schemas.check_layer(_roe("Seuil en rivière radier"), "river_obstacles", cfg)       # a documented sub-type
    with caplog.at_level(logging.WARNING, logger="tvb_tasks.sources.schemas"):
        schemas.check_layer(_roe("Seuil en rivière autre"), "river_obstacles", cfg)
    assert "'Seuil en rivière autre'" in caplog.text and "open_values" in caplog.text
    bad = _roe("Seuil en rivière radier").assign(LbEtOuvrage=["Démoli"])                 # a closed list still stops
    with pytest.raises(SourceError, match=r"LbEtOuvrage.*Démoli"):
        schemas.check_layer(bad, "river_obstacles", cfg)


def test_roe_schema_spells_epis_like_the_publisher():
    roe = schemas.load_schema("sandre_roe")
    assert roe["fields"]["CdTypeOuvrage"]["values"]["1.4"] == "Epis en rivière"
    assert "Epis en rivière" in roe["fields"]["LbTypeOuvrage"]["values"]
    assert not any("Épis" in str(v) for f in roe["fields"].values() for v in (f.get("values") or {}))


def test_open_values_flag_is_validated(tmp_path, monkeypatch):
    from tvb_tasks.config import ConfigError

    (tmp_path / "x.yaml").write_text("id: x\ntypename: a:b\nfields:\n  f: {type: string, open_values: yes please,"
                                     " values: {a: a}}\n", encoding="utf-8")
    (tmp_path / "y.yaml").write_text("id: y\ntypename: a:b\nfields:\n  f: {type: string, open_values: true}\n",
                                     encoding="utf-8")
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    monkeypatch.setattr(schemas, "PROJECT_ROOT", tmp_path)
    schemas.load_schema.cache_clear()
    try:
        for sid in ("x", "y"):
            with pytest.raises(ConfigError, match="open_values"):
                schemas.load_schema(sid)
    finally:
        schemas.load_schema.cache_clear()


# --- 5. optional (possibly empty) layers ------------------------------------------------------------------------------
def test_production_protected_areas_are_optional_patrinat_layers():
    t = load_territory("call", "production")
    for name in PROTECTED:
        src = t.sources[name]
        assert src.allow_empty is True, name
        assert src.typename == f"patrinat_{name}:{name}", name
        schema = schemas.load_schema(src.schema_id)
        assert schema["typename"] == src.typename and schema.get("typename_verified") is True
        assert set(src.columns.values()) <= set(schema["fields"]), name
    assert not t.sources["roads"].allow_empty                     # default: an empty layer stops the run


def test_allow_empty_must_be_a_boolean(tmp_path):
    folder = _config_dir(tmp_path, ("        constant_columns: {protection_type: RNN}\n        allow_empty: true",
                                    "        constant_columns: {protection_type: RNN}\n        allow_empty: sometimes"))
    with pytest.raises(Exception) as exc:
        load_territory(str(folder / "call.yaml"), "production")
    assert "allow_empty" in str(exc.value)
    assert isinstance(exc.value, ValidationError) or "allow_empty" in str(exc.value)


@pytest.fixture(scope="module")
def gate_territory(tmp_path_factory):
    """The production CALL whose boundary is a 10 km box (a local file), for the validation gate."""
    folder = tmp_path_factory.mktemp("gate")
    box = shapely.box(650_000, 7_030_000, 660_000, 7_040_000)
    boundary = folder / "territory.gpkg"
    gpd.GeoDataFrame({"siren": ["246200364"], "nom": ["box"]}, geometry=[box], crs=2154).to_file(boundary)
    t = load_territory("call", "production")
    sources = dict(t.sources)
    sources["territory"] = load_territory("call").sources["territory"].model_copy(
        update={"path": str(boundary), "layer": None})
    return t.model_copy(update={"sources": sources}), folder


def _empty_protected(folder: Path) -> Path:
    path = folder / "empty_rnn.parquet"
    gpd.GeoDataFrame({"id": [], "name": [], "protection_type": []}, geometry=[], crs=2154).to_parquet(path)
    return path


def test_empty_optional_layer_passes_the_gate_and_a_required_one_does_not(gate_territory, tmp_path):
    from tvb_tasks.validate.gate import source_severity_overrides, validate_source

    territory, folder = gate_territory
    snap = _empty_protected(folder)
    ok = validate_source(territory, "rnn", snap, previous_path=None, out_dir=tmp_path / "a")
    assert ok["success"], ok["critical_failures"]
    assert ok["row_count"] == 0
    required = territory.sources["rnn"].model_copy(update={"allow_empty": False})
    strict = territory.model_copy(update={"sources": {**territory.sources, "rnn": required}})
    refused = validate_source(strict, "rnn", snap, previous_path=None, out_dir=tmp_path / "b")
    assert not refused["success"]
    assert "row_count_non_empty" in {f["expectation"] for f in refused["critical_failures"]}
    # an explicit validation severity wins over allow_empty
    from tvb_tasks.validate.settings import ValidationSettings

    settings = ValidationSettings(sources={"rnn": {"severity": {"row_count_non_empty": "critical"}}})
    assert source_severity_overrides(territory, settings, "source_protected_areas", "rnn") == \
        {"row_count_non_empty": "critical"}
    assert source_severity_overrides(territory, ValidationSettings(), "source_protected_areas", "rnn") == \
        {"row_count_non_empty": "info"}
    assert source_severity_overrides(territory, ValidationSettings(), "source_roads", "roads") == {}


# --- 6. railway statuses ------------------------------------------------------------------------------------------------
def test_planned_railway_is_neither_a_barrier_nor_a_cavalier():
    t = load_territory("call", "production")
    statuses = t.sources["railways"].value_maps["status"]
    by_status = t.friction.infrastructure.railways.by_status
    cavalier_statuses = t.friction.overlays["cavaliers"].where["status"]
    planned = statuses["En projet"]
    assert by_status[planned] is None and planned not in cavalier_statuses     # not on the ground yet
    assert by_status[statuses["En construction"]] and by_status[statuses["En service"]]   # works sites are fenced
    assert statuses["Non exploité"] in cavalier_statuses                        # the cavaliers
    assert set(statuses.values()) <= set(by_status)

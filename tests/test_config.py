"""Territory configuration: loading, profiles, references and clear errors."""
from pathlib import Path

import pytest
import yaml

from tvb_tasks.config import PROJECT_ROOT, ConfigError, list_territories, load_territory

CALL = Path(__file__).resolve().parent.parent / "config" / "territories" / "call.yaml"


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(CALL.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / f"{raw['id']}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_call_loads_with_sample_sources():
    t = load_territory("call")
    assert t.id == "call" and t.crs == "EPSG:2154" and t.profile == "default"
    assert {s.kind for s in t.sources.values()} == {"file"}
    assert set(t.terrestrial_sous_trames) == {"forest", "grassland", "mining"}
    assert t.wet_sous_trames == ["wetland"]
    assert t.resolve_path(t.sources["landuse"].path).name == "landuse.gpkg"
    assert "call" in list_territories()


def test_production_profile_replaces_sources_by_name():
    t = load_territory("call", "production")
    assert t.sources["roads"].kind == "wfs"
    assert t.sources["roads"].typename == "BDTOPO_V3:troncon_de_route"
    assert t.sources["terrils"].kind == "file"          # not overridden: kept from the default profile
    assert t.config_hash() != load_territory("call").config_hash()


def test_config_hash_is_stable_and_sensitive(tmp_path):
    assert load_territory("call").config_hash() == load_territory("call").config_hash()
    other = _write(tmp_path, lambda r: r.update(resolution_m=50))
    assert load_territory(other).config_hash() != load_territory("call").config_hash()


def test_a_second_territory_is_just_a_yaml_file(tmp_path, monkeypatch):
    _write(tmp_path, lambda r: r.update(id="other", name="Autre territoire"))
    monkeypatch.setenv("TVB_CONFIG_DIR", str(tmp_path))
    assert list_territories() == ["other"]
    assert load_territory("other").name == "Autre territoire"


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["sous_trames"]["forest"].update(habitat=["jungle"]), "unknown land-use class 'jungle'"),
    (lambda r: r.update(boundary={"source": "nowhere"}), "boundary.source names unknown source 'nowhere'"),
    (lambda r: r["friction"]["landuse"]["forest"].pop("wetland"), "no value for sous-trames ['wetland']"),
    (lambda r: r["sources"]["roads"].update(kind="ftp"), "sources.roads"),
    (lambda r: r["sources"]["roads"].update(kind="wfs", url="https://u:secret@example.org/wfs", typename="x"),
     "credentials in a source URL"),
    (lambda r: r["sous_trames"]["forest"].update(relay_min_area_ha=50), "relay_min_area_ha must not exceed"),
    (lambda r: r["landuse"].update(code_columns=["code_cs"], rules=[{"code_xx": "A", "class": "forest"}]),
     "not in code_columns"),
    (lambda r: r.update(nomenclature="ocs3000"), "unknown nomenclature 'ocs3000' (known: clc, ocs2d, ocs_ge)"),
    (lambda r: r["profiles"]["production"].update(landuse_overlays=[{"source": "nowhere", "column": "nature",
                                                                      "classes": {}}]), None),
])
def test_invalid_configs_name_the_file_and_field(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_territory(path, "production" if message is None else None)
    assert str(path) in str(err.value)
    assert (message or "landuse_overlays.0: unknown source 'nowhere'") in str(err.value).replace("[0]", ".0")


def test_unknown_territory_and_profile(tmp_path):
    with pytest.raises(ConfigError, match=r"no territory configuration .*known territories: .*call"):
        load_territory("atlantis")
    with pytest.raises(ConfigError, match="invalid territory id"):
        load_territory("../etc/passwd")
    with pytest.raises(ConfigError, match="unknown profile 'staging'"):
        load_territory("call", "staging")


@pytest.mark.parametrize("nomenclature, rules_file", [("ocs_ge", "ocs_ge"), ("ocs2d", "ocs2d"), ("clc", "clc")])
def test_one_line_switches_the_nomenclature(tmp_path, nomenclature, rules_file):
    """`nomenclature: <id>` in the production profile picks the code list, the rules and the land-use source."""
    import yaml as _yaml

    raw = _yaml.safe_load((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["production"]["nomenclature"] = nomenclature
    path = tmp_path / "call.yaml"
    path.write_text(_yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    t = load_territory(path, "production")
    rules = _yaml.safe_load((PROJECT_ROOT / f"config/nomenclatures/{rules_file}.yaml").read_text(encoding="utf-8"))
    assert t.nomenclature.id == nomenclature and t.nomenclature.file == rules["codes_file"]
    assert [r.class_ for r in t.landuse.rules] == [r["class"] for r in rules["rules"]]
    assert [n for n, s in t.sources.items() if s.role == "landuse"] == [f"landuse_{nomenclature}"]
    assert "protected_areas" not in t.sources            # dropped by `protected_areas: null`
    assert (t.nomenclature.warning is not None) == (nomenclature == "clc")


def test_default_profile_keeps_the_sample_and_its_ocs2d_rules():
    t = load_territory("call")
    assert t.nomenclature.id == "ocs2d" and t.landuse.rules[0].model_extra == {"code_us": "US1.3"}
    assert {"landuse", "protected_areas"} <= set(t.sources) and t.landuse_overlays == []

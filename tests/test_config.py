"""Territory configuration: loading, profiles, references and clear errors."""
from pathlib import Path

import pytest
import yaml

from tvb_tasks.config import ConfigError, list_territories, load_territory

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
    (lambda r: r["landuse"]["rules"].append({"code_xx": "A", "class": "forest"}), "not in code_columns"),
])
def test_invalid_configs_name_the_file_and_field(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_territory(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_unknown_territory_and_profile(tmp_path):
    with pytest.raises(ConfigError, match="no territory configuration .*known territories: .*call"):
        load_territory("atlantis")
    with pytest.raises(ConfigError, match="invalid territory id"):
        load_territory("../etc/passwd")
    with pytest.raises(ConfigError, match="unknown profile 'staging'"):
        load_territory("call", "staging")

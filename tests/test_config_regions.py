"""Region configuration (config/regions/<id>.yaml): typed, unknown keys refused with their path, members checked
(exist, distinct, one CRS), clear errors naming the region file and the member; ``tvb check-config`` on a region."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.yamlio import dump_yaml, load_yaml
from tvb_tasks.cli import main
from tvb_tasks.config import ConfigError, load_territory
from tvb_tasks.config_regions import is_region, list_regions, load_region, region_members, regions_dir

CALL = Path(__file__).resolve().parent.parent / "config" / "territories" / "call.yaml"


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A territories folder with call and call_voisin (a copy with its own id) and an empty regions folder next to
    it (the default place: <TVB_CONFIG_DIR>/../regions)."""
    territories, regions = tmp_path / "territories", tmp_path / "regions"
    territories.mkdir()
    regions.mkdir()
    raw = load_yaml(CALL.read_text(encoding="utf-8"))
    (territories / "call.yaml").write_text(CALL.read_text(encoding="utf-8"), encoding="utf-8")
    raw.update(id="call_voisin", name="Voisin synthétique")
    (territories / "call_voisin.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("TVB_CONFIG_DIR", str(territories))
    monkeypatch.delenv("TVB_REGIONS_DIR", raising=False)
    return territories, regions


def write_region(regions: Path, **fields) -> Path:
    raw = {"id": "duo", "name": "CALL et voisin", "members": ["call", "call_voisin"], **fields}
    path = regions / f"{raw['id']}.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_a_region_is_a_yaml_next_to_the_territories(folders):
    _, regions = folders
    write_region(regions)
    assert regions_dir() == regions and list_regions() == ["duo"]
    region = load_region("duo")
    assert region.members == ["call", "call_voisin"] and region.name == "CALL et voisin"
    assert [t.id for t in region_members(region)] == ["call", "call_voisin"]
    assert region.config_hash() == load_region("duo").config_hash()
    assert is_region("duo") and not is_region("call")


def test_regions_dir_override(folders, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("TVB_REGIONS_DIR", str(other))
    assert regions_dir() == other and list_regions() == []


@pytest.mark.parametrize("fields, message", [
    ({"memebrs": ["call"]}, "memebrs: unknown key (did you mean 'members'?)"),
    ({"publish": {"public_base_url": "https://x.org", "colour": "red"}}, "publish.colour: unknown key"),
    ({"members": ["call", "call"]}, "member 'call' is listed twice"),
    ({"members": []}, "members: List should have at least 1 item"),
    ({"members": ["call", "atlantis"]}, "member 'atlantis' has no territory configuration"),
    ({"id": "call"}, "region id 'call' is also a territory id"),
    ({"id": "Bad Id"}, "region id must be lowercase"),
])
def test_invalid_regions_name_the_file_and_the_problem(folders, fields, message):
    _, regions = folders
    path = write_region(regions, **fields)
    with pytest.raises(ConfigError) as err:
        load_region(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_a_member_with_another_crs_or_an_invalid_yaml_is_named(folders):
    territories, regions = folders
    path = write_region(regions)
    raw = load_yaml((territories / "call_voisin.yaml").read_text(encoding="utf-8"))
    (territories / "call_voisin.yaml").write_text(dump_yaml({**raw, "crs": "EPSG:3949"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"member 'call_voisin' has CRS EPSG:3949, member 'call' has EPSG:2154"):
        load_region(path)
    (territories / "call_voisin.yaml").write_text(dump_yaml({**raw, "resolution_m": 1}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duo.yaml: member 'call_voisin' has an invalid configuration"):
        load_region(path)


def test_file_name_must_be_the_id(folders):
    _, regions = folders
    path = write_region(regions)
    path.rename(regions / "copy.yaml")
    with pytest.raises(ConfigError, match=r"file name 'copy\.yaml' differs from its id 'duo'"):
        load_region(regions / "copy.yaml")


def test_check_config_checks_a_region(folders, capsys):
    _, regions = folders
    path = write_region(regions)
    assert main(["check-config", "duo"]) == 0
    assert "valid region (2 members: call, call_voisin" in capsys.readouterr().out
    write_region(regions, members=["call", "nowhere"])
    assert main(["check-config", str(path)]) != 0
    assert "member 'nowhere' has no territory configuration" in capsys.readouterr().err


def test_a_region_file_given_as_a_territory_gets_one_clear_line(folders, capsys):
    """A region YAML copied into the territories' folder (or checked as a territory): one line saying where regions
    go, not one "Field required" line per territory section."""
    territories, regions = folders
    copied = territories / "duo.yaml"
    write_region(regions).rename(copied)
    for command in (["check-config", "duo"], ["check-config", str(copied)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"{copied}: this looks like a region file (it has `members`): regions go in config/regions/" in err
        assert "Field required" not in err and "also a territory id" not in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="this looks like a region file"):
        load_territory(copied)


def test_a_territory_file_given_as_a_region_gets_one_clear_line(folders, capsys):
    _, regions = folders
    (regions / "call.yaml").write_text(CALL.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_region("call")
    assert str(err.value) == (f"{regions / 'call.yaml'}: this looks like a territory file (it has `sources` and no "
                              "`members`): territories go in config/territories/ (TVB_CONFIG_DIR), regions in "
                              "config/regions/ (TVB_REGIONS_DIR)")

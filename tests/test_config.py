"""Territory configuration: loading, profiles, references and clear errors."""
import datetime
from pathlib import Path

import pytest
import yaml

from helpers.yamlio import dump_yaml
from tvb_tasks.config import PROJECT_ROOT, ConfigError, list_territories, load_territory, load_yaml

CALL = Path(__file__).resolve().parent.parent / "config" / "territories" / "call.yaml"


def _write(tmp_path: Path, mutate) -> Path:
    raw = load_yaml(CALL.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / f"{raw['id']}.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
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
    (lambda r: r.update(boundary={"source": "nowhere"}), "  - boundary.source: unknown source 'nowhere'"),
    (lambda r: r["friction"]["landuse"]["forest"].pop("wetland"), "no value for sous-trames ['wetland']"),
    (lambda r: r["sources"]["roads"].update(kind="ftp"), "sources.roads"),
    (lambda r: r["sources"]["roads"].update(kind="wfs", url="https://u:secret@example.org/wfs", typename="x"),
     "credentials in a source URL"),
    (lambda r: r["sous_trames"]["forest"].update(relay_min_area_ha=50), "relay_min_area_ha must not exceed"),
    (lambda r: r["landuse"].update(code_columns=["code_cs"], rules=[{"code_xx": "A", "class": "forest"}]),
     "landuse: rules.0: unknown key(s) ['code_xx']"),
    (lambda r: r.update(nomenclature="ocs3000"), "unknown nomenclature 'ocs3000' (known: clc, ocs2d, ocs_ge)"),
    (lambda r: r["profiles"]["production"].update(landuse_overlays=[{"source": "nowhere", "column": "nature",
                                                                      "classes": {}}]), None),
    # an overlay's features are read by role with required=False: a role no source has would burn nothing
    (lambda r: r["friction"]["overlays"]["cavaliers"].update(role="railway"),
     "  - friction.overlays.cavaliers.role: unknown source role 'railway' (did you mean 'railways'?)"),
    (lambda r: r["friction"]["overlays"]["cavaliers"].update(role="osm"),
     "  - friction.overlays.cavaliers.role: no source of role 'osm' in this territory"),
])
def test_invalid_configs_name_the_file_and_field(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_territory(path, "production" if message is None else None)
    assert str(path) in str(err.value)
    assert (message or "  - landuse_overlays.0.source: unknown source 'nowhere'") in str(err.value)
    assert "(top level)" not in str(err.value)          # a cross-reference error names its key's path


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
    raw = load_yaml((PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["production"]["nomenclature"] = nomenclature
    path = tmp_path / "call.yaml"
    path.write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    t = load_territory(path, "production")
    rules = load_yaml((PROJECT_ROOT / f"config/nomenclatures/{rules_file}.yaml").read_text(encoding="utf-8"))
    assert t.nomenclature.id == nomenclature and t.nomenclature.file == rules["codes_file"]
    assert [r.class_ for r in t.landuse.rules] == [r["class"] for r in rules["rules"]]
    assert [n for n, s in t.sources.items() if s.role == "landuse"] == [f"landuse_{nomenclature}"]
    assert "protected_areas" not in t.sources            # dropped by `protected_areas: null`
    assert (t.nomenclature.warning is not None) == (nomenclature == "clc")


def test_default_profile_keeps_the_sample_and_its_ocs2d_rules():
    t = load_territory("call")
    assert t.nomenclature.id == "ocs2d" and t.landuse.rules[0].codes == {"code_us": "US1.3"}
    assert {"landuse", "protected_areas"} <= set(t.sources) and t.landuse_overlays == []


# --- one typed schema: every key of every section is declared; an unknown one is refused with its path ---------------
def _rename(section: str, new: str):
    return lambda r: r.update({new: r.pop(section)})


def _rename_key(where: str, old: str, new: str):
    """Rename the key ``old`` of the mapping at the dotted path ``where`` (its value kept)."""
    def mutate(raw: dict) -> None:
        for key in where.split("."):
            raw = raw[key]
        raw[new] = raw.pop(old)
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_rename("indicators", "indicatorz"), "  - indicatorz: unknown key (did you mean 'indicators'?)"),
    (lambda r: r.update(validation={"bogus_key": 1}), "  - validation.bogus_key: unknown key"),
    (lambda r: r["validation"]["sources"]["terrils"].update(repair_geometry=True),
     "  - validation.sources.terrils.repair_geometry: unknown key (did you mean 'repair_geometries'?)"),
    (lambda r: r["corridors"]["status"].update(existing_max_mean_friction=5),
     "  - corridors.status.existing_max_mean_friction: unknown key (no longer used"),
    (lambda r: r["corridors"]["status"].update(restore_max_mean_friction=30),
     "  - corridors.status.restore_max_mean_friction: unknown key (no longer used"),
    (lambda r: r["tiling"].update(tile_sise=512), "  - tiling.tile_sise: unknown key (did you mean 'tile_size'?)"),
    (lambda r: r["indicators"]["connectivity"].update(top=5), "  - indicators.connectivity.top: unknown key"),
    (lambda r: r["priorities"]["weights"].update(gains=1), "  - priorities.weights.gains: unknown key"),
    (lambda r: r["priorities"].update(corridor_statuses=["to_restore", "broken"]),
     "  - priorities.corridor_statuses.1: Input should be 'existing', 'to_restore' or 'to_create'"),
    (lambda r: r["screening"].update(corridor_efect="remove"), "  - screening.corridor_efect: unknown key"),
    (lambda r: r["fiches"]["forest"].update(generale="x"), "  - fiches.forest.generale: unknown key"),
    (lambda r: r["fiches"]["forest"]["landuse"].update(jungle="x"), "  - fiches.forest.landuse.jungle: unknown land-use class"),
    (lambda r: r["publish"].update(credit={}), "  - publish.credit: unknown key (did you mean 'credits'?)"),
    (lambda r: r["publish"]["basemap"]["production"].update(max_zom=3),
     "  - publish.basemap.production.max_zom: unknown key (did you mean 'max_zoom'?)"),
    (lambda r: r["publish"].update(public_base_url="ftp://x"), "  - publish.public_base_url: String should match"),
    (lambda r: r["sources"]["roads"].update(page_sise=100), "  - sources.roads.page_sise: unknown key"),
    (lambda r: r["profiles"]["production"]["sources"]["communes"]["filter"].update(opp="like"),
     "  - profiles.production.sources.communes.filter.opp: unknown key (did you mean 'op'?)"),
    (lambda r: r["profiles"]["production"].update(nomenclatur="clc"),
     "  - profiles.production.nomenclatur: unknown key (did you mean 'nomenclature'?)"),
    (lambda r: r["sous_trames"]["forest"].update(extra_habitat_sources=[{"source": "terrils", "exclud": {}}]),
     "  - sous_trames.forest.extra_habitat_sources.0.exclud: unknown key (did you mean 'exclude'?)"),
    (lambda r: r["friction"]["infrastructure"].update(canals={"friction": 5, "rul": "max"}),
     "  - friction.infrastructure.canals.rul: unknown key (did you mean 'rule'?)"),
    (lambda r: r["schedule"].update(cron="x"), "  - schedule.cron: unknown key (known: fetch_cron)"),
    # keys that are the NAME of another thing of the YAML: checked against what they name (tvb_tasks.config_checks)
    (_rename_key("fiches", "forest", "forst"), "  - fiches.forst: unknown sous-trame (did you mean 'forest'?)"),
    (_rename_key("publish.credits", "default", "defualt"),
     "  - publish.credits.defualt: unknown profile (did you mean 'default'?)"),
    (_rename_key("publish.basemap", "production", "productoin"),
     "  - publish.basemap.productoin: unknown profile: profiles: declares 'production', not 'productoin' (one of "
     "the two names is misspelt)"),
    (_rename_key("profiles", "production", "prodution"),         # the profile's own name misspelt
     "  - publish.basemap.production: unknown profile: profiles: declares 'prodution', not 'production' (one of "
     "the two names is misspelt)"),
    (_rename_key("publish.credits.default", "territory", "terrtory"),
     "  - publish.credits.default.terrtory: unknown source (did you mean 'territory'?)"),
    (_rename_key("validation.sources", "terrils", "terils"),
     "  - validation.sources.terils: unknown source (did you mean 'terrils'?)"),
    (_rename_key("priorities.conflict.stage_weights", "planned", "planed"),
     "  - priorities.conflict.stage_weights.planed: unknown project stage (did you mean 'planned'?)"),
    (_rename_key("friction.landuse.forest", "grassland", "grasland"),
     "  - friction.landuse.forest.grasland: unknown sous-trame (did you mean 'grassland'?)"),
    (_rename_key("friction.landuse", "forest", "forst"),
     "  - friction.landuse.forst: unknown land-use class (did you mean 'forest'?)"),
    (lambda r: r["sous_trames"]["forest"].update(extra_habitat_sources=["teril"]),
     "  - sous_trames.forest.extra_habitat_sources.0: unknown source 'teril' (did you mean 'terrils'?)"),
])
def test_an_unknown_key_anywhere_is_refused_with_its_path(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_territory(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)
    assert "(top level)" not in str(err.value)
    assert "WfsFilter" not in str(err.value) and "list[" not in str(err.value)   # no union member names


def test_a_misspelt_key_of_a_profile_source_is_reported_once_where_it_is_written(tmp_path):
    """Under --profile production, the profile's sources are validated where the YAML writes them
    (profiles.production.sources.<name>) and where the profile puts them (sources.<name>): one line, the first."""
    path = _write(tmp_path, _rename_key("profiles.production.sources.territory", "typename", "typenme"))
    for profile in ("default", "production"):
        with pytest.raises(ConfigError) as err:
            load_territory(path, profile)
        assert str(err.value).splitlines()[1:] == [
            "  - profiles.production.sources.territory.typenme: unknown key (did you mean 'typename'?)"], str(err.value)


def test_a_per_source_setting_may_name_a_source_of_any_profile(tmp_path):
    """validation.sources / publish.credits name sources of the territory in any profile: a source that only the
    production profile adds (or that the default profile's nomenclature drops) is no misspelling."""
    raw = load_yaml(CALL.read_text(encoding="utf-8"))
    only_production = sorted(set(raw["profiles"]["production"]["sources"]) - set(raw["sources"]))
    assert only_production, "the production profile adds sources of its own"

    def mutate(r):
        r["validation"]["sources"][only_production[0]] = {"repair_geometries": True}
        r["publish"]["credits"]["default"][only_production[0]] = "x"
        r["publish"]["credits"]["production"] = {only_production[0]: "y"}
    path = _write(tmp_path, mutate)
    for profile in ("default", "production"):
        assert load_territory(path, profile).validation.sources[only_production[0]].repair_geometries


def test_project_stages_are_those_of_the_sample_and_of_the_french_words():
    """The vocabulary `priorities.conflict.stage_weights` is checked against: the sample planning layer's stages, the
    French words of the sheets, the default weights."""
    import pyogrio

    from tvb_tasks.config_sections import PROJECT_STAGES, ConflictConfig
    from tvb_tasks.priorities.stage import PROJECT_WORDS

    stages = set(pyogrio.read_dataframe(PROJECT_ROOT / "sample/call/planning.gpkg", layer="projects",
                                        read_geometry=False)["stage"])
    assert stages <= set(PROJECT_STAGES) and len(stages) >= 3
    assert set(PROJECT_WORDS["stage"]) == set(PROJECT_STAGES) == set(ConflictConfig().stage_weights)


def test_an_unknown_profile_key_is_refused_with_its_path_when_the_profile_is_applied(tmp_path):
    path = _write(tmp_path, lambda r: r["profiles"].update(staging={"sources": {}, "landuse_overlay": []}))
    with pytest.raises(ConfigError, match=r"profiles\.staging\.landuse_overlay: unknown key"):
        load_territory(path, "staging")


def test_every_section_is_a_typed_field():
    from tvb_tasks.config import Territory
    from tvb_tasks.config_sections import (
        IndicatorsConfig,
        PrioritiesConfig,
        PublishConfig,
        TilingConfig,
        ValidationSettings,
    )

    raw = load_yaml(CALL.read_text(encoding="utf-8"))
    assert set(raw) <= set(Territory.model_fields)          # every section of call.yaml is declared
    t = load_territory("call")
    assert isinstance(t.indicators, IndicatorsConfig) and isinstance(t.validation, ValidationSettings)
    assert isinstance(t.tiling, TilingConfig) and isinstance(t.priorities, PrioritiesConfig)
    assert isinstance(t.publish, PublishConfig) and t.publish.basemap["production"].max_zoom == 19
    assert t.validation.territory_buffer_m == 3000 and t.validation.for_source("terrils").repair_geometries
    assert t.fiches["forest"].landuse["farmland"].startswith("Planter des haies")
    assert t.sources["terrils"].schema_id == "mbm_bassin_minier" and t.sources["projects"].synthetic is True


def test_landuse_rules_carry_their_code_columns_in_a_typed_mapping():
    from tvb_tasks.config import LanduseRule, Territory

    rule = LanduseRule.model_validate({"class": "forest", "code_cs": "CS2.1", "code_us": 1})
    assert rule.class_ == "forest" and rule.codes == {"code_cs": "CS2.1", "code_us": "1"}
    assert rule.model_dump(by_alias=True) == {"class": "forest", "code_cs": "CS2.1", "code_us": "1"}   # YAML shape
    with pytest.raises(ValueError, match="take a code"):
        LanduseRule.model_validate({"class": "forest", "code_cs": ["CS2"]})
    # the run configuration travels between tasks as JSON (pipeline: run["config"]) and comes back identical
    t = load_territory("call", "production")
    again = Territory.model_validate(t.model_dump(mode="json", by_alias=True))
    assert again.landuse == t.landuse and again.sources == t.sources and again.config_hash() == t.config_hash()
    assert [r.codes for r in again.landuse.rules] == [r.codes for r in t.landuse.rules]


def test_source_options_list_only_what_the_yaml_sets():
    """The fetchers' mapping (and so an HTTP source's parameters hash) does not change when options are declared."""
    t = load_territory("call", "production")
    opts = t.sources["roads"].options()
    assert opts["schema"] == "bdtopo_troncon_de_route" and opts["sort_by"] == "cleabs"
    assert "page_size" not in opts and "timeout_s" not in opts and "layer" in opts      # core keys always listed
    assert t.sources["communes"].options()["filter"] == {"property": "codes_siren_des_epci", "value": "*246200364*",
                                                         "op": "like"}
    assert t.sources["roads"].model_copy(update={"timeout_s": 5.0}).options()["timeout_s"] == 5.0


def test_every_bundled_yaml_loads():
    """call.yaml in each profile, with each nomenclature of config/nomenclatures/ (test_one_line_switches_…)."""
    for territory in list_territories():
        raw = load_yaml((PROJECT_ROOT / "config/territories" / f"{territory}.yaml").read_text(encoding="utf-8"))
        for profile in ["default", *(raw.get("profiles") or {})]:
            assert load_territory(territory, profile).profile == profile


def test_a_nomenclature_definition_with_an_unknown_key_is_refused(tmp_path, monkeypatch):
    import tvb_tasks.config as config

    folder = tmp_path / "config" / "nomenclatures"
    folder.mkdir(parents=True)
    good = load_yaml((PROJECT_ROOT / "config/nomenclatures/clc.yaml").read_text(encoding="utf-8"))
    (folder / "clc.yaml").write_text(dump_yaml({**good, "default_clas": "farmland"}), encoding="utf-8")
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    with pytest.raises(ConfigError, match=r"clc.yaml: unknown key\(s\) \['default_clas'\]"):
        config.nomenclature_definition("clc")
    for nomenclature in ("clc", "ocs2d", "ocs_ge"):          # the bundled ones are clean
        monkeypatch.setattr(config, "PROJECT_ROOT", PROJECT_ROOT)
        assert config.nomenclature_definition(nomenclature)[1]["id"] == nomenclature


def test_a_copied_yaml_whose_id_was_not_changed_is_refused(tmp_path, monkeypatch):
    """Two files of the config folder with one id would make the same DAG ids: the copy is refused, naming both."""
    monkeypatch.setenv("TVB_CONFIG_DIR", str(tmp_path))
    original = _write(tmp_path, lambda r: None)
    copy = tmp_path / "lens.yaml"
    copy.write_text(original.read_text(encoding="utf-8"), encoding="utf-8")
    assert list_territories() == ["call", "lens"]
    assert load_territory("call").id == "call"                      # the original keeps working
    with pytest.raises(ConfigError) as err:
        load_territory("lens")
    message = str(err.value)
    assert "file name 'lens.yaml' differs from its id 'call'" in message and str(original) in message
    copy.write_text(original.read_text(encoding="utf-8").replace("id: call", "id: lens", 1), encoding="utf-8")
    assert load_territory("lens").id == "lens"


def test_a_file_of_the_config_folder_is_named_after_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("TVB_CONFIG_DIR", str(tmp_path))
    path = _write(tmp_path, lambda r: r.update(id="other"))
    path.rename(tmp_path / "renamed.yaml")
    with pytest.raises(ConfigError, match=r"file name 'renamed\.yaml' differs from its id 'other'"):
        load_territory("renamed")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "renamed.yaml").rename(moved / "renamed.yaml")        # outside the config folder: any file name
    assert load_territory(moved / "renamed.yaml").id == "other"


def test_sections_are_typed_fields_and_a_copied_mapping_is_validated():
    from tvb_tasks.config import typed_section
    from tvb_tasks.config_sections import IndicatorsConfig, TilingConfig

    t = load_territory("call")
    assert typed_section(t, "indicators", IndicatorsConfig) is t.indicators      # no re-validation
    assert isinstance(t.tiling, TilingConfig) and isinstance(t.indicators, IndicatorsConfig)
    copied = t.model_copy(update={"tiling": {"enabled": True, "dag_rounds": 3}})  # model_copy does not validate
    assert typed_section(copied, "tiling", TilingConfig).dag_rounds == 3
    with pytest.raises(ConfigError, match=r"tiling\.dag_rounds: .*greater than or equal to 1"):
        typed_section(t.model_copy(update={"tiling": {"dag_rounds": 0}}), "tiling", TilingConfig)


def test_load_yaml_reads_plain_data_like_safe_load_and_refuses_python_tags():
    text = (PROJECT_ROOT / "config" / "territories" / "call.yaml").read_text(encoding="utf-8")
    assert load_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):           # a safe loader: no object built from a tag
        load_yaml("!!python/object/apply:os.getcwd []")


def test_load_yaml_gives_every_caller_its_own_copy_and_does_not_keep_errors():
    """Parsed texts are kept (the DAG files, the CLI and the stages read the same YAML again and again): a caller
    that changes what it got does not change what the next caller gets, and a bad text fails every time."""
    text = "a: [1, 2]\nb: {c: 2024-05-01}\n"
    first = load_yaml(text)
    first["a"].append(3)
    first["b"]["c"] = None
    second = load_yaml(text)
    assert second == {"a": [1, 2], "b": {"c": datetime.date(2024, 5, 1)}} and second is not first
    for _ in range(2):
        with pytest.raises(yaml.YAMLError):
            load_yaml("a: [1, 2")


def test_a_run_on_chosen_sous_trames_records_a_configuration_that_validates_again():
    """A run of some sous-trames (the trigger form's choice) records its configuration; every later task rebuilds
    the territory from it. Every sous-trame stays configured (friction values, fiches): only the ones computed
    are restricted (``run_sous_trames``), which the rebuilt territory keeps."""
    from tvb_tasks.config import Territory
    from tvb_tasks.pipeline import effective_territory, territory_from_run

    used = effective_territory("call", sous_trames=["forest", "wetland"], resolution_m=100)
    assert set(used.computed_sous_trames) == {"forest", "wetland"}
    assert set(used.sous_trames) == {"forest", "grassland", "mining", "wetland"}
    assert all(set(v) == set(used.sous_trames) for v in used.friction.landuse.values())
    config = used.model_dump(mode="json", by_alias=True)
    again = territory_from_run({"territory": "call", "config": config, "config_hash": used.config_hash()})
    assert isinstance(again, Territory) and set(again.computed_sous_trames) == {"forest", "wetland"}


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    """YAML keeps the last of two equal keys silently; the loader refuses it, naming the key and both lines
    (keys merged with ``<<`` may still be overridden)."""
    text = (PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8")
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("buffer_m:"))
    path = tmp_path / "call.yaml"
    path.write_text(text + "buffer_m: 5000\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_territory(path)
    message = str(err.value)
    assert str(path) in message and "'buffer_m' twice" in message and f"first at line {first}" in message
    assert f"line {len(text.splitlines()) + 1}" in message
    assert load_yaml("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n")["b"] == {"k": 3, "j": 2}

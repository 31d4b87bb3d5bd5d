"""Load and validate a territory's YAML configuration (typed, with clear errors).

A territory is one file ``config/territories/<id>.yaml``. Everything that differs between territories lives there:
outline, CRS, resolution, sources, land-use rules, sous-trames, friction, thresholds. Adding a territory means adding
a YAML file, never code.

This module reads the folder and the YAML (profiles, nomenclature, error messages naming the key's full path) and
holds :class:`Territory`; the models of its sections are in :mod:`tvb_tasks.config_models` (the territory's own
sections) and :mod:`tvb_tasks.config_sections` (the optional sections one stage reads); the cross-reference checks
(a key or value naming a source, class, sous-trame, profile or stage that does not exist) and the wording of the
errors are in :mod:`tvb_tasks.config_checks`.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tvb_tasks.config_checks import (
    RETIRED_KEYS as RETIRED_KEYS,
)
from tvb_tasks.config_checks import (
    ReferenceProblems,
    format_validation_error,
    reference_problems,
    wrong_kind_problem,
)
from tvb_tasks.config_checks import (
    unknown_key_message as unknown_key_message,
)

# the section models live in config_models; "X as X": re-exported, imported from here by tests
from tvb_tasks.config_models import (
    BoundaryConfig,
    CommunesConfig,
    CorridorsConfig,
    FrictionConfig,
    LanduseConfig,
    LanduseOverlayConfig,
    NomenclatureConfig,
    ProfileConfig,
    ProtectedAreasConfig,
    RupturePointsConfig,
    ScheduleConfig,
    SourceConfig,
    SousTrameConfig,
    _Model,
)
from tvb_tasks.config_models import (
    LanduseRule as LanduseRule,
)
from tvb_tasks.config_models import (
    SourceRole as SourceRole,
)
from tvb_tasks.config_models import (
    WfsFilter as WfsFilter,
)
from tvb_tasks.config_sections import (
    FicheText,
    IndicatorsConfig,
    PrioritiesConfig,
    PublishConfig,
    ScreeningConfig,
    TilingConfig,
    ValidationSettings,
)
from tvb_tasks.errors import DeterministicError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_id(value: str, kind: str) -> str:
    """``value`` if it is a valid ``kind`` id (territory, region), else ``ValueError`` saying the rule."""
    if not ID_PATTERN.match(value):
        raise ValueError(f"{kind} id must be lowercase letters, digits, '-' or '_' (max 63)")
    return value



class ConfigError(DeterministicError, ValueError):
    """A territory configuration is missing or invalid; the message names the file and the field."""


MAX_CONFIG_BYTES = 10 * 1024 * 1024
RESOLUTION_MIN_M, RESOLUTION_MAX_M = 5.0, 500.0     # raster cell size bounds (YAML, --resolution, DAG param)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def read_config_text(path: str | Path, what: str = "") -> str:
    """The UTF-8 text of a configuration file (territory YAML, OSM tag rules…), read safely.

    Refuses what is not a regular file (``/dev/zero``, a FIFO, a folder: a symlink is followed, then checked) and
    files over :data:`MAX_CONFIG_BYTES` (10 MB), reading at most that much. Errors (:class:`ConfigError`) name the
    file, never its content.
    """
    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        check_regular_file(path, label)
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{label}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB; not a configuration file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (invalid byte at offset {exc.start}); save the YAML as UTF-8"
                          ) from None


def check_regular_file(path: str | Path, label: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` (symlinks followed) is a regular file — checked before opening,
    so a FIFO never blocks and ``/dev/zero`` / ``/dev/urandom`` are never read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{label}: not a regular file (a device, FIFO or folder); give a configuration file")


# libyaml's parser when PyYAML was built with it (the wheels are): a territory YAML parses in ~6 ms instead of ~60 ms
# with the pure-Python one; same safe constructors (plain data only), errors with the same problem and line marks.
class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader refusing a key written twice in one mapping (YAML keeps the last silently: a second
    ``buffer_m:`` further down would override the first unseen). Keys merged with ``<<`` may still be overridden."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:            # an unhashable key: the base constructor reports it
                break
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice (first at line {first.start_mark.line + 1}): YAML would keep "
                    "the last value silently", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_YAML_LOADER = _UniqueKeyLoader


@lru_cache(maxsize=64)
def _parsed_yaml(text: str) -> bytes:
    """The plain data of ``text`` parsed once, pickled (errors are raised, not cached)."""
    return pickle.dumps(yaml.load(text, Loader=_YAML_LOADER), protocol=pickle.HIGHEST_PROTOCOL)


def load_yaml(text: str) -> Any:
    """``load_yaml(text)`` with the C parser when available; raises ``yaml.YAMLError`` on a bad text.

    Even with libyaml the objects are built in Python (~15 ms for a territory YAML, which the DAG files, the CLI and
    the stages read again and again): the data of the last 64 texts is kept pickled (a few MB at most) and every
    call gets its own fresh copy (``pickle.loads``, ~0.1 ms), so a caller may change what it gets."""
    return pickle.loads(_parsed_yaml(text))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong in a YAML text and where (line, column), WITHOUT the snippet of the file PyYAML quotes."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def columns_hint(columns: Any) -> str:
    """`` (columns: [...])`` when every header name looks like an identifier (a real table), else ``""``: an
    error about a file that is no code list (``/etc/shadow``) must never echo its first line."""
    names = [str(c) for c in (columns or [])]
    if not names or len(names) > 60 or not all(_IDENTIFIER.match(n) for n in names):
        return ""
    return f" (columns: {names})"


class Territory(_Model):
    """A validated territory configuration. ``path`` is the YAML file it came from."""

    id: str
    name: str
    short_name: str | None = None
    siren: str | None = None
    crs: str = "EPSG:2154"
    resolution_m: float = Field(ge=RESOLUTION_MIN_M, le=RESOLUTION_MAX_M)
    # computation extent = territory buffered by this (m); None → the largest dispersal distance over the most
    # favourable matrix (see analysis_buffer_m); 0 → no buffer. Outputs are clipped to the territory.
    buffer_m: float | None = Field(default=None, ge=0)
    schedule: ScheduleConfig = ScheduleConfig()
    boundary: BoundaryConfig
    communes: CommunesConfig
    nomenclature: NomenclatureConfig
    sources: dict[str, SourceConfig]
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    landuse: LanduseConfig
    landuse_overlays: list[LanduseOverlayConfig] = Field(default_factory=list)
    sous_trames: dict[str, SousTrameConfig]
    protected_areas: ProtectedAreasConfig = ProtectedAreasConfig()
    friction: FrictionConfig
    corridors: CorridorsConfig
    rupture_points: RupturePointsConfig
    # stage sections (tvb_tasks.config_sections), each optional
    tiling: TilingConfig = TilingConfig()
    indicators: IndicatorsConfig = IndicatorsConfig()
    validation: ValidationSettings = ValidationSettings()
    priorities: PrioritiesConfig = PrioritiesConfig()
    screening: ScreeningConfig = ScreeningConfig()
    fiches: dict[str, FicheText] = Field(default_factory=dict)    # per sous-trame
    publish: PublishConfig = PublishConfig()
    profile: str = "default"
    path: str = ""
    # a run parameter, not a YAML key: the sous-trames a run computes and publishes (YAML order; None: all).
    # Everything territory-wide (every sous-trame's definition, friction values, extra habitat sources, the
    # computation extent) stays configured, so a partial run's layers of a sous-trame are a full run's.
    run_sous_trames: list[str] | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return check_id(value, "territory")

    @model_validator(mode="after")
    def _check_references(self, info: ValidationInfo) -> Territory:
        """Names that name nothing (a source, class, sous-trame, profile, stage): :mod:`tvb_tasks.config_checks`.
        The loader's context gives the source names of every profile (``all_sources``)."""
        problems = reference_problems(self, (info.context or {}).get("all_sources"))
        if problems:
            raise ReferenceProblems(problems)
        return self

    # --- helpers -------------------------------------------------------------------------------------------------
    def resolve_path(self, relative: str) -> Path:
        """A path from the YAML, resolved against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def sources_by_role(self, role: str) -> dict[str, SourceConfig]:
        return {name: s for name, s in self.sources.items() if s.role == role}

    @property
    def computed_sous_trames(self) -> dict[str, SousTrameConfig]:
        """The sous-trames this run computes and publishes (``run_sous_trames``; all when None), in YAML order.
        What is computed, assembled, measured and published iterates these; what is territory-wide (class raster,
        computation extent, reservoir assignment of protected areas) reads every one of :attr:`sous_trames`."""
        if self.run_sous_trames is None:
            return dict(self.sous_trames)
        chosen = set(self.run_sous_trames)
        return {k: v for k, v in self.sous_trames.items() if k in chosen}

    @property
    def terrestrial_sous_trames(self) -> list[str]:
        """The computed (:attr:`computed_sous_trames`) sous-trames of the trame verte."""
        return [k for k, v in self.computed_sous_trames.items() if v.trame == "verte"]

    @property
    def wet_sous_trames(self) -> list[str]:
        """The computed (:attr:`computed_sous_trames`) sous-trames of the trame bleue."""
        return [k for k, v in self.computed_sous_trames.items() if v.trame == "bleue"]

    def analysis_buffer_m(self) -> float:
        """Buffer (m) of the computation extent around the territory.

        ``buffer_m`` when set; otherwise the largest dispersal distance expressed in metres of the most favourable
        matrix: max over sous-trames of ``max_cost`` / the lowest land-use friction of a class that is not the
        sous-trame's habitat (Graphab / Linkage Mapper practice: a study area padded by the longest dispersal
        distance so that no patch or path is cut by the outline).
        """
        if self.buffer_m is not None:
            return float(self.buffer_m)
        best = 0.0
        for name, st in self.sous_trames.items():
            matrix = [v[name] for c, v in self.friction.landuse.items() if c not in st.habitat]
            if matrix:
                best = max(best, st.max_cost / min(matrix))
        return best

    def config_hash(self, exclude_resolution: bool = False) -> str:
        """sha256 of the effective configuration (profile applied) and of the nomenclature file; with
        ``exclude_resolution`` the raster cell size is left out (the "parameters hash" of the history, which tells a
        resolution change from a change of the other parameters)."""
        exclude = {"path", "resolution_m"} if exclude_resolution else {"path"}
        if self.run_sous_trames is None:     # a full run hashes as before the field existed
            exclude.add("run_sous_trames")
        payload = self.model_dump(mode="json", by_alias=True, exclude=exclude)
        h = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
        nomenclature = self.resolve_path(self.nomenclature.file)
        if nomenclature.exists():
            h.update(nomenclature.read_bytes())
        return h.hexdigest()


def territories_dir() -> Path:
    return Path(os.environ.get("TVB_CONFIG_DIR", PROJECT_ROOT / "config" / "territories"))


def list_territories() -> list[str]:
    """Ids of the territories with a YAML file in the config folder (``<id>.yaml``: the file name is the id, which
    :func:`load_territory` checks against the file's ``id``, so two files can never give the same DAG ids)."""
    return sorted(p.stem for p in territories_dir().glob("*.yaml"))


def _declared_id(path: Path) -> str | None:
    """The ``id`` a territory YAML declares, or None when it cannot be read (its own load reports why)."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def files_declaring(territory_id: str, besides: Path | None = None) -> list[Path]:
    """The YAML files of the config folder (other than ``besides``) whose ``id`` is ``territory_id``."""
    skip = besides.resolve() if besides is not None else None
    return sorted(p for p in territories_dir().glob("*.yaml") if p.resolve() != skip and _declared_id(p) == territory_id)


def territory_id_problem(path: Path, territory_id: str) -> str | None:
    """Why the YAML ``path`` declaring ``territory_id`` cannot be a territory of the config folder, or None: a file
    of the folder must be named ``<id>.yaml``. A copied YAML whose ``id`` was not changed would otherwise make the
    same DAG ids as its original, one silently replacing the other; the message names the original."""
    folder = territories_dir().resolve()
    here = path.resolve()
    if here.parent != folder or here.stem == territory_id:
        return None
    same = files_declaring(territory_id, here)
    clash = (f"; {', '.join(map(str, same))} also has id {territory_id!r} (a copied YAML whose id was not changed?)"
             if same else "")
    return f"file name {here.name!r} differs from its id {territory_id!r} (files of {folder} are named <id>.yaml){clash}"


SectionT = TypeVar("SectionT", bound=BaseModel)


def typed_section(territory: Territory, name: str, model: type[SectionT]) -> SectionT:
    """The section ``name`` of a territory as ``model``. A loaded territory's sections are typed already (returned
    as they are); a mapping put there by ``model_copy(update=...)``, which does not validate, is validated here,
    a :class:`ConfigError` in :func:`load_territory`'s format (the key's full path) when invalid."""
    value = getattr(territory, name)
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as err:
        lines = [f"invalid territory configuration {territory.path}:"]
        lines += [f"  - {'.'.join(map(str, (name, *e['loc'])))}: {e['msg']}" for e in err.errors()]
        raise ConfigError("\n".join(lines)) from None


PROFILE_KEYS = ("sources", "nomenclature", "landuse_overlays")


def apply_profile(raw: dict, profile: dict, name: str = "") -> dict:
    """The territory mapping with a profile applied: ``sources`` replaced or added by name (a ``null`` source drops
    the default one, e.g. a synthetic sample layer), other keys (``nomenclature``, ``landuse_overlays``) replaced."""
    unknown = sorted(set(profile) - set(PROFILE_KEYS))
    if unknown:
        where = f"profiles.{name}." if name else "profile key "
        raise ConfigError(f"{', '.join(where + k for k in unknown)}: unknown key "
                          f"(a profile takes: {', '.join(PROFILE_KEYS)})")
    sources = {**(raw.get("sources") or {}), **(profile.get("sources") or {})}
    out = {**raw, **{k: v for k, v in profile.items() if k != "sources"}}
    out["sources"] = {name: src for name, src in sources.items() if src is not None}
    return out


def nomenclature_definition(nomenclature_id: str) -> tuple[Path, dict]:
    """``config/nomenclatures/<id>.yaml`` (path, mapping); raises :class:`ConfigError` naming the known ids."""
    folder = PROJECT_ROOT / "config" / "nomenclatures"
    path = folder / f"{nomenclature_id}.yaml"
    if not ID_PATTERN.match(nomenclature_id) or not path.exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ConfigError(f"unknown nomenclature {nomenclature_id!r} (known: {known})")
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    for key in ("codes_file", "code_column", "code_columns", "rules"):
        if key not in data:
            raise ConfigError(f"nomenclature {path}: missing {key!r}")
    unknown = sorted(set(data) - set(NOMENCLATURE_KEYS))
    if unknown:
        raise ConfigError(f"nomenclature {path}: unknown key(s) {unknown} (known: {', '.join(NOMENCLATURE_KEYS)})")
    return path, data


NOMENCLATURE_KEYS = ("id", "label", "codes_file", "code_column", "label_column", "code_columns", "min_mapping_unit_ha",
                     "warning", "rules", "default_class")


def resolve_nomenclature(raw: dict) -> dict:
    """Expand ``nomenclature: <id>``: code list, and the nomenclature's rules as ``landuse`` rules (unless the
    territory gives its own); keep only the ``landuse`` sources tagged with that nomenclature (or untagged)."""
    nom = raw.get("nomenclature")
    if not isinstance(nom, str):
        return raw
    path, data = nomenclature_definition(nom)
    out = dict(raw)
    out["nomenclature"] = {"file": data["codes_file"], "code_column": data["code_column"], "id": nom,
                           "label": data.get("label"), "label_column": data.get("label_column"),
                           "min_mapping_unit_ha": data.get("min_mapping_unit_ha"), "warning": data.get("warning"),
                           "check_columns": list(data.get("code_columns") or []),
                           "definition": str(path.relative_to(PROJECT_ROOT))}
    landuse = dict(out.get("landuse") or {})
    if "rules" not in landuse:
        landuse["rules"] = data["rules"]
        landuse["code_columns"] = data["code_columns"]
        if "default_class" in data:
            landuse.setdefault("default_class", data["default_class"])
    landuse.setdefault("code_columns", data["code_columns"])     # a territory's own rules use the same columns
    out["landuse"] = landuse
    out["sources"] = {name: src for name, src in (out.get("sources") or {}).items()
                      if not (isinstance(src, dict) and src.get("nomenclature") not in (None, nom))}
    return out


def load_territory(territory: str | Path, profile: str | None = None) -> Territory:
    """Load ``config/territories/<id>.yaml`` (or a YAML path) and apply a source profile.

    ``profile`` defaults to the ``TVB_PROFILE`` environment variable, else ``default`` (the bundled sample). A
    profile replaces, adds or (with ``null``) drops sources by name and may switch the ``nomenclature``. Raises :class:`ConfigError` naming the file and the bad field.
    """
    path = Path(territory)
    if path.suffix not in (".yaml", ".yml"):
        if not ID_PATTERN.match(str(territory)):
            raise ConfigError(f"invalid territory id {str(territory)!r}")
        path = territories_dir() / f"{territory}.yaml"
    if not path.exists():
        known = ", ".join(list_territories()) or "none"
        raise ConfigError(f"no territory configuration {path} (known territories: {known})")
    text = read_config_text(path)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    wrong_kind = wrong_kind_problem(raw, "territory")
    if wrong_kind:
        raise ConfigError(f"{path}: {wrong_kind}")
    if "run_sous_trames" in raw:
        raise ConfigError(f"{path}: 'run_sous_trames' is a run parameter (tvb run --sous-trames, the trigger form's "
                          "sous_trames), not a configuration key")
    profile = profile or os.environ.get("TVB_PROFILE") or "default"
    all_sources = _source_names(raw)
    if profile != "default":
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(f"{path}: unknown profile {profile!r} (known: {', '.join(profiles) or 'none'})")
        try:
            raw = apply_profile(raw, profiles[profile] or {}, profile)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        raw = resolve_nomenclature(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    raw["profile"] = profile
    raw["path"] = str(path)
    try:
        loaded = Territory.model_validate(raw, context={"all_sources": all_sources})
    except ValidationError as err:
        raise ConfigError(format_validation_error(path, err, Territory, profile)) from None
    clash = territory_id_problem(path, loaded.id)
    if clash:
        raise ConfigError(f"{path}: {clash}")
    check_rule_codes(loaded)
    return loaded


def _source_names(raw: dict) -> set[str]:
    """The source names a territory mapping declares in any profile (before a profile or the nomenclature drops
    some): what ``validation.sources`` and ``publish.credits`` may name."""
    names = set(raw.get("sources") or {}) if isinstance(raw.get("sources"), dict) else set()
    profiles = raw.get("profiles")
    for p in (profiles.values() if isinstance(profiles, dict) else ()):
        if isinstance(p, dict) and isinstance(p.get("sources"), dict):
            names |= set(p["sources"])
    return names


def nomenclature_labels(territory: Territory) -> dict[str, str]:
    """Code → label of every level of the territory's nomenclature file (columns ``code_nX`` / ``libelle_nX``;
    only ``code_column`` when the file has no such pairs)."""
    import csv

    path = territory.resolve_path(territory.nomenclature.file)
    if not path.exists():
        raise ConfigError(f"{territory.path}: nomenclature file {path} not found")
    check_regular_file(path, f"nomenclature file {path}")
    labels: dict[str, str] = {}
    try:
        _read_labels(path, territory, labels)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected the nomenclature's code list (CSV)"
                          ) from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a readable CSV (line {getattr(exc, 'line_num', '?')})") from None
    return labels


def _read_labels(path: Path, territory: Territory, labels: dict[str, str]) -> None:
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if territory.nomenclature.code_column not in row:
                raise ConfigError(f"{path}: no column {territory.nomenclature.code_column!r}"
                                  f"{columns_hint(list(row))}; expected the nomenclature's code list (CSV)")
            for key, value in row.items():
                if isinstance(key, str) and key.startswith("code_") and isinstance(value, str) and value:
                    labels.setdefault(value.strip(), (row.get("libelle_" + key[5:]) or "").strip())
            labels.setdefault(row[territory.nomenclature.code_column].strip(), "")


def check_rule_codes(territory: Territory) -> None:
    """Every land-use rule code of a ``nomenclature.check_columns`` column must be a code of the nomenclature file
    or a prefix of one cut at a '.' (``CS4`` → ``CS4.1.2``); raises :class:`ConfigError` naming the rule."""
    columns = territory.nomenclature.check_columns
    if not columns:
        return
    codes = set(nomenclature_labels(territory))
    for i, rule in enumerate(territory.landuse.rules):
        for col, code in rule.codes.items():
            if col in columns and not any(c == str(code) or c.startswith(f"{code}.") for c in codes):
                raise ConfigError(f"{territory.path}: landuse.rules[{i}] {col}={code!r} is no code of the "
                                  f"nomenclature {territory.nomenclature.file}")

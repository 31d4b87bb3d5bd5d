"""The checks of a territory YAML that the schema cannot make, and the wording of every configuration error.

A key or a value that is the NAME of another thing of the YAML (a source, a land-use class, a sous-trame, a
profile, a project stage) is checked here against what it names (:func:`reference_problems`, run when
:class:`tvb_tasks.config.Territory` validates): a misspelt ``fiches.forst`` or ``validation.sources.terils`` would
otherwise be ignored silently. Each problem is reported with the key's full path and, like an unknown key of the
schema, a "did you mean" suggestion (:func:`did_you_mean`); :func:`format_validation_error` writes one line per
problem. Split from :mod:`tvb_tasks.config` (loader and :class:`~tvb_tasks.config.Territory`), which re-exports
the names used elsewhere. This module imports pydantic (and the project's error classes) only.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tvb_tasks.config_sections import PROJECT_STAGES
from tvb_tasks.errors import InvalidInputError

if TYPE_CHECKING:
    from tvb_tasks.config import Territory

Problem = tuple[str, str]       # (key path "friction.landuse.forest.grasland", message "unknown sous-trame …")


class ReferenceProblems(InvalidInputError):
    """Raised by the territory's model validator: every cross-reference problem, as (key path, message) (a
    ``ValueError``, which pydantic turns into the validation error the loader reports)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
        self.problems = problems


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'forest'?)`` for the closest known name, else `` (known: a, b)`` when they are few (at
    most 12), else ``""``."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    return (f" (did you mean {close[0]!r}?)" if close else
            f" (known: {', '.join(names)})" if 0 < len(names) <= 12 else "")


def _unknown_key(kind: str, key: str, known: Iterable[str]) -> str:
    return f"unknown {kind}{did_you_mean(key, known)}"


def _unknown_value(kind: str, value: str, known: Iterable[str]) -> str:
    return f"unknown {kind} {value!r}{did_you_mean(value, known)}"


def declared_sources(territory: Territory) -> set[str]:
    """Source names of the territory in any profile: its sources, and every name a profile replaces, adds or drops."""
    names = set(territory.sources)
    for profile in territory.profiles.values():
        names |= set(profile.sources)
    return names


def reference_problems(t: Territory, all_sources: set[str] | None = None) -> list[Problem]:
    """Every name of the territory ``t`` that names nothing, as (key path, message); ``[]`` when all are known.

    ``all_sources``: the source names of every profile (what a per-source setting of any profile may name), by
    default :func:`declared_sources` (the loader passes the names it read before the profile and the nomenclature
    dropped some).
    """
    sources, classes, sous_trames = set(t.sources), set(t.landuse.classes), set(t.sous_trames)
    any_source = all_sources if all_sources is not None else declared_sources(t)
    problems: list[Problem] = []
    for key in ("boundary", "communes"):
        ref = getattr(t, key).source
        if ref not in sources:
            problems.append((f"{key}.source", _unknown_value("source", ref, sources)))
    for name, st in t.sous_trames.items():
        for i, cls in enumerate(st.habitat):
            if cls not in classes:
                problems.append((f"sous_trames.{name}.habitat.{i}", _unknown_value("land-use class", cls, classes)))
        for i, src in enumerate(st.habitat_source_names):
            if src not in sources:
                problems.append((f"sous_trames.{name}.extra_habitat_sources.{i}",
                                 _unknown_value("source", src, sources)))
    for i, name in enumerate(t.run_sous_trames or []):
        if name not in sous_trames:
            problems.append((f"run_sous_trames.{i}", _unknown_value("sous-trame", name, sous_trames)))
    problems += _friction_problems(t, classes, sous_trames, sources)
    for i, overlay in enumerate(t.landuse_overlays):
        if overlay.source not in sources:
            problems.append((f"landuse_overlays.{i}.source", _unknown_value("source", overlay.source, sources)))
        for value, cls in overlay.classes.items():
            if cls not in classes:
                problems.append((f"landuse_overlays.{i}.classes.{value}",
                                 _unknown_value("land-use class", cls, classes)))
    unknown = sorted(set(t.nomenclature.check_columns) - set(t.landuse.code_columns))
    if unknown:
        problems.append(("nomenclature.check_columns", f"{unknown} not in landuse.code_columns"))
    for st_name, fiche in t.fiches.items():         # fiches de préconisations: one per sous-trame
        if st_name not in sous_trames:
            problems.append((f"fiches.{st_name}", _unknown_key("sous-trame", st_name, sous_trames)))
        for cls in fiche.landuse:
            if cls not in classes:
                problems.append((f"fiches.{st_name}.landuse.{cls}", _unknown_key("land-use class", cls, classes)))
    problems += _publish_problems(t, any_source)
    for src in t.validation.sources:
        if src not in any_source:
            problems.append((f"validation.sources.{src}", _unknown_key("source", src, any_source)))
    for stage in t.priorities.conflict.stage_weights:
        if stage not in PROJECT_STAGES:
            problems.append((f"priorities.conflict.stage_weights.{stage}",
                             _unknown_key("project stage", stage, PROJECT_STAGES)))
    return problems


def _friction_problems(t: Territory, classes: set[str], sous_trames: set[str], sources: set[str]) -> list[Problem]:
    from typing import get_args

    from tvb_tasks.config_models import SourceRole

    all_roles = set(get_args(SourceRole))
    roles = {s.role for s in t.sources.values()}
    problems: list[Problem] = []
    for cls, values in t.friction.landuse.items():
        where = f"friction.landuse.{cls}"
        if cls not in classes:
            problems.append((where, _unknown_key("land-use class", cls, classes)))
        misspelt = [k for k in values if k not in sous_trames]
        problems += [(f"{where}.{k}", _unknown_key("sous-trame", k, sous_trames)) for k in misspelt]
        missing = sous_trames - set(values)
        if missing:
            problems.append((where, f"no value for sous-trames {sorted(missing)}"))
        bad = {k: v for k, v in values.items() if not v >= 1}
        if bad:
            problems.append((where, f"friction must be >= 1, got {bad}"))
    missing_cls = classes - set(t.friction.landuse)
    if missing_cls:
        problems.append(("friction.landuse", f"no friction for land-use classes {sorted(missing_cls)}"))
    for name, ov in t.friction.overlays.items():
        if ov.class_ not in classes:
            problems.append((f"friction.overlays.{name}.class", _unknown_value("land-use class", ov.class_, classes)))
        if ov.source and ov.source not in sources:
            problems.append((f"friction.overlays.{name}.source", _unknown_value("source", ov.source, sources)))
        if ov.role and ov.role not in roles:     # read with required=False: a role no source has burns nothing
            problems.append((f"friction.overlays.{name}.role",
                             _unknown_value("source role", ov.role, roles) if ov.role not in all_roles else
                             f"no source of role {ov.role!r} in this territory (roles: {', '.join(sorted(roles))})"))
    return problems


def _publish_problems(t: Territory, any_source: set[str]) -> list[Problem]:
    """``publish.credits`` and ``publish.basemap`` are keyed by profile; a credit line by source name."""
    profiles = {"default", *t.profiles}
    problems: list[Problem] = []
    for section in ("credits", "basemap"):
        for profile in getattr(t.publish, section):
            if profile not in profiles:
                close = difflib.get_close_matches(profile, sorted(t.profiles), n=1)
                # either name may be the misspelt one: a key here, or the profile's own name under profiles:
                problems.append((f"publish.{section}.{profile}",
                                 f"unknown profile: profiles: declares {close[0]!r}, not {profile!r} (one of the "
                                 "two names is misspelt)" if close else _unknown_key("profile", profile, profiles)))
    for profile, credits in t.publish.credits.items():
        for src in credits:
            if src not in any_source:
                problems.append((f"publish.credits.{profile}.{src}", _unknown_key("source", src, any_source)))
    return problems


# --- a region file where a territory is expected, and the reverse ---------------------------------------------------
#: top-level keys every territory YAML has and no region YAML has (a region has ``members`` instead)
TERRITORY_KEYS = ("sources", "sous_trames", "friction", "landuse")


def wrong_kind_problem(raw: dict, expected: str) -> str | None:
    """Why the YAML mapping ``raw``, read where a ``expected`` ("territory" or "region") file is expected, is the
    other kind of file, or None. Without it a region read as a territory gets one "Field required" line per
    territory section, and a territory read as a region one "unknown key" line per territory section."""
    if expected == "territory" and "members" in raw:
        return ("this looks like a region file (it has `members`): regions go in config/regions/ "
                "(TVB_REGIONS_DIR), territories in config/territories/ (TVB_CONFIG_DIR)")
    found = [k for k in TERRITORY_KEYS if k in raw]
    if expected == "region" and "members" not in raw and found:
        return (f"this looks like a territory file (it has `{found[0]}` and no `members`): territories go in "
                "config/territories/ (TVB_CONFIG_DIR), regions in config/regions/ (TVB_REGIONS_DIR)")
    return None


# --- wording of the schema's errors ----------------------------------------------------------------------------------
# keys of former versions, refused with what replaced them
RETIRED_KEYS = {
    "existing_max_mean_friction": "no longer used: corridor status is decided by existing_max_gap_m and "
                                  "existing_min_support_share (docs/method.md §6)",
    "restore_max_mean_friction": "no longer used: corridor status is decided by restore_max_gap_m and "
                                 "restore_min_support_share (docs/method.md §6)",
}


def unknown_key_message(key: str, model: Any) -> str:
    """``unknown key (did you mean 'indicators'?)``, else the model's keys when they are few."""
    if key in RETIRED_KEYS:
        return f"unknown key ({RETIRED_KEYS[key]})"
    known = [f.alias or n for n, f in model.model_fields.items()] \
        if isinstance(model, type) and issubclass(model, BaseModel) else []
    return "unknown key" + did_you_mean(key, known)


def format_validation_error(path: Path, err: ValidationError, root: type[BaseModel], profile: str = "default") -> str:
    """One line per problem, each starting with the key's full path (``validation.bogus_key: unknown key``).

    Pydantic's locations name the member tried in a union (``filter.WfsFilter.op``): the path is rebuilt from the
    schema of ``root`` without them, and when a union member got further into the input, the other members' errors
    are dropped. The cross-reference problems (:class:`ReferenceProblems`) get one line each, with their own path.
    ``profile``: the source profile applied (:func:`tvb_tasks.config.apply_profile`). Its sources are validated
    twice, where the YAML writes them (``profiles.<profile>.sources.<name>``) and where the profile puts them
    (``sources.<name>``): a problem is reported once, at the place to fix it, the profile's.
    """
    problems = []
    for e in err.errors():
        error = (e.get("ctx") or {}).get("error")
        if isinstance(error, ReferenceProblems):
            problems += [(path_.split("."), False, msg) for path_, msg in error.problems]
            continue
        keys, model, via_union = clean_location(e["loc"], root)
        if e["type"] == "extra_forbidden":
            msg = unknown_key_message(keys[-1] if keys else "", model)
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
        problems.append((keys, via_union, msg))
    lines = [f"invalid territory configuration {path}:"]
    in_profile = {(tuple(k[2:]), msg) for k, _, msg in problems if k[:2] == ["profiles", profile]}
    for keys, via_union, msg in problems:
        if via_union and any(len(k) > len(keys) and k[:len(keys)] == keys for k, _, _ in problems):
            continue        # another member of the union matched deeper: its error is the one to fix
        if (tuple(keys), msg) in in_profile:
            continue        # the profile's copy of a problem reported under profiles.<profile>
        line = f"  - {'.'.join(keys) or '(top level)'}: {msg}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def clean_location(loc: tuple, root: type[BaseModel]) -> tuple[list[str], Any, bool]:
    """(key path without union member tags, the model holding the last key, whether a union was crossed)."""
    from types import UnionType
    from typing import Union, get_args, get_origin

    keys: list[str] = []
    current: Any = root
    holder: Any = root
    via_union = False
    items = list(loc)
    while items:
        origin = get_origin(current)
        if origin in (Union, UnionType):
            members = [a for a in get_args(current) if a is not type(None)]
            if len(members) == 1:
                current = members[0]
                continue
            tag, via_union = str(items.pop(0)), True        # the member pydantic tried: not a key of the YAML
            current = next((m for m in members if getattr(m, "__name__", None) == tag
                            or str(getattr(get_origin(m), "__name__", "")) == tag.split("[")[0]), None)
            continue
        item = items.pop(0)
        keys.append(str(item))
        if isinstance(current, type) and issubclass(current, BaseModel):
            holder = current
            field = next((f for n, f in current.model_fields.items() if item in (n, f.alias)), None)
            current = field.annotation if field is not None else None
        elif origin in (dict, list):
            current = get_args(current)[-1]
        else:
            current = None
    return keys, holder, via_union

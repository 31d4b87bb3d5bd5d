"""Regions: several territories run from one trigger and assembled into one regional mosaic release.

A region is one file ``config/regions/<id>.yaml`` (the folder next to the territories' one, i.e.
``<TVB_CONFIG_DIR>/../regions``; override with ``TVB_REGIONS_DIR``)::

    id: call_et_voisin
    name: CALL et son voisin synthétique
    members: [call, call_voisin]      # territory ids of config/territories/ (folder TVB_CONFIG_DIR)
    publish: {public_base_url: ...}   # optional, the territories' publish section

Checks (:class:`ConfigError` naming the region file and, for a member, the member): unknown keys are refused with
their path; the file is named ``<id>.yaml``; the id is no territory id (a region publishes under
``releases/<id>/`` like a territory, so the two must not share a prefix); members are distinct, have a territory
YAML that loads, and share one CRS (the mosaic concatenates their layers). They share the store by construction:
the store is the deployment's (``TVB_STORE_URI`` / Airflow Variable ``tvb_store_uri``), not a territory setting.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from tvb_tasks.config import (
    ID_PATTERN,
    ConfigError,
    Territory,
    check_id,
    list_territories,
    load_territory,
    load_yaml,
    read_config_text,
    territories_dir,
    yaml_problem,
)
from tvb_tasks.config_checks import unknown_key_message, wrong_kind_problem
from tvb_tasks.config_models import _Model
from tvb_tasks.config_sections import PublishConfig


class Region(_Model):
    """A validated region configuration. ``path`` is the YAML file it came from."""

    id: str
    name: str
    short_name: str | None = None
    members: list[str] = Field(min_length=1)
    publish: PublishConfig = PublishConfig()
    path: str = ""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return check_id(value, "region")

    @field_validator("members")
    @classmethod
    def _check_members(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for m in value:
            if m in seen:
                raise ValueError(f"member {m!r} is listed twice (members must be distinct)")
            seen.add(m)
        return value

    def config_hash(self) -> str:
        """sha256 of the region's configuration (``path`` excluded)."""
        payload = self.model_dump(mode="json", exclude={"path"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def regions_dir() -> Path:
    """``TVB_REGIONS_DIR``, else the ``regions`` folder next to the territories' folder."""
    env = os.environ.get("TVB_REGIONS_DIR")
    return Path(env) if env else territories_dir().parent / "regions"


def list_regions() -> list[str]:
    """Ids of the regions with a YAML file in the regions folder (the file name is the id)."""
    folder = regions_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"invalid region configuration {path}:"]
    for e in err.errors():
        keys = ".".join(map(str, e["loc"])) or "(top level)"
        msg = (unknown_key_message(str(e["loc"][-1]), Region if len(e["loc"]) == 1 else PublishConfig)
               if e["type"] == "extra_forbidden" else str(e["msg"]).removeprefix("Value error, "))
        lines.append(f"  - {keys}: {msg}")
    return "\n".join(lines)


def region_path(region: str | Path) -> Path:
    """The YAML path of a region id (``<regions folder>/<id>.yaml``) or the given path."""
    path = Path(region)
    if path.suffix in (".yaml", ".yml"):
        return path
    if not ID_PATTERN.match(str(region)):
        raise ConfigError(f"invalid region id {str(region)!r}")
    return regions_dir() / f"{region}.yaml"


def is_region(name: str | Path) -> bool:
    """True when ``name`` is a region id of the regions folder (and no territory id) or a YAML file whose top level
    has ``members`` (what ``tvb check-config`` uses to tell a region from a territory)."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        return str(name) in list_regions() and str(name) not in list_territories()
    try:
        raw = load_yaml(read_config_text(path))
    except (ConfigError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "members" in raw


def load_region(region: str | Path) -> Region:
    """Load and check ``config/regions/<id>.yaml`` (or a YAML path) and its members (see the module docstring)."""
    path = region_path(region)
    if not path.exists():
        raise ConfigError(f"no region configuration {path} (known regions: {', '.join(list_regions()) or 'none'})")
    try:
        raw = load_yaml(read_config_text(path, "region"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    # a territory file given as a region; a region file in the territories' folder (`tvb check-config <path>`)
    in_territories = path.resolve().parent == territories_dir().resolve()
    wrong_kind = wrong_kind_problem(raw, "territory" if in_territories else "region")
    if wrong_kind:
        raise ConfigError(f"{path}: {wrong_kind}")
    try:
        loaded = Region.model_validate({**raw, "path": str(path)})
    except ValidationError as err:
        raise ConfigError(_format_errors(path, err)) from None
    if path.resolve().parent == regions_dir().resolve() and path.stem != loaded.id:
        raise ConfigError(f"{path}: file name {path.name!r} differs from its id {loaded.id!r} (files of "
                          f"{regions_dir()} are named <id>.yaml)")
    if loaded.id in list_territories():
        raise ConfigError(f"{path}: region id {loaded.id!r} is also a territory id: a region publishes under "
                          f"releases/{loaded.id}/, which would mix with that territory's releases; choose another id")
    region_members(loaded)
    return loaded


def region_members(region: Region) -> list[Territory]:
    """The members' territories, in the region's order; :class:`ConfigError` naming the region file and the member
    when one has no YAML, an invalid one, or another CRS than the first member."""
    known = list_territories()
    members: list[Territory] = []
    for tid in region.members:
        if tid not in known:
            raise ConfigError(f"{region.path}: member {tid!r} has no territory configuration in {territories_dir()} "
                              f"(known territories: {', '.join(known) or 'none'})")
        try:
            territory = load_territory(tid)
        except ConfigError as exc:
            raise ConfigError(f"{region.path}: member {tid!r} has an invalid configuration: {exc}") from None
        if members and territory.crs != members[0].crs:
            raise ConfigError(f"{region.path}: member {tid!r} has CRS {territory.crs}, member {members[0].id!r} has "
                              f"{members[0].crs}: the members of a region share one CRS")
        members.append(territory)
    return members

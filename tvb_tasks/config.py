"""Load and validate a territory's YAML configuration (typed, with clear errors).

A territory is one file ``config/territories/<id>.yaml``. Everything that differs between territories lives there:
outline, CRS, resolution, sources, land-use rules, sous-trames, friction, thresholds. Adding a territory means adding
a YAML file, never code.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

SourceRole = Literal[
    "boundary", "communes", "landuse", "landuse_overlay", "protected_areas", "roads", "railways",
    "watercourses", "mining", "river_obstacles", "osm",
]


class ConfigError(ValueError):
    """A territory configuration is missing or invalid; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """One input layer. ``kind`` selects the fetcher; other keys are the fetcher's parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["file", "http", "wfs", "osm"]
    role: SourceRole
    path: str | None = None            # file: path relative to the project root (or absolute)
    url: str | None = None             # http / wfs / osm
    layer: str | None = None           # layer inside a multi-layer file
    typename: str | None = None        # wfs
    version: str | None = None         # wfs protocol version
    connection_id: str | None = None   # Airflow connection holding URL / credentials (orchestration only)
    columns: dict[str, str] = Field(default_factory=dict)            # target column -> source column
    constant_columns: dict[str, Any] = Field(default_factory=dict)   # added to every feature

    @model_validator(mode="after")
    def _check_location(self) -> "SourceConfig":
        if self.kind == "file" and not self.path:
            raise ValueError("a 'file' source needs 'path'")
        if self.kind in ("http", "wfs", "osm") and not (self.url or self.connection_id):
            raise ValueError(f"a '{self.kind}' source needs 'url' or 'connection_id'")
        if self.kind == "wfs" and not self.typename:
            raise ValueError("a 'wfs' source needs 'typename'")
        if self.url and re.search(r"//[^/@]+:[^/@]+@", self.url):
            raise ValueError("credentials in a source URL are not allowed: use an Airflow connection or env var")
        return self


class LanduseClass(_Model):
    label: str
    artificial: bool = False
    natural: bool = False


class LanduseRule(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    class_: str = Field(alias="class")


class LanduseConfig(_Model):
    code_columns: list[str]
    classes: dict[str, LanduseClass]
    rules: list[LanduseRule]
    default_class: str | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> "LanduseConfig":
        for i, rule in enumerate(self.rules):
            if rule.class_ not in self.classes:
                raise ValueError(f"rule {i} maps to unknown class {rule.class_!r}")
            extra = set((rule.model_extra or {}).keys())
            unknown = extra - set(self.code_columns)
            if unknown:
                raise ValueError(f"rule {i} uses columns {sorted(unknown)} not in code_columns")
            if not extra:
                raise ValueError(f"rule {i} matches no column")
        if self.default_class is not None and self.default_class not in self.classes:
            raise ValueError(f"default_class {self.default_class!r} is not a class")
        return self


class SousTrameConfig(_Model):
    label: str
    trame: Literal["verte", "bleue"]
    habitat: list[str]
    extra_habitat_sources: list[str] = Field(default_factory=list)
    reservoir_min_area_ha: float = Field(gt=0)
    relay_min_area_ha: float = Field(gt=0)
    max_cost: float = Field(gt=0)

    @model_validator(mode="after")
    def _check_areas(self) -> "SousTrameConfig":
        if self.relay_min_area_ha > self.reservoir_min_area_ha:
            raise ValueError("relay_min_area_ha must not exceed reservoir_min_area_ha")
        return self


class ProtectedAreasConfig(_Model):
    type_column: str = "protection_type"
    name_column: str = "name"
    always_reservoir: list[str] = Field(default_factory=list)
    case_by_case: list[str] = Field(default_factory=list)


class RoadFriction(_Model):
    importance_column: str = "importance"
    by_importance: dict[int, float]


class RailwayFriction(_Model):
    status_column: str = "status"
    by_status: dict[str, float]


class InfrastructureFriction(_Model):
    roads: RoadFriction
    railways: RailwayFriction
    canals: float = 10000


class FrictionConfig(_Model):
    landuse: dict[str, dict[str, float]]
    infrastructure: InfrastructureFriction


class CorridorStatusConfig(_Model):
    """Corridor status from the longest unsupported gap and the share of supporting elements (docs/method.md §6).

    A cell is *unsupported* when its land-use friction is ≥ ``gap_min_friction`` and *supporting* when it is
    ≤ ``support_max_friction``. existing: gap ≤ ``existing_max_gap_m`` and support share ≥
    ``existing_min_support_share``; to_restore: gap ≤ ``restore_max_gap_m`` and share ≥
    ``restore_min_support_share``; else to_create. An untreated rupture point of severity ≥
    ``downgrade_min_severity`` lowers the status one step (existing → to_restore → to_create).
    """

    gap_min_friction: float = Field(default=100, gt=0)
    support_max_friction: float = Field(default=5, gt=0)
    existing_max_gap_m: float = Field(default=50, ge=0)
    existing_min_support_share: float = Field(default=0.6, ge=0, le=1)
    restore_max_gap_m: float = Field(default=250, ge=0)
    restore_min_support_share: float = Field(default=0.0, ge=0, le=1)
    downgrade_min_severity: int = Field(default=3, ge=1, le=5)   # 5 = never downgrade
    # former geometric-mean thresholds: accepted for older YAML files, no longer used
    existing_max_mean_friction: float | None = None
    restore_max_mean_friction: float | None = None


class CorridorWidthConfig(_Model):
    """Least-cost corridor polygons (Linkage Mapper normalised corridor: cwd_A + cwd_B − LCD ≤ ``cost_margin``)."""

    cost_margin: float = Field(default=2500, ge=0)    # friction × m


class MissingLinksConfig(_Model):
    """Fractures: potential links on the friction without the barriers below (docs/method.md §6bis)."""

    enabled: bool = True
    road_max_importance: int = Field(default=1, ge=0, le=6)    # roads with importance ≤ this are barriers
    railway_status: list[str] = Field(default_factory=lambda: ["in_use"])
    include_canals: bool = True
    severity: int = Field(default=4, ge=1, le=4)               # severity of the rupture point at the crossing
    min_gain_share: float = Field(default=0.25, ge=0)          # cost saved ≥ this share of the potential cost


class WetCorridorConfig(_Model):
    open_only: bool = True


class CorridorsConfig(_Model):
    neighbours: Literal[8, 16] = 8
    max_links_per_reservoir: int = Field(default=3, ge=1)
    status: CorridorStatusConfig
    wet: WetCorridorConfig = WetCorridorConfig()
    width: CorridorWidthConfig = CorridorWidthConfig()
    missing_links: MissingLinksConfig = MissingLinksConfig()


class RupturePointsConfig(_Model):
    road_max_importance: int = Field(ge=1, le=6)
    railway_status: list[str] = Field(default_factory=lambda: ["in_use"])
    include_canals: bool = True
    dedup_tolerance_m: float = Field(default=50, ge=0)
    site_tolerance_m: float = Field(default=100, ge=0)   # points of one infrastructure closer than this = 1 site
    include_reservoirs: bool = True      # a barrier (corridors.missing_links) running through a reservoir = point


class BoundaryConfig(_Model):
    source: str


class CommunesConfig(_Model):
    source: str
    id_column: str
    name_column: str


class NomenclatureConfig(_Model):
    file: str
    code_column: str


class ScheduleConfig(_Model):
    fetch_cron: str = "0 3 * * 1"


class ProfileConfig(_Model):
    sources: dict[str, SourceConfig] = Field(default_factory=dict)


class Territory(_Model):
    """A validated territory configuration. ``path`` is the YAML file it came from."""

    model_config = ConfigDict(extra="allow", frozen=True)   # stage sections (validation, publish…) may be added
    id: str
    name: str
    short_name: str | None = None
    siren: str | None = None
    crs: str = "EPSG:2154"
    resolution_m: float = Field(gt=0, le=1000)
    schedule: ScheduleConfig = ScheduleConfig()
    boundary: BoundaryConfig
    communes: CommunesConfig
    nomenclature: NomenclatureConfig
    sources: dict[str, SourceConfig]
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    landuse: LanduseConfig
    sous_trames: dict[str, SousTrameConfig]
    protected_areas: ProtectedAreasConfig = ProtectedAreasConfig()
    friction: FrictionConfig
    corridors: CorridorsConfig
    rupture_points: RupturePointsConfig
    profile: str = "default"
    path: str = ""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("territory id must be lowercase letters, digits, '-' or '_' (max 63)")
        return value

    @model_validator(mode="after")
    def _check_references(self) -> "Territory":
        for ref, what in ((self.boundary.source, "boundary.source"), (self.communes.source, "communes.source")):
            if ref not in self.sources:
                raise ValueError(f"{what} names unknown source {ref!r}")
        for name, st in self.sous_trames.items():
            for cls in st.habitat:
                if cls not in self.landuse.classes:
                    raise ValueError(f"sous_trames.{name}.habitat: unknown land-use class {cls!r}")
            for src in st.extra_habitat_sources:
                if src not in self.sources:
                    raise ValueError(f"sous_trames.{name}.extra_habitat_sources: unknown source {src!r}")
        for cls, values in self.friction.landuse.items():
            if cls not in self.landuse.classes:
                raise ValueError(f"friction.landuse: unknown land-use class {cls!r}")
            missing = set(self.sous_trames) - set(values)
            if missing:
                raise ValueError(f"friction.landuse.{cls}: no value for sous-trames {sorted(missing)}")
            bad = {k: v for k, v in values.items() if not v >= 1}
            if bad:
                raise ValueError(f"friction.landuse.{cls}: friction must be >= 1, got {bad}")
        missing_cls = set(self.landuse.classes) - set(self.friction.landuse)
        if missing_cls:
            raise ValueError(f"friction.landuse: no friction for land-use classes {sorted(missing_cls)}")
        return self

    # --- helpers -------------------------------------------------------------------------------------------------
    def resolve_path(self, relative: str) -> Path:
        """A path from the YAML, resolved against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def sources_by_role(self, role: str) -> dict[str, SourceConfig]:
        return {name: s for name, s in self.sources.items() if s.role == role}

    @property
    def terrestrial_sous_trames(self) -> list[str]:
        return [k for k, v in self.sous_trames.items() if v.trame == "verte"]

    @property
    def wet_sous_trames(self) -> list[str]:
        return [k for k, v in self.sous_trames.items() if v.trame == "bleue"]

    def config_hash(self) -> str:
        """sha256 of the effective configuration (profile applied) and of the nomenclature file."""
        payload = self.model_dump(mode="json", by_alias=True, exclude={"path"})
        h = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
        nomenclature = self.resolve_path(self.nomenclature.file)
        if nomenclature.exists():
            h.update(nomenclature.read_bytes())
        return h.hexdigest()


def territories_dir() -> Path:
    return Path(os.environ.get("TVB_CONFIG_DIR", PROJECT_ROOT / "config" / "territories"))


def list_territories() -> list[str]:
    """Ids of the territories with a YAML file in the config folder."""
    return sorted(p.stem for p in territories_dir().glob("*.yaml"))


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid territory configuration {path}:"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']}")
    return "\n".join(lines)


def load_territory(territory: str | Path, profile: str | None = None) -> Territory:
    """Load ``config/territories/<id>.yaml`` (or a YAML path) and apply a source profile.

    ``profile`` defaults to the ``TVB_PROFILE`` environment variable, else ``default`` (the bundled sample). A
    profile replaces or adds sources by name. Raises :class:`ConfigError` naming the file and the bad field.
    """
    path = Path(territory)
    if path.suffix not in (".yaml", ".yml"):
        if not ID_PATTERN.match(str(territory)):
            raise ConfigError(f"invalid territory id {str(territory)!r}")
        path = territories_dir() / f"{territory}.yaml"
    if not path.exists():
        known = ", ".join(list_territories()) or "none"
        raise ConfigError(f"no territory configuration {path} (known territories: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    profile = profile or os.environ.get("TVB_PROFILE") or "default"
    if profile != "default":
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(f"{path}: unknown profile {profile!r} (known: {', '.join(profiles) or 'none'})")
        raw = {**raw, "sources": {**raw.get("sources", {}), **(profiles[profile].get("sources") or {})}}
    raw["profile"] = profile
    raw["path"] = str(path)
    try:
        return Territory.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from None

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
import stat
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
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

SourceRole = Literal[
    "boundary", "communes", "landuse", "landuse_overlay", "protected_areas", "roads", "railways",
    "watercourses", "mining", "river_obstacles", "osm", "projects", "maintenance",
]


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WfsFilter(_Model):
    """A WFS attribute filter: ``{property, value}`` (equality) or ``{property, value, op: like}`` (``*`` wildcard)."""

    property: str
    value: str | int | float | bool
    op: Literal["equal", "like"] = "equal"


class SourceConfig(_Model):
    """One input layer. ``kind`` selects the fetcher; the other keys are the fetcher's parameters (docs/sources.md).

    Every key is declared: a misspelt one is refused with its path (``sources.roads.page_sise``). The options after
    ``allow_empty`` are read through :meth:`options` (the mapping the fetchers take), which lists them only when the
    YAML sets them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
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
    # true: an empty layer (e.g. no nature reserve in the territory) is valid — the non-empty check becomes "info"
    allow_empty: StrictBool = False
    # --- fetcher options (docs/sources.md) ---
    schema_id: str | None = Field(default=None, alias="schema")   # publisher schema, config/schemas/<id>.yaml
    nomenclature: str | None = None        # landuse: kept only when the territory uses this nomenclature
    synthetic: StrictBool | None = None    # generated data (sample): said in the report and outputs
    value_maps: dict[str, dict[Any, Any]] | None = None   # {column: {source value: target value}}
    format: str | None = None              # http: file extension when the URL has none
    x_column: str | None = None            # CSV points
    y_column: str | None = None
    wkt_column: str | None = None          # CSV geometries as WKT
    crs: str | None = None                 # CRS assigned when the file has none (CSV, Shapefile without .prj)
    sep: str | None = None                 # CSV separator
    filter: WfsFilter | list[WfsFilter] | None = None     # wfs: ANDed with the bbox
    bbox: StrictBool | None = None         # wfs: false → no bbox (default true)
    bbox_buffer_m: float | None = Field(default=None, ge=0)
    page_size: int | None = Field(default=None, ge=1)
    sort_by: str | None = None
    output_format: str | None = None
    geometry_name: str | None = None
    tag_rules: str | None = None           # osm: tag rules file (default config/osm_tags.yaml)
    tag_rules_nomenclature: str | None = None
    clip_buffer_m: float | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)           # HTTP limits (sources.http.HttpOptions)
    connect_timeout_s: float | None = Field(default=None, gt=0)
    deadline_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    backoff_s: float | None = Field(default=None, ge=0)
    backoff_max_s: float | None = Field(default=None, ge=0)
    max_bytes: int | None = Field(default=None, gt=0)
    max_page_bytes: int | None = Field(default=None, gt=0)

    def options(self) -> dict[str, Any]:
        """The source as the fetchers read it (YAML key names): every field up to ``allow_empty``, then the options
        the YAML (or an override) sets — so the parameters hash of an HTTP source does not depend on options it
        never used."""
        unset = {name for name in type(self).model_fields
                 if name not in _SOURCE_CORE_FIELDS and name not in self.model_fields_set}
        return self.model_dump(mode="python", by_alias=True, exclude=unset)

    @model_validator(mode="after")
    def _check_location(self) -> SourceConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("a 'file' source needs 'path'")
        if self.kind in ("http", "wfs", "osm") and not (self.url or self.connection_id):
            raise ValueError(f"a '{self.kind}' source needs 'url' or 'connection_id'")
        if self.kind == "wfs" and not self.typename:
            raise ValueError("a 'wfs' source needs 'typename'")
        if self.url and re.search(r"//[^/@]+:[^/@]+@", self.url):
            raise ValueError("credentials in a source URL are not allowed: use an Airflow connection or env var")
        return self


_SOURCE_CORE_FIELDS = frozenset(("kind", "role", "path", "url", "layer", "typename", "version", "connection_id",
                                 "columns", "constant_columns", "allow_empty"))


class LanduseClass(_Model):
    label: str
    artificial: bool = False
    natural: bool = False
    urban_nature: bool = False     # "nature en ville": its own line in the key figures


class LanduseRule(_Model):
    """``{class: forest, code_cs: CS2.1, code_us: US1}``: a polygon whose every listed code column starts with the
    given code gets ``class``. The code columns are the keys besides ``class`` (held in :attr:`codes`); each must be
    one of ``landuse.code_columns`` (checked by :class:`LanduseConfig`)."""

    class_: str = Field(alias="class")
    codes: dict[str, str] = Field(default_factory=dict)    # code column -> code prefix

    @model_validator(mode="before")
    @classmethod
    def _collect_codes(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "codes" in data:
            return data
        codes = {k: v for k, v in data.items() if k not in ("class", "class_")}
        bad = {k: v for k, v in codes.items() if isinstance(v, bool) or not isinstance(v, (str, int, float))}
        if bad:
            raise ValueError(f"a rule's code columns take a code (text), got {bad}")
        return {**{k: v for k, v in data.items() if k in ("class", "class_")},
                "codes": {str(k): str(v) for k, v in codes.items()}}

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        """Dumped as written in the YAML (``{class, <column>: <code>}``): the config hash and a round trip through
        ``run["config"]`` keep the rule's shape."""
        out = handler(self)
        codes = out.pop("codes", {}) or {}
        return {**out, **codes}


class LanduseConfig(_Model):
    code_columns: list[str]
    classes: dict[str, LanduseClass]
    rules: list[LanduseRule]
    default_class: str | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> LanduseConfig:
        for i, rule in enumerate(self.rules):
            if rule.class_ not in self.classes:
                raise ValueError(f"rule {i} maps to unknown class {rule.class_!r}")
            unknown = set(rule.codes) - set(self.code_columns)
            if unknown:
                raise ValueError(f"rules.{i}: unknown key(s) {sorted(unknown)}: a rule takes 'class' and code columns "
                                 f"of landuse.code_columns ({', '.join(self.code_columns)})")
            if not rule.codes:
                raise ValueError(f"rules.{i} matches no column")
        if self.default_class is not None and self.default_class not in self.classes:
            raise ValueError(f"default_class {self.default_class!r} is not a class")
        return self


class HabitatSourceConfig(_Model):
    """An extra habitat source with an attribute filter, e.g. terrils without the built-over ones:
    ``{source: zt_terrils, exclude: {forme: [Arasé construit]}}`` (``include`` keeps only the listed values)."""

    source: str
    include: dict[str, list[str]] = Field(default_factory=dict)
    exclude: dict[str, list[str]] = Field(default_factory=dict)


class SousTrameConfig(_Model):
    label: str
    trame: Literal["verte", "bleue"]
    habitat: list[str]
    extra_habitat_sources: list[str | HabitatSourceConfig] = Field(default_factory=list)

    @property
    def habitat_source_names(self) -> list[str]:
        """Names of the extra habitat sources (plain names or filtered entries)."""
        return [s if isinstance(s, str) else s.source for s in self.extra_habitat_sources]

    def habitat_source(self, name: str) -> HabitatSourceConfig:
        """The filtered entry of an extra habitat source (an unfiltered one for a plain name)."""
        for s in self.extra_habitat_sources:
            if (s if isinstance(s, str) else s.source) == name:
                return HabitatSourceConfig(source=name) if isinstance(s, str) else s
        raise KeyError(name)
    reservoir_min_area_ha: float = Field(gt=0)
    relay_min_area_ha: float = Field(gt=0)
    max_cost: float = Field(gt=0)

    @model_validator(mode="after")
    def _check_areas(self) -> SousTrameConfig:
        if not self.habitat:
            raise ValueError("habitat is empty: this sous-trame would have no reservoir (and extra_habitat_sources "
                             "are burned with its first habitat class); list at least one land-use class")
        if self.relay_min_area_ha > self.reservoir_min_area_ha:
            raise ValueError("relay_min_area_ha must not exceed reservoir_min_area_ha")
        return self


class ProtectedAreasConfig(_Model):
    type_column: str = "protection_type"
    name_column: str = "name"
    always_reservoir: list[str] = Field(default_factory=list)
    case_by_case: list[str] = Field(default_factory=list)


BurnRule = Literal["max", "replace", "min"]


class BurnSpec(_Model):
    """How a burned element combines with what lies under it (BioDispersal-like fusion).

    ``rule``: ``max`` (barrier: never lowers the friction), ``replace`` (favourable linear element: its value
    replaces the land use), ``min`` (never raises it). ``priority``: elements are burned by increasing priority, so
    a higher priority is applied last and wins where elements overlap. ``width_column``: attribute holding the
    element's width in metres; ``width_m``: default width per class (or one number); no width at all → the
    legacy one-cell line burn (resolution-dependent, kept for old configurations).
    """

    rule: BurnRule = "max"
    priority: int = 0
    width_column: str | None = None
    width_m: float | dict[str | int, float] | None = None

    def default_width(self, cls: str) -> float | None:
        if isinstance(self.width_m, dict):
            v = {str(k): w for k, w in self.width_m.items()}.get(str(cls))
            return float(v) if v is not None else None
        return float(self.width_m) if self.width_m is not None else None


class RoadFriction(BurnSpec):
    importance_column: str = "importance"
    by_importance: dict[int, float]


class RailwayFriction(BurnSpec):
    status_column: str = "status"
    by_status: dict[str, float | None]     # None: not an infrastructure (e.g. disused lines, see overlays)


class CanalFriction(BurnSpec):
    friction: float = 10000


class OverlayConfig(BurnSpec):
    """A favourable (or hostile) element burned over the land use as a land-use class (per-sous-trame friction
    from ``friction.landuse``; habitat of the sous-trames listing the class): cavaliers, hedgerows, verges.

    Features come from ``source`` (a source name) or every source of ``role``, filtered by ``where`` (column →
    accepted values); lines and points are buffered to ``width`` (attribute or default), polygons taken as they are.
    """

    source: str | None = None
    role: str | None = None
    where: dict[str, list[str]] = Field(default_factory=dict)
    class_: str = Field(alias="class")
    rule: BurnRule = "replace"

    @model_validator(mode="after")
    def _check_origin(self) -> OverlayConfig:
        if bool(self.source) == bool(self.role):
            raise ValueError("an overlay needs exactly one of 'source' or 'role'")
        if self.width_m is None and self.width_column is None:
            raise ValueError("an overlay needs 'width_m' (default width, metres) or 'width_column'")
        return self


class InfrastructureFriction(_Model):
    roads: RoadFriction
    railways: RailwayFriction
    canals: float | CanalFriction = 10000

    @property
    def canal(self) -> CanalFriction:
        """The canal burn spec (a bare number is a legacy one-cell ``max`` burn of that friction)."""
        return self.canals if isinstance(self.canals, CanalFriction) else CanalFriction(friction=self.canals)


class FrictionConfig(_Model):
    landuse: dict[str, dict[str, float]]
    infrastructure: InfrastructureFriction
    overlays: dict[str, OverlayConfig] = Field(default_factory=dict)


class CorridorStatusConfig(_Model):
    """Corridor status from the longest unsupported gap and the share of supporting elements (docs/method.md §6).

    A cell is *unsupported* when its land-use friction is ≥ ``gap_min_friction`` and *supporting* when it is
    ≤ ``support_max_friction``. existing: gap ≤ ``existing_max_gap_m`` and support share ≥
    ``existing_min_support_share``; to_restore: gap ≤ ``restore_max_gap_m`` and share ≥
    ``restore_min_support_share``; else to_create. An untreated rupture point of severity ≥
    ``downgrade_min_severity`` lowers the status one step, never below ``downgrade_floor`` (existing → to_restore;
    to_restore stays to_restore by default).
    """

    gap_min_friction: float = Field(default=100, gt=0)
    support_max_friction: float = Field(default=5, gt=0)
    existing_max_gap_m: float = Field(default=50, ge=0)
    existing_min_support_share: float = Field(default=0.6, ge=0, le=1)
    restore_max_gap_m: float = Field(default=250, ge=0)
    restore_min_support_share: float = Field(default=0.0, ge=0, le=1)
    downgrade_min_severity: int = Field(default=3, ge=1, le=5)   # 5 = never downgrade
    # lowest status a rupture point can bring a corridor to: the crossing is itself the rupture point, so a
    # corridor with no crop / built gap stays "to restore" whatever crosses it (only its own gap makes "to create")
    downgrade_floor: Literal["to_restore", "to_create"] = "to_restore"
    # the former geometric-mean thresholds (existing_max_mean_friction, restore_max_mean_friction) are refused as
    # unknown keys: they no longer decide anything, and silently ignoring them would mislead


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
    max_barrier_m: float | None = Field(default=None, gt=0)    # a potential path longer than this on barrier
                                                               # cells follows the barrier: not a crossing
    # Barrier Mapper search radius: each crossing's own score restores the barrier cells within this of it
    barrier_radius_m: float = Field(default=75, gt=0)


class WetCorridorConfig(_Model):
    open_only: bool = True
    snap_tolerance_m: float | None = Field(default=None, ge=0)   # node → wet patch attachment; None: one cell


class CorridorsConfig(_Model):
    neighbours: Literal[8, 16] = 8
    max_links_per_reservoir: int = Field(default=3, ge=1)
    dedup_tolerance_m: float | None = Field(default=None, ge=0)   # "drawn once" radius; None: one cell
    status: CorridorStatusConfig
    wet: WetCorridorConfig = WetCorridorConfig()
    width: CorridorWidthConfig = CorridorWidthConfig()
    missing_links: MissingLinksConfig = MissingLinksConfig()


class ObstacleSeverityConfig(_Model):
    drop_height_severity: dict[float, int] = Field(default_factory=lambda: {2.0: 4, 0.5: 3})
    unknown_severity: int = Field(default=3, ge=1, le=4)
    fish_pass_lowers_by: int = Field(default=0, ge=0)
    ignore_states: list[str] = Field(default_factory=list)


class RupturePointsConfig(_Model):
    road_max_importance: int = Field(ge=1, le=6)
    railway_status: list[str] = Field(default_factory=lambda: ["in_use"])
    include_canals: bool = True
    dedup_tolerance_m: float = Field(default=50, ge=0)
    culvert_severity: int | None = Field(default=None, ge=1, le=4)   # None: no culvert points (legacy)
    # roads over a culvert that make it a rupture point: None → road_max_importance (the pipe, not the traffic,
    # breaks the aquatic continuity: 6 takes every road)
    culvert_road_max_importance: int | None = Field(default=None, ge=1, le=6)
    obstacles: ObstacleSeverityConfig = ObstacleSeverityConfig()
    site_tolerance_m: float = Field(default=100, ge=0)   # points of one infrastructure closer than this = 1 site
    include_reservoirs: bool = True      # a barrier (corridors.missing_links) running through a reservoir = point
    # an open wet stretch under a road / railway (a bridge: the bed and banks go on under the deck) — its severity
    # (None: from the crossed infrastructure's friction, as a terrestrial crossing); culverts: culvert_severity
    bridge_severity: int | None = Field(default=2, ge=1, le=4)
    # points de vigilance (COST 341 partial barriers): terrestrial corridors × roads with road_max_importance <
    # importance ≤ vigilance_road_max_importance, published apart (layer vigilance_points) with vigilance_severity,
    # never in the rupture-point counts nor in the status downgrade. None: none published
    vigilance_road_max_importance: int | None = Field(default=None, ge=1, le=6)
    vigilance_severity: int = Field(default=2, ge=1, le=4)
    # the corridor_id of a wet point (culvert) attached to no wet corridor (its watercourse carries none)
    no_corridor_label: str = "hors corridor"


class BoundaryConfig(_Model):
    source: str


class CommunesConfig(_Model):
    source: str
    id_column: str
    name_column: str


class NomenclatureConfig(_Model):
    """The land-use nomenclature: its code list (CSV) and, when chosen by id, where it came from.

    In the territory YAML either an id (``nomenclature: ocs_ge``: reads ``config/nomenclatures/<id>.yaml``, whose
    classification rules become the territory's ``landuse.rules`` unless the territory gives its own) or the
    explicit ``{file, code_column}`` form.
    """

    file: str
    code_column: str
    # land-use code columns whose rule codes must exist in the file (a rule code is a prefix of a code, cut at a
    # '.'); set from the nomenclature definition's code_columns when chosen by id
    check_columns: list[str] = Field(default_factory=list)
    id: str | None = None
    label: str | None = None
    label_column: str | None = None
    min_mapping_unit_ha: float | None = None
    warning: str | None = None
    definition: str | None = None      # the nomenclature YAML the id resolved to


class LanduseOverlayConfig(_Model):
    """Polygons of ``source`` replace the land-use class where they lie (see ``layers.landuse.apply_overlays``).

    ``classes`` maps a value of ``column`` to a land-use class; features whose value is not listed are ignored.
    """

    source: str
    column: str
    classes: dict[str, str]


class ScheduleConfig(_Model):
    fetch_cron: str = "0 3 * * 1"


class ProfileConfig(_Model):
    """A source profile (:func:`apply_profile`): sources replaced, added or (``null``) dropped by name; a profile may
    also switch the ``nomenclature`` and replace the ``landuse_overlays``."""

    sources: dict[str, SourceConfig | None] = Field(default_factory=dict)   # null drops a source of the default
    nomenclature: str | NomenclatureConfig | None = None
    landuse_overlays: list[LanduseOverlayConfig] | None = None


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

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("territory id must be lowercase letters, digits, '-' or '_' (max 63)")
        return value

    @model_validator(mode="after")
    def _check_references(self) -> Territory:
        for ref, what in ((self.boundary.source, "boundary.source"), (self.communes.source, "communes.source")):
            if ref not in self.sources:
                raise ValueError(f"{what} names unknown source {ref!r}")
        for name, st in self.sous_trames.items():
            for cls in st.habitat:
                if cls not in self.landuse.classes:
                    raise ValueError(f"sous_trames.{name}.habitat: unknown land-use class {cls!r}")
            for src in st.habitat_source_names:
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
        for i, overlay in enumerate(self.landuse_overlays):
            if overlay.source not in self.sources:
                raise ValueError(f"landuse_overlays[{i}]: unknown source {overlay.source!r}")
            unknown_classes = sorted(set(overlay.classes.values()) - set(self.landuse.classes))
            if unknown_classes:
                raise ValueError(f"landuse_overlays[{i}] ({overlay.source}): unknown land-use classes "
                                 f"{unknown_classes}")
        missing_cls = set(self.landuse.classes) - set(self.friction.landuse)
        if missing_cls:
            raise ValueError(f"friction.landuse: no friction for land-use classes {sorted(missing_cls)}")
        for name, ov in self.friction.overlays.items():
            if ov.class_ not in self.landuse.classes:
                raise ValueError(f"friction.overlays.{name}: unknown land-use class {ov.class_!r}")
            if ov.source and ov.source not in self.sources:
                raise ValueError(f"friction.overlays.{name}: unknown source {ov.source!r}")
        unknown = set(self.nomenclature.check_columns) - set(self.landuse.code_columns)
        if unknown:
            raise ValueError(f"nomenclature.check_columns: {sorted(unknown)} not in landuse.code_columns")
        for st_name, fiche in self.fiches.items():
            unknown_cls = sorted(set(fiche.landuse) - set(self.landuse.classes))
            if unknown_cls:
                raise ValueError(f"fiches.{st_name}.landuse: unknown land-use classes {unknown_cls}")
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
    """Ids of the territories with a YAML file in the config folder (``<id>.yaml``: the file name is the id, which
    :func:`load_territory` checks against the file's ``id``, so two files can never give the same DAG ids)."""
    return sorted(p.stem for p in territories_dir().glob("*.yaml"))


def _declared_id(path: Path) -> str | None:
    """The ``id`` a territory YAML declares, or None when it cannot be read (its own load reports why)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def _format_validation_error(path: Path, err: ValidationError) -> str:
    """One line per problem, each starting with the key's full path (``validation.bogus_key: unknown key``).

    Pydantic's locations name the member tried in a union (``filter.WfsFilter.op``): the path is rebuilt from the
    schema without them, and when a union member got further into the input, the other members' errors are dropped.
    """
    problems = []
    for e in err.errors():
        keys, model, via_union = _clean_location(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = _unknown_key_message(keys[-1] if keys else "", model)
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
        problems.append((keys, via_union, msg))
    lines = [f"invalid territory configuration {path}:"]
    for keys, via_union, msg in problems:
        if via_union and any(len(k) > len(keys) and k[:len(keys)] == keys for k, _, _ in problems):
            continue        # another member of the union matched deeper: its error is the one to fix
        line = f"  - {'.'.join(keys) or '(top level)'}: {msg}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _clean_location(loc: tuple) -> tuple[list[str], Any, bool]:
    """(key path without union member tags, the model holding the last key, whether a union was crossed)."""
    from types import UnionType
    from typing import Union, get_args, get_origin

    keys: list[str] = []
    current: Any = Territory
    holder: Any = Territory
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


# keys of former versions, refused with what replaced them
RETIRED_KEYS = {
    "existing_max_mean_friction": "no longer used: corridor status is decided by existing_max_gap_m and "
                                  "existing_min_support_share (docs/method.md §6)",
    "restore_max_mean_friction": "no longer used: corridor status is decided by restore_max_gap_m and "
                                 "restore_min_support_share (docs/method.md §6)",
}


def _unknown_key_message(key: str, model: Any) -> str:
    """``unknown key (did you mean 'indicators'?)``, else the model's keys when they are few."""
    import difflib

    if key in RETIRED_KEYS:
        return f"unknown key ({RETIRED_KEYS[key]})"

    known = sorted(f.alias or n for n, f in model.model_fields.items()) \
        if isinstance(model, type) and issubclass(model, BaseModel) else []
    close = difflib.get_close_matches(key, known, n=1)
    return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else
                            f" (known: {', '.join(known)})" if 0 < len(known) <= 12 else "")


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
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    profile = profile or os.environ.get("TVB_PROFILE") or "default"
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
        loaded = Territory.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from None
    clash = territory_id_problem(path, loaded.id)
    if clash:
        raise ConfigError(f"{path}: {clash}")
    check_rule_codes(loaded)
    return loaded


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

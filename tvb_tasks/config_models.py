"""The models of the territory YAML's own sections: sources, land use, sous-trames, protected areas, friction,
corridors, rupture points, boundary, communes, nomenclature, land-use overlays, schedule and source profiles.

Split from :mod:`tvb_tasks.config` (which loads the YAML and holds :class:`~tvb_tasks.config.Territory`, and
re-exports every name here): these are plain pydantic models (unknown keys refused, frozen), with no file access.
The optional sections read by one stage (indicators, tiling, validation, publish, priorities …) are in
:mod:`tvb_tasks.config_sections`.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    model_serializer,
    model_validator,
)

SourceRole = Literal[
    "boundary", "communes", "landuse", "landuse_overlay", "protected_areas", "roads", "railways",
    "watercourses", "mining", "river_obstacles", "osm", "projects", "maintenance",
]


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
    # length (m) of the piece of a stretch, centred on the crossing, that a rupture point lowers ("point de
    # conflit" treated locally): the rest of the stretch keeps its own status
    downgrade_length_m: float = Field(default=300, gt=0)
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

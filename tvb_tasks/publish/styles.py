"""Published layers, their French titles, field labels and colours: shared by the web map, QGIS and GeoPackage."""
from __future__ import annotations

# Order = drawing order (bottom first). ``by``: attribute giving the colour category.
PUBLISHED_LAYERS: list[dict] = [
    {"name": "communes", "title": "Communes", "geometry": "polygon", "color": "#6b6b6b", "fill_opacity": 0.0},
    {"name": "reservoirs", "title": "Réservoirs de biodiversité", "geometry": "polygon", "by": "sous_trame",
     "color": "#2e7d32", "fill_opacity": 0.6},
    {"name": "relays", "title": "Zones relais", "geometry": "polygon", "by": "sous_trame", "color": "#8bc34a",
     "fill_opacity": 0.35, "hatch": True},    # hatched, dashed outline: never mistaken for a reservoir
    {"name": "corridor_areas", "title": "Emprise des corridors (corridors de moindre coût)", "geometry": "polygon",
     "by": "status", "color": "#1a9850", "fill_opacity": 0.2},
    # whole corridors: hidden when the map opens if the release has stretches (``replaced_by``), which show the
    # status of each stretch (a practitioner reads where a corridor must be restored, not only that it must)
    {"name": "corridors", "title": "Corridors écologiques", "geometry": "line", "by": "status", "color": "#1a9850",
     "width": 3, "replaced_by": "corridor_stretches"},
    {"name": "corridor_stretches", "title": "Tronçons de corridor (statut par tronçon)", "geometry": "line",
     "by": "status", "color": "#1a9850", "width": 3},
    {"name": "wet_corridors", "title": "Corridors humides (trame bleue)", "geometry": "line", "color": "#1f78b4",
     "width": 3},
    # points de vigilance: local roads crossing a corridor (COST 341 partial barriers, not rupture points): small
    # orange triangles, as on the report's rupture-point map (``symbol``: marker shape; circle when absent)
    {"name": "vigilance_points", "title": "Points de vigilance", "geometry": "point", "symbol": "triangle",
     "color": "#fdae61", "stroke": "#555555", "radius": 5,
     "label": "Route locale franchie par un corridor (gravité moyenne)"},
    # priorities: off by default and drawn under the rupture points (they sit on the same crossings), one gold colour
    # with a dark ring (no sous-trame / reservoir colour): ``visible`` = shown when the map opens
    # ``zero_by``: a priority whose gain is 0 is drawn grey ("gain nul": the ranking cannot tell it helps)
    {"name": "priorities", "title": "Priorités de restauration", "geometry": "point", "color": "#ffd600",
     "stroke": "#333333", "radius": 8, "visible": False, "zero_by": "gain_ec_ha", "zero_color": "#9e9e9e",
     "zero_label": "Gain nul (ne relie pas deux réservoirs, dans un réservoir ou sans effet)", "label": "Gain de connectivité positif"},
    {"name": "rupture_points", "title": "Points de rupture", "geometry": "point", "by": "infrastructure",
     "size_by": "severity", "color": "#e31a1c", "radius": 6},
]
LAYER_NAMES = [layer["name"] for layer in PUBLISHED_LAYERS]
VIGILANCE_COLOR = next(layer["color"] for layer in PUBLISHED_LAYERS if layer["name"] == "vigilance_points")


def shown_at_start(layer: dict, available: list[str] | set[str]) -> bool:
    """Whether a published layer is shown when the map or project opens: its ``visible`` flag (default yes), and
    not when the layer named by its ``replaced_by`` is in the release (corridors give way to their stretches)."""
    return bool(layer.get("visible", True)) and layer.get("replaced_by") not in set(available)

# Corridor status: canonical code -> (French label, colour). Aliases map other spellings to the canonical code.
STATUS_STYLES: dict[str, tuple[str, str]] = {
    "existing": ("Existant", "#1a9850"),
    "to_restore": ("À restaurer", "#fd8d3c"),
    "to_create": ("À créer", "#d73027"),
}
STATUS_ALIASES = {
    "existing": "existing", "existant": "existing", "exists": "existing",
    "to_restore": "to_restore", "restore": "to_restore", "a_restaurer": "to_restore", "à restaurer": "to_restore",
    "a restaurer": "to_restore",
    "to_create": "to_create", "create": "to_create", "a_creer": "to_create", "à créer": "to_create",
    "a creer": "to_create",
}

SOUS_TRAME_COLORS = {"forest": "#2e7d32", "grassland": "#c0ca33", "mining": "#795548", "wetland": "#0288d1"}
FALLBACK_COLORS = ["#7b1fa2", "#f57c00", "#00897b", "#5d4037", "#c2185b", "#455a64"]

# French labels of attributes (popups, QGIS aliases, GeoPackage data columns). Unknown fields keep their name.
FIELD_LABELS = {
    "id": "Identifiant", "fid": "Identifiant", "sous_trame": "Sous-trame", "libelle_sous_trame": "Sous-trame",
    "status": "Statut", "libelle_statut": "Statut", "area_ha": "Surface (ha)", "surface_ha": "Surface (ha)",
    "length_m": "Longueur (m)", "length_km": "Longueur (km)", "mean_friction": "Friction moyenne",
    "cost": "Coût de déplacement", "cost_distance": "Coût de déplacement", "from_id": "Réservoir de départ",
    "to_id": "Réservoir d'arrivée", "source_id": "Réservoir de départ", "target_id": "Réservoir d'arrivée",
    "libelle": "Libellé", "name": "Nom", "nom": "Nom", "insee": "Code INSEE",
    "population_municipale": "Population municipale", "kind": "Nature", "type": "Type",
    "obstacle": "Obstacle", "obstacle_type": "Type d'obstacle", "infrastructure": "Infrastructure",
    "importance": "Importance", "culverted": "Busé", "position": "Position", "protection_type": "Protection",
    "origin": "Origine", "reason": "Motif", "commune": "Commune", "trame": "Trame",
    "path_length_m": "Longueur du tracé (m)", "corridor_id": "Corridor", "corridor_kind": "Type de corridor",
    "infra_type": "Type d'infrastructure", "infra_class": "Classe d'infrastructure",
    "infra_name": "Nom de l'infrastructure", "severity": "Gravité", "n_merged": "Tronçons fusionnés",
    "origin_name": "Nom de l'origine", "protection_types": "Protections",
    # priorities layer (tvb_tasks.priorities): rank and score components
    "candidate": "Type de priorité", "corridor_ids": "Corridors", "n_points": "Points de rupture",
    "gain_dpc_pct": "Gain de connectivité ΔPC (%)", "gain_ec_ha": "Gain ΔEC (ha)", "gain_method": "Méthode du gain",
    "cost_base": "Coût de base (indice)", "maintenance_share": "Part en secteur géré", "maintenance": "Secteurs gérés",
    "cost_proxy": "Coût estimé (indice)", "conflict": "Conflit avec un projet", "projects": "Projets concernés",
    "score": "Score de priorité", "rank": "Rang (territoire)", "rank_sous_trame": "Rang (sous-trame)",
    "rank_commune": "Rang (commune)", "flag": "Alerte",
    "max_gap_m": "Plus longue discontinuité (m)", "support_share": "Part d'éléments support",
    "missing_link": "Liaison manquante (fracture)", "barrier_m": "Longueur de barrière franchie (m)",
    "cost_saved": "Coût économisé si la barrière est franchie", "improvement_score": "Gain par mètre de barrière",
    "downgraded": "Statut abaissé par un point de rupture", "site_id": "Site de franchissement",
    "treated": "Point traité (passage existant)", "cost_margin": "Marge de coût du corridor",
    "mean_width_m": "Largeur moyenne (m)",
    "drop_height_m": "Hauteur de chute (m)", "fish_pass": "Passe à poissons",
}


def status_code(value: object) -> str | None:
    """Canonical corridor status code for a raw value (any known spelling), else None."""
    if value is None:
        return None
    return STATUS_ALIASES.get(str(value).strip().lower())


def status_label(value: object) -> str | None:
    code = status_code(value)
    return STATUS_STYLES[code][0] if code else (str(value) if value is not None else None)


def palette(names: list[str], known: dict[str, str]) -> dict[str, str]:
    """A colour per name: known names keep their colour, others take the fallback colours in turn."""
    out, i = {}, 0
    for n in names:
        if n in known:
            out[n] = known[n]
        else:
            out[n] = FALLBACK_COLORS[i % len(FALLBACK_COLORS)]
            i += 1
    return out


def sous_trame_colors(names: list[str]) -> dict[str, str]:
    """A colour per sous-trame name (known names keep their usual colour)."""
    return palette(names, SOUS_TRAME_COLORS)


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name)


# --- reader-facing values: French words for stored codes, units, popups --------------------------------------------
# Stored code → French word, per field (popups, QGIS value maps, report). Composite codes "a+b" / "a,b" are split.
VALUE_LABELS: dict[str, dict[str, str]] = {
    "origin": {"habitat_patch": "tache d'habitat", "protected_area": "aire protégée", "mining_site": "site minier",
               "extra_habitat": "site minier"},
    "infrastructure": {"road": "route", "railway": "voie ferrée", "canal": "canal",
                       "river_obstacle": "obstacle à l'écoulement", "obstacle": "obstacle à l'écoulement",
                       "culvert": "busage"},
    "kind": {"stream": "ruisseau", "river": "rivière", "canal": "canal", "ditch": "fossé", "drain": "fossé"},
    "position": {"open": "à ciel ouvert", "culverted": "busé (souterrain)", "underground": "souterrain"},
    "corridor_kind": {"terrestre": "terrestre", "aquatique": "aquatique", "terrestrial": "terrestre",
                      "wet": "aquatique"},
    "severity": {"1": "faible", "2": "moyenne", "3": "forte", "4": "très forte"},
    "protection_types": {"N2000_SIC": "Natura 2000 (SIC)", "N2000_ZPS": "Natura 2000 (ZPS)",
                         "ZNIEFF1": "ZNIEFF de type 1", "ZNIEFF2": "ZNIEFF de type 2",
                         "APB": "arrêté de protection de biotope", "RNN": "réserve naturelle nationale",
                         "RNR": "réserve naturelle régionale", "ENS": "espace naturel sensible"},
    "infra_class": {"in_use": "en service", "disused": "désaffectée", "road": "sous une route",
                    "railway": "sous une voie ferrée", "canal": "canal"},
    "candidate": {"corridor": "corridor à restaurer ou à créer", "rupture_site": "site de rupture (franchissement)"},
    "gain_method": {"corridor_restored": "corridor remis en état (friction ramenée à celle d'un habitat)",
                    "barrier_removed": "barrière rendue franchissable (passage à faune)",
                    "obstacle_passable": "obstacle du cours d'eau rendu franchissable (ouvrage, busage, pont)",
                    "reservoir_split": "réservoir coupé par l'infrastructure (gain : ses deux parties réunies)",
                    "in_reservoir": "gain nul : dans un réservoir (sur aucune liaison entre réservoirs)",
                    "no_link": "gain nul : ne relie pas deux réservoirs",
                    "reservoir_notched": "gain nul : l'infrastructure entame le réservoir sans le couper en deux",
                    "hors_graphe": "gain nul : ne relie pas deux réservoirs"},
    "status": {code: label.lower() for code, (label, _c) in STATUS_STYLES.items()},
}
VALUE_LABELS["corridor_kind"]["reservoir"] = "traversée d'un réservoir"
VALUE_LABELS["protection_type"] = VALUE_LABELS["protection_types"]
VALUE_LABELS["infra_type"] = VALUE_LABELS["infrastructure"]

# Rupture points: colour by infrastructure, size by severity (1..4)
# (not the corridor status colours green / orange / red, nor the blue of wet corridors)
# culverts (busages: a watercourse piped under a road or railway) in pink, distinct from the railway purple
INFRA_COLORS = {"road": "#111111", "railway": "#7b3294", "canal": "#b35806", "river_obstacle": "#01665e",
                "culvert": "#e7298a"}
SEVERITY_RADIUS = {1: 4, 2: 5.5, 3: 7, 4: 9}

# Popup fields per layer, in order: (field, French label, format). Formats: "text", "code" (VALUE_LABELS),
# "codes" (list of codes), "ha", "km" (stored in m), "m", "cost", "friction", "int"; "km_pos" / "m_pos": row left
# out when 0; "bool" (oui / non), "sites" (codes inside origin_name), "gain_pct" / "gain_ha" (0 → "gain nul"),
# "conflict", "index", "score", "share" (0–1 shown as %). A field absent from a feature
# is skipped; fields of a layer without a spec are shown with FIELD_LABELS (so layers added later get popups).
POPUP_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "communes": [("nom", "Commune", "text"), ("insee", "Code INSEE", "text"),
                 ("population_municipale", "Population municipale", "int")],
    "reservoirs": [("libelle_sous_trame", "Sous-trame", "text"), ("area_ha", "Surface", "ha"),
                   ("origin", "Origine", "codes"), ("protection_types", "Protections", "codes"),
                   ("origin_name", "Sites", "sites"), ("id", "Identifiant", "text")],
    "relays": [("libelle_sous_trame", "Sous-trame", "text"), ("area_ha", "Surface", "ha"),
               ("origin", "Origine", "codes"), ("origin_name", "Sites", "sites"), ("id", "Identifiant", "text")],
    "corridors": [("libelle_statut", "Statut", "text"), ("libelle_sous_trame", "Sous-trame", "text"),
                  ("length_m", "Longueur", "km"), ("cost", "Coût de déplacement", "cost"),
                  ("mean_friction", "Friction moyenne le long du tracé", "friction"),
                  ("from_id", "Réservoir de départ", "text"), ("to_id", "Réservoir d'arrivée", "text"),
                  ("id", "Identifiant", "text")],
    "wet_corridors": [("name", "Cours d'eau", "text"), ("kind", "Nature", "code"), ("position", "Position", "code"),
                      ("length_m", "Longueur", "km"), ("id", "Identifiant", "text")],
    "rupture_points": [("infrastructure", "Infrastructure", "code"), ("infra_name", "Nom de l'infrastructure", "text"),
                       ("infra_class", "Classe", "infra_class"), ("severity", "Gravité", "code"),
                       ("libelle_sous_trame", "Sous-trame", "text"), ("corridor_kind", "Corridor", "code"),
                       ("corridor_id", "Corridor coupé", "text"), ("n_merged", "Franchissements regroupés", "int"),
                       ("missing_link", "Liaison manquante à rétablir", "bool"),
                       ("barrier_m", "Longueur de barrière franchie", "m_pos"),
                       ("site_id", "Site de franchissement", "text"), ("id", "Identifiant", "text")],
    "corridor_stretches": [("libelle_statut", "Statut du tronçon", "text"),
                           ("libelle_sous_trame", "Sous-trame", "text"), ("length_m", "Longueur du tronçon", "km"),
                           ("max_gap_m", "Plus longue discontinuité", "m"),
                           ("support_share", "Part d'éléments support", "share"),
                           ("downgraded", "Statut abaissé par un point de rupture", "bool"),
                           ("missing_link", "Liaison manquante (fracture)", "bool"),
                           ("corridor_id", "Corridor", "text"), ("id", "Identifiant", "text")],
    "vigilance_points": [("infrastructure", "Infrastructure", "code"),
                         ("infra_name", "Nom de l'infrastructure", "text"), ("infra_class", "Classe", "infra_class"),
                         ("severity", "Gravité", "code"), ("libelle_sous_trame", "Sous-trame", "text"),
                         ("corridor_id", "Corridor franchi", "text"),
                         ("n_merged", "Franchissements regroupés", "int"), ("id", "Identifiant", "text")],
    "corridor_areas": [("libelle", "Emprise", "text"), ("libelle_statut", "Statut", "text"),
                       ("libelle_sous_trame", "Sous-trame", "text"), ("area_ha", "Surface", "ha"),
                       ("mean_width_m", "Largeur moyenne", "m"),
                       ("missing_link", "Liaison manquante (fracture)", "bool"),
                       ("cost_margin", "Marge de coût du corridor", "cost"), ("corridor_id", "Corridor", "text")],
    "priorities": [("libelle", "Priorité", "text"), ("rank", "Rang (territoire)", "int"),
                   ("rank_sous_trame", "Rang (sous-trame)", "int"), ("rank_commune", "Rang (commune)", "int"),
                   ("flag", "Alerte", "text"), ("candidate", "Type de priorité", "code"),
                   ("libelle_statut", "Statut du corridor", "text"), ("libelle_sous_trame", "Sous-trame", "text"),
                   ("infrastructure", "Infrastructure", "code"), ("infra_name", "Nom de l'infrastructure", "text"),
                   ("n_points", "Points de rupture", "int"), ("length_m", "Longueur", "km_pos"),
                   ("gain_dpc_pct", "Gain de connectivité ΔPC", "gain_pct"),
                   ("gain_ec_ha", "Gain de surface connectée ΔEC", "gain_ha"),
                   ("gain_method", "Méthode du gain", "code"), ("cost_proxy", "Coût estimé", "index"),
                   ("maintenance", "Secteurs gérés", "text"), ("conflict", "Conflit avec un projet", "conflict"),
                   ("projects", "Projets concernés", "text"), ("score", "Score de priorité", "score"),
                   ("commune", "Commune", "text")],
}
# never shown as such (codes whose French label is another field, internal ids, duplicates)
POPUP_HIDDEN = {"fid", "sous_trame", "status", "path_length_m", "class", "trame"}
UNIT_NOTES = {"cost": "unités de coût (Σ friction × m)", "friction": "échelle 1 (habitat) à 10 000 (infranchissable)",
              "index": "indice : longueur × coefficient", "score": "0 à 100 dans l'ordre du rang : gain × (1 + conflit "
              "de projet) / (1 + coût) ; 0 = gain nul"}
# stored as 0/1 or true/false: shown oui / non (popups of layers without a spec too)
BOOLEAN_FIELDS = ["missing_link", "downgraded", "treated", "culverted", "buse"]
# "patch 12" in origin_name → "tache d'habitat 12"; protection codes in it → VALUE_LABELS["protection_types"]
ORIGIN_NAME_WORDS = {"patch": "tache d'habitat"}


def value_label(field: str, value: object) -> str:
    """French word(s) for a stored code of ``field`` (composite codes joined by ", "); unknown codes unchanged."""
    if value is None:
        return "—"
    words = VALUE_LABELS.get(field, {})
    parts = [p.strip() for p in str(value).replace("+", ",").split(",") if p.strip()]
    return ", ".join(words.get(p, p) for p in parts) if parts else "—"


# --- credits and base map (territory YAML ``publish:``) ------------------------------------------------------------
def _credits(territory) -> tuple[dict[str, str], dict[str, str]]:
    """(credits of the default profile, credits of the active profile), by source name (``publish.credits``)."""
    cfg = territory.publish.credits
    return cfg.get("default") or {}, cfg.get(getattr(territory, "profile", "default")) or {}


def source_credits(territory) -> list[str]:
    """Credits of the sources the territory's active profile uses, each once, in source order: the publisher's
    attribution from the source's schema file (``config/schemas/``) when it names one, else ``publish.credits`` of
    the YAML (sample files); plus the base map's credit when there is one. Empty when nothing is configured."""
    from tvb_tasks.sources.schemas import source_credits as schema_credits

    by_schema = {c["source"]: c["attribution"] for c in schema_credits(territory) if c["attribution"]}
    default, profile = _credits(territory)
    out: list[str] = []
    for name in territory.sources:
        text = by_schema.get(name) or profile.get(name) or default.get(name)
        if text and text not in out:
            out.append(text)
    base = basemap_config(territory)
    if base and base.get("attribution") and base["attribution"] not in out:
        out.append(base["attribution"])
    return out


ROLE_WORDS = {"boundary": "Contour du territoire", "communes": "Communes", "landuse": "Occupation du sol",
              "protected_areas": "Aires protégées", "roads": "Routes", "railways": "Voies ferrées",
              "watercourses": "Cours d'eau et canaux", "mining": "Sites miniers (terrils, cavaliers)",
              "river_obstacles": "Obstacles à l'écoulement", "projects": "Projets d'aménagement",
              "maintenance": "Secteurs gérés (entretien)"}


def sources_table(territory) -> list[dict[str, str]]:
    """One row per source of the territory (all of them, in source order): ``{"source", "title", "publisher",
    "licence", "licence_url", "attribution"}``. Sources with a schema file take its metadata; the others (sample
    files) their ``publish.credits`` text, the licence read from its parentheses ("(Licence Ouverte)", "(ODbL)") or
    "données synthétiques" when the credit says so."""
    import re

    from tvb_tasks.sources.schemas import source_credits as schema_credits

    by_schema = {c["source"]: c for c in schema_credits(territory)}
    default, profile = _credits(territory)
    rows = []
    for name, src in territory.sources.items():
        if name in by_schema:
            rows.append(dict(by_schema[name]))
            continue
        text = profile.get(name) or default.get(name) or ""
        found = re.findall(r"\(([^()]*)\)\s*$", text)
        synthetic = "synthétique" in text
        licence = "données synthétiques (échantillon)" if synthetic else (found[0] if found else "non renseignée")
        publisher = re.search(r"©\s*([^()]+?)\s*(\(|$)", text)
        rows.append({"source": name, "title": ROLE_WORDS.get(src.role, src.role),
                     "publisher": publisher.group(1).strip(" –") if publisher else (
                         "échantillon de démonstration" if synthetic else ""),
                     "licence": licence, "licence_url": "", "attribution": text})
    return rows


def credit_line(territory, fallback: str = "") -> str:
    """All credits on one line (`` · `` between them); ``fallback`` when none is configured."""
    return " · ".join(source_credits(territory)) or fallback


def reference_label(territory) -> str:
    """How readers name the study whose published figures are shown beside ours (``publish.reference_label``)."""
    return territory.publish.reference_label or "étude de référence du territoire"


def basemap_config(territory) -> dict | None:
    """The base map of the active profile (``publish.basemap.<profile>``: tiles URL template, title,
    attribution, max_zoom), or None (offline: no base map)."""
    cfg = territory.publish.basemap.get(getattr(territory, "profile", "default"))
    return cfg.model_dump() if cfg is not None else None


# Figures of one commune (indicators.json ``communes`` rows): (key, French label, unit, decimals). Web map popups and
# the report's commune sheets.
COMMUNE_FIGURES: list[tuple[str, str, str, int]] = [
    ("area_ha", "Surface", "ha", 0), ("artificial_pct", "Espaces artificialisés", "%", 1),
    ("natural_pct", "Espaces naturels", "%", 1), ("reservoirs_ha", "Réservoirs de biodiversité", "ha", 1),
    ("relays_ha", "Zones relais", "ha", 1), ("corridors_existing_km", "Corridors existants", "km", 1),
    ("corridors_to_restore_km", "Corridors à restaurer", "km", 1),
    ("corridors_to_create_km", "Corridors à créer", "km", 1),
    ("wet_corridors_km", "Corridors humides", "km", 1), ("rupture_points", "Points de rupture", "", 0),
]

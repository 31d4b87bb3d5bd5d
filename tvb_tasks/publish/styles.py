"""Published layers, their French titles, field labels and colours: shared by the web map, QGIS and GeoPackage."""
from __future__ import annotations

# Order = drawing order (bottom first). ``by``: attribute giving the colour category.
PUBLISHED_LAYERS: list[dict] = [
    {"name": "communes", "title": "Communes", "geometry": "polygon", "color": "#6b6b6b", "fill_opacity": 0.0},
    {"name": "reservoirs", "title": "Réservoirs de biodiversité", "geometry": "polygon", "by": "sous_trame",
     "color": "#2e7d32", "fill_opacity": 0.6},
    {"name": "relays", "title": "Zones relais", "geometry": "polygon", "by": "sous_trame", "color": "#8bc34a",
     "fill_opacity": 0.35},
    {"name": "corridor_areas", "title": "Emprise des corridors (corridors de moindre coût)", "geometry": "polygon",
     "by": "status", "color": "#1a9850", "fill_opacity": 0.2},
    {"name": "corridors", "title": "Corridors écologiques", "geometry": "line", "by": "status", "color": "#1a9850",
     "width": 3},
    {"name": "wet_corridors", "title": "Corridors humides (trame bleue)", "geometry": "line", "color": "#1f78b4",
     "width": 3},
    {"name": "rupture_points", "title": "Points de rupture", "geometry": "point", "color": "#e31a1c", "radius": 6},
    {"name": "priorities", "title": "Priorités de restauration", "geometry": "point", "by": "sous_trame",
     "color": "#ff6f00", "radius": 7},
]
LAYER_NAMES = [layer["name"] for layer in PUBLISHED_LAYERS]

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
    "rank_commune": "Rang (commune)",
    "max_gap_m": "Plus longue discontinuité (m)", "support_share": "Part d'éléments support",
    "missing_link": "Liaison manquante (fracture)", "barrier_m": "Longueur de barrière franchie (m)",
    "cost_saved": "Coût économisé si la barrière est franchie", "improvement_score": "Gain par mètre de barrière",
    "downgraded": "Statut abaissé par un point de rupture", "site_id": "Site de franchissement",
    "treated": "Point traité (passage existant)", "cost_margin": "Marge de coût du corridor",
    "mean_width_m": "Largeur moyenne (m)",
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

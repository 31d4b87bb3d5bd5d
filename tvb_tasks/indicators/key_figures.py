"""Key figures of the published CALL study, computed from a release's layers, and their comparison.

The territory figures are sums over the commune table (:func:`tvb_tasks.indicators.communes.commune_measures`), so
only what lies inside the communes counts: areas in ha, lengths in km (dissolved across sous-trames: a stretch shared
by two sous-trames counts once), shares in % of the territory area; rupture points and rupture sites (one crossing
of one infrastructure, whatever the sous-trames) are both counted, the severity-4 points (fractures) apart, and the
points de vigilance (local roads, COST 341 partial barriers) on their own line, never among the rupture points.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from tvb_tasks.indicators.common import IndicatorsError

# key → (French label for the report, unit); order = order of the published "chiffres clés"
KEY_FIGURES: dict[str, tuple[str, str]] = {
    "artificialised_share_pct": ("Part des espaces artificialisés", "%"),
    "natural_share_pct": ("Part des espaces naturels", "%"),
    "territory_area_ha": ("Superficie du territoire", "ha"),
    "terrestrial_corridors_km": ("Corridors terrestres", "km"),
    "terrestrial_corridors_to_restore_km": ("dont corridors à restaurer", "km"),
    "terrestrial_corridors_to_create_km": ("dont corridors à créer", "km"),
    "terrestrial_corridors_existing_km": ("dont corridors existants", "km"),
    "wet_corridors_km": ("Corridors humides (cours d'eau à ciel ouvert)", "km"),
    "terrestrial_reservoirs_relays_ha": ("Réservoirs et zones relais terrestres", "ha"),
    "wet_reservoirs_relays_ha": ("Réservoirs et zones relais humides", "ha"),
    "rupture_points": ("Points de rupture", "nombre"),
    "urban_nature_ha": ("Nature en ville (parcs, jardins, cimetières enherbés)", "ha"),
    "rupture_sites": ("Sites de rupture (franchissements d'une infrastructure)", "nombre"),
    "rupture_points_severity_4": ("dont fractures (points de gravité 4 : autoroutes, voies ferrées, canaux)",
                                  "nombre"),
    "vigilance_points": ("Points de vigilance (routes locales, gravité 2, hors points de rupture)", "nombre"),
}


def key_figures(communes: pd.DataFrame) -> dict[str, float | int]:
    """The territory's key figures from the per-commune measures (see ``commune_measures`` columns)."""
    if communes.empty:
        raise IndicatorsError("no commune: cannot compute the key figures")
    area = float(communes["area_ha"].sum())
    return {
        "artificialised_share_pct": 100.0 * float(communes["artificial_ha"].sum()) / area,
        "natural_share_pct": 100.0 * float(communes["natural_ha"].sum()) / area,
        "territory_area_ha": area,
        "terrestrial_corridors_km": float(communes["terrestrial_corridors_km"].sum()),
        "terrestrial_corridors_to_restore_km": float(communes["corridors_to_restore_km"].sum()),
        "terrestrial_corridors_to_create_km": float(communes["corridors_to_create_km"].sum()),
        "terrestrial_corridors_existing_km": float(communes["corridors_existing_km"].sum()),
        "wet_corridors_km": float(communes["wet_corridors_km"].sum()),
        "terrestrial_reservoirs_relays_ha": float(communes["terrestrial_reservoirs_relays_ha"].sum()),
        "wet_reservoirs_relays_ha": float(communes["wet_reservoirs_relays_ha"].sum()),
        "rupture_points": int(communes["rupture_points"].sum()),
        "urban_nature_ha": float(communes["urban_nature_ha"].sum()) if "urban_nature_ha" in communes else 0.0,
        "rupture_sites": int(communes["rupture_sites"].sum()),
        "rupture_points_severity_4": int(communes["rupture_points_severity_4"].sum())
        if "rupture_points_severity_4" in communes else 0,
        "vigilance_points": int(communes["vigilance_points"].sum()) if "vigilance_points" in communes else 0,
    }


def compare_with_published(figures: dict[str, float], published: dict[str, float]) -> list[dict[str, Any]]:
    """One row per key figure: computed, published (None when the study gives none), difference and
    difference in % of the published value."""
    rows = []
    for key, (label, unit) in KEY_FIGURES.items():
        value = figures.get(key)
        ref = published.get(key)
        diff = value - ref if value is not None and ref is not None else None
        rows.append({
            "indicator": key, "libelle": label, "unit": unit, "computed": value, "published": ref,
            "difference": diff,
            "difference_pct": 100.0 * diff / ref if diff is not None and ref else None,
        })
    return rows

"""French labels (``libelle``) of the published layers. Internal values stay in English."""
from __future__ import annotations

import geopandas as gpd
import pandas as pd

__all__ = [
    "INFRA_FR",
    "SEVERITY_FR",
    "STATUS_FR",
    "label_corridor_areas",
    "label_corridors",
    "label_infrastructure",
    "label_landuse",
    "label_relays",
    "label_reservoirs",
    "label_ruptures",
    "label_stretches",
    "label_vigilance",
    "label_wet",
]

STATUS_FR = {"existing": "existant", "to_restore": "à restaurer", "to_create": "à créer"}
INFRA_FR = {"road": "route", "railway": "voie ferrée", "canal": "canal", "river_obstacle": "obstacle à l'écoulement",
            "culvert": "ouvrage busé"}
SEVERITY_FR = {1: "faible", 2: "moyenne", 3: "forte", 4: "très forte"}
RAIL_STATUS_FR = {"in_use": "en service", "disused": "désaffectée"}


def _st_label(territory, st: str) -> str:
    cfg = territory.sous_trames.get(st)
    return cfg.label if cfg else st


def label_reservoirs(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    origin = {"protected_area": "aire protégée", "habitat_patch": "tache d'habitat",
              "habitat_patch+protected_area": "aire protégée et tache d'habitat"}
    return pd.Series([f"Réservoir de biodiversité – {_st_label(territory, s)} ({origin.get(o, o)})"
                      for s, o in zip(gdf["sous_trame"], gdf["origin"])], index=gdf.index, dtype=object)


def label_relays(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    return pd.Series([f"Zone relais – {_st_label(territory, s)}" for s in gdf["sous_trame"]], index=gdf.index,
                     dtype=object)


def label_corridors(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    missing = gdf["missing_link"] if "missing_link" in gdf.columns else pd.Series(0, index=gdf.index)
    return pd.Series([f"Corridor {STATUS_FR.get(st, st)} – {_st_label(territory, s)} ({a} – {b})"
                      + (" – liaison manquante (fracture)" if m == 1 else "")
                      for s, st, a, b, m in zip(gdf["sous_trame"], gdf["status"], gdf["from_id"], gdf["to_id"],
                                                missing)], index=gdf.index, dtype=object)


def label_stretches(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    """Corridor stretches: status of the stretch, its corridor."""
    return pd.Series([f"Tronçon {STATUS_FR.get(st, st)} – {_st_label(territory, s)} ({c}, {round(m):d} m)"
                      for s, st, c, m in zip(gdf["sous_trame"], gdf["status"], gdf["corridor_id"], gdf["length_m"])],
                     index=gdf.index, dtype=object)


def label_corridor_areas(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    return pd.Series([f"Emprise du corridor {STATUS_FR.get(st, st)} – {_st_label(territory, s)} ({c})"
                      for s, st, c in zip(gdf["sous_trame"], gdf["status"], gdf["corridor_id"])],
                     index=gdf.index, dtype=object)


def label_wet(gdf: gpd.GeoDataFrame) -> pd.Series:
    pos = {"open": "cours d'eau à ciel ouvert", "culverted": "section busée (discontinuité)"}
    return pd.Series([f"Corridor aquatique – {pos.get(p, p)}" + (f" ({n})" if n else "")
                      for p, n in zip(gdf["position"], gdf["name"])], index=gdf.index, dtype=object)


def _infra_fr(t: str, c: str) -> str:
    if t == "road":
        return f"route d'importance {c}"
    if t == "railway":
        return f"voie ferrée {RAIL_STATUS_FR.get(c, c)}"
    if t == "culvert":
        return "ouvrage busé sous " + ("une route" if c == "road" else "une voie ferrée" if c == "railway" else c)
    if t == "river_obstacle":
        return "obstacle à l'écoulement" + (f" ({c})" if c else "")
    return INFRA_FR.get(t, t)


def label_ruptures(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    missing = gdf["missing_link"] if "missing_link" in gdf.columns else pd.Series(0, index=gdf.index)
    kind = gdf["corridor_kind"] if "corridor_kind" in gdf.columns else pd.Series("", index=gdf.index)
    return pd.Series([f"Point de rupture – {'pont : ' if k == 'aquatique' and t in ('road', 'railway') else ''}"
                      f"{_infra_fr(t, c)} – {_st_label(territory, s)} – sévérité "
                      f"{SEVERITY_FR.get(int(v), v)}" + (" – liaison manquante à rétablir" if m == 1 else "")
                      + (" – réservoir coupé par l'infrastructure" if k == "reservoir" else "")
                      for t, c, s, v, m, k in zip(gdf["infrastructure"], gdf["infra_class"], gdf["sous_trame"],
                                                  gdf["severity"], missing, kind)], index=gdf.index, dtype=object)


def label_vigilance(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    """Points de vigilance: a local road (partial barrier) crossing a corridor."""
    return pd.Series([f"Point de vigilance – {_infra_fr(t, c)}" + (f" ({n})" if n else "")
                      + f" – {_st_label(territory, s)} – sévérité {SEVERITY_FR.get(int(v), v)}"
                      for t, c, n, s, v in zip(gdf["infrastructure"], gdf["infra_class"], gdf["infra_name"],
                                               gdf["sous_trame"], gdf["severity"])], index=gdf.index, dtype=object)


def label_infrastructure(gdf: gpd.GeoDataFrame) -> pd.Series:
    return pd.Series([f"Infrastructure fragmentante – {_infra_fr(t, c)}" + (f" ({n})" if n else "")
                      for t, c, n in zip(gdf["infra_type"], gdf["infra_class"], gdf["infra_name"])],
                     index=gdf.index, dtype=object)


def label_landuse(territory, gdf: gpd.GeoDataFrame) -> pd.Series:
    labels = {k: v.label for k, v in territory.landuse.classes.items()}
    return gdf["class"].map(labels).fillna(gdf["class"]).astype(object)

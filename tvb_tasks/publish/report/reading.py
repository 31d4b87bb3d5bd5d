"""What a reader needs besides the tables: the plain-language summary, why figures moved (inputs, configuration or
code), the change rows sorted by size with units and marks, French validation messages, commune figures.

Pure functions of the indicators document, the indicator history and the validation summary (no file output).
"""
from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

import pandas as pd

from tvb_tasks.indicators.history import PROVENANCE_COLUMNS, compare_provenance
from tvb_tasks.indicators.key_figures import KEY_FIGURES
from tvb_tasks.publish.styles import COMMUNE_FIGURES

# --- numbers -----------------------------------------------------------------------------------------------------------


def fr(value: Any, decimals: int | None = 1, sign: bool = False) -> str:
    """French number (narrow no-break space for thousands, decimal comma); ``None``/NaN → '–'; ``decimals=None``
    → 3 significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    value = float(value)
    if decimals is None:        # 3 significant digits, never scientific notation (0,0000123 rather than 1,23e-05)
        decimals = 0 if value == 0 else max(0, 2 - math.floor(math.log10(abs(value))))
    if round(value, decimals) == 0:
        value = 0.0             # never "-0"
    text = f"{value:+,.{decimals}f}" if sign else f"{value:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",")


# --- why figures moved: provenance of the two releases ---------------------------------------------------------------


@dataclass
class Provenance:
    """What differs between the previous and this release; None = not recorded for one of them."""

    previous_release: str | None
    inputs_changed: list[str] | None       # source names whose snapshot changed
    config_changed: bool | None
    resolution: tuple[float, float] | None  # (previous, current) when it changed
    code_changed: bool | None
    code_versions: tuple[str, str] | None
    parameters_changed: bool | None = None  # the configuration other than the resolution

    @property
    def method_changed(self) -> bool:
        return bool(self.config_changed or self.resolution or self.code_changed)


def _finite(v: object) -> TypeGuard[float]:
    """A recorded number: not None and not NaN."""
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _release_meta(history: pd.DataFrame, release_id: str) -> dict[str, Any]:
    """The provenance record (:func:`tvb_tasks.indicators.history.provenance` keys) a release's history rows carry;
    only the parts recorded ({} when the release is not in the history)."""
    rows = history[history["release_id"] == release_id]
    if rows.empty:
        return {}
    first = rows.iloc[0]
    meta: dict[str, Any] = {}
    raw = first.get("snapshot_ids") if "snapshot_ids" in rows.columns else None
    if isinstance(raw, str) and raw.strip():
        with contextlib.suppress(json.JSONDecodeError):
            meta["snapshot_ids"] = json.loads(raw)
    for col in PROVENANCE_COLUMNS:
        if col in rows.columns:
            value = first.get(col)
            if value is not None and not (isinstance(value, float) and math.isnan(value)) and value != "":
                meta[col] = value
    return meta


def previous_release_in(history: pd.DataFrame | None, release_id: str) -> str | None:
    """The release published just before ``release_id`` according to the history (None when there is none)."""
    if history is None or history.empty:
        return None
    releases = (history[["release_id", "released_at"]].drop_duplicates("release_id")
                .sort_values(["released_at", "release_id"]))
    ids = list(releases["release_id"])
    if release_id in ids:
        ids = ids[:ids.index(release_id)]
    return ids[-1] if ids else None


def provenance(history: pd.DataFrame | None, release_id: str, previous_release: str | None) -> Provenance:
    """Compare the provenance the history rows carry (snapshot ids, and when recorded config hash, resolution,
    code version) for ``previous_release`` and ``release_id``, with
    :func:`tvb_tasks.indicators.history.compare_provenance` (the comparison behind ``indicators.json``'s causes).
    Missing columns give None (degrades gracefully)."""
    empty = Provenance(previous_release, None, None, None, None, None)
    if history is None or not previous_release or history.empty:
        return empty
    prev, cur = _release_meta(history, previous_release), _release_meta(history, release_id)
    if not prev or not cur:
        return empty
    c = compare_provenance(cur, prev)
    return Provenance(previous_release, c["changed_inputs"], c["configuration_changed"], c["resolutions"],
                      c["code_changed"], c["code_versions"], c["parameters_changed"])


def provenance_rows(p: Provenance, source_labels: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(Kind of change, what changed) rows: Données d'entrée, Configuration, Code."""
    labels = source_labels or {}
    if p.inputs_changed is None:
        inputs = "non enregistré pour la publication précédente"
    elif p.inputs_changed:
        inputs = "nouvelle version de : " + ", ".join(labels.get(n, n) for n in p.inputs_changed)
    else:
        inputs = "aucun changement (mêmes instantanés des sources)"
    if p.config_changed is None and p.resolution is None:
        config = "non enregistré pour la publication précédente"
    elif p.resolution:
        config = (f"résolution de calcul passée de {fr(p.resolution[0], 0)} m à {fr(p.resolution[1], 0)} m"
                  + (", autres paramètres du territoire inchangés" if p.parameters_changed is False
                     else ", et autres paramètres du territoire modifiés" if p.parameters_changed
                     else " (autres paramètres : non enregistré pour la publication précédente)"))
    else:
        config = "paramètres du territoire modifiés" if p.config_changed else "aucun changement"
    if p.code_changed is None:
        code = "non enregistré pour la publication précédente"
    elif p.code_changed:
        before, after = p.code_versions or ("?", "?")      # compare_provenance() sets both together
        code = f"nouvelle version du calcul ({before} → {after})"
    else:
        code = "aucun changement"
    return [("Données d'entrée", inputs), ("Configuration", config), ("Code de calcul", code)]


def provenance_explanation(p: Provenance) -> str:
    """One or two sentences telling the reader how to read the changes."""
    if p.resolution:
        return (f"La résolution de calcul a changé ({fr(p.resolution[0], 0)} m → {fr(p.resolution[1], 0)} m) : les "
                "corridors et les taches d'habitat sont retracés sur une autre grille. Les corridors « nouveaux » ou "
                "« disparus » et les écarts de surface traduisent surtout ce changement de méthode, pas une évolution "
                "du terrain.")
    if p.method_changed and not p.inputs_changed:
        return ("Les données d'entrée sont les mêmes : les écarts viennent d'un changement de paramètres ou de "
                "méthode de calcul, pas d'une évolution du terrain.")
    if p.method_changed and p.inputs_changed:
        return ("Les données d'entrée et la méthode ont toutes deux changé : une partie des écarts vient de la "
                "méthode ; comparer avec prudence.")
    method_known = p.config_changed is not None and p.code_changed is not None
    if p.inputs_changed == [] and not method_known:
        return ("Les données d'entrée sont les mêmes (mêmes instantanés des sources) : les écarts viennent donc d'un "
                "changement de paramètres ou de méthode de calcul, pas d'une évolution du terrain.")
    if p.inputs_changed and method_known:
        return ("Seules les données d'entrée ont changé : les écarts reflètent l'évolution de ces données (nouveau "
                "millésime, corrections du producteur).")
    if p.inputs_changed:
        return ("Des données d'entrée ont changé ; la provenance de la méthode (paramètres, code) n'est pas "
                "entièrement enregistrée pour la publication précédente : une partie des écarts peut aussi en venir.")
    if p.inputs_changed == [] and p.config_changed is False and p.code_changed is False:
        return "Rien n'a changé dans les données, la configuration ou le code : les chiffres sont identiques."
    return ("La provenance de la publication précédente n'est pas entièrement enregistrée : l'origine des écarts "
            "(données, paramètres ou méthode) ne peut pas être établie ici.")


# --- change rows -----------------------------------------------------------------------------------------------------
INDICATOR_UNITS = {"pc": "indice 0–1", "iic": "indice 0–1", "n_nodes": "réservoirs", "ec_pc_ha": "ha",
                   "meff_cbc_ha": "ha", "meff_cut_ha": "ha"}


@dataclass
class ChangeRow:
    label: str
    unit: str
    previous: str
    current: str
    change: str          # signed, with unit
    change_pct: str
    direction: str       # "up" | "down" | "same"
    size: float          # |change %| (or a large number for a change from 0), for sorting
    small: bool          # folded away
    family: str = "key_figures"


def change_rows(table: list[dict], labels: dict[str, str], st_labels: dict[str, str], keep: set[tuple[str, str]],
                small_pct: float) -> list[ChangeRow]:
    """Indicator changes (key figures and ``keep`` (family, indicator) pairs, territory scope) sorted by the size of
    their relative change; those under ``small_pct`` % are marked ``small``."""
    rows = []
    for r in table:
        if r.get("scope", "territory") != "territory":
            continue
        if r["family"] != "key_figures" and (r["family"], r["indicator"]) not in keep:
            continue
        label = labels.get(r["indicator"]) or KEY_FIGURES.get(r["indicator"], (r["indicator"],))[0]
        if r.get("sous_trame"):
            label = f"{label} – {st_labels.get(r['sous_trame'], r['sous_trame'])}"
        unit = KEY_FIGURES.get(r["indicator"], ("", r.get("unit") or ""))[1] or INDICATOR_UNITS.get(
            r["indicator"], r.get("unit") or "")
        unit = "" if unit == "nombre" else unit
        ratio = r["indicator"] in ("pc", "iic")
        decimals = None if ratio else (0 if unit in ("", "réservoirs") else 1)
        abs_change, pct = r.get("change_abs"), r.get("change_pct")
        if _finite(pct):
            size = abs(float(pct))
        elif _finite(abs_change) and float(abs_change) != 0:
            size = math.inf                     # from or to nothing
        else:
            size = 0.0
        direction = "same"
        if _finite(abs_change) and float(abs_change) > 0:
            direction = "up"
        elif _finite(abs_change) and float(abs_change) < 0:
            direction = "down"
        suffix = f"\u00a0{unit}" if unit and not ratio else ""
        rows.append(ChangeRow(label, unit, fr(r.get("previous"), decimals) + suffix, fr(r.get("current"), decimals) + suffix,
                              (fr(abs_change, decimals, sign=True) + suffix) if _finite(abs_change) else "–",
                              (fr(pct, 1, sign=True) + "\u00a0%") if _finite(pct) else "–", direction, size,
                              size < small_pct, r["family"]))
    return sorted(rows, key=lambda c: (-c.size if c.size != math.inf else -1e18, c.label))


MARKS = {"up": "▲", "down": "▼", "same": "="}
MARK_COLORS = {"up": "#2166ac", "down": "#b35806", "same": "#666666"}     # blue / orange: colour-blind safe


# --- validation messages in French ------------------------------------------------------------------------------------
EXPECTATION_FR = {
    "expect_column_values_to_not_be_null": "valeurs manquantes",
    "expect_column_values_to_be_between": "valeurs hors de l'intervalle attendu",
    "expect_column_values_to_be_in_set": "valeurs hors de la liste attendue",
    "expect_column_values_to_be_in_territory": "entités hors du territoire",
    "expect_column_values_to_be_in_type_list": "type de colonne inattendu",
    "expect_column_values_to_be_non_empty_geometry": "géométries vides",
    "expect_column_values_to_be_of_type": "type de colonne inattendu",
    "expect_column_values_to_be_unique": "identifiants en double",
    "expect_column_values_to_be_unique_geometry": "géométries en double",
    "expect_column_values_to_be_valid_geometry": "géométries invalides",
    "expect_column_values_to_have_geometry_type": "type de géométrie inattendu",
    "expect_column_values_to_match_regex": "valeurs au format inattendu",
    "expect_table_area_by_class_drift_to_be_below": "variation de surface par classe trop forte",
    "expect_table_columns_to_match_set": "colonnes différentes de celles attendues",
    "expect_table_crs_to_be": "système de coordonnées inattendu",
    "expect_table_row_count_to_be_between": "nombre d'entités hors de l'intervalle attendu",
    "expect_table_row_count_to_equal": "nombre d'entités différent de celui attendu",
    "expect_table_values_to_be_numeric": "valeurs non numériques",
    "row_count_drift": "variation du nombre d'entités depuis l'instantané précédent",
    "row_count_non_empty": "couche vide",
    "layer_readable": "couche illisible",
    "geometry_valid": "géométries invalides",
}
_PATTERNS = [
    (re.compile(r"^could not be evaluated: (.*)$"), "évaluation impossible : {0}"),
    (re.compile(r"^(\d+) of (\d+) rows fail(.*)$"), "{0} entité(s) sur {1} en défaut{2}"),
    (re.compile(r"^(\d+) failing item\(s\); observed (.*)$"), "{0} élément(s) en défaut ; valeur observée : {1}"),
    (re.compile(r"^observed (.*)$"), "valeur observée : {0}"),
]


def french_message(entry: dict) -> str:
    """A validation failure (``tvb_tasks.validate`` compact entry) in French: what was checked, on which column,
    what was found, what was expected."""
    message = str(entry.get("message") or "")
    expected = ""
    m = re.search(r" \(expected (.*)\)$", message)
    if m:
        message, expected = message[:m.start()], m.group(1)
    text = message
    for pattern, template in _PATTERNS:
        found = pattern.match(message)
        if found:
            text = template.format(*found.groups())
            break
    key = str(entry.get("expectation") or "")
    what = EXPECTATION_FR.get(key) or EXPECTATION_FR.get(str(entry.get("type") or "")) or ""
    if not what:
        what = next((v for k, v in EXPECTATION_FR.items() if key.startswith(k)), "")
    head = what.capitalize() if what else key
    if entry.get("column"):
        head += f" (colonne « {entry['column']} »)"
    out = f"{head} : {text}" if text else head
    if expected:
        out += f" (attendu : {expected.replace('min_value', 'min').replace('max_value', 'max')})"
    return out


# --- plain-language summary ------------------------------------------------------------------------------------------
def plain_summary(territory_name: str, doc: dict, *, synthetic: bool, validation_ok: bool | None,
                  change: list[ChangeRow], explanation: str, n_communes: int,
                  ruptures: dict | None = None) -> list[str]:
    """Short sentences for someone who reads only the first page. ``ruptures``: :func:`rupture_counts`."""
    k = doc.get("key_figures") or {}
    out = []
    if synthetic:
        out.append("Attention : l'occupation du sol de cette publication est synthétique (données de démonstration). "
                   "Les chiffres illustrent la méthode et ne décrivent pas le territoire réel.")
    if k.get("territory_area_ha") is not None:
        out.append(f"Le territoire ({territory_name}, {n_communes} communes) couvre {fr(k['territory_area_ha'], 0)} ha ; "
                   f"{fr(k.get('artificialised_share_pct'), 0)} % en est artificialisé et "
                   f"{fr(k.get('natural_share_pct'), 0)} % est occupé par des espaces naturels.")
    if k.get("terrestrial_reservoirs_relays_ha") is not None:
        out.append("Les réservoirs de biodiversité (espaces où les espèces vivent et se reproduisent) et les zones "
                   f"relais couvrent {fr(k['terrestrial_reservoirs_relays_ha'], 0)} ha pour la trame verte et "
                   f"{fr(k.get('wet_reservoirs_relays_ha'), 0)} ha pour la trame bleue (milieux humides).")
    if k.get("terrestrial_corridors_km") is not None:
        out.append(f"{fr(k['terrestrial_corridors_km'], 0)} km de corridors terrestres relient ces réservoirs : "
                   f"{fr(k.get('terrestrial_corridors_existing_km'), 0)} km fonctionnent déjà, "
                   f"{fr(k.get('terrestrial_corridors_to_restore_km'), 0)} km sont à restaurer et "
                   f"{fr(k.get('terrestrial_corridors_to_create_km'), 0)} km à créer. Les cours d'eau à ciel ouvert "
                   f"forment {fr(k.get('wet_corridors_km'), 0)} km de corridors humides.")
    if k.get("rupture_points") is not None:
        kinds = (ruptures or {}).get("kinds")
        if kinds:
            parts = [(f"{fr(kinds['corridor'], 0)} où une route passante, une voie ferrée exploitée ou un canal "
                      "coupe un corridor terrestre")]
            parts += [f"{fr(n, 0)} {what}" for n, what in (
                (kinds["reservoir"], "où une autoroute, une voie ferrée ou un canal traverse un réservoir"),
                (kinds["culvert"], "ouvrages busés sous une route ou une voie ferrée"),
                (kinds["bridge"], "ponts sur un cours d'eau"), (kinds["obstacle"], "obstacles à l'écoulement"))
                if n]
            text = (f"{fr(k['rupture_points'], 0)} points de rupture : " + ", ".join(parts[:-1])
                    + (" et " if len(parts) > 1 else "") + parts[-1] + ". ")
            if kinds["severity_4"]:
                text += (f"{fr(kinds['severity_4'], 0)} sont des fractures (gravité 4 : autoroutes, voies ferrées, "
                         f"canaux), dont {fr(kinds['missing_link'], 0)} sur des liaisons manquantes à rétablir. ")
            text += "Ce sont les lieux où un passage à faune ou un aménagement rétablirait la continuité."
        else:
            text = (f"{fr(k['rupture_points'], 0)} points de rupture marquent les endroits où une route passante, une "
                    "voie ferrée exploitée ou un canal coupe un corridor : ce sont les lieux où un passage à faune ou "
                    "un aménagement rétablirait la continuité.")
        if k.get("vigilance_points"):
            text += (f" {fr(k['vigilance_points'], 0)} points de vigilance (routes locales franchies par un corridor) "
                     "sont comptés à part.")
        out.append(text + rupture_explanation(ruptures))
    moved = [c for c in change if not c.small and c.direction != "same" and c.family == "key_figures"][:3]
    if doc.get("change") is None:
        out.append("C'est la première publication : il n'y a pas encore d'évolution à commenter.")
    elif moved:
        out.append("Principales évolutions depuis la publication précédente : " + " ; ".join(
            f"{_plain_label(c.label)} {c.change} ({c.change_pct})" for c in moved) + ". " + explanation)
    else:
        out.append("Aucune évolution notable depuis la publication précédente. " + explanation)
    if validation_ok is True:
        out.append("Les données d'entrée et les couches produites ont passé tous les contrôles de qualité bloquants.")
    elif validation_ok is False:
        out.append("Des contrôles de qualité bloquants ont échoué : voir la section Validation.")
    return out


def rupture_counts(points) -> dict:
    """Counts that explain the rupture points (GeoDataFrame with ``sous_trame``, optional ``site_id``): ``points``
    (one per crossing of one corridor of one sous-trame), ``sites`` (distinct ``site_id``: one crossing of one
    infrastructure, all sous-trames together), ``places`` (distinct locations), ``shared_places`` (locations
    holding points of several sous-trames), ``same_st_places`` (locations holding several points of one
    sous-trame: corridors of the same sous-trame crossing at one spot)."""
    if points is None or not len(points):
        return {"points": 0, "sites": 0, "places": 0, "shared_places": 0, "same_st_places": 0, "points_at_shared": 0}
    key = points.geometry.to_wkb()
    st = points["sous_trame"].astype(str) if "sous_trame" in points.columns else None
    by_place = st.groupby(key.values) if st is not None else None
    shared = int((by_place.nunique() > 1).sum()) if by_place is not None else 0
    same = int((by_place.apply(lambda s: s.duplicated().any())).sum()) if by_place is not None else 0
    sites = int(points["site_id"].nunique()) if "site_id" in points.columns else int(key.nunique())
    sizes = key.groupby(key.values).transform("size")
    return {"points": int(len(points)), "sites": sites, "places": int(key.nunique()), "shared_places": shared,
            "same_st_places": same, "points_at_shared": int((sizes > 1).sum()), "kinds": rupture_kinds(points)}


def rupture_kinds(points) -> dict | None:
    """Rupture points by kind (None without ``infrastructure`` / ``corridor_kind`` columns): ``corridor``
    (terrestrial corridor crossings), ``reservoir`` (reservoir cut by a barrier), ``culvert``, ``bridge`` (wet
    corridor under a road or railway), ``obstacle`` (river obstacle), ``severity_4`` and ``missing_link``."""
    if not {"infrastructure", "corridor_kind"} <= set(points.columns):
        return None
    infra, kind = points["infrastructure"].astype(str), points["corridor_kind"].astype(str)
    sev = points["severity"] if "severity" in points.columns else None
    ml = points["missing_link"] if "missing_link" in points.columns else None
    return {"corridor": int((kind == "terrestre").sum()), "reservoir": int((kind == "reservoir").sum()),
            "culvert": int((infra == "culvert").sum()), "obstacle": int((infra == "river_obstacle").sum()),
            "bridge": int(((kind == "aquatique") & infra.isin(["road", "railway"])).sum()),
            "severity_4": int((sev.fillna(0).astype(int) >= 4).sum()) if sev is not None else 0,
            "missing_link": int((ml.fillna(0).astype(int) == 1).sum()) if ml is not None else 0}


def rupture_explanation(c: dict | None) -> str:
    """Plain words on points vs sites (empty when no counts)."""
    if not c or not c.get("points"):
        return ""
    text = (f" Un point est compté par sous-trame et par corridor coupé ; ils se regroupent en {fr(c['sites'], 0)} "
            "sites de franchissement (un site = un même franchissement d'une infrastructure, toutes sous-trames "
            "confondues).")
    dup = c["points"] - c["places"]
    if dup > 0:
        parts = []
        if c["shared_places"]:
            parts.append(f"{fr(c['shared_places'], 0)} emplacement(s) portent des points de plusieurs sous-trames")
        if c["same_st_places"]:
            parts.append(f"{fr(c['same_st_places'], 0)} emplacement(s) coupés par plusieurs corridors d'une "
                         "même sous-trame")
        n_shared = c.get("points_at_shared") or dup
        text += (f" {fr(n_shared, 0)} points partagent leur emplacement avec un autre ("
                 + " ; ".join(parts) + ") : ce sont les « géométries en double » signalées par la validation, "
                 "conservées car chaque sous-trame et chaque corridor a son propre besoin de passage.")
    return text


def _plain_label(label: str) -> str:
    """"dont corridors à créer" → "corridors à créer"; "Points de rupture" → "points de rupture"."""
    label = label[5:] if label.startswith("dont ") else label
    return label[:1].lower() + label[1:] if label[:1].isupper() and label[1:2].islower() else label


# --- commune figures ------------------------------------------------------------------------------------------------
def commune_rows(row: dict) -> list[tuple[str, str]]:
    """(French label, value with unit) of one commune's figures (indicators.json ``communes`` row)."""
    out = []
    for key, label, unit, decimals in COMMUNE_FIGURES:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out.append((label, fr(value, decimals) + (f"\u00a0{unit}" if unit else "")))
    return out

"""Score, rank and French wording of the restoration priorities.

:func:`urgency` and :func:`score_and_rank` (score 0–100, its order is the rank; ranks per territory, sous-trame and
commune), the published rule (:func:`score_formula`) and the French names of a crossing (:func:`crossing_name`,
:func:`crossing_phrase`) and of a priority. Split from :mod:`.ranking`, which re-exports these names.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tvb_tasks.publish.styles import STATUS_STYLES

from .config import PrioritiesConfig

GAIN_EPSILON = 1e-9   # ΔPC (%) at or below this is "gain nul"
# why a site gains nothing (gain_method → French cause in the flag)
ZERO_GAIN_CAUSES = {"in_reservoir": "dans un réservoir", "no_link": "ne relie pas deux réservoirs",
                    "reservoir_notched": "entame un réservoir sans le couper en deux"}
INFRA_LABELS = {"road": "route", "railway": "voie ferrée", "canal": "canal", "river_obstacle": "obstacle",
                "obstacle": "obstacle à l'écoulement"}


def urgency(gain: pd.Series | np.ndarray, conflict: pd.Series | np.ndarray, cost: pd.Series | np.ndarray,
            weights) -> np.ndarray:
    """Unscaled score U = G · (1 + w_conflict · conflict) / (1 + w_cost · C), G = gain / max gain, C = cost / max
    cost (both in [0, 1]): a benefit / cost ratio (Linkage Mapper Barrier Mapper's improvement per metre restored)
    whose benefit a threatening project multiplies — the threat raises the urgency of a USEFUL restoration, it
    cannot make a useless one a priority (U = 0 when G = 0); a cost (lowered by a maintenance sector) divides it by
    at most 1 + w_cost. Always ≥ 0."""
    g = np.asarray(gain, dtype=float)
    c = np.asarray(cost, dtype=float)
    g_max, c_max = (float(g.max()) if g.size else 0.0), (float(c.max()) if c.size else 0.0)
    g_n = np.clip(g, 0.0, None) / g_max if g_max > 0 else np.zeros_like(g)
    c_n = np.clip(c, 0.0, None) / c_max if c_max > 0 else np.zeros_like(c)
    return g_n * (1.0 + weights.conflict * np.asarray(conflict, dtype=float)) / (1.0 + weights.cost * c_n)


def score_and_rank(frame: pd.DataFrame, cfg: PrioritiesConfig) -> pd.DataFrame:
    """Add ``score`` (0–100, its order IS the rank), ``flag``, ``rank`` (territory), ``rank_sous_trame``,
    ``rank_commune``; sorted by rank.

    score = 100 · U / max(U) (:func:`urgency`); an item without gain scores 0 and ranks after every item with one
    (ties: threatened first, then larger gain, then id)."""
    frame = frame.copy()
    if frame.empty:
        for col in ("score", "rank", "rank_sous_trame", "rank_commune"):
            frame[col] = pd.Series(dtype=float if col == "score" else int)
        frame["flag"] = pd.Series(dtype=object)
        return frame
    useful = (frame["gain_dpc_pct"] > GAIN_EPSILON).to_numpy()
    u = np.where(useful, urgency(frame["gain_dpc_pct"], frame["conflict"], frame["cost_proxy"], cfg.weights), 0.0)
    u_max = float(u.max())
    frame["score"] = 100.0 * u / u_max if u_max > 0 else 0.0
    threatened = frame["conflict"] > 0
    causes = frame["gain_method"].map(ZERO_GAIN_CAUSES).fillna("") if "gain_method" in frame.columns else ""
    zero = np.where(threatened, "menacé, gain nul", "gain nul")
    zero = np.where(pd.Series(causes, index=frame.index).astype(str) != "",
                    pd.Series(zero, index=frame.index) + " (" + pd.Series(causes, index=frame.index).astype(str)
                    + ")", zero)
    frame["flag"] = np.where(useful, np.where(threatened, "menacé", ""), zero)
    frame = frame.sort_values(["score", "conflict", "gain_dpc_pct", "id"], ascending=[False, False, False, True],
                              kind="stable")
    frame = frame.reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["rank_sous_trame"] = frame.groupby("sous_trame").cumcount() + 1
    frame["rank_commune"] = frame.groupby("insee").cumcount() + 1
    return frame


def score_formula(cfg: PrioritiesConfig) -> dict:
    """The published score rule (priorities.json, report): weights, formula in French and the normalisation."""
    w = cfg.weights
    text = (f"Score (0 à 100, dans l'ordre du rang) = 100 × U / U maximal, U = gain normalisé × (1 + "
            f"{w.conflict:g} × conflit) / (1 + {w.cost:g} × coût normalisé) ; gain normalisé = ΔPC / ΔPC maximal "
            "du territoire (toutes sous-trames confondues : les gains sont comparés entre sous-trames, le rang par "
            "sous-trame garde cet ordre), coût normalisé = coût / coût maximal, conflit = poids de l'étape du projet "
            "le plus avancé (0 sans projet) : un projet rend plus urgente une restauration utile, il ne fait pas "
            "une priorité d'un élément sans gain. Les éléments sans gain (« gain nul », score 0) sont classés après "
            "tous ceux qui en ont un ; « menacé » signale un projet à proximité.")
    return {"weights": {"conflict": w.conflict, "cost": w.cost}, "formula": text,
            "gain_normalisation": "territory"}

# the crossed element with its article: "de la route" + name; a name already starting with the noun ("Route
# départementale 937", "Canal de la Deûle") keeps only the article ("de la Route départementale 937")
_INFRA_ARTICLE = {"road": ("de la", "route"), "railway": ("de la", "voie ferrée"), "canal": ("du", "canal"),
                  "river_obstacle": ("de l'", "obstacle à l'écoulement"), "obstacle": ("de l'", "obstacle")}
_UNDER = {"road": "sous la route", "railway": "sous la voie ferrée", "canal": "sous le canal"}


def _starts_with_noun(name: str, noun: str) -> bool:
    first = noun.split()[0].lower()
    return name.lower().startswith(first) or (noun == "route" and name.lower().split()[:1] in (["autoroute"],))


def crossing_phrase(infrastructure, infra_class, infra_name) -> str:
    """French words for what a rupture site crosses, without doubled nouns: "route A21", "Route départementale
    937", "Canal de la Deûle", "ouvrage busé sous la route N47" (culvert: ``infra_class`` = what passes over)."""
    name = infra_name.strip() if isinstance(infra_name, str) else ""
    infra = str(infrastructure)
    if infra == "culvert":
        under = _UNDER.get(str(infra_class), "sous" if name else "sous une infrastructure")
        return f"ouvrage busé {under}{' ' + name if name else ''}"
    noun = INFRA_LABELS.get(infra, infra)
    if name and _starts_with_noun(name, noun):
        return name
    return f"{noun}{' ' + name if name else ''}"


def crossing_name(infrastructure, infra_class, infra_name) -> str:
    """"Franchissement de la route A21", "Franchissement du Canal de la Deûle", "Ouvrage busé sous la route N47"."""
    name = infra_name.strip() if isinstance(infra_name, str) else ""
    infra = str(infrastructure)
    if infra == "culvert":
        phrase = crossing_phrase(infra, infra_class, name)
        return phrase[0].upper() + phrase[1:]
    article, noun = _INFRA_ARTICLE.get(infra, ("d'une", "infrastructure"))
    if name and _starts_with_noun(name, noun):
        words = f"{article} {name}"
    else:
        words = f"{article} {noun}{' ' + name if name else ''}"
    return "Franchissement " + words.replace("de l' ", "de l'")


def _label(row) -> str:
    st = row["sous_trame_label"]
    if row["candidate"] == "corridor":
        status = STATUS_STYLES.get(row["status"], (str(row["status"]),))[0].lower()
        return f"Priorité {row['rank']} – corridor {status} – {st} ({row['id']})"
    what = crossing_phrase(row["infrastructure"], row.get("infra_class"), row["infra_name"])
    return f"Priorité {row['rank']} – site de rupture ({what}) – {st} ({row['id']})"

"""Indicator history across releases: one row per release and indicator, in Parquet with a CSV copy.

Row columns (:data:`HISTORY_COLUMNS`): release_id, released_at (ISO 8601, UTC), territory, family (key_figures,
fragmentation, connectivity, communes), scope (territory | commune), unit_id (territory id or INSEE code),
sous_trame ('' when not per sous-trame), indicator, value (float), unit, snapshot_ids (JSON object of the source
snapshots the release was built from), and its provenance: config_hash (sha256 of the effective territory
configuration, :meth:`Territory.config_hash`), resolution_m (raster cell size) and code_version. With them the change
section tells a landscape change (inputs changed) from a method change (configuration, resolution or code changed on
the same inputs). Histories written before these columns existed are read with them empty. The publish stage stores
the file; here only local paths are used.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tvb_tasks.errors import DeterministicError

KEY_COLUMNS = ["family", "scope", "unit_id", "sous_trame", "indicator"]
ROW_COLUMNS = [*KEY_COLUMNS, "value", "unit"]
PROVENANCE_COLUMNS = ["config_hash", "resolution_m", "code_version", "parameters_hash"]
HISTORY_COLUMNS = ["release_id", "released_at", "territory", *ROW_COLUMNS, "snapshot_ids", *PROVENANCE_COLUMNS]
CONNECTIVITY_INDICATORS = ("pc", "ec_pc_ha", "iic", "n_nodes", "n_links", "n_components", "reservoirs_ha")
_COMMUNE_SKIP = ("insee", "nom")


class HistoryError(DeterministicError, ValueError):
    """An indicator history or indicators file is unreadable or inconsistent; the message names the file."""


def unit_of(indicator: str) -> str:
    """Unit from the indicator name's suffix (ha, km, %) or '' (ratios, counts)."""
    for suffix, unit in (("_ha", "ha"), ("_km", "km"), ("_pct", "%")):
        if indicator.endswith(suffix):
            return unit
    return ""


def _row(family: str, scope: str, unit_id: str, sous_trame: str, indicator: str, value: Any) -> dict:
    number = float(value) if value is not None else float("nan")
    return {"family": family, "scope": scope, "unit_id": str(unit_id), "sous_trame": sous_trame,
            "indicator": indicator, "value": number, "unit": unit_of(indicator)}


def flatten_indicators(indicators: dict[str, Any]) -> pd.DataFrame:
    """The numeric indicators of an ``indicators.json`` document as long rows (:data:`ROW_COLUMNS`)."""
    territory = str(indicators.get("territory", ""))
    rows = [_row("key_figures", "territory", territory, "", k, v)
            for k, v in (indicators.get("key_figures") or {}).items()]
    for st, frag in (indicators.get("fragmentation") or {}).items():
        rows += [_row("fragmentation", "territory", territory, st, k, v)
                 for k, v in (frag.get("territory") or {}).items()]
        for rec in frag.get("communes") or []:
            rows += [_row("fragmentation", "commune", rec["insee"], st, k, v)
                     for k, v in rec.items() if k != "insee"]
    for st, conn in (indicators.get("connectivity") or {}).items():
        rows += [_row("connectivity", "territory", territory, st, k, conn.get(k))
                 for k in CONNECTIVITY_INDICATORS if k in conn]
    for rec in indicators.get("communes") or []:
        rows += [_row("communes", "commune", rec["insee"], "", k, v) for k, v in rec.items()
                 if k not in _COMMUNE_SKIP and not k.startswith("meff_") and isinstance(v, (int, float, type(None)))]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def read_indicators_json(path: Path) -> dict[str, Any]:
    """An ``indicators.json`` document (HistoryError naming the file when unreadable)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HistoryError(f"{path}: cannot read indicators JSON ({exc})") from exc
    if not isinstance(doc, dict) or "key_figures" not in doc:
        raise HistoryError(f"{path}: not an indicators document (no 'key_figures')")
    return doc


def read_history(path: Path) -> pd.DataFrame:
    """An indicator history (.parquet or .csv), checked for the :data:`HISTORY_COLUMNS`."""
    path = Path(path)
    if not path.exists():
        raise HistoryError(f"no indicator history {path}")
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype={c: str for c in HISTORY_COLUMNS if c != "value"},
                                keep_default_na=False, na_values={"value": [""]})
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow / parser errors have no common base class
        raise HistoryError(f"{path}: cannot read indicator history ({exc})") from exc
    for col in PROVENANCE_COLUMNS:          # histories from before provenance was recorded
        if col not in frame.columns:
            frame[col] = ""
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise HistoryError(f"{path}: not an indicator history, missing columns {missing}")
    frame = frame[HISTORY_COLUMNS].copy()
    for col in HISTORY_COLUMNS:
        if col != "value":
            frame[col] = frame[col].fillna("").astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    return frame


def latest_release(history: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """(release_id, its rows) of the most recent release of a history (by released_at, then release_id)."""
    if history.empty:
        return None, history.iloc[0:0]
    last = history.sort_values(["released_at", "release_id"]).iloc[-1]["release_id"]
    return str(last), history[history["release_id"] == last]


def provenance(snapshot_ids: dict[str, str] | None, config_hash: str | None, resolution_m: float | None,
               code_version: str | None, parameters_hash: str | None = None) -> dict[str, Any]:
    """The provenance record of a release (JSON-safe): sorted snapshot ids, configuration hash, resolution, code,
    and the parameters hash (configuration without the resolution, :meth:`Territory.config_hash`)."""
    return {"snapshot_ids": dict(sorted((snapshot_ids or {}).items())), "config_hash": config_hash or "",
            "resolution_m": float(resolution_m) if resolution_m is not None else None,
            "code_version": code_version or "", "parameters_hash": parameters_hash or ""}


def previous_provenance(path: Path) -> dict[str, Any] | None:
    """Provenance of the previous release from its ``indicators.json`` (``provenance``) or from an indicator
    history (its latest release's columns); None when it was not recorded."""
    path = Path(path)
    if path.suffix == ".json":
        return read_indicators_json(path).get("provenance")
    _, rows = latest_release(read_history(path))
    if rows.empty or not rows["config_hash"].iloc[0]:
        return None
    first = rows.iloc[0]
    try:
        snapshots = json.loads(first["snapshot_ids"] or "{}")
    except json.JSONDecodeError:
        snapshots = None
    res = pd.to_numeric(first["resolution_m"], errors="coerce")
    return provenance(snapshots, first["config_hash"], None if pd.isna(res) else float(res), first["code_version"],
                      first.get("parameters_hash"))


CAUSE_KEYS = ("inputs_changed", "configuration_changed", "resolution_changed", "parameters_changed", "code_changed",
              "method_only")


def _recorded(value: Any) -> bool:
    """A provenance value that was recorded (not None, '', NaN or an empty mapping)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value) if isinstance(value, (str, dict)) else True


def compare_provenance(current: dict[str, Any] | None, previous: dict[str, Any] | None) -> dict[str, Any]:
    """What differs between two releases' provenance records (:func:`provenance`): the one comparison behind both
    the ``causes`` of ``indicators.json`` (:func:`change_causes`) and the report's provenance section.

    Returns the :data:`CAUSE_KEYS` — ``inputs_changed`` (source snapshots), ``configuration_changed`` (hash, which
    includes the resolution), ``resolution_changed``, ``parameters_changed`` (the configuration other than the
    resolution: from the parameters hash, else known only when the resolution did not change), ``code_changed``, ``method_only`` (same inputs, configuration or
    code changed: every change then comes from the method, not from the landscape) — plus the details
    ``changed_inputs`` (source names, sorted), ``resolutions`` and ``code_versions`` (previous, current) when they
    changed. A part not recorded for one of the two releases is None (unknown).
    """
    out: dict[str, Any] = dict.fromkeys((*CAUSE_KEYS, "changed_inputs", "resolutions", "code_versions"))
    if not current or not previous:
        return out

    def both(key: str) -> tuple[Any, Any] | None:
        prev, cur = previous.get(key), current.get(key)
        return (prev, cur) if _recorded(prev) and _recorded(cur) else None

    snapshots = both("snapshot_ids")
    if snapshots is not None:
        names = sorted(set(snapshots[0]) | set(snapshots[1]))
        out["changed_inputs"] = [n for n in names if snapshots[0].get(n) != snapshots[1].get(n)]
        out["inputs_changed"] = bool(out["changed_inputs"])
    config = both("config_hash")
    if config is not None:
        out["configuration_changed"] = config[0] != config[1]
    res = both("resolution_m")
    if res is not None:
        out["resolution_changed"] = float(res[0]) != float(res[1])
        out["resolutions"] = (float(res[0]), float(res[1])) if out["resolution_changed"] else None
    params = both("parameters_hash")
    if params is not None:
        out["parameters_changed"] = params[0] != params[1]
    elif out["configuration_changed"] is not None and out["resolution_changed"] is False:
        out["parameters_changed"] = out["configuration_changed"]
    code = both("code_version")
    if code is not None:
        out["code_changed"] = code[0] != code[1]
        out["code_versions"] = (str(code[0]), str(code[1])) if out["code_changed"] else None
    if out["inputs_changed"] is not None and not (out["configuration_changed"] is None and out["code_changed"] is None):
        out["method_only"] = (not out["inputs_changed"]) and bool(out["configuration_changed"] or out["code_changed"])
    return out


def change_causes(current: dict[str, Any] | None, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`CAUSE_KEYS` of :func:`compare_provenance` (the ``causes`` recorded in ``indicators.json``)."""
    compared = compare_provenance(current, previous)
    return {k: compared[k] for k in CAUSE_KEYS}


def previous_rows(path: Path) -> tuple[str | None, pd.DataFrame]:
    """(release id if known, indicator rows) of a previous release, from its ``indicators.json`` or from an
    indicator history (.parquet / .csv: its latest release)."""
    path = Path(path)
    if path.suffix == ".json":
        doc = read_indicators_json(path)
        return doc.get("release_id"), flatten_indicators(doc)
    release_id, rows = latest_release(read_history(path))
    return release_id, rows[ROW_COLUMNS].reset_index(drop=True)


def append_history(history_path: Path | None, indicators_json: Path, *, release_id: str, released_at: str,
                   snapshot_ids: dict[str, str], out_path: Path, config_hash: str | None = None,
                   resolution_m: float | None = None, code_version: str | None = None) -> Path:
    """Write ``out_path`` (Parquet) and the same table as CSV beside it: the previous history (or nothing) plus
    this release's indicators. A release already in the history is replaced (re-runs are idempotent).
    The provenance (``config_hash``, ``resolution_m``, ``code_version``) defaults to the indicators document's
    ``provenance``. Returns ``out_path``."""
    if not release_id:
        raise HistoryError("append_history: release_id must not be empty")
    try:
        released = pd.Timestamp(released_at)
        released = released.tz_localize("UTC") if released.tzinfo is None else released.tz_convert("UTC")
    except ValueError as exc:
        raise HistoryError(f"append_history: released_at {released_at!r} is not an ISO 8601 date") from exc
    doc = read_indicators_json(Path(indicators_json))
    rows = flatten_indicators(doc)
    rows.insert(0, "territory", str(doc.get("territory", "")))
    rows.insert(0, "released_at", released.isoformat())
    rows.insert(0, "release_id", str(release_id))
    rows["snapshot_ids"] = json.dumps(dict(sorted((snapshot_ids or {}).items())), ensure_ascii=False)
    recorded = doc.get("provenance") or {}
    res = resolution_m if resolution_m is not None else recorded.get("resolution_m")
    rows["config_hash"] = str(config_hash or recorded.get("config_hash") or "")
    rows["resolution_m"] = f"{float(res):g}" if res is not None else ""
    rows["code_version"] = str(code_version or recorded.get("code_version") or "")
    rows["parameters_hash"] = str(recorded.get("parameters_hash") or "")
    history = read_history(Path(history_path)) if history_path is not None else None
    if history is not None and not history.empty:
        others = set(history["territory"]) - {str(doc.get("territory", ""))}
        if others:
            raise HistoryError(f"{history_path}: history of territory {sorted(others)}, "
                               f"not {doc.get('territory')!r}")
        history = history[history["release_id"] != str(release_id)]
        rows = pd.concat([history, rows[HISTORY_COLUMNS]], ignore_index=True)
    rows = rows[HISTORY_COLUMNS].sort_values(["released_at", "release_id", *KEY_COLUMNS], kind="stable")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(out_path, index=False)
    rows.to_csv(out_path.with_suffix(".csv"), index=False)
    return out_path

"""Summaries of GX suite results, compact and readable: each failed expectation with its key, severity, failing
count, observed value, expected value and a sample of failing rows (named by their id column)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tvb_tasks.validate.suites import expectation_key


# --- summaries -----------------------------------------------------------------------------------------------------
def _short(value: Any, limit: int = 160) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample(result: dict, frame: pd.DataFrame | None, id_column: str | None, size: int) -> list[str]:
    values = list(result.get("partial_unexpected_list") or [])
    index = list(result.get("partial_unexpected_index_list") or [])
    details = result.get("details") or {}
    if not values and isinstance(details.get("mismatched"), dict):
        missing = details["mismatched"].get("missing") or []
        return [f"missing column {c!r}" for c in missing[:size]]
    if not values and details.get("non_numeric_columns"):
        return [f"not a number: {c!r}" for c in details["non_numeric_columns"][:size]]
    out = []
    for i, value in enumerate(values[:size]):
        label = ""
        if i < len(index) and isinstance(index[i], (int, np.integer)) and frame is not None:
            pos = int(index[i])
            if id_column and id_column in frame.columns and 0 <= pos < len(frame):
                label = f"{id_column}={frame[id_column].iloc[pos]!s}: "
            else:
                label = f"row {pos}: "
        out.append(f"{label}{_short(value, 120)}")
    return out


def _expected_text(kwargs: dict) -> str:
    """What the expectation asked for, briefly (long value sets are counted, not listed)."""
    parts = []
    for key in ("value", "min_value", "max_value", "value_set", "column_set", "crs", "geometry_types",
                "max_drift_pct", "predicate", "buffer_m", "regex"):
        value = kwargs.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and len(value) > 6:
            shown = ", ".join(str(v) for v in value[:3])
            parts.append(f"{key}=<{len(value)} values: {shown}, …>")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{key}=[{', '.join(str(v) for v in value)}]")
        else:
            parts.append(f"{key}={_short(value, 80)}")
    if "buffer_m" in kwargs and "predicate" not in kwargs:
        parts.insert(len(parts) - 1, "predicate=intersects")
    return ", ".join(parts)


def failure_entry(result: dict, frame: pd.DataFrame | None, id_column: str | None, sample_size: int) -> dict:
    """One failed expectation, compact (for summaries / manifest): key, count, observed value, sample, message."""
    config = result.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id", "territory_wkt")}
    res = result.get("result") or {}
    exception = [v.get("exception_message") for v in (result.get("exception_info") or {}).values()
                 if isinstance(v, dict) and v.get("raised_exception")]
    if (result.get("exception_info") or {}).get("raised_exception"):
        exception.append(result["exception_info"].get("exception_message"))
    key = (config.get("meta") or {}).get("key") or expectation_key(config)
    entry = {
        "expectation": key,
        "type": config.get("type"),
        "column": kwargs.get("column"),
        "severity": str(config.get("severity") or "critical"),
        "unexpected_count": res.get("unexpected_count"),
        "element_count": res.get("element_count"),
        "observed_value": _short(res.get("observed_value")),
        "sample": _sample(res, frame, id_column, sample_size),
    }
    if exception:
        entry["message"] = f"could not be evaluated: {_short(exception[0], 200)}"
        entry["sample"] = entry["sample"] or [_short(exception[0], 200)]
    elif entry["unexpected_count"] is not None and entry["element_count"] is not None and kwargs.get("column"):
        entry["message"] = f"{entry['unexpected_count']} of {entry['element_count']} rows fail"
    elif entry["unexpected_count"] is not None:
        entry["message"] = f"{entry['unexpected_count']} failing item(s); observed {entry['observed_value']}"
    else:
        entry["message"] = f"observed {entry['observed_value']}"
    expected = _expected_text(kwargs)
    if expected:
        entry["message"] += f" (expected {expected})"
    return entry


def summarise(
    result_json: dict,
    *,
    source: str,
    suite: str,
    frame: pd.DataFrame | None,
    id_column: str | None,
    sample_size: int,
) -> dict:
    """Summary of a suite result: success (no critical failure), critical failures, warnings (+ info), counts."""
    critical: list[dict] = []
    warnings: list[dict] = []
    for result in result_json.get("results", []):
        if result.get("success"):
            continue
        entry = failure_entry(result, frame, id_column, sample_size)
        (critical if entry["severity"] == "critical" else warnings).append(entry)
    stats = result_json.get("statistics") or {}
    return {
        "source": source,
        "suite": suite,
        "success": not critical,
        "critical_failures": critical,
        "warnings": warnings,
        "evaluated": int(stats.get("evaluated_expectations") or 0),
        "successful": int(stats.get("successful_expectations") or 0),
    }


def _unreadable_summary(source: str, suite: str, problem: str, expectation: str = "layer_readable") -> dict:
    entry = {"expectation": expectation, "type": None, "column": None, "severity": "critical",
             "unexpected_count": None, "element_count": None, "observed_value": None, "sample": [problem],
             "message": problem}
    return {"source": source, "suite": suite, "success": False, "critical_failures": [entry], "warnings": [],
            "evaluated": 0, "successful": 0}


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)

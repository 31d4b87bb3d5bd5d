"""What the indicator modules share: the corridor statuses, the error they raise, JSON-safe values."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tvb_tasks.errors import DeterministicError

CORRIDOR_STATUSES = ("existing", "to_restore", "to_create")


class IndicatorsError(DeterministicError, ValueError):
    """A release's layers cannot be turned into indicators; the message names the file, layer and problem."""


# --- JSON helpers ----------------------------------------------------------------------------------------------------
def json_value(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars → Python, NaN / ±inf → None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts."""
    return [json_value(r) for r in df.to_dict(orient="records")]

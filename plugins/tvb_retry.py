"""Retry policy: deterministic pipeline errors fail at once, everything else follows the task's retries/backoff.

The decision is by type: an exception that is a :class:`tvb_tasks.errors.DeterministicError` (invalid data,
configuration or parameters, or a lost publish race: the same inputs fail the same way) fails the task without a
retry. Network and store errors (``SourceError``, ``StoreError``, ``PreconditionFailed``…) and any exception from
outside ``tvb_tasks`` follow the task's ``retries`` and backoff. ``tvb_tasks.errors`` imports nothing, so the DAG
processor does not load the stage libraries (Great Expectations…) when it parses the DAG files.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import RetryDecision, RetryPolicy

from tvb_tasks.errors import DeterministicError

DEFAULT_REASON = "deterministic error (invalid data, configuration or parameters): a retry would fail the same way"


class FailFastPolicy(RetryPolicy):
    """Fail without retry when the exception is a :class:`~tvb_tasks.errors.DeterministicError`."""

    def __init__(self, *, reason: str = DEFAULT_REASON):
        self.reason = reason

    def matches(self, exception: BaseException) -> bool:
        return isinstance(exception, DeterministicError)

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Any = None) -> RetryDecision:
        if self.matches(exception):
            return RetryDecision.fail(f"{self.reason} ({type(exception).__name__})")
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"reason": self.reason}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> FailFastPolicy:
        # DAGs serialized before the by-type policy also carry "class_names" / "package": ignored
        return cls(reason=data.get("reason") or DEFAULT_REASON)

"""Retry policy: deterministic pipeline errors fail at once, everything else follows the task's retries/backoff.

Airflow's ``ExceptionRetryPolicy`` imports the exception classes when the DAG file is parsed; that would import the
stage libraries (Great Expectations…) at parse time. This policy matches by class *name* along the exception's MRO,
restricted to classes defined in the ``tvb_tasks`` package, so nothing is imported until a task fails.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk import RetryDecision, RetryPolicy

# invalid data, configuration or parameters, or a lost publish race: the same inputs fail the same way. Network and
# store errors (SourceError, StoreError, PreconditionFailed…) are not listed: they are retried.
DETERMINISTIC_ERRORS = ("ValidationFailed", "ConfigError", "PipelineError", "ObjectExists", "IndicatorsError",
                        "HistoryError", "LayerInputError", "SuiteLoadError", "PublishConflict", "ScreeningError")


class FailFastPolicy(RetryPolicy):
    """Fail without retry when the exception is (a subclass of) one of ``class_names`` from ``package``."""

    def __init__(self, class_names: Iterable[str] = DETERMINISTIC_ERRORS, *, package: str = "tvb_tasks",
                 reason: str = "deterministic error (invalid data, configuration or parameters): "
                               "a retry would fail the same way"):
        self.class_names = frozenset(class_names)
        self.package = package
        self.reason = reason

    def matches(self, exception: BaseException) -> bool:
        for cls in type(exception).__mro__:
            module = getattr(cls, "__module__", "") or ""
            if cls.__name__ in self.class_names and (module == self.package
                                                     or module.startswith(self.package + ".")):
                return True
        return False

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Any = None) -> RetryDecision:
        if self.matches(exception):
            return RetryDecision.fail(f"{self.reason} ({type(exception).__name__})")
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"class_names": sorted(self.class_names), "package": self.package, "reason": self.reason}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> FailFastPolicy:
        return cls(data["class_names"], package=data["package"], reason=data["reason"])

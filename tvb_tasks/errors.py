"""The base errors of the pipeline library, which the Airflow retry policy (``plugins/tvb_retry.py``) decides by.

Every error class of ``tvb_tasks`` derives from :class:`TVBError`; those raised for invalid data, configuration or
parameters (the same inputs fail the same way, so a retry cannot help) derive from :class:`DeterministicError` and
fail a task at once. Everything else (network, object store, a crash mid-publish) is transient: the task's retries
and backoff apply. The classes keep their names and import locations (``tvb_tasks.config.ConfigError``,
``tvb_tasks.store.ObjectExists``…); each also keeps the builtin base it had (``ValueError``, ``RuntimeError``), so
existing ``except ValueError`` handlers still catch them.

This module imports nothing: the retry policy imports it in the Airflow DAG processor without loading the stage
libraries (Great Expectations, GDAL…).
"""
from __future__ import annotations

__all__ = ["DeterministicError", "InvalidInputError", "TVBError"]


class TVBError(Exception):
    """Base of every error raised by ``tvb_tasks``."""


class DeterministicError(TVBError):
    """Invalid data, configuration or parameters (or a lost publish race): retrying cannot help."""


class InvalidInputError(DeterministicError, ValueError):
    """An invalid parameter, file or value (a bad id or URI, a missing or unreadable input file, an out-of-range
    argument): the same call fails the same way, so the task fails at once. Still a ``ValueError`` for callers."""

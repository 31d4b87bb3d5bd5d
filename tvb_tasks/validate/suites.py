"""Load the GX expectation suites versioned in ``expectations/*.json``, refusing any that would load incomplete.

GX silently drops an expectation whose type is unknown (e.g. a custom expectation whose module was not imported)
or whose kwargs are invalid: it logs and goes on, and the suite then validates less than it declares. Here every
suite JSON declares ``meta.expected_expectation_count``; :func:`load_suite` imports the custom expectations first,
checks every type against GX's registry and raises :class:`SuiteLoadError` if a type is unknown or the loaded count
differs from the declared one.

Suite JSON: ``{"name", "meta": {"kind": "source"|"output", "roles": [...], "id_column", "expected_expectation_count",
"description"}, "expectations": [{"type", "kwargs", "severity": "critical"|"warning"|"info", "meta": {"key"?,
"notes"?}}]}``. Values filled at run time (nomenclature codes, territory outline, drift bounds…) are GX suite
parameters (``{"$PARAMETER": "landuse_codes"}``).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvb_tasks.config import PROJECT_ROOT
from tvb_tasks.errors import DeterministicError

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

SEVERITIES = ("critical", "warning", "info")


class SuiteLoadError(DeterministicError, RuntimeError):
    """A suite file is missing, malformed, or would load with fewer / other expectations than it declares."""


def suites_dir() -> Path:
    """Folder of the suite JSON files (``TVB_EXPECTATIONS_DIR`` overrides ``<project>/expectations``)."""
    return Path(os.environ.get("TVB_EXPECTATIONS_DIR", PROJECT_ROOT / "expectations"))


def list_suites(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or suites_dir()).glob("*.json"))


def expectation_key(expectation: Mapping[str, Any]) -> str:
    """Stable, readable key of an expectation in a suite: ``meta.key``, else ``type`` or ``type[column]``."""
    meta = expectation.get("meta") or {}
    if meta.get("key"):
        return str(meta["key"])
    column = (expectation.get("kwargs") or {}).get("column")
    return f"{expectation['type']}[{column}]" if column else str(expectation["type"])


@lru_cache(maxsize=64)
def _read_suite_file(path: str, mtime_ns: int) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteLoadError(f"suite file {path}: cannot be read as JSON: {exc}") from exc
    return doc


def read_suite_json(name: str, directory: Path | None = None) -> dict:
    """The raw suite document (a deep copy, safe to modify), checked for structure and declared count."""
    path = (directory or suites_dir()) / f"{name}.json"
    if not path.exists():
        known = ", ".join(list_suites(directory)) or "none"
        raise SuiteLoadError(f"no expectation suite {name!r} ({path} missing; known suites: {known})")
    doc = copy.deepcopy(_read_suite_file(str(path), path.stat().st_mtime_ns))
    where = f"suite {name!r} ({path})"
    if not isinstance(doc, dict) or not isinstance(doc.get("expectations"), list):
        raise SuiteLoadError(f"{where}: expected an object with an 'expectations' list")
    if doc.get("name") != name:
        raise SuiteLoadError(f"{where}: 'name' is {doc.get('name')!r}, expected the file stem {name!r}")
    meta = doc.get("meta") or {}
    declared = meta.get("expected_expectation_count")
    if not isinstance(declared, int) or isinstance(declared, bool):
        raise SuiteLoadError(f"{where}: meta.expected_expectation_count (int) is required")
    if declared != len(doc["expectations"]):
        raise SuiteLoadError(f"{where}: declares {declared} expectations but the file lists "
                             f"{len(doc['expectations'])}")
    keys = [expectation_key(e) for e in doc["expectations"]]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise SuiteLoadError(f"{where}: duplicate expectation keys {duplicates} (set meta.key to tell them apart)")
    for e in doc["expectations"]:
        if e.get("severity", "critical") not in SEVERITIES:
            raise SuiteLoadError(f"{where}: {expectation_key(e)} has severity {e.get('severity')!r}, "
                                 f"expected one of {SEVERITIES}")
    return doc


@lru_cache(maxsize=1)
def suites_by_role() -> dict[tuple[str, str], str]:
    """{(kind, role): suite name} from every suite's ``meta.kind`` / ``meta.roles``."""
    index: dict[tuple[str, str], str] = {}
    for name in list_suites():
        meta = read_suite_json(name).get("meta") or {}
        for role in meta.get("roles") or []:
            key = (str(meta.get("kind")), str(role))
            if key in index:
                raise SuiteLoadError(f"suites {index[key]!r} and {name!r} both claim {key[0]} role {role!r}")
            index[key] = name
    return index


def suite_for(kind: str, role: str) -> str:
    """Name of the suite validating a ``kind`` ("source" / "output") of this ``role``; raises if there is none."""
    try:
        return suites_by_role()[(kind, role)]
    except KeyError:
        raise SuiteLoadError(f"no expectation suite for {kind} role {role!r} in {suites_dir()} "
                             f"(add one with meta.kind={kind!r} and {role!r} in meta.roles)") from None


def apply_severity_overrides(doc: dict, overrides: Mapping[str, str]) -> dict:
    """Set ``severity`` of the expectations named (by :func:`expectation_key`) in ``overrides``; unknown keys raise."""
    if not overrides:
        return doc
    by_key = {expectation_key(e): e for e in doc["expectations"]}
    unknown = sorted(set(overrides) - set(by_key))
    if unknown:
        raise SuiteLoadError(f"severity overrides for suite {doc['name']!r} name unknown expectations {unknown}; "
                             f"known: {sorted(by_key)}")
    for key, severity in overrides.items():
        if severity not in SEVERITIES:
            raise SuiteLoadError(f"severity override {key!r}: {severity!r} is not one of {SEVERITIES}")
        by_key[key]["severity"] = severity
    return doc


def registered_expectation_types() -> set[str]:
    """Expectation types GX knows now (after importing the custom expectations)."""
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    import tvb_tasks.validate.expectations  # noqa: F401  registers the custom expectations

    return set(list_registered_expectation_implementations())


_BUILT: dict[tuple[str, frozenset[str]], gx.ExpectationSuite] = {}
"""Suites built in this process, by (canonical document JSON, GX's registered expectation types): building one
takes ≈ 0.25 s of GX's pydantic models and a gate run loads ≈ 13 (the same document always builds the same suite,
and GX's validation does not modify it; a change of GX's registry builds it again, so the guards below still run)."""


def build_suite(doc: dict) -> gx.ExpectationSuite:
    """A GX ``ExpectationSuite`` from a suite document; raises if any expectation is unknown or dropped.

    The suite is built once per process for a given document (and set of expectation types GX knows) and then
    shared: callers must not modify it."""
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    known = registered_expectation_types()
    name = doc["name"]
    unknown = sorted({e.get("type") for e in doc["expectations"]} - known)
    if unknown:
        raise SuiteLoadError(f"suite {name!r} uses expectation types unknown to GX: {unknown} "
                             "(custom expectations not registered? import tvb_tasks.validate.expectations)")
    key = (json.dumps(doc, sort_keys=True, default=str), frozenset(list_registered_expectation_implementations()))
    if key not in _BUILT:
        _BUILT[key] = _build_checked(doc)
    return _BUILT[key]


def _build_checked(doc: dict) -> gx.ExpectationSuite:
    """:func:`build_suite` without the cache: GX builds the suite, its count is checked against the declared one."""
    import great_expectations as gx

    name = doc["name"]
    expectations = []
    for e in doc["expectations"]:
        entry = {k: copy.deepcopy(e[k]) for k in ("type", "kwargs", "meta", "severity", "notes") if k in e}
        meta = dict(entry.get("meta") or {})
        meta.setdefault("key", expectation_key(e))
        entry["meta"] = meta
        expectations.append(entry)
    try:
        suite = gx.ExpectationSuite(name=name, expectations=expectations, meta=copy.deepcopy(doc.get("meta") or {}))
    except Exception as exc:
        raise SuiteLoadError(f"suite {name!r}: an expectation is invalid: {exc}") from exc
    declared = doc["meta"]["expected_expectation_count"]
    if len(suite.expectations) != declared:
        loaded = {(x.meta or {}).get("key") for x in suite.expectations}
        missing = [expectation_key(e) for e in doc["expectations"] if expectation_key(e) not in loaded]
        raise SuiteLoadError(f"suite {name!r} loaded {len(suite.expectations)} expectations, declares {declared}; "
                             f"GX refused {missing} (invalid kwargs?)")
    return suite


def load_suite(name: str, severity_overrides: Mapping[str, str] | None = None) -> gx.ExpectationSuite:
    """Load suite ``name`` from :func:`suites_dir`, apply severity overrides, and check it is complete.

    Raises :class:`SuiteLoadError` when the file is missing or malformed, a type is unknown to GX, an override
    names an unknown expectation, or the loaded count differs from ``meta.expected_expectation_count``.
    """
    doc = apply_severity_overrides(read_suite_json(name), severity_overrides or {})
    return build_suite(doc)

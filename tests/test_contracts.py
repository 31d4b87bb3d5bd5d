"""The task contracts (tvb_tasks.contracts) and how a run ends (tvb_tasks.pipeline: run_outcome, unchanged_outcome,
notify_event, validation_verdict), which the Airflow publish / notify tasks and ``tvb run`` share.

The shapes of real XComs are checked against the contracts end to end in tests/test_airflow_e2e.py."""
from __future__ import annotations

import json
import types
import typing

import pytest

from tvb_tasks import contracts
from tvb_tasks.pipeline import PipelineError, notify_event, run_outcome, unchanged_outcome, validation_verdict

RID = "20261130T145510Z-71996243-0d764b7d"
BASE = "https://tvb.example.org/store"
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_safe(tp, where: str) -> None:
    """Fail unless the annotation ``tp`` only allows values JSON (and so XCom) keeps as they are."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any or tp in _JSON_SCALARS:
        return
    if typing.is_typeddict(tp):
        for name, sub in typing.get_type_hints(tp).items():
            _json_safe(sub, f"{where}.{name}")
        return
    if origin is typing.Literal:
        assert all(isinstance(a, _JSON_SCALARS) for a in args), where
        return
    if origin in (typing.Union, types.UnionType):
        for a in args:
            _json_safe(a, where)
        return
    if origin is list:
        _json_safe(args[0], f"{where}[]")
        return
    if origin is dict:
        assert args[0] is str, f"{where}: JSON object keys are strings, not {args[0]}"
        _json_safe(args[1], f"{where}{{}}")
        return
    raise AssertionError(f"{where}: {tp!r} does not survive a JSON round trip")


@pytest.mark.parametrize("name", [n for n in contracts.__all__ if typing.is_typeddict(getattr(contracts, n))])
def test_every_contract_is_json_safe(name):
    _json_safe(getattr(contracts, name), name)


def test_a_path_or_a_datetime_would_be_refused():
    from datetime import datetime
    from pathlib import Path

    for bad in (Path, datetime, tuple[str, int], dict[int, str], set[str]):
        with pytest.raises(AssertionError):
            _json_safe(bad, "x")


@pytest.fixture
def run(tmp_path, monkeypatch) -> contracts.FetchedRun:
    """A run of the bundled CALL territory on an empty local store, links under a public base URL."""
    monkeypatch.setenv("TVB_PUBLIC_BASE_URL", BASE)
    monkeypatch.setenv("TVB_WORK_DIR", str(tmp_path / "work"))
    return typing.cast(contracts.FetchedRun, {
        "territory": "call", "profile": "default", "store_uri": (tmp_path / "store").as_uri(), "config": None,
        "config_hash": "", "resolution_m": None, "sous_trames": None, "unchanged_release": RID})


def _published(status: str) -> dict:
    prefix = f"{BASE}/releases/call/{RID}"
    return {"status": status, "release_id": RID, "release_url": prefix + "/",
            "report_url": prefix + "/report/index.html", "web_url": prefix + "/web/index.html", "files": 12}


def test_published_outcome_has_territory_store_and_every_link(run):
    out = run_outcome(run, typing.cast(contracts.PublishResult, _published("published")))
    assert out["territory"] == "call" and out["store_uri"] == run["store_uri"] and out["files"] == 12
    assert out["report_url"] == f"{BASE}/releases/call/{RID}/report/index.html"
    assert out["manifest_url"] == f"{BASE}/releases/call/{RID}/manifest.json"
    assert json.loads(json.dumps(out)) == out


def test_dry_run_outcome_links_to_nothing(run):
    out = run_outcome(run, typing.cast(contracts.PublishResult, _published("dry_run")))
    assert out["status"] == "dry_run" and out["release_id"] == RID
    assert not {"release_url", "report_url", "web_url", "manifest_url"} & set(out)


def test_unchanged_outcome_links_to_the_live_release(run):
    out = unchanged_outcome(run)
    assert out["status"] == "unchanged" and out["release_id"] == RID
    assert out["release_url"] == f"{BASE}/releases/call/{RID}/"
    assert out["report_url"] == f"{BASE}/releases/call/{RID}/report/index.html"
    other = "20261201T080000Z-71996243-11111111"
    assert unchanged_outcome(run, other)["report_url"] == f"{BASE}/releases/call/{other}/report/index.html"
    with pytest.raises(PipelineError, match="no unchanged release"):
        unchanged_outcome({**run, "unchanged_release": None})


@pytest.mark.parametrize("status, event", [("published", "published"), ("unchanged", "unchanged"),
                                           ("dry_run", "dry_run")])
def test_notify_event_follows_the_status(status, event):
    assert notify_event(typing.cast(contracts.Outcome, {"status": status})) == event


def test_run_statuses_are_defined_once():
    """Every status of the Literal (and only those) is a notifier event, a ``tvb run`` message and, when a release
    exists, a live status."""
    from tvb_tasks.cli import RUN_MESSAGES

    assert contracts.RUN_STATUSES == ("published", "unchanged", "dry_run")
    assert typing.get_args(contracts.PublishStatus) == typing.get_args(contracts.NotifyEvent) == contracts.RUN_STATUSES
    assert set(contracts.LIVE_STATUSES) == set(contracts.RUN_STATUSES) - {"dry_run"}
    assert set(RUN_MESSAGES) == set(contracts.RUN_STATUSES)
    for status in contracts.RUN_STATUSES:
        assert notify_event(typing.cast(contracts.Outcome, {"status": status})) == status


@pytest.mark.parametrize("outcome", [None, {}, {"status": None}, {"status": "rolled_back"}, {"status": "PUBLISHED"},
                                     {"release_id": RID}])
def test_a_missing_or_unknown_outcome_is_an_error_never_a_publication(outcome):
    """A publish task that pushed nothing (or an unknown status) must not be announced as "published"."""
    with pytest.raises(PipelineError, match="no run outcome to announce"):
        notify_event(typing.cast(contracts.Outcome, outcome))


def test_validation_succeeds_only_when_both_gates_do():
    ok = contracts.GateVerdict(success=True, critical_failures=0, warnings=2)
    bad = contracts.GateVerdict(success=False, critical_failures=1, warnings=0)
    assert validation_verdict(ok, ok) == {"sources": ok, "outputs": ok, "success": True}
    assert validation_verdict(ok, bad)["success"] is False
    assert validation_verdict(bad, ok)["success"] is False
    assert validation_verdict(ok, None)["success"] is False

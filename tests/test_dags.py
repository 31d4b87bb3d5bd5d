"""DAG integrity: imports, current Airflow 3 API only, structure, retries/timeouts, schedules and the trigger form.

Airflow is configured for this process before it is imported (a throw-away AIRFLOW_HOME, no examples, the project's
dags/ and plugins/ folders); nothing here needs a metadata database.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from helpers.airflow_env import use_throwaway_airflow_home
from helpers.yamlio import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
PLUGINS = ROOT / "plugins"
DAG_FILES = {"tvb_fetch": DAGS / "tvb_fetch.py", "tvb_observatory": DAGS / "tvb_observatory.py",
             "tvb_screening": DAGS / "tvb_screening.py"}  # by DAG id prefix

use_throwaway_airflow_home()

if importlib.util.find_spec("airflow") is None:
    pytest.skip("apache-airflow is not installed in this environment", allow_module_level=True)
# Airflow (~2 s to import) is imported by the tests, not at collection: each pytest-xdist worker collects every
# module, and only the one that runs this file needs Airflow.
if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

from tvb_tasks.config import list_territories  # noqa: E402

LEGACY_API = {
    r"\bschedule_interval\b": "schedule_interval (use schedule=)",
    r"\bexecution_date\b": "execution_date (use logical_date)",
    r"\bDummyOperator\b": "DummyOperator (use EmptyOperator)",
    r"\bairflow\.datasets\b": "airflow.datasets (use airflow.sdk Asset)",
    r"\bDataset\(": "Dataset (use Asset)",
    r"\bdays_ago\b": "days_ago",
    r"\bSubDag": "SubDAGs (use TaskGroup)",
    r"from airflow\.decorators\b": "airflow.decorators (use airflow.sdk)",
    r"from airflow\.models(\.dag)? import DAG\b": "airflow.models DAG (use airflow.sdk)",
    r"from airflow\.(hooks\.base|models\.baseoperator|notifications\.basenotifier) import":
        "Airflow 2 base classes (use airflow.sdk)",
    r"\bprovide_context\b": "provide_context",
}


def _bag(monkeypatch=None, config_dir: Path | None = None) -> DagBag:
    from airflow.dag_processing.dagbag import DagBag

    if config_dir is not None:
        monkeypatch.setenv("TVB_CONFIG_DIR", str(config_dir))
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def bag() -> DagBag:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def observatory(bag):
    return bag.dags["tvb_observatory_call"]


@pytest.fixture(scope="module")
def fetch(bag):
    return bag.dags["tvb_fetch_call"]


@pytest.fixture(scope="module")
def dagmod():
    """The shared Airflow glue of the DAG files (plugins/tvb_dag_support.py, for its helper functions)."""
    import tvb_dag_support

    return tvb_dag_support


# --- import ----------------------------------------------------------------------------------------------------------
def test_dagbag_imports_without_errors_one_pair_per_territory(bag):
    assert bag.import_errors == {}
    expected = {f"{prefix}_{t}" for t in list_territories() for prefix in DAG_FILES}
    assert set(bag.dags) == expected
    assert not bag.captured_warnings, bag.captured_warnings


@pytest.mark.integration          # a fresh interpreter importing Airflow
@pytest.mark.parametrize("prefix", sorted(DAG_FILES))
def test_dag_file_emits_no_deprecation_warning(prefix):
    """Import the DAG file and the plugin with every deprecation warning turned into an error."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
            "g = runpy.run_path(sys.argv[3]); import tvb_plugin; "
            "print(sorted(k for k in g if k.startswith('tvb_')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::PendingDeprecationWarning",
                           "-W", "error::FutureWarning", "-c", code, str(PLUGINS), str(ROOT), str(DAG_FILES[prefix])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{prefix}_call" in proc.stdout


def test_airflow_removed_warnings_are_deprecation_warnings():
    """The -W error::DeprecationWarning above also catches Airflow's own RemovedInAirflow* warnings."""
    from airflow.exceptions import RemovedInAirflow4Warning
    from airflow.sdk.exceptions import RemovedInAirflow4Warning as SdkRemoved

    assert issubclass(RemovedInAirflow4Warning, DeprecationWarning)
    assert issubclass(SdkRemoved, DeprecationWarning)


@pytest.mark.parametrize("path", sorted([*DAGS.rglob("*.py"), *PLUGINS.rglob("*.py")]), ids=lambda p: p.name)
def test_no_legacy_airflow_api(path):
    code = path.read_text(encoding="utf-8")
    found = [label for pattern, label in LEGACY_API.items() if re.search(pattern, code)]
    assert not found, f"{path.relative_to(ROOT)} uses legacy Airflow API: {found}"


@pytest.mark.integration          # a fresh interpreter importing Airflow
@pytest.mark.parametrize("prefix", sorted(DAG_FILES))
def test_dag_file_parses_fast_without_stage_libraries(prefix):
    """Parsing must not import the heavy stage libraries (they are imported inside the tasks)."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; runpy.run_path(sys.argv[3]); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('great_expectations', 'geopandas', 'rasterio', 'numba', 'scipy', 'matplotlib') "
            "or m.startswith(('tvb_tasks.layers', 'tvb_tasks.validate', 'tvb_tasks.sources', "
            "'tvb_tasks.publish', 'tvb_tasks.indicators', 'tvb_tasks.pipeline'))); print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code, str(PLUGINS), str(ROOT), str(DAG_FILES[prefix])],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# --- structure -------------------------------------------------------------------------------------------------------
def test_no_cycles(bag):
    for dag in bag.dags.values():
        dag.check_cycle()          # raises on a cycle
        assert dag.topological_sort()


def test_observatory_flow(observatory):
    up = {t.task_id: set(t.upstream_task_ids) for t in observatory.tasks}
    assert up["fetch_sources"] == set()
    assert up["inputs_changed"] == {"fetch_sources"}
    assert up["validate_sources"] == {"fetch_sources", "inputs_changed"}
    assert up["plan_sous_trames"] == {"fetch_sources", "validate_sources"}
    assert up["compute_sous_trame"] == {"fetch_sources", "plan_sous_trames"}
    assert up["assemble"] == {"fetch_sources", "compute_sous_trame"}
    assert up["indicators"] == {"fetch_sources", "assemble"}
    assert up["validate_outputs"] == {"fetch_sources", "indicators"}
    assert up["publish"] == {"fetch_sources", "indicators", "validate_sources", "validate_outputs"}
    assert up["notify"] == {"fetch_sources", "publish"}
    assert observatory.get_task("compute_sous_trame").is_mapped
    assert observatory.get_task("notify").trigger_rule == "none_failed_min_one_success"


def test_every_task_has_retries_backoff_timeout_and_failure_notifier(bag):
    from tvb_notifier import TvbNotifier
    from tvb_retry import FailFastPolicy

    for dag in bag.dags.values():
        assert dag.dagrun_timeout is not None, dag.dag_id
        for t in dag.tasks:
            where = f"{dag.dag_id}.{t.task_id}"
            assert t.retries >= 1, where
            assert t.retry_exponential_backoff >= 2, where
            assert t.max_retry_delay is not None, where
            assert isinstance(t.retry_policy, FailFastPolicy), where
            assert t.execution_timeout is not None and timedelta(0) < t.execution_timeout <= dag.dagrun_timeout, where
            assert t.owner == "tvb-observatory", where
            callbacks = t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
            assert any(isinstance(c, TvbNotifier) for c in callbacks), where


def test_dag_settings(bag, territory):
    for dag in bag.dags.values():
        assert dag.max_active_runs == 1 and dag.catchup is False, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag.dag_id
        assert {"tvb", f"territory:{territory.id}"} <= set(dag.tags), dag.dag_id
        assert dag.owner == "tvb-observatory"


def test_fetch_dag_cron_pool_and_conditional_asset_events(fetch, territory):
    from airflow.sdk import AssetAlias, CronTriggerTimetable

    assert isinstance(fetch.timetable, CronTriggerTimetable)
    assert fetch.timetable.expression == territory.schedule.fetch_cron
    task = fetch.get_task("fetch_sources")
    assert task.pool == "tvb_remote_servers"
    # events go through an alias: only the sources the task adds (the changed ones) get an event
    assert task.outlets == [AssetAlias(f"tvb_{territory.id}_changed_sources")]


def test_observatory_scheduled_on_any_source_asset(observatory, territory, dagmod):
    from airflow.sdk import Asset, AssetAny

    schedule = observatory.timetable.asset_condition
    assert isinstance(schedule, AssetAny)
    assets = {a for a in schedule.objects if isinstance(a, Asset)}
    assert assets == {dagmod.source_asset(territory.id, s) for s in territory.sources}
    assert all(a.uri.startswith(f"x-tvb://{territory.id}/sources/") for a in assets)


def test_pool_only_on_fetch_tasks(observatory):
    in_pool = {t.task_id for t in observatory.tasks if t.pool == "tvb_remote_servers"}
    assert in_pool == {"fetch_sources"}


def _waits_in_a_slot(t) -> bool:
    """Whether task ``t`` would hold a worker slot while it waits: a sensor in ``poke`` mode, or an operator that
    waits for completion (``TriggerDagRunOperator(wait_for_completion=True)``), unless deferrable (the wait then
    runs in the triggerer). Mapped tasks: their operator class and partial arguments."""
    from airflow.sdk import BaseSensorOperator

    kw = getattr(t, "partial_kwargs", None)

    def arg(name, default=None):
        return kw.get(name, default) if kw is not None else getattr(t, name, default)

    cls = getattr(t, "operator_class", type(t))
    if arg("deferrable", False):
        return False
    if isinstance(cls, type) and issubclass(cls, BaseSensorOperator):
        return arg("mode", "poke") != "reschedule"
    return bool(arg("wait_for_completion", False))


def test_no_task_holds_a_worker_slot_while_waiting(tmp_path, monkeypatch):
    """CI's Celery stack has two task slots (two workers, concurrency 1): a task waiting in a slot (poke sensor,
    non-deferrable wait for another DAG run) could starve the mapped tasks it waits for."""
    probe = tmp_path / "dags" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import BaseSensorOperator, dag\n"
        "from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator as T\n"
        "class S(BaseSensorOperator):\n"
        "    def poke(self, context):\n"
        "        return True\n"
        "@dag(start_date=datetime(2024, 1, 1), schedule=None)\n"
        "def probe():\n"
        "    one = [{'trigger_dag_id': 'a'}]\n"
        "    T.partial(task_id='waits', wait_for_completion=True).expand_kwargs(one)\n"
        "    T.partial(task_id='defers', wait_for_completion=True, deferrable=True).expand_kwargs(one)\n"
        "    T(task_id='fires', trigger_dag_id='a')\n"
        "    S(task_id='pokes')\n"
        "    S(task_id='reschedules', mode='reschedule')\n"
        "    S.partial(task_id='mapped_pokes').expand(timeout=[60])\n"
        "probe()\n", encoding="utf-8")
    from airflow.dag_processing.dagbag import DagBag

    tasks = DagBag(dag_folder=str(probe.parent)).dags["probe"].tasks
    assert {t.task_id for t in tasks if _waits_in_a_slot(t)} == {"waits", "pokes", "mapped_pokes"}

    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["tiling"] = {**raw.get("tiling", {}), "enabled": True}
    (tmp_path / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    bag = _bag(monkeypatch, tmp_path)
    assert {"tvb_observatory_call", "tvb_fetch_call"} <= set(bag.dags)
    assert "round_1" in bag.dags["tvb_observatory_call"].task_ids          # the tiled observatory DAG
    waiting = [f"{d.dag_id}.{t.task_id}" for d in bag.dags.values() for t in d.tasks if _waits_in_a_slot(t)]
    assert waiting == []


def test_publish_has_release_report_link(observatory):
    from airflow.serialization.serialized_objects import DagSerialization

    from tvb_links import ReleaseReportLink

    publish = observatory.get_task("publish")
    assert any(isinstance(link, ReleaseReportLink) for link in publish.operator_extra_links)
    serialized = DagSerialization.serialize_dag(observatory)
    assert "Release report" in str(serialized)


def test_tasks_push_one_xcom_each_and_publish_declares_the_release_asset(bag, observatory, territory, dagmod):
    """No task pushes one XCom per key (a ``-> dict`` / TypedDict return annotation would turn multiple_outputs on);
    the release Asset is declared (publish's inlet), so the event emitted through the alias finds it in Airflow."""
    for dag in bag.dags.values():
        assert not [t.task_id for t in dag.tasks if t.multiple_outputs], dag.dag_id
    publish = observatory.get_task("publish")
    assert publish.inlets == [dagmod.release_asset(territory.id)]
    assert publish.outlets == [dagmod.release_alias(territory.id)]


def _fake_stages(monkeypatch, task, **stages):
    """Run ``task``'s callable with ``tvb_pipeline()`` yielding ``stages`` (recording their calls) and a fixed store."""
    import contextlib

    calls: list[tuple[str, tuple, dict]] = []

    def recorder(name, result):
        def stage(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result
        return stage

    modules: list[str] = []

    @contextlib.contextmanager
    def fake_pipeline(module="pipeline", *, bound=None):
        modules.append(module)
        yield SimpleNamespace(**{name: recorder(name, result) for name, result in stages.items()})

    monkeypatch.setitem(task.python_callable.__globals__, "tvb_pipeline", fake_pipeline)
    monkeypatch.setitem(task.python_callable.__globals__, "store_uri", lambda: "file:///store")
    return calls, modules


def test_every_dag_task_reaches_the_library_through_tvb_pipeline_or_a_helper(bag, region_bag):
    """Review 17 point 4: no task body imports a stage module or opens the store itself (it would skip the
    ``tvb_store`` credentials that ``tvb_pipeline()`` exposes, and the contract of its stage function)."""
    import inspect

    for dag in [*bag.dags.values(), *region_bag.dags.values()]:
        for t in dag.tasks:
            fn = getattr(t, "python_callable", None)
            if fn is None:
                continue
            src = inspect.getsource(fn)
            assert not re.search(r"from tvb_tasks\.|import tvb_tasks|store_environment|open_store", src), (
                f"{dag.dag_id}.{t.task_id}: call the library through tvb_pipeline() or a tvb_dag_support helper")


def test_publish_mosaic_task_calls_the_typed_stage(region_bag, monkeypatch):
    task = region_bag.dags["tvb_region_duo"].get_task("publish_mosaic")
    result = {"status": "published", "release_id": "r", "members": [{"territory": "call", "release_id": "a"}]}
    calls, modules = _fake_stages(monkeypatch, task, stage_publish_mosaic=result)
    assert task.python_callable(params={"dry_run": False, "force": True}) == result
    assert modules == ["pipeline"]
    assert calls == [("stage_publish_mosaic", ("duo",), {"store_uri": "file:///store", "dry_run": False,
                                                         "force": True})]


def test_screen_task_calls_the_library_function_the_cli_calls(bag, monkeypatch):
    task = bag.dags["tvb_screening_call"].get_task("screen")
    summary = {"territory": "call", "lines": ["Projet : ZAC"], "sheet_url": "file:///store/x/fiche.html"}
    calls, modules = _fake_stages(monkeypatch, task, stage_screen=summary)
    params = {"projet": "uploads/call/zac.gpkg", "nom": "", "publication": "R1", "couche": ""}
    assert task.python_callable(params=params, dag_run=SimpleNamespace(conf=dict(params))) == summary
    assert modules == ["priorities.stage"]
    assert calls == [("stage_screen", ("call", "uploads/call/zac.gpkg"),
                      {"store_uri": "file:///store", "release_id": "R1", "layer": None, "project_name": None})]


# --- trigger form ----------------------------------------------------------------------------------------------------
def _server_params(dag):
    """The params as the API server sees them (after DAG serialization), like a REST / UI trigger."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)).params


def test_trigger_form_is_typed_and_documented(observatory, territory):
    params = observatory.params
    schema = {k: params.get_param(k).schema for k in params}
    assert set(schema) == {"territory", "force", "sous_trames", "resolution_m", "dry_run"}
    for key in schema:
        p = params.get_param(key)
        assert schema[key].get("title") and p.description, key
    assert schema["territory"]["enum"] == [territory.id]
    assert schema["force"]["type"] == schema["dry_run"]["type"] == "boolean"
    assert schema["sous_trames"]["type"] == "array"
    assert schema["sous_trames"]["items"]["enum"] == list(territory.sous_trames)
    assert schema["sous_trames"]["examples"] == list(territory.sous_trames)     # multi-select in the UI
    assert schema["resolution_m"] == {**schema["resolution_m"], "type": "integer", "minimum": 5, "maximum": 200}
    assert params.dump() == {"territory": territory.id, "force": False, "sous_trames": list(territory.sous_trames),
                             "resolution_m": int(territory.resolution_m), "dry_run": False}


@pytest.mark.parametrize("conf", [
    {}, {"force": True}, {"dry_run": True, "resolution_m": 10}, {"resolution_m": 5}, {"resolution_m": 200},
    {"sous_trames": ["wetland"]}, {"sous_trames": ["forest", "mining"], "territory": "call"},
])
def test_valid_trigger_conf_is_accepted(observatory, conf):
    _server_params(observatory).deep_merge(conf).validate()


@pytest.mark.parametrize("conf, message", [
    ({"resolution_m": 4}, "4 is less than the minimum of 5"),
    ({"resolution_m": 500}, "500 is greater than the maximum of 200"),
    ({"resolution_m": "25"}, "'25' is not of type 'integer'"),
    ({"sous_trames": ["forest", "desert"]}, "'desert' is not one of"),
    ({"sous_trames": []}, "should be non-empty"),
    ({"sous_trames": ["forest", "forest"]}, "has non-unique elements"),
    ({"territory": "lille"}, "'lille' is not one of ['call']"),
    ({"force": "yes"}, "'yes' is not of type 'boolean'"),
    ({"dry_run": None}, "None is not of type 'boolean'"),
])
def test_invalid_trigger_conf_is_rejected_with_a_clear_message(observatory, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as err:
        _server_params(observatory).deep_merge(conf).validate()
    text = str(err.value)
    assert f"Invalid input for param {next(iter(conf))}" in text and message in text, text


# --- helpers of the DAG files ---------------------------------------------------------------------------------------
def test_run_options_defaults_map_to_a_plain_run(dagmod, territory):
    defaults = {"territory": "call", "force": False, "sous_trames": list(territory.sous_trames),
                "resolution_m": int(territory.resolution_m), "dry_run": False}
    assert dagmod.run_options(territory, defaults) == {"force": False, "sous_trames": None, "resolution_m": None}
    opts = dagmod.run_options(territory, {**defaults, "force": True, "sous_trames": ["wetland", "forest"],
                                          "resolution_m": 50})
    assert opts == {"force": True, "sous_trames": ["forest", "wetland"], "resolution_m": 50.0}
    with pytest.raises(ValueError, match="computes territory 'call', not 'lille'"):
        dagmod.run_options(territory, {**defaults, "territory": "lille"})


def test_unknown_conf_keys_fail_the_run(dagmod):
    from airflow.sdk.exceptions import AirflowFailException

    dagmod.check_conf_keys({"force": True}, {"force": False, "dry_run": False})
    with pytest.raises(AirflowFailException, match=r"unknown run parameter\(s\) \['resolutoin_m'\]"):
        dagmod.check_conf_keys({"resolutoin_m": 50}, {"force": False, "resolution_m": 25})


def test_planned_sous_trames_keep_the_territory_order(dagmod):
    """plan_sous_trames of the observatory and tiled DAGs: the run's subset in the YAML's order, all by default."""
    every = ["forest", "grassland", "mining", "wetland"]
    assert dagmod.planned_sous_trames(every, {"sous_trames": None}) == every
    assert dagmod.planned_sous_trames(every, {"sous_trames": ["wetland", "forest"]}) == ["forest", "wetland"]


def test_tiled_territory_gets_one_observatory_dag_whose_compute_is_the_tile_chain(tmp_path, monkeypatch, observatory):
    """A territory with tiling gets ``tvb_observatory_<id>`` (no other DAG computing it) from
    tvb_observatory_tiled.py: the untiled DAG's head, tail, schedule and Params, its ``compute_sous_trame`` replaced by
    plan_tiles → first_round → round_r / after_round_r (``tiling.dag_rounds`` from the typed section) → stitch →
    part → assemble."""
    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    raw["tiling"] = {**raw.get("tiling", {}), "enabled": True, "dag_rounds": 3}
    (tmp_path / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    bag = _bag(monkeypatch, tmp_path)
    assert bag.import_errors == {}
    assert {d for d in bag.dags if d.endswith("_call")} == {"tvb_observatory_call", "tvb_fetch_call",
                                                            "tvb_screening_call"}
    tiled = bag.dags["tvb_observatory_call"]
    assert bag.dag_folder and tiled.fileloc.endswith("tvb_observatory_tiled.py")
    assert sorted(t for t in tiled.task_ids if t.startswith("round_")) == ["round_1", "round_2", "round_3"]
    assert "up to 3 rounds" in tiled.doc_md
    tile_chain = {"plan_tiles", "first_round", "stitch", "part", *(f"{k}_{r}" for k in ("round", "after_round")
                                                                   for r in (1, 2, 3))}
    assert set(tiled.task_ids) == (set(observatory.task_ids) - {"compute_sous_trame"}) | tile_chain
    assert tiled.get_task("plan_sous_trames").downstream_task_ids == {"plan_tiles", "stitch", "part"}
    assert tiled.get_task("after_round_3").downstream_task_ids == {"stitch"}
    assert tiled.get_task("stitch").downstream_task_ids == {"part"}
    assert tiled.get_task("part").downstream_task_ids == {"assemble"}
    for task_id in ("assemble", "publish", "notify"):            # the same tail
        assert (tiled.get_task(task_id).downstream_task_ids
                == observatory.get_task(task_id).downstream_task_ids), task_id
    assert tiled.params.dump() == observatory.params.dump()
    assert ({a.name for a in tiled.timetable.asset_condition.objects}
            == {a.name for a in observatory.timetable.asset_condition.objects}) and "tiles" in tiled.tags


def test_changed_sources_maps_derived_layers_to_their_source(dagmod, territory):
    run = {"changed_sources": ["landuse", "osm_roads", "gone"],
           "snapshots": {"landuse": {}, "osm_roads": {"parent_source": "roads"}, "gone": {}}}
    assert dagmod.changed_sources(territory, run) == ["landuse", "roads"]
    assert dagmod.changed_sources(territory, {"changed_sources": [], "snapshots": {}}) == []


def _with_sous_trames(raw: dict, names: tuple[str, ...]) -> dict:
    """A territory mapping keeping only the sous-trames ``names``: their friction values and fiches too (a value
    for a sous-trame the territory does not declare is refused as a misspelling)."""
    friction = {**raw["friction"], "landuse": {cls: {k: v for k, v in values.items() if k in names}
                                               for cls, values in raw["friction"]["landuse"].items()}}
    return {**raw, "sous_trames": {k: v for k, v in raw["sous_trames"].items() if k in names}, "friction": friction,
            "fiches": {k: v for k, v in (raw.get("fiches") or {}).items() if k in names}}


# --- one DAG pair per territory file ---------------------------------------------------------------------------------
def test_dags_are_generated_per_territory_and_a_broken_yaml_is_isolated(tmp_path, monkeypatch):
    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    other = {**_with_sous_trames(raw, ("forest", "wetland")), "id": "lens2", "schedule": {"fetch_cron": "30 4 * * 3"},
             "resolution_m": 50}
    (tmp_path / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    (tmp_path / "lens2.yaml").write_text(dump_yaml(other, allow_unicode=True), encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("id: broken\nname: Broken\n", encoding="utf-8")
    misspelt = {**raw, "id": "misspelt", "indicatorz": raw["indicators"], "tiling": {**raw["tiling"], "enabled": True}}
    (tmp_path / "misspelt.yaml").write_text(dump_yaml(misspelt, allow_unicode=True), encoding="utf-8")
    (tmp_path / "copy.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")  # id still call
    bag = _bag(monkeypatch, tmp_path)
    assert bag.import_errors == {}
    assert set(bag.dags) == {"tvb_fetch_call", "tvb_observatory_call", "tvb_fetch_lens2", "tvb_observatory_lens2",
                             "tvb_observatory_broken", "tvb_screening_call", "tvb_screening_lens2",
                             "tvb_observatory_misspelt",      # a misspelt key: no fetch / screening / tiled DAG
                             "tvb_observatory_copy"}          # a copy keeping call's id replaces no call DAG
    copy_doc = bag.dags["tvb_observatory_copy"].doc_md
    assert "differs from its id 'call'" in copy_doc and str(tmp_path / "call.yaml") in copy_doc
    assert bag.dags["tvb_observatory_call"].params.get_param("territory").schema["enum"] == ["call"]
    assert "indicatorz: unknown key" in bag.dags["tvb_observatory_misspelt"].doc_md
    lens2 = bag.dags["tvb_observatory_lens2"]
    assert lens2.params.get_param("sous_trames").schema["items"]["enum"] == ["forest", "wetland"]
    assert lens2.params.get_param("territory").schema["enum"] == ["lens2"]
    assert lens2.params.dump()["resolution_m"] == 50
    assert bag.dags["tvb_fetch_lens2"].timetable.expression == "30 4 * * 3"
    broken = bag.dags["tvb_observatory_broken"]
    assert [t.task_id for t in broken.tasks] == ["report_config_error"]
    assert "config-error" in broken.tags and "invalid territory configuration" in broken.doc_md


# --- one DAG per region file (dags/tvb_region.py) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def region_bag(tmp_path_factory):
    """call, call_voisin (a copy with its own id and two sous-trames) and the regions duo and broken (an unknown
    member) next to them; parsed once for the tests below (read only), ``TVB_CONFIG_DIR`` set while they run."""
    tmp_path = tmp_path_factory.mktemp("region-bag")
    raw = load_yaml((ROOT / "config/territories/call.yaml").read_text(encoding="utf-8"))
    territories, regions = tmp_path / "territories", tmp_path / "regions"
    territories.mkdir()
    regions.mkdir()
    voisin = {**_with_sous_trames(raw, ("forest", "wetland")), "id": "call_voisin", "name": "Voisin synthétique"}
    (territories / "call.yaml").write_text(dump_yaml(raw, allow_unicode=True), encoding="utf-8")
    (territories / "call_voisin.yaml").write_text(dump_yaml(voisin, allow_unicode=True), encoding="utf-8")
    (regions / "duo.yaml").write_text("id: duo\nname: CALL et voisin\nmembers: [call, call_voisin]\n", encoding="utf-8")
    (regions / "broken.yaml").write_text("id: broken\nname: Cassée\nmembers: [call, atlantis]\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("TVB_REGIONS_DIR", raising=False)
        yield _bag(monkeypatch, territories)


def test_region_dag_triggers_members_in_parallel_then_publishes_the_mosaic(region_bag):
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    assert region_bag.import_errors == {}
    dag = region_bag.dags["tvb_region_duo"]
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert up == {"plan_members": set(), "run_member": {"plan_members"}, "publish_mosaic": {"run_member"}}
    run_member = dag.get_task("run_member")
    assert run_member.is_mapped and run_member.operator_class is TriggerDagRunOperator
    kw = run_member.partial_kwargs
    assert kw["wait_for_completion"] is True and kw["deferrable"] is True   # the wait holds no worker slot
    assert kw["fail_when_dag_is_paused"] is True and kw["retries"] == 0
    assert dag.get_task("publish_mosaic").trigger_rule == "all_success"    # a failed member: no mosaic
    assert dag.schedule is None and dag.max_active_runs == 1 and dag.catchup is False
    assert {"tvb", "region", "region:duo", "territory:call", "territory:call_voisin"} <= set(dag.tags)
    assert "assembles, it does not recompute" in dag.doc_md
    form = {k: dag.params.get_param(k).schema for k in ("force", "sous_trames", "resolution_m", "dry_run")}
    assert form["sous_trames"]["items"]["enum"] == ["forest", "wetland"]   # common to every member
    assert [form[k]["title"] for k in form] == ["Forcer le recalcul", "Sous-trames à calculer", "Résolution (m)",
                                                "Essai à blanc"]
    broken = region_bag.dags["tvb_region_broken"]
    assert [t.task_id for t in broken.tasks] == ["report_config_error"] and "config-error" in broken.tags
    assert "member 'atlantis' has no territory configuration" in broken.doc_md


@pytest.mark.parametrize("params, conf", [
    ({"force": False, "sous_trames": ["forest", "wetland"], "resolution_m": None, "dry_run": False},
     {"force": False, "dry_run": False}),
    ({"force": True, "sous_trames": ["forest"], "resolution_m": 100, "dry_run": True},
     {"force": True, "dry_run": True, "sous_trames": ["forest"], "resolution_m": 100}),
])
def test_region_params_become_each_members_conf_and_are_valid_there(region_bag, params, conf):
    import runpy

    member_runs = runpy.run_path(str(DAGS / "tvb_region.py"))["member_runs"]
    _server_params(region_bag.dags["tvb_region_duo"]).deep_merge(params).validate()
    runs = member_runs(["call", "call_voisin"], ["forest", "wetland"], params, "manual__x")
    assert runs == [{"trigger_dag_id": f"tvb_observatory_{m}", "conf": conf, "trigger_run_id": f"manual__x__{m}"}
                    for m in ("call", "call_voisin")]
    for run in runs:
        _server_params(region_bag.dags[run["trigger_dag_id"]]).deep_merge(run["conf"]).validate()


@pytest.mark.integration          # a fresh interpreter importing Airflow
def test_region_dag_file_parses_fast_without_warnings(region_bag):
    """tvb_region.py with a region configured: no deprecation warning, no heavy stage library at parse time."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; g = runpy.run_path(sys.argv[3]); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('geopandas', 'great_expectations', "
            "'rasterio', 'numba', 'scipy') or m.startswith(('tvb_tasks.publish', 'tvb_tasks.pipeline', "
            "'tvb_tasks.layers', 'tvb_tasks.indicators'))); print(sorted(k for k in g if k.startswith('tvb_region_')), "
            "heavy)")
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::PendingDeprecationWarning",
                           "-W", "error::FutureWarning", "-c", code, str(PLUGINS), str(ROOT), str(DAGS / "tvb_region.py")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['tvb_region_broken', 'tvb_region_duo'] []"


def test_a_tiled_territorys_vector_tasks_are_held_to_its_memory_bound(monkeypatch):
    """``tvb_pipeline(bound=territory)`` runs the block under ``memory_bound`` at ``tiling.memory_limit_gib`` when
    the territory is tiled (its validate / assemble / indicators / publish tasks, like its tiled stages), and not
    for an untiled one; the DAGs' tail and head tasks pass their territory."""
    import contextlib
    import inspect

    import tvb_dag_support
    from tvb_tasks import memory
    from tvb_tasks.config import load_territory

    entered = []

    @contextlib.contextmanager
    def record(task, limit_gib, hint=""):
        entered.append((task, limit_gib, hint))
        yield

    monkeypatch.setattr(memory, "memory_bound", record)
    monkeypatch.setattr(tvb_dag_support, "get_current_context", lambda: {"ti": SimpleNamespace(task_id="assemble")})
    call = load_territory("call")
    tiled = call.model_copy(update={"tiling": call.tiling.model_copy(update={"enabled": True,
                                                                            "memory_limit_gib": 2.5})})
    with tvb_dag_support.tvb_pipeline(bound=call) as stages:
        assert stages.__name__ == "tvb_tasks.pipeline"
    assert entered == []
    with tvb_dag_support.tvb_pipeline(bound=tiled):
        pass
    assert [(t, lim) for t, lim, _ in entered] == [("assemble of call", 2.5)] and "features" in entered[0][2]
    source = inspect.getsource(tvb_dag_support.observatory_tail) + inspect.getsource(tvb_dag_support.observatory_head)
    for stage in ("stage_validate_sources", "stage_assemble", "stage_indicators", "stage_validate_outputs",
                  "publish_outcome"):
        assert f"tvb_pipeline(bound=territory) as pipeline:\n            {'outcome = ' if stage == 'publish_outcome' else 'return '}pipeline.{stage}" in source, stage

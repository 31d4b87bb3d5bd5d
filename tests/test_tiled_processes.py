"""``tvb run`` of a tiled territory (``tiled.run_tiled_parts``): every tiled task in its own process, so that
``tiling.memory_limit_gib`` bounds each task as in the DAG, not the process that runs the whole pipeline.

CALL at 100 m, forest only, 64-cell tiles (12 tiles, three rounds), through ``tvb run`` (``cli.main``) with a local
store and work folder in tmp; the territory's YAML a copy of call.yaml with tiling on and a bound of 0.6 GiB
(``TVB_CONFIG_DIR``, which the child processes get). Measured on this machine: the tasks' own peaks are
0.22–0.52 GB (plan 475 MB, tile workers ≤ 432, stitch 431–455, part 515: mostly the interpreter and its
libraries), while the process that runs the pipeline holds ≈ 0.77 GB after validating the sources (≈ 0.93 GB at
the end). The configuration check refuses bounds under 0.5 GiB + a tile (``tiling_problems``), so the bound too
small for a task is given to the part task's process directly.
"""
from __future__ import annotations

import pytest

from tvb_tasks.config import PROJECT_ROOT

pytestmark = pytest.mark.integration        # the pipeline end to end, each tiled task a spawned process (≈ 1.5 min)

TILING = "tiling:\n  enabled: false\n  tile_size: 2048 "
BOUND_GIB = 0.6


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``tvb run --resolution 100 --sous-trames forest --dry-run`` of the tiled CALL at 0.6 GiB: (exit code, stdout,
    the tiled stages' run dict, their task records)."""
    import contextlib
    import io

    from tvb_tasks import cli, tiled

    tmp = tmp_path_factory.mktemp("tiled_cli")
    text = (PROJECT_ROOT / "config/territories/call.yaml").read_text(encoding="utf-8")
    assert text.count(TILING) == 1 and text.count("  memory_limit_gib: 4 ") == 1
    text = text.replace(TILING, "tiling:\n  enabled: true\n  tile_size: 64 ").replace(
        "  memory_limit_gib: 4 ", f"  memory_limit_gib: {BOUND_GIB} ")
    (tmp / "config").mkdir()
    (tmp / "config" / "call.yaml").write_text(text, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    for name, sub in (("TVB_CONFIG_DIR", "config"), ("TVB_WORK_DIR", "work"), ("TVB_CACHE_DIR", "cache")):
        mp.setenv(name, str(tmp / sub))
    tasks: list[tiled.TaskRun] = []
    runs: list[dict] = []
    real = tiled.run_tiled_parts

    def recorded(run, sous_trames):                 # the CLI's call, its task records kept for the tests
        runs.append(run)
        return real(run, sous_trames, tasks=tasks)

    mp.setattr(tiled, "run_tiled_parts", recorded)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", "--territory", "call", "--store", str(tmp / "store"), "--resolution", "100",
                         "--sous-trames", "forest", "--dry-run"])
    mp.setattr(tiled, "run_tiled_parts", real)
    yield code, out.getvalue(), runs, tasks
    mp.undo()


def test_tiled_cli_run_bounds_each_task_not_the_cli_process(cli_run):
    """A bound above every task's need but below what the CLI's process holds: the run, each task in its own
    process, succeeds (one planning, stitch and part process, the tiles on workers); the same tiled stages in the
    CLI's process fail on that process's memory, naming the first task."""
    from tvb_tasks import tiled
    from tvb_tasks.memory import MemoryBoundError, peak_mb

    code, out, runs, tasks = cli_run
    assert code == 0 and out.startswith("dry run: release "), out
    (run,) = runs
    assert [t["task"] for t in tasks if t["stage"] != "tile"] == ["planning forest", "stitch of forest",
                                                                 "part of forest"]
    tiles = [t for t in tasks if t["stage"] == "tile"]
    assert len(tiles) >= 12 and {t["round"] for t in tiles} >= {1, 2}
    assert all(t["result"]["peak_mb"] > 100 for t in tiles)      # each tile's checked peak: its worker's so far
    assert max(t["peak_mb"] for t in tasks) < BOUND_GIB * 1024 < peak_mb()
    with pytest.raises(MemoryBoundError, match=rf"^planning forest: .* above the memory bound "
                                               rf"tiling.memory_limit_gib = {BOUND_GIB} \(614 MB\)"):
        tiled.run_tiled_parts(run, ["forest"], processes=False)


def test_a_task_over_the_bound_fails_in_its_process_naming_it(cli_run):
    """The part task in its own process (as ``run_tiled_parts`` runs it) under a bound below its need (0.3 GiB,
    given in the run's configuration): ``MemoryBoundError`` raised in the child, received with its message, which
    the CLI prints as one line naming the task, the bound and the setting."""
    import copy

    from tvb_tasks import tiled
    from tvb_tasks.cli import error_sentence
    from tvb_tasks.memory import MemoryBoundError

    _, _, (run,), _ = cli_run
    small = copy.deepcopy(run)
    small["config"]["tiling"]["memory_limit_gib"] = 0.3
    small["config_hash"] = None                      # the recorded hash is the 0.6 GiB configuration's
    with tiled._pool(1) as ex:
        fut = ex.submit(tiled._stage_task, "stage_tile_part", small, "forest")
        with pytest.raises(MemoryBoundError) as err:
            fut.result()
    line = error_sentence(err.value)
    assert "\n" not in line and line.startswith("part of forest: ")
    assert "above the memory bound tiling.memory_limit_gib = 0.3 (307 MB)" in line

"""The lint and type gates: scripts/test.sh runs ruff and mypy before the stack and pytest, with the versions pinned
in pyproject.toml and requirements.lock, and the pre-commit hooks run the same commands from the project venv."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _commands(script: str) -> list[str]:
    return [ln.strip() for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_test_command_runs_ruff_and_mypy_first():
    lines = _commands((ROOT / "scripts" / "test.sh").read_text(encoding="utf-8"))

    def first(pattern: str) -> int:
        return next(i for i, ln in enumerate(lines) if re.search(pattern, ln))

    ruff, mypy = first(r"\.venv/bin/ruff check\b.* \.(\s|$)"), first(r"\.venv/bin/mypy\b")
    stack = first(r"bash \.ci/stack\.sh start")
    # (the fast tier's run, not the collection that prepares it while mypy runs)
    fast = first(r"-m pytest\b(?!.*--collect-only).*not integration and not e2e")
    slow = first(r"-m pytest\b.*\"integration or e2e\"")
    # the fast tier needs no server: it runs before the stack starts, the integration and e2e tests after it
    assert first(r"scripts/setup\.sh") < ruff < mypy < fast < stack < slow
    assert mypy < first(r"apt-get install") < fast        # the Debian packages after the gates, before the tests
    for i in (ruff, mypy):                        # a finding stops the run with a message, before the stack starts
        assert re.search(r"\|\|\s*\{.*exit 1", lines[i]), lines[i]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


MYPY_TARGETS = {"tvb_tasks", "plugins", "dags"}       # the stage libraries, the Airflow glue and the DAG files


def _mypy_targets(command: str) -> set[str]:
    words = command.split("||")[0].split()
    return set(words[words.index(".venv/bin/mypy") + 1:])


def test_the_type_gate_covers_the_libraries_the_plugins_and_the_dags():
    """The same three folders in the test command, the pre-commit hook and ``mypy`` without argument (pyproject
    ``files``), every one of them on disk with Python files; untyped function bodies are checked too."""
    script = next(ln for ln in _commands((ROOT / "scripts" / "test.sh").read_text(encoding="utf-8"))
                  if ln.startswith(".venv/bin/mypy"))
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))["repos"][0]["hooks"]
    hook = next(h for h in hooks if h["id"] == "mypy")
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert _mypy_targets(script) == _mypy_targets(hook["entry"]) == set(mypy["files"]) == MYPY_TARGETS
    assert mypy["check_untyped_defs"] is True
    for folder in MYPY_TARGETS:
        assert any((ROOT / folder).glob("*.py")), folder
    # the DAG files are the only modules exempt from check_untyped_defs (their @dag wiring passes XComArgs): each
    # name is a real DAG file, and no library or plugin module is exempt
    exempt = [o for o in mypy.get("overrides", []) if o.get("check_untyped_defs") is False]
    assert [set(o["module"]) for o in exempt] == [{p.stem for p in (ROOT / "dags").glob("*.py")}]


def test_gate_tools_are_pinned_in_pyproject_and_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = {re.split(r"[=<>!~\[ ]", d, maxsplit=1)[0].lower(): d for d in project["project"]["optional-dependencies"]["dev"]}
    lock = dict(ln.split("==", 1) for ln in (ROOT / "requirements.lock").read_text(encoding="utf-8").split())
    for tool in ("ruff", "mypy"):
        assert dev[tool] == f"{tool}=={lock[tool]}"
    ruff = project["tool"]["ruff"]
    assert ruff["target-version"] == "py311" and ruff["cache-dir"].startswith("var/")
    assert project["tool"]["mypy"]["cache_dir"].startswith("var/")
    assert not project["tool"]["mypy"].get("ignore_missing_imports"), "per-module overrides only"


def test_pre_commit_hooks_run_the_venv_tools_offline():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert [r["repo"] for r in config["repos"]] == ["local"]         # no hook repository to download
    entries = {h["id"]: h for h in config["repos"][0]["hooks"]}
    assert entries["ruff"]["entry"].startswith(".venv/bin/ruff check")
    assert entries["mypy"]["entry"].startswith(".venv/bin/mypy ") and entries["mypy"]["pass_filenames"] is False
    assert all(h["language"] == "system" for h in entries.values())

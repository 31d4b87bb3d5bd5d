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

    ruff, mypy = first(r"\.venv/bin/ruff check\b.* \.(\s|$)"), first(r"\.venv/bin/mypy tvb_tasks\b")
    stack = first(r"bash \.ci/stack\.sh start")
    fast, slow = first(r"-m pytest\b.*not integration and not e2e"), first(r"-m pytest\b.*\"integration or e2e\"")
    # the fast tier needs no server: it runs before the stack starts, the integration and e2e tests after it
    assert first(r"scripts/setup\.sh") < ruff < mypy < fast < stack < slow
    for i in (ruff, mypy):                        # a finding stops the run with a message, before the stack starts
        assert re.search(r"\|\|\s*\{.*exit 1", lines[i]), lines[i]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


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
    assert entries["mypy"]["entry"] == ".venv/bin/mypy tvb_tasks" and entries["mypy"]["pass_filenames"] is False
    assert all(h["language"] == "system" for h in entries.values())

"""Which error class the pipeline library raises (docs/architecture.md, "Which error class to raise"): no bare
``ValueError`` / ``RuntimeError`` left in ``tvb_tasks``, so that the Airflow retry policy (``plugins/tvb_retry.py``,
decided by ``isinstance(exc, DeterministicError)``) never retries a bad input twice for the same result. The retry
decisions on real failing calls are in tests/test_plugins.py."""
from __future__ import annotations

import ast
from pathlib import Path

from tvb_tasks.errors import DeterministicError, InvalidInputError, TVBError

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "tvb_tasks"
BUILTINS = {"ValueError", "RuntimeError", "Exception"}

# Files allowed to raise a builtin, and why. Anything else must raise a tvb_tasks error class.
ALLOWED = {
    # pydantic validators: pydantic turns the ValueError into a ValidationError, which load_territory / load_region
    # raise as ConfigError (deterministic)
    "config.py", "config_models.py", "config_regions.py", "config_sections.py",
    # `tvb serve` cannot listen on its port: a CLI error, not a task's, and a busy port frees up (transient)
    "cli.py",
}


def _is_validator(node: ast.AST) -> bool:
    """A pydantic ``@field_validator`` / ``@model_validator`` method: pydantic turns its ValueError into a
    ValidationError (reported as ConfigError / a source's configuration error), so a builtin is right there."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name.endswith("validator"):
            return True
    return False


def _builtin_raises(path: Path) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if _is_validator(node):
            return
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTINS:
                found.append(f"{path.name}:{node.lineno} raise {exc.id}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_the_library_raises_no_bare_value_or_runtime_error():
    offenders = [f"{p.parent.relative_to(ROOT)}/{hit}" for p in sorted(LIBRARY.rglob("*.py"))
                 if p.relative_to(LIBRARY).as_posix() not in ALLOWED for hit in _builtin_raises(p)]
    assert offenders == [], ("raise a tvb_tasks error instead (InvalidInputError, the module's DeterministicError "
                             "subclass, or a transient TVBError subclass): " + "; ".join(offenders))
    assert all((LIBRARY / name).is_file() for name in ALLOWED)            # the allow-list names real files


def test_the_scan_sees_a_bare_raise(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("def f(x):\n    if x:\n        raise ValueError('bad')\n    raise RuntimeError\n"
                 "def g():\n    raise KeyError('k')\n"
                 "class M:\n    @field_validator('v')\n    def v(cls, v):\n        raise ValueError('pydantic')\n",
                 encoding="utf-8")
    assert _builtin_raises(p) == ["x.py:3 raise ValueError", "x.py:4 raise RuntimeError"]


def test_invalid_input_is_deterministic_and_still_a_value_error():
    exc = InvalidInputError("bad id")
    assert isinstance(exc, DeterministicError) and isinstance(exc, TVBError) and isinstance(exc, ValueError)

"""YAML in the tests at libyaml speed: :func:`load_yaml` is the project's reader (C parser, parsed texts kept, a
fresh copy per call) and :func:`dump_yaml` is ``yaml.safe_dump`` with the C emitter (~5x faster on a territory YAML,
which many tests copy and edit). Same plain data in and out as ``safe_load`` / ``safe_dump``.
"""
from __future__ import annotations

from typing import Any

import yaml

from tvb_tasks.config import load_yaml

__all__ = ["dump_yaml", "load_yaml"]

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump(data, **kwargs)`` with the C emitter when PyYAML has it."""
    return yaml.dump(data, Dumper=_DUMPER, **kwargs)

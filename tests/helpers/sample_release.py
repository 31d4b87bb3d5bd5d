"""One pipeline run of the bundled CALL sample (profile ``default``) per test session, handed out as copies.

Three modules read a release of the whole sample (``test_pipeline``, ``test_readers``, ``test_production_replicas``);
each run takes ~45 s on this machine. :func:`build_sample_release` runs it once; :func:`copy_sample_release` gives
a module its own copy of the store and work folder, so a test that changes its store (a second run, a tampered
file, a prune) cannot leak into another module.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from helpers.servers import temp_env


def build_sample_release(root: Path) -> dict[str, Any]:
    """Run the pipeline on the bundled sample into ``root/store`` (work folder ``root/work``, downloads cache
    ``root/cache``); returns the run result (``status`` must be ``published``)."""
    from tvb_tasks.pipeline import run_pipeline

    with temp_env({"TVB_WORK_DIR": str(root / "work"), "TVB_CACHE_DIR": str(root / "cache")}):
        result = run_pipeline("call", store_uri=(root / "store").as_uri(), profile="default")
    assert result["status"] == "published", result
    return result


def copy_sample_release(master: tuple[Path, dict[str, Any]], dest: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the session's sample release (``store``, ``work``, ``cache`` folders) under ``dest``; returns
    ``(dest, result)`` where ``dest / "store"`` is the copied local store."""
    src, result = master
    for name in ("store", "work", "cache"):
        if (src / name).exists():
            shutil.copytree(src / name, dest / name, symlinks=True)
    return dest, dict(result)

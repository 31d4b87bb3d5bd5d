"""Keep a local copy of a territory's live release for QGIS Server (docker-compose service ``qgis-release-sync``).

Every ``--interval`` seconds: read ``releases/<territory>/latest.json`` in the store (``TVB_STORE_URI``), and when it
points to a release not yet here, download the release's ``tvb.gpkg`` and ``qgis/`` project into
``<target>/<territory>/<release_id>/`` (sha256 checked against the release manifest), then switch the symbolic link
``<target>/<territory>/current`` to it atomically. QGIS Server serves ``<target>/<territory>/current/qgis/tvb.qgs``,
whose layers read ``../tvb.gpkg``. Older copies beyond ``--keep`` are removed. A heartbeat file is touched after every
check (the service's healthcheck).

    python docker/qgis_release_sync.py --territory call --target /srv/qgis [--once]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

log = logging.getLogger("qgis_release_sync")

WANTED_PREFIXES = ("tvb.gpkg", "qgis/")
HEARTBEAT = ".heartbeat"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wanted_files(manifest: dict) -> list[dict]:
    """Manifest entries QGIS Server needs: the GeoPackage and the QGIS project folder."""
    return [f for f in manifest.get("files", []) if f["path"].startswith(WANTED_PREFIXES)]


def sync_once(store, territory: str, target: Path, keep: int = 2) -> str | None:
    """Make ``target/territory/current`` the live release; returns its id (None when nothing is published)."""
    from tvb_tasks.store import NotFound

    base = Path(target) / territory
    base.mkdir(parents=True, exist_ok=True)
    try:
        pointer = json.loads(store.get_bytes(f"releases/{territory}/latest.json"))
    except NotFound:
        log.info("%s: no release published yet", territory)
        return None
    rid = pointer["release_id"]
    current = base / "current"
    if current.is_symlink() and os.readlink(current) == rid and (base / rid).is_dir():
        return rid
    manifest = json.loads(store.get_bytes(pointer["manifest_key"]))
    files = wanted_files(manifest)
    if not any(f["path"] == "tvb.gpkg" for f in files):
        raise RuntimeError(f"release {rid} of {territory} has no tvb.gpkg in its manifest")
    tmp = base / f".{rid}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        dest = tmp / f["path"]
        store.download(f["key"], dest)
        if _sha256(dest) != f["sha256"]:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{f['key']}: sha256 differs from the manifest of release {rid}")
    final = base / rid
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    link = base / ".current.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(rid)
    os.replace(link, current)            # atomic switch for QGIS Server
    log.info("%s: now serving release %s (%d files)", territory, rid, len(files))
    releases = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and not p.is_symlink())
    for old in releases[:-keep] if keep > 0 else []:
        if old != rid:
            shutil.rmtree(base / old, ignore_errors=True)
    return rid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--territory", required=True)
    parser.add_argument("--target", required=True, type=Path)
    parser.add_argument("--store", default=None, help="store URI (default: TVB_STORE_URI)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between checks")
    parser.add_argument("--keep", type=int, default=2, help="release copies kept locally")
    parser.add_argument("--once", action="store_true", help="check once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tvb_tasks.store import open_store

    store = open_store(args.store)
    while True:
        try:
            sync_once(store, args.territory, args.target, keep=args.keep)
            (args.target / HEARTBEAT).parent.mkdir(parents=True, exist_ok=True)
            (args.target / HEARTBEAT).touch()
        except Exception as exc:  # noqa: BLE001 - keep serving the previous release; retry at the next check
            log.error("%s: sync failed: %s", args.territory, exc)
            if args.once:
                return 1
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())

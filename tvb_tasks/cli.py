"""The ``tvb`` command: run the pipeline and its tools without Airflow.

Imports of the heavy stage libraries happen inside each command so ``tvb --help`` and ``tvb cost-distance`` start fast.

Why one module over 500 lines: it is the command line's table of contents — one ``cmd_*`` of a few lines per
command, each calling a library, and the argparse tree (:func:`build_parser`) that names them; splitting it would
only scatter that list.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .contracts import LIVE_STATUSES, RunStatus
from .errors import DeterministicError


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


class UsageError(DeterministicError, ValueError):
    """The command line is wrong (exit status 2, like argparse's own usage errors)."""


def _tvb_command() -> str:
    """How to call ``tvb`` from a shell: the ``tvb`` script beside this interpreter (``.venv/bin/tvb``: the venv is
    rarely on PATH), relative to the current folder when inside it; plain ``tvb`` when there is none."""
    import os
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "tvb"
    if not script.exists():
        return "tvb"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else str(script)


def release_paths(store_uri: str, territory_id: str, release_id: str) -> list[str]:
    """Printable lines locating a release: its report and web map as http URLs (``TVB_PUBLIC_BASE_URL``, the
    territory's ``publish.public_base_url``, else the local ``tvb serve`` address), the store folder and the
    ``latest.json`` pointer. Without a public base URL, a last line gives the ``tvb serve`` command to run."""
    from .config import load_territory
    from .publish.layout import latest_key, release_links
    from .publish.serve import viewer_base_url
    from .store import open_store

    store = open_store(store_uri)
    try:
        territory = load_territory(territory_id)
    except Exception:  # noqa: BLE001 - printing paths must not fail on a territory file edited since
        territory = None
    http = release_links(store, territory_id, release_id, viewer_base_url(territory))
    where = release_links(store, territory_id, release_id)       # no base URL: the store's own locations
    lines = [f"{label:<9} {value}" for label, value in (
        ("report", http["report_url"]), ("web map", http["web_url"]),
        ("release", where["release_url"]), ("manifest", where["manifest_url"]),
        ("latest", store.url(latest_key(territory_id))))]
    if not _public_base_configured(territory):
        lines.append(f"(to open the report and the web map: {_tvb_command()} serve --store {store.uri})")
    return lines


def _public_base_configured(territory) -> bool:
    import os

    configured = territory.publish.public_base_url if territory is not None else None
    return bool(os.environ.get("TVB_PUBLIC_BASE_URL") or configured)


# what ``tvb run`` prints for each way a run ends (the statuses of tvb_tasks.contracts; mypy checks the keys)
RUN_MESSAGES: dict[RunStatus, str] = {
    "published": "published release {release_id}",
    "unchanged": "unchanged: inputs, configuration and code are those of release {release_id}; nothing published "
                 "(use --force to publish anyway)",
    "dry_run": "dry run: release {release_id} computed and validated, not published",
}


def cmd_run(args) -> int:
    from .pipeline import run_pipeline

    result = run_pipeline(args.territory, store_uri=args.store, profile=args.profile, force=args.force,
                          dry_run=args.dry_run, resolution_m=args.resolution,
                          sous_trames=args.sous_trames.split(",") if args.sous_trames else None,
                          http_overrides=_http_overrides(args), wait_s=args.wait)
    status = result["status"]
    print(RUN_MESSAGES[status].format(release_id=result.get("release_id")))
    if status in LIVE_STATUSES:
        print("\n".join(release_paths(result["store_uri"], result["territory"], result["release_id"])))
        if args.serve:
            args.store, args.quiet = result["store_uri"], True
            return cmd_serve(args)
    return 0


def _seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds (``inf`` / ``nan`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number of seconds, got {text!r}")
    return value


def _wait_seconds(text: str) -> float:
    """argparse type of ``--wait``: zero or a positive, finite number of seconds."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _seconds(text)


def _resolution(text: str) -> float:
    """argparse type of ``--resolution``: metres within the bounds of the territory YAML's ``resolution_m``."""
    from .config import RESOLUTION_MAX_M, RESOLUTION_MIN_M

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of metres, got {text!r}") from None
    if not RESOLUTION_MIN_M <= value <= RESOLUTION_MAX_M:
        raise argparse.ArgumentTypeError(f"resolution_m must be between {RESOLUTION_MIN_M:g} and "
                                         f"{RESOLUTION_MAX_M:g} m, got {text}")
    return value


def _http_overrides(args) -> dict:
    """``--timeout`` / ``--deadline`` as HTTP option overrides for every source of the fetch."""
    out = {}
    if getattr(args, "timeout", None) is not None:
        out["timeout_s"] = args.timeout
        out["connect_timeout_s"] = min(15.0, args.timeout)
    if getattr(args, "deadline", None) is not None:
        out["deadline_s"] = args.deadline
    return out


def _add_http_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=_seconds, metavar="S",
                   help="connect/read timeout of each HTTP request, seconds (overrides the sources' timeout_s)")
    p.add_argument("--deadline", type=_seconds, metavar="S",
                   help="overall time limit of each source's read, retries included, seconds (overrides "
                        "deadline_s; default 1800)")


def cmd_sources_rejected(args) -> int:
    from .sources import clear_rejected, list_rejected
    from .store import open_store

    store = open_store(args.store)
    if args.clear:
        removed = clear_rejected(store, args.territory, args.source)
        print(f"cleared {len(removed)} rejected snapshot(s) of {args.territory}"
              + "".join(f"\n  {r['source']} {r['snapshot_id'][:12]}  {r['reason']}" for r in removed))
        return 0
    rows = [r for r in list_rejected(store, args.territory) if not args.source or r["source"] == args.source]
    if not rows:
        print(f"no rejected snapshot for {args.territory}")
    for r in rows:
        print(f"{r['source']:<24} {r['snapshot_id'][:12]}  fetched {r['fetched_at']}  rejected {r['rejected_at']}"
              f"  {r['feature_count']} features\n    {r['reason']}")
    return 0


def cmd_mosaic(args) -> int:
    from .publish.mosaic import publish_region_mosaic

    result = publish_region_mosaic(args.region, args.store, dry_run=args.dry_run, force=args.force)
    _print({k: result[k] for k in ("status", "release_id", "report_url", "members")})
    return 0


def cmd_territories(args) -> int:
    from .config import list_territories, load_territory

    for tid in list_territories():
        t = load_territory(tid)
        print(f"{tid:<12} {t.name}  ({len(t.sources)} sources, {len(t.sous_trames)} sous-trames, "
              f"profiles: {', '.join(['default', *t.profiles])})")
    return 0


def cmd_check_config(args) -> int:
    from .config import ConfigError, files_declaring, load_territory, territories_dir
    from .config_regions import is_region, load_region
    from .layers.tiles import tiling_problems
    from .sources.schemas import check_territory

    if is_region(args.territory):
        region = load_region(args.territory)
        print(f"{region.path}: valid region ({len(region.members)} members: {', '.join(region.members)}; "
              f"config hash {region.config_hash()[:12]})")
        return 0
    t = load_territory(args.territory, args.profile)
    # a copy of this file in the config folder with the same id (load_territory refuses the copy itself)
    in_folder = Path(t.path).resolve().parent == territories_dir().resolve()
    same_id = [str(p) for p in files_declaring(t.id, Path(t.path))] if in_folder else []
    if same_id:
        raise ConfigError(f"{t.path}: id {t.id!r} is also the id of {', '.join(same_id)} in the config folder: each "
                          "territory needs its own id (a copied YAML whose id was not changed?)")
    tiling = [f"{key}: {msg}" for key, msg in tiling_problems(t.tiling, t.corridors.neighbours)]
    if tiling:
        raise ConfigError(f"{t.path} (profile {t.profile}): tiling cannot run:\n  - " + "\n  - ".join(tiling))
    errors = check_territory(t)
    if errors:
        raise ConfigError(f"{t.path} (profile {t.profile}): source mappings disagree with the publishers' schemas "
                          "(config/schemas/):\n  - " + "\n  - ".join(errors))
    print(f"{t.path}: valid (profile {t.profile}, config hash {t.config_hash()[:12]})")
    return 0


#: Optional packages that numba and rasterio import when present, which ``tvb cost-distance`` never uses: numba
#: checks SciPy's BLAS (for ``np.dot``/``np.linalg``, ≈ 0.17 s of import), rasterio imports boto3 for its AWS
#: sessions (≈ 0.09 s). Together ≈ 15 % of the whole command on ``bench/cost_distance.py``'s raster.
_UNUSED_BY_COST_DISTANCE = ("scipy", "boto3")


def _skip_unused_imports(paths: Sequence[str]) -> None:
    """Mark :data:`_UNUSED_BY_COST_DISTANCE` as absent for this process (``import`` then raises ImportError, which
    both libraries handle), unless already imported; boto3 stays importable when a path is remote (``s3://``,
    ``/vsi…``), where rasterio uses it for credentials."""
    remote = any("://" in str(p) or str(p).startswith("/vsi") for p in paths)
    for name in _UNUSED_BY_COST_DISTANCE:
        if name == "boto3" and remote:
            continue
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def cmd_cost_distance(args) -> int:
    if args.own_process:  # the process runs this command only (not main([...]) called from Python)
        _skip_unused_imports([args.cost_tif, args.sources_csv, args.out_tif])
    from .layers.costdistance import cost_distance_file

    stats = cost_distance_file(args.cost_tif, args.sources_csv, args.out_tif, knight=args.knight,
                               max_cost=args.max_cost)
    _print(stats)
    return 0


def cmd_fetch_wfs(args) -> int:
    from .sources import fetch_wfs_to_file

    bbox = None
    if args.bbox:
        parts = args.bbox.split(",")
        if len(parts) not in (4, 5):
            raise UsageError(f"--bbox must be minx,miny,maxx,maxy[,EPSG:code], got {args.bbox!r}")
        bbox = (*map(float, parts[:4]), parts[4] if len(parts) == 5 else "EPSG:2154")
    timing = {"timeout_s": args.timeout} if args.timeout else {}
    if args.deadline:
        timing["deadline_s"] = args.deadline
    result = fetch_wfs_to_file(args.url, args.typename, args.out_file, bbox=bbox, version=args.version,
                               page_size=args.page_size, **timing)
    print(f"{result['features']} features written to {args.out_file} "
          f"(server reported {result.get('number_matched') if result.get('number_matched') is not None else 'no count'})")
    return 0


def cmd_fetch_sources(args) -> int:
    from .config import load_territory
    from .sources import fetch_all, fetch_source
    from .store import open_store

    territory = load_territory(args.territory, args.profile)
    store = open_store(args.store)
    http = _http_overrides(args)
    if args.source:
        _print({args.source: fetch_source(territory, args.source, store, force=args.force, http_overrides=http)})
    else:
        _print(fetch_all(territory, store, force=args.force, http_overrides=http))
    return 0


def cmd_sources_probe(args) -> int:
    from .config import load_territory
    from .sources.probe import format_report, probe_territory

    territory = load_territory(args.territory, args.profile)
    reports = probe_territory(territory, only=args.source)
    print(format_report(reports))
    return 1 if any(r["differences"] for r in reports) else 0


def open_existing_store(uri: str | None):
    """The store at ``uri`` for commands that read releases: a local folder that does not exist is an error, never
    created ("no release" would hide a mistyped path); a malformed URI is a usage error."""
    from .store import open_store

    try:
        return open_store(uri, create=False)
    except ValueError as exc:             # a malformed URI (file://host/…, s3:// without bucket, ""): usage error
        raise UsageError(str(exc)) from None


def release_list_lines(releases: list[dict]) -> list[str]:
    """``tvb releases list`` table: columns as wide as the longest release id."""
    width = max([len("RELEASE"), *(len(str(r["release_id"])) for r in releases)])
    lines = [f"  {'RELEASE':<{width}} {'PUBLISHED (UTC)':<19} {'FILES':>5} {'SIZE':>9}"]
    for r in releases:
        flag = "*" if r.get("latest") else " "
        lines.append(f"{flag} {r['release_id']:<{width}} {_when(r.get('released_at')):<19} "
                     f"{r.get('files', ''):>5} {_size(r.get('bytes')):>9}")
    lines.append("* = live release (latest.json points to it)")
    return lines


def cmd_releases(args) -> int:
    from . import publish

    if args.action == "prune" and args.keep < 1:
        raise UsageError(f"--keep must be at least 1 (got {args.keep}): the live release is always kept")
    if args.action == "prune" and args.work_older_than_days < 0:
        raise UsageError(f"--work-older-than-days must be at least 0 (got {args.work_older_than_days:g})")
    store = open_existing_store(args.store)
    t = args.territory
    if args.action == "list":
        releases = publish.list_releases(store, t)
        for problem in publish.pointer_problems(store, t):
            print(f"tvb: warning: {problem}", file=sys.stderr)
        if not releases:
            print(f"no release published for {t} in {store.uri}")
            return 0
        print("\n".join(release_list_lines(releases)))
        return 0
    if args.action == "orphans":
        _print(publish.find_orphans(store, t))
        return 0
    if args.action == "prune":
        before = publish.list_releases(store, t)
        result = publish.prune(store, t, keep=args.keep, work_older_than_days=args.work_older_than_days)
        if args.json:
            _print(result)
        else:
            print("\n".join(prune_lines(result, before, args.keep)))
        return 0
    if not args.release_id:
        raise UsageError(f"tvb releases {args.action} needs a RELEASE_ID")
    if args.action == "show":
        shown = publish.show_release(store, t, args.release_id)
        if args.json:
            _print(shown)
        else:
            print("\n".join(release_summary(shown, release_paths(store.uri, t, args.release_id))))
    elif args.action == "rollback":
        result = publish.rollback(store, t, args.release_id, force=args.force)
        for warning in result.get("warnings", []):
            print(f"tvb: warning: {warning} (--force given)", file=sys.stderr)
        _print(result)
    elif args.action == "verify":
        result = publish.verify_release(store, t, args.release_id)
        _print(result)
        for warning in result.get("warnings", []):
            print(f"tvb: warning: {warning}", file=sys.stderr)
        return 0 if result.get("ok") else 1
    return 0


def cmd_screen(args) -> int:
    """Screen a planned project against a release; print what it touches and where the sheet is."""
    from .priorities.stage import stage_screen

    summary = stage_screen(args.territory, args.project, store_uri=args.store, profile=args.profile,
                           release_id=args.release, layer=args.layer, project_name=args.name)
    print("\n".join(summary["lines"]))
    print(f"fiche     {summary['sheet_url']}")
    print(f"pdf       {summary['pdf_url']}")
    if args.json:
        _print(summary)
    return 0


def _when(iso: str | None) -> str:
    """``2026-11-30T11:39:59Z`` → ``2026-11-30 11:39:59``."""
    return (iso or "").replace("T", " ").replace("Z", "").replace("+00:00", "")[:19]


def _size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def release_summary(m: dict, paths: list[str]) -> list[str]:
    """A few lines a person reads: when, live or not, previous release, inputs, validation, key figures, links.
    (``tvb releases show --json`` prints the whole manifest.)"""
    val = m.get("validation") or {}
    ok = val.get("success")
    lines = [f"release    {m.get('release_id')} of {m.get('territory_name') or m.get('territory')}"
             + ("  (live)" if m.get("latest") else ""),
             f"published  {_when(m.get('released_at'))} UTC" + (f", after {m['previous_release_id']}"
                                                                if m.get("previous_release_id") else ", first release"),
             f"code       {m.get('code_version')}, configuration {str(m.get('config_hash') or '')[:12]}"
             + (f", profile {m['profile']}" if m.get("profile") else ""),
             f"sources    {len(m.get('sources') or {})}: " + ", ".join(sorted(m.get("sources") or {})),
             "validation " + ("passed" if ok else "FAILED" if ok is False else "not recorded")
             + (f" ({_count(val.get('warnings'))} warning(s))" if val.get("warnings") else ""),
             f"files      {(m.get('totals') or {}).get('files', len(m.get('files') or []))}, "
             f"{_size((m.get('totals') or {}).get('bytes'))}"]
    figures = m.get("indicators") or {}
    if figures:
        from .indicators.key_figures import KEY_FIGURES

        lines.append("key figures")
        for key, value in figures.items():
            label, unit = KEY_FIGURES.get(key, (key, ""))
            unit = "" if unit == "nombre" else f" {unit}"
            shown = fr_figure(value)
            lines.append(f"  {label}: {shown}{unit}")
    return lines + paths + ["(full manifest: tvb releases show RELEASE_ID --json)"]


def fr_figure(value) -> str:
    """A key figure in French format (narrow no-break space for thousands, decimal comma): ``23940.5`` →
    ``23 940,5``, ``289`` → ``289``; other values unchanged."""
    from .publish.report.reading import fr

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return fr(value, 0 if float(value).is_integer() else 1)


def _count(value) -> int:
    return len(value) if isinstance(value, list) else int(value or 0)


def prune_lines(result: dict, before: list[dict], keep: int) -> list[str]:
    """What a prune deleted and, for each release it kept, why."""
    newest = [r["release_id"] for r in before[:keep]]
    live = next((r["release_id"] for r in before if r.get("latest")), None)
    lines = []
    for rid in result.get("kept", []):
        if rid in newest:
            why = f"one of the {keep} newest (--keep {keep})"
            if rid == live:
                why += ", live release"
        elif rid == live:
            why = "live release (latest.json points to it): never deleted, even beyond --keep"
        else:
            why = "kept"
        lines.append(f"kept     {rid}  {why}")
    for rid in result.get("deleted", []):
        lines.append(f"deleted  {rid}")
    for rid in result.get("deleted_orphans", []):
        lines.append(f"deleted  {rid}  incomplete release (no manifest) older than the grace period")
    for prefix in result.get("work_deleted", []):
        lines.append(f"deleted  {prefix}  run scratch untouched for longer than the work age limit")
    for prefix in result.get("work_kept_leased", []):
        lines.append(f"kept     {prefix}  old run scratch, but a run holds its lease")
    verb = "would delete" if result.get("dry_run") else "deleted"
    lines.append(f"{len(result.get('kept', []))} release(s) kept, {len(result.get('deleted', []))} {verb}, "
                 f"{result.get('objects_deleted', 0)} object(s) removed")
    if "work_deleted" in result:
        lines.append(f"{len(result['work_deleted'])} work prefix(es) {verb} "
                     f"({result.get('work_objects_deleted', 0)} object(s), {_size(result.get('work_bytes_deleted'))}), "
                     f"{len(result.get('work_kept_recent', []))} recent and {len(result.get('work_kept_leased', []))} "
                     "leased kept")
    return lines


def cmd_serve(args) -> int:
    from .publish.serve import make_server, server_url

    store = open_existing_store(args.store)
    try:
        server = make_server(store, args.host, args.port, quiet=args.quiet)
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                           "choose another --port") from None
    url = server_url(server)
    print(f"serving {store.uri} at {url}/ (Ctrl-C to stop)")
    print(f"web map   {url}/releases/{args.territory}/latest/web/index.html")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvb", description="Trame Verte et Bleue observatory pipeline")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the whole pipeline (fetch, validate, compute, publish) without Airflow")
    r.add_argument("--territory", default="call", help="territory id (config/territories/<id>.yaml)")
    r.add_argument("--store", help="object store URI (file:///… or s3://bucket/prefix); default TVB_STORE_URI "
                                   "or var/store")
    r.add_argument("--profile", help="source profile (default: bundled sample; 'production' = real servers)")
    r.add_argument("--force", action="store_true", help="publish even if inputs, config and code are unchanged")
    r.add_argument("--dry-run", action="store_true", help="compute and validate, do not publish")
    r.add_argument("--resolution", type=_resolution, help="raster resolution in metres (overrides the YAML)")
    r.add_argument("--sous-trames", help="comma-separated subset of sous-trames")
    _add_http_options(r)
    r.add_argument("--wait", type=_wait_seconds, default=0.0, metavar="S",
                   help="when another run works on the same inputs, wait up to S seconds (default: stop at once)")
    r.add_argument("--serve", action="store_true", help="then serve the store over HTTP (see tvb serve)")
    r.add_argument("--port", type=int, default=None, help="with --serve: TCP port (default 8000)")
    r.add_argument("--host", default="127.0.0.1", help="with --serve: address to listen on")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("territories", help="list configured territories")
    t.set_defaults(func=cmd_territories)

    mo = sub.add_parser("mosaic", help="publish the regional mosaic of a region's live member releases "
                                       "(config/regions/<id>.yaml)")
    mo.add_argument("region", help="a region id (config/regions/<id>.yaml, folder TVB_REGIONS_DIR) or a YAML path")
    mo.add_argument("--store", help="object store URI (file:///… or s3://bucket/prefix); default TVB_STORE_URI")
    mo.add_argument("--dry-run", action="store_true", help="assemble and check, publish nothing")
    mo.add_argument("--force", action="store_true", help="publish even if the member releases are unchanged")
    mo.set_defaults(func=cmd_mosaic)

    c = sub.add_parser("check-config", help="validate a territory or region YAML")
    c.add_argument("territory", help="a territory id (config/territories/<id>.yaml, folder TVB_CONFIG_DIR), a region "
                                     "id (config/regions/<id>.yaml, folder TVB_REGIONS_DIR) or the path of a YAML "
                                     "file (a region's has 'members')")
    c.add_argument("--profile")
    c.set_defaults(func=cmd_check_config)

    cd = sub.add_parser("cost-distance", help="accumulated cost raster from a cost GeoTIFF and x,y sources CSV")
    cd.add_argument("cost_tif")
    cd.add_argument("sources_csv", help="CSV with header x,y in the raster's CRS")
    cd.add_argument("out_tif")
    cd.add_argument("--knight", action="store_true", help="16 neighbours (knight's move)")
    cd.add_argument("--max-cost", type=float, help="stop accumulating beyond this cost")
    cd.set_defaults(func=cmd_cost_distance)

    s = sub.add_parser("sources", help="fetch sources")
    ssub = s.add_subparsers(dest="sources_command", required=True, metavar="ACTION")
    fw = ssub.add_parser("fetch-wfs", help="fetch a complete WFS layer to a GeoParquet / GeoPackage file")
    fw.add_argument("url")
    fw.add_argument("typename")
    fw.add_argument("out_file")
    fw.add_argument("--bbox", help="minx,miny,maxx,maxy[,EPSG:code]")
    fw.add_argument("--version", default="2.0.0", help="WFS version (2.0.0, or 1.1.0 for QGIS Server)")
    fw.add_argument("--page-size", type=int)
    _add_http_options(fw)
    fw.set_defaults(func=cmd_fetch_wfs)
    fs = ssub.add_parser("fetch", help="fetch a territory's sources into snapshots")
    fs.add_argument("--territory", default="call")
    fs.add_argument("--source", help="one source name (default: all)")
    fs.add_argument("--store")
    fs.add_argument("--profile")
    fs.add_argument("--force", action="store_true")
    _add_http_options(fs)
    fs.set_defaults(func=cmd_fetch_sources)
    rj = ssub.add_parser("rejected", help="list the snapshots the validation gate refused (never drift baselines); "
                                          "--clear removes them from the source indexes")
    rj.add_argument("--territory", default="call")
    rj.add_argument("--store")
    rj.add_argument("--source", help="only this source")
    rj.add_argument("--clear", action="store_true", help="remove the rejected entries from the indexes")
    rj.set_defaults(func=cmd_sources_rejected)
    pr = ssub.add_parser("probe", help="compare the live GetCapabilities / DescribeFeatureType of a territory's WFS "
                                       "sources with their schema files (config/schemas/); exit 1 on differences")
    pr.add_argument("--territory", default="call")
    pr.add_argument("--profile", default="production")
    pr.add_argument("--source", help="one source name (default: every WFS source with a schema)")
    pr.set_defaults(func=cmd_sources_probe)

    rel = sub.add_parser("releases", help="list, show, verify, roll back or prune published releases")
    rel.add_argument("action", choices=["list", "show", "rollback", "verify", "prune", "orphans"])
    rel.add_argument("release_id", nargs="?")
    rel.add_argument("--territory", default="call")
    rel.add_argument("--store")
    rel.add_argument("--keep", type=int, default=10, help="with prune: releases to keep")
    rel.add_argument("--work-older-than-days", type=float, default=7.0, metavar="DAYS",
                     help="with prune: also delete run scratch (work/<territory>/<input key>/) whose newest object is "
                          "older than DAYS days, unless a run on this host holds its lease (default 7)")
    rel.add_argument("--json", action="store_true", help="with show / prune: print the JSON document")
    rel.add_argument("--force", action="store_true",
                     help="with rollback: also make live a release never published through latest.json (no pointer "
                          "history entry) or dated in the future, or replace a corrupt latest.json")
    rel.set_defaults(func=cmd_releases)

    sc = sub.add_parser("screen", help="screen a planned project against a release (porter à connaissance)")
    sc.add_argument("project", help="project file (GeoPackage, GeoJSON, Shapefile…), http(s) URL or store key")
    sc.add_argument("--territory", default="call")
    sc.add_argument("--store")
    sc.add_argument("--profile")
    sc.add_argument("--release", help="release id (default: the live release)")
    sc.add_argument("--layer", help="layer of a multi-layer project file")
    sc.add_argument("--name", help="project name on the sheet (default: the file's name column or file name)")
    sc.add_argument("--json", action="store_true", help="also print the result as JSON")
    sc.set_defaults(func=cmd_screen)
    sv = sub.add_parser("serve", help="serve a store over HTTP (with Range requests) to open reports and web maps")
    sv.add_argument("--store", help="object store URI; default TVB_STORE_URI or var/store")
    sv.add_argument("--port", type=int, default=None, help="TCP port (default TVB_SERVE_PORT or 8000; 0 = any)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--territory", default="call", help="territory whose live web map URL is printed")
    sv.add_argument("--quiet", action="store_true", help="do not log requests")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.own_process = argv is None  # the command line of this process (``tvb …``, ``python -m tvb_tasks.cli …``)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "port", 0) is None:
        from .publish.serve import default_port

        args.port = default_port()
    try:
        return args.func(args)
    except Exception as exc:
        if args.verbose:
            raise
        print(f"tvb: error: {error_sentence(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


def error_sentence(exc: BaseException) -> str:
    """One sentence for a failure, without the Python class name (``-v`` shows the traceback); a failure listing
    several problems (e.g. a configuration naming source, field and value per line) keeps one line per problem."""
    text = str(exc).strip() or {"KeyboardInterrupt": "interrupted"}.get(type(exc).__name__, "unexpected failure")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"{exc.filename}: file not found"
    elif isinstance(exc, KeyError):
        text = f"missing entry {text}"
    lines = [re.sub(r"^\s*(?:[-•]\s+)?", "", line).rstrip() for line in text.splitlines() if line.strip()]   # no bullets
    if len(lines) <= 2:     # one detail (source, check): stays on the sentence's line
        return lines[0] if len(lines) == 1 else lines[0].rstrip(":.") + ": " + lines[1]
    # several problems (configuration, validation gate): every one on its own line, never truncated
    return lines[0].rstrip(":.") + ":\n" + "\n".join(f"  - {line}" for line in lines[1:])


if __name__ == "__main__":
    sys.exit(main())

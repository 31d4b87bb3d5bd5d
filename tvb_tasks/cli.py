"""The ``tvb`` command: run the pipeline and its tools without Airflow.

Imports of the heavy stage libraries happen inside each command so ``tvb --help`` and ``tvb cost-distance`` start fast.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def release_paths(store_uri: str, territory_id: str, release_id: str) -> list[str]:
    """Printable lines locating a release's folder, manifest, report, web map and the ``latest.json`` pointer."""
    from .publish.release import latest_key, release_prefix
    from .store import open_store

    store, base = open_store(store_uri), release_prefix(territory_id, release_id)
    return [f"{label:<9} {store.url(key)}" for label, key in (
        ("release", f"{base}/"), ("manifest", f"{base}/manifest.json"), ("report", f"{base}/report/index.html"),
        ("web map", f"{base}/web/index.html"), ("latest", latest_key(territory_id)))]


def cmd_run(args) -> int:
    from .pipeline import run_pipeline

    result = run_pipeline(args.territory, store_uri=args.store, profile=args.profile, force=args.force,
                          dry_run=args.dry_run, resolution_m=args.resolution,
                          sous_trames=args.sous_trames.split(",") if args.sous_trames else None,
                          http_overrides=_http_overrides(args), wait_s=args.wait)
    status = result.get("status")
    if status == "unchanged":
        print(f"unchanged: inputs, configuration and code are those of release {result['release_id']}; "
              "nothing published (use --force to publish anyway)")
    elif status == "dry_run":
        print(f"dry run: release {result.get('release_id')} computed and validated, not published")
    else:
        print(f"published release {result['release_id']}")
    if status in ("published", "unchanged"):
        print("\n".join(release_paths(result["store_uri"], result["territory"], result["release_id"])))
    return 0


def _seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
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


def cmd_territories(args) -> int:
    from .config import list_territories, load_territory

    for tid in list_territories():
        t = load_territory(tid)
        print(f"{tid:<12} {t.name}  ({len(t.sources)} sources, {len(t.sous_trames)} sous-trames, "
              f"profiles: {', '.join(['default', *t.profiles])})")
    return 0


def cmd_check_config(args) -> int:
    from .config import ConfigError, load_territory
    from .sources.schemas import check_territory

    t = load_territory(args.territory, args.profile)
    errors = check_territory(t)
    if errors:
        raise ConfigError(f"{t.path} (profile {t.profile}): source mappings disagree with the publishers' schemas "
                          "(config/schemas/):\n  - " + "\n  - ".join(errors))
    print(f"{t.path}: valid (profile {t.profile}, config hash {t.config_hash()[:12]})")
    return 0


def cmd_cost_distance(args) -> int:
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
            raise ValueError(f"--bbox must be minx,miny,maxx,maxy[,EPSG:code], got {args.bbox!r}")
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


def cmd_releases(args) -> int:
    from . import publish
    from .store import open_store

    store = open_store(args.store)
    t = args.territory
    if args.action == "list":
        for r in publish.list_releases(store, t):
            flag = "*" if r.get("latest") else " "
            print(f"{flag} {r['release_id']}  {r.get('released_at', '')}  {r.get('files', '')} files")
        return 0
    if args.action == "orphans":
        _print(publish.find_orphans(store, t))
        return 0
    if args.action == "prune":
        _print(publish.prune(store, t, keep=args.keep))
        return 0
    if not args.release_id:
        raise ValueError(f"tvb releases {args.action} needs a RELEASE_ID")
    if args.action == "show":
        _print(publish.show_release(store, t, args.release_id))
    elif args.action == "rollback":
        _print(publish.rollback(store, t, args.release_id))
    elif args.action == "verify":
        result = publish.verify_release(store, t, args.release_id)
        _print(result)
        return 0 if result.get("ok") else 1
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
    r.add_argument("--resolution", type=float, help="raster resolution in metres (overrides the YAML)")
    r.add_argument("--sous-trames", help="comma-separated subset of sous-trames")
    _add_http_options(r)
    r.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="when another run works on the same inputs, wait up to S seconds (default: stop at once)")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("territories", help="list configured territories")
    t.set_defaults(func=cmd_territories)

    c = sub.add_parser("check-config", help="validate a territory YAML")
    c.add_argument("territory")
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
    rel.set_defaults(func=cmd_releases)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into one readable line
        if args.verbose:
            raise
        name = type(exc).__name__
        print(f"tvb: error: {exc}" if name in ("SourceError", "ValidationFailed", "ConfigError", "PipelineError")
              else f"tvb: error: {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

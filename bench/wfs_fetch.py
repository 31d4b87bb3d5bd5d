"""Benchmark: our WFS fetch vs a plain GDAL ``WFS:`` read, against a local MapServer WFS started here.

    .venv/bin/python bench/wfs_fetch.py [--features 10000] [--cap 500] [--page-size N]

Starts MapServer (Debian ``cgi-mapserver``) on 127.0.0.1 with a layer of N points in EPSG:2154 and a per-response
cap, then reads the whole layer with

* ``tvb_tasks.sources.read_wfs`` (GeoJSON pages, completeness checks), and with GML forced;
* ``pyogrio.read_dataframe("WFS:<url>", layer=...)`` with GDAL's defaults — which may stop at the server's cap;
* the same with GDAL paging switched on (``OGR_WFS_PAGING_ALLOWED=ON``, ``OGR_WFS_PAGE_SIZE=<cap>``).

Prints the time and the number of features of each read.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyogrio  # noqa: E402

from tvb_tasks.sources.http import HttpOptions  # noqa: E402
from tvb_tasks.sources.wfs import read_wfs  # noqa: E402


def _fixture():
    spec = importlib.util.spec_from_file_location("mapserver_fixture",
                                                  ROOT / "tests" / "fixtures" / "wfs" / "mapserver_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(label: str, fn) -> tuple[str, float, int | str]:
    started = time.perf_counter()
    try:
        n: int | str = len(fn())
    except Exception as exc:  # noqa: BLE001 - a benchmark reports failures instead of stopping
        n = f"error: {type(exc).__name__}: {exc}"[:160]
    return label, time.perf_counter() - started, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=10000)
    parser.add_argument("--cap", type=int, default=500, help="MapServer wfs_maxfeatures (per-response cap)")
    parser.add_argument("--page-size", type=int, default=None, help="our page size (default: the server's)")
    parser.add_argument("--verbose", action="store_true", help="log the fetchers' progress (INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")

    msf = _fixture()
    if msf.find_mapserv() is None:
        print("mapserv not found: apt-get install cgi-mapserver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tvb-bench-wfs-") as tmp:
        folder = Path(tmp)
        data = msf.write_points_layer(folder / "points.gpkg", n=args.features)
        proc, url = msf.start_mapserver(msf.write_mapfile(folder, data, max_features=args.cap))
        opts = HttpOptions(timeout_s=120, max_retries=2, backoff_s=0.5)
        try:
            rows = [
                _timed("tvb read_wfs (GeoJSON pages)", lambda: read_wfs(
                    url, "ms:pts", srs_name="EPSG:2154", page_size=args.page_size, opts=opts).gdf),
                _timed("tvb read_wfs (GML 3.2 pages)", lambda: read_wfs(
                    url, "ms:pts", srs_name="EPSG:2154", page_size=args.page_size, opts=opts,
                    output_format="application/gml+xml; version=3.2").gdf),
                _timed("GDAL WFS: driver, defaults", lambda: pyogrio.read_dataframe(f"WFS:{url}", layer="ms:pts")),
            ]
            pyogrio.set_gdal_config_options({"OGR_WFS_PAGING_ALLOWED": "ON", "OGR_WFS_PAGE_SIZE": str(args.cap)})
            try:
                rows.append(_timed(f"GDAL WFS: driver, paging ON (page {args.cap})",
                                   lambda: pyogrio.read_dataframe(f"WFS:{url}", layer="ms:pts")))
            finally:
                pyogrio.set_gdal_config_options({"OGR_WFS_PAGING_ALLOWED": None, "OGR_WFS_PAGE_SIZE": None})
        finally:
            msf.stop(proc)
    print(f"MapServer WFS, {args.features} features, per-response cap {args.cap}")
    print(f"{'reader':<42} {'time (s)':>9} {'features':>9}")
    for label, seconds, n in rows:
        flag = "" if n == args.features else "   <-- incomplete" if isinstance(n, int) else ""
        print(f"{label:<42} {seconds:>9.2f} {n!s:>9}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the release report (``build_report``: maps, 36 commune sheets, PDF) on a finished run's work folder.

Run the pipeline once (``tvb run --territory call``, the work folder under ``TVB_WORK_DIR``), then time the report
alone, ``--repeat`` times (median), with the time of its parts (the commune sheets, the PDF) and the sizes of the
PDF and of the sheets' PNGs. The rupture map's infrastructure lines are left out (they need the source snapshots):
the report is otherwise the published one. On a shared machine, compare the CPU times.

Usage: python bench/report.py var/work/call/<input_key> [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="a run's work folder (layers/, indicators/, validation/, history/)")
    parser.add_argument("--territory", default="call")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from tvb_tasks.config import load_territory
    from tvb_tasks.pipeline import _full_validation
    from tvb_tasks.publish.report import build, maps

    territory = load_territory(args.territory)
    parts: dict[str, list[float]] = {"commune sheets": [], "PDF save": []}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[name].append(time.perf_counter() - t0)
        return wrapper

    build.commune_sheets = timed("commune sheets", build.commune_sheets)
    maps.PdfBook.save = timed("PDF save", maps.PdfBook.save)
    totals, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = Path(tmp) / f"report{i}"
            t0, c0 = time.perf_counter(), time.process_time()
            build.build_report(territory, args.work / "layers" / "tvb.gpkg", args.work / "indicators", out,
                               validation_summary=_full_validation(args.work / "validation"),
                               history_path=args.work / "history" / "indicators.parquet", release_id="bench")
            totals.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        pdf = (out / "report.pdf").stat().st_size
        sheets = sum(p.stat().st_size for p in (out / "maps" / "communes").glob("*.png"))
    print(f"report: {statistics.median(totals):.1f} s (median of {args.repeat}: "
          f"{', '.join(f'{t:.1f}' for t in totals)}); CPU {statistics.median(cpu):.1f} s (the machine may be shared)")
    for name, times in parts.items():
        print(f"  {name}: {statistics.median(times):.1f} s")
    print(f"  report.pdf {pdf / 1e6:.1f} MB, commune sheet PNGs {sheets / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

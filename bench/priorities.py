"""Benchmark of the restoration priorities on the bundled CALL sample (target: ranking < 60 s at 25 m).

Steps: compute the sample's layers (``compute_layers``, not part of the ranking time; skipped with ``--gpkg`` to
reuse a ``tvb.gpkg``), then time separately, each ``--repeat`` times (median reported):

* ranking: ``read_layers`` + the sous-trame graphs (one Dijkstra per sous-trame) + ``compute_priorities`` with the
  sample's projects and managed sectors (every corridor to restore / create and every rupture site);
* screening: ``screen_project`` of ``sample/call/screening_zac.gpkg`` (the synthetic ZAC over a corridor);
* fiches: the four fiches de préconisations (HTML + PDF + PNG).

Usage: python bench/priorities.py [--resolution 25] [--repeat 3] [--gpkg path/to/tvb.gpkg]
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


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=25.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gpkg", type=Path, help="reuse a computed tvb.gpkg instead of computing the layers")
    args = parser.parse_args(argv)

    from tvb_tasks.indicators import read_layers
    from tvb_tasks.layers import compute_layers, sample_inputs
    from tvb_tasks.pipeline import effective_territory
    from tvb_tasks.priorities import compute_priorities, sous_trame_networks
    from tvb_tasks.priorities.screening import read_project, screen_project
    from tvb_tasks.priorities.sheets import write_fiches
    from tvb_tasks.priorities.stage import read_inputs

    territory = effective_territory("call", resolution_m=args.resolution)
    inputs = sample_inputs(territory)
    with tempfile.TemporaryDirectory() as tmp:
        gpkg = args.gpkg
        if gpkg is None:
            t0 = time.perf_counter()
            gpkg = Path(compute_layers(territory, inputs, Path(tmp) / "layers")["gpkg"])
            print(f"layers at {args.resolution:g} m: {time.perf_counter() - t0:.1f} s (not part of the ranking)")
        projects, maintenance = read_inputs(territory, inputs)

        def rank():
            layers = read_layers(gpkg, territory)
            return layers, compute_priorities(territory, layers, projects=projects, maintenance=maintenance,
                                              networks=sous_trame_networks(territory, layers, gpkg))

        t_rank, (layers, prio) = _timed(rank, args.repeat)
        zac = read_project(ROOT / "sample" / "call" / "screening_zac.gpkg", territory)
        t_screen, result = _timed(lambda: screen_project(territory, layers, zac), args.repeat)
        t_fiches, _ = _timed(lambda: write_fiches(territory, layers, prio, Path(tmp) / "fiches", release_id="bench",
                                                  attribution="bench"), 1)
    n = prio["candidate"].value_counts().to_dict()
    print(f"candidates: {len(prio)} ({n.get('corridor', 0)} corridors, {n.get('rupture_site', 0)} rupture sites); "
          f"threatened {int((prio['conflict'] > 0).sum())}, in a managed sector "
          f"{int((prio['maintenance_share'] > 0).sum())}")
    print(f"ranking (read layers + graphs + scores): {t_rank:.2f} s median of {args.repeat}  [target < 60 s]")
    print(f"screening of the synthetic ZAC: {t_screen:.2f} s median of {args.repeat}; touches "
          f"{result.summary['corridors']} corridor(s), {result.summary['reservoirs']} reservoir(s), "
          f"max ΔPC loss {result.summary['max_loss_pc_pct']:.2f} %")
    print(f"4 fiches (HTML + PDF + PNG): {t_fiches:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

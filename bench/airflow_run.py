"""Time one run of the observatory DAG through real Airflow (``dag.test()``, SQLite metadata DB, local store) at a
given resolution: the figure behind "a CALL run at 5 m through Airflow finishes in under 5 minutes" (issue 12).

Usage: ``python bench/airflow_run.py [--resolution 5] [--territory call]``. It runs ``scripts/run_dag.py --force``
in a fresh Airflow home and store under a temporary folder, and prints the wall time, the CPU time of the run and
the machine's load average before and after (the 2-core machine is often shared: read the time with the load).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=5, help="cell size in metres (default 5)")
    p.add_argument("--territory", default="call")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tvb-bench-airflow-") as tmp:
        env = {**os.environ, "AIRFLOW_HOME": f"{tmp}/airflow", "TVB_STORE_URI": f"file://{tmp}/store",
               "GX_ANALYTICS_ENABLED": "False", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
               "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_dag.py"), "--territory", args.territory,
                               "--force", "--resolution", str(args.resolution), "--airflow-home", f"{tmp}/airflow"],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(proc.stdout.strip())
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
    print(f"{args.territory} at {args.resolution} m through Airflow: {'success' if proc.returncode == 0 else 'FAILED'}"
          f" in {wall:.0f} s wall, {usage.ru_utime + usage.ru_stime:.0f} s CPU (with the DB migration), "
          f"load average {load0:.1f} → {os.getloadavg()[0]:.1f}, peak RSS of a child "
          f"{usage.ru_maxrss / 1024:.0f} MiB")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Set everything up and run the main job — the `tvb_observatory` DAG through real Airflow 3 (dag.test on a migrated
# SQLite metadata DB) — on the embedded default: the bundled Lens-Liévin sample and a local-folder object store.
# Prints the http URLs of the published report and web map (TVB_PUBLIC_BASE_URL, else the local `tvb serve`
# address). With --serve, then serves the store on that address (Ctrl-C to stop): a browser cannot open the web map
# from file:// (its PMTiles tiles are read with HTTP Range requests).
#   scripts/demo.sh [--serve] [--force] [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
serve=0
args=()
for a in "$@"; do
  if [ "$a" = "--serve" ]; then serve=1; else args+=("$a"); fi
done
bash scripts/setup.sh --with-airflow-db
export GX_ANALYTICS_ENABLED=False
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"   # INFO shows every task log
export TVB_STORE_URI="${TVB_STORE_URI:-file://$(pwd)/var/store}"
.venv/bin/python scripts/run_dag.py --territory "${TVB_TERRITORY:-call}" ${args[@]+"${args[@]}"}
if [ "$serve" = 1 ]; then
  exec .venv/bin/python -m tvb_tasks.cli serve --store "$TVB_STORE_URI" --territory "${TVB_TERRITORY:-call}" \
    --port "${TVB_SERVE_PORT:-8000}"
fi

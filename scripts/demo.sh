#!/usr/bin/env bash
# Set everything up and run the main job — the `tvb_observatory` DAG through real Airflow 3 (dag.test on a migrated
# SQLite metadata DB) — on the embedded default: the bundled Lens-Liévin sample and a local-folder object store.
# Prints where the published release and its report are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-airflow-db
export GX_ANALYTICS_ENABLED=False
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"   # INFO shows every task log
export TVB_STORE_URI="${TVB_STORE_URI:-file://$(pwd)/var/store}"
exec .venv/bin/python scripts/run_dag.py --territory "${TVB_TERRITORY:-call}" "$@"

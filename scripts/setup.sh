#!/usr/bin/env bash
# Set up the project on a fresh Debian machine with Python 3.11: a project-local virtualenv (.venv) with the locked
# dependencies, and a project-local Airflow home (.airflow) with a migrated SQLite metadata DB.
# Idempotent: a second call only checks. Usage: bash scripts/setup.sh [--with-airflow-db]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if ! "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11)' 2>/dev/null; then
  echo "setup: Python >= 3.11 is required (found: $("$PY" --version 2>&1))" >&2; exit 1
fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: installing python3-venv (Debian)"; apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi

stamp=.venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: creating .venv and installing locked dependencies (first time: ~2 min)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e ".[airflow,dev]"
  rm -f .venv/.installed-*; touch "$stamp"
fi

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
if [ "${1:-}" = "--with-airflow-db" ]; then
  mkdir -p "$AIRFLOW_HOME"
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags" AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
  echo "setup: migrating the Airflow metadata DB in $AIRFLOW_HOME (SQLite)"
  .venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
fi

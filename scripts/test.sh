#!/usr/bin/env bash
# Set up and run the whole test suite: the project venv, the lint and type gates (ruff, mypy: fail fast), Debian
# packages for the real local servers (MapServer WFS, Chromium, PostgreSQL, QGIS Server), the fast tier of pytest
# on both cores, then the production-like Airflow stack (PostgreSQL, Redis, api-server, scheduler, dag-processor,
# triggerer, two Celery workers, moto S3) and the integration and end-to-end tests. Extra arguments go to both
# pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/setup.sh
export GX_ANALYTICS_ENABLED=False
export NUMBA_CACHE_DIR="$ROOT/var/numba-cache"

# Python bytecode and pytest's rewritten test modules are cached in __pycache__ (git-ignored): the pytest workers and
# every Airflow task process then load them instead of compiling again (≈ 3 s per fast-tier worker).
unset PYTHONDONTWRITEBYTECODE

# Lint and type gates first (seconds, against minutes for the stack and pytest): fail fast with the findings.
# Settings in pyproject.toml; caches in var/ (mypy of tvb_tasks, plugins and dags: ~36 s of CPU cold, more wall time on
# a busy VM; ~2.5 s warm).
echo "test: ruff check"
.venv/bin/ruff check --quiet . || { echo "test: ruff check failed (see above; safe fixes: .venv/bin/ruff check --fix .)" >&2; exit 1; }
# While mypy runs on one core, the other prepares the fast tier: the numba kernels compiled once into
# $NUMBA_CACHE_DIR (≈ 11 s of CPU on a fresh checkout; the two pytest workers would otherwise each compile them;
# ≈ 0.6 s when the cache is there), the project's modules byte-compiled and the test modules collected once (pytest
# caches their assertion rewriting: ≈ 7.5 s of collection per worker becomes ≈ 4.5 s).
# Its output goes to var/prepare.log, shown when a step fails (a collection error: pytest's report).
mkdir -p var
setsid -w bash -c '.venv/bin/python -c "from tvb_tasks.layers.costdistance import warm_up; print(f\"test: numba kernels ready in {warm_up():.1f} s\")" \
  && .venv/bin/python -m compileall -q tvb_tasks plugins dags sample \
  && .venv/bin/python -m pytest -p no:cacheprovider -qq --collect-only -m "not integration and not e2e" \
  && echo "test: test modules collected"' >var/prepare.log 2>&1 &
prepare=$!                 # its own process group (setsid): stopped whole if mypy fails
echo "test: mypy tvb_tasks plugins dags"
.venv/bin/mypy tvb_tasks plugins dags || { echo "test: mypy failed (see above)" >&2; kill -- -"$prepare" 2>/dev/null; exit 1; }
wait "$prepare" || { cat var/prepare.log >&2; echo "test: preparing the fast tier failed (var/prepare.log, above)" >&2; exit 1; }
grep '^test: ' var/prepare.log || true

# Debian packages of the real local servers, after the gates (a lint or type finding shows in seconds on a fresh
# machine, not after the installs): the fast tier needs ogrinfo and pdfinfo, the integration tier the rest.
need=()
command -v mapserv >/dev/null 2>&1 || [ -x /usr/lib/cgi-bin/mapserv ] || need+=(cgi-mapserver)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ogrinfo >/dev/null 2>&1 || need+=(gdal-bin)   # independent OSM counts (test_production_replicas)
[ -x /usr/lib/cgi-bin/qgis_mapserv.fcgi ] || need+=(qgis-server)
command -v pdfinfo >/dev/null 2>&1 || need+=(poppler-utils)     # PDF page sizes and text in the report tests
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)   # .ci/stack.sh start --celery (TVB_STACK_CELERY=1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "test: installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Two runs: the fast tier (no server) on both cores with pytest-xdist, before the stack starts (it needs none, and
# the idle stack would take CPU from it), then the integration and end-to-end tests (real servers, the stack, real
# Airflow: not parallel-safe) in one process. Extra arguments go to both runs; a run that selects no test (pytest
# exit status 5) does not fail the command.
status=0
.venv/bin/python -m pytest -p no:cacheprovider -m "not integration and not e2e" -n 2 --dist loadfile --durations=15 "$@" || status=$?
[ "$status" = 5 ] && status=0

# tests/test_airflow_region.py: the stack gets the synthetic neighbour call_voisin and the region CALL + voisin
# (≈ 5 min of stack time on the loaded VM; TVB_STACK_REGION=0: no region on the stack, the test skips itself)
if [ "${TVB_STACK_REGION:-1}" = 1 ]; then
  .venv/bin/python sample/generate.py --neighbour --out "$ROOT/var/neighbour" >/dev/null
  export TVB_STACK_EXTRA_CONFIG="${TVB_STACK_EXTRA_CONFIG:+$TVB_STACK_EXTRA_CONFIG }$ROOT/var/neighbour/call_voisin.yaml"
  export TVB_STACK_EXTRA_REGIONS="${TVB_STACK_EXTRA_REGIONS:-$ROOT/tests/fixtures/regions/call_et_voisin.yaml}"
fi

stack_started=0
# The stack runs CeleryExecutor (Redis, two workers) as docker-compose.yml does; TVB_STACK_CELERY=0: LocalExecutor.
stack_mode=--celery; [ "${TVB_STACK_CELERY:-1}" = 0 ] && stack_mode=""
if [ "${TVB_SKIP_STACK:-0}" != 1 ]; then
  if bash .ci/stack.sh start $stack_mode; then stack_started=1; else echo "test: the production-like stack failed to start" >&2; bash .ci/stack.sh stop || true; exit 1; fi
fi
trap '[ $stack_started = 1 ] && bash .ci/stack.sh stop >/dev/null 2>&1 || true' EXIT

.venv/bin/python -m pytest -p no:cacheprovider -m "integration or e2e" --durations=15 "$@" || { rc=$?; [ "$rc" = 5 ] || status=$rc; }
exit "$status"

#!/usr/bin/env bash
# Production-like Airflow 3 stack for the integration tests, with real processes on 127.0.0.1 (no Docker):
#   PostgreSQL (metadata DB, Debian postgresql-15 binaries), Airflow api-server + scheduler (LocalExecutor) +
#   dag-processor + triggerer, moto_server as the S3 store, and a small webhook sink for the notifier.
#
#   .ci/stack.sh start     start everything, wait until healthy and the DAGs are parsed, write $STACK_DIR/stack.env
#   .ci/stack.sh start --celery
#                          the same with CeleryExecutor: a Redis broker (Debian redis-server) and two Celery workers
#                          (worker-1, worker-2, one task slot each, told apart by tvb_worker.hostname); the config
#                          folder adds <territory>_tiled, a copy of the territory with tiling enabled (256-cell tiles),
#                          whose tvb_observatory_<territory>_tiled maps its tiles on both workers (the territory itself
#                          stays untiled: the other stack tests' runs stay short)
#   .ci/stack.sh stop      stop what `start` started (by recorded process group ids) and remove the pid files
#   .ci/stack.sh status    show the processes and the health endpoint
#
# STACK_DIR defaults to <project>/var/stack (override with TVB_STACK_DIR). tests/test_airflow_stack.py reads
# $STACK_DIR/stack.env (or the file named by TVB_STACK_ENV). Credentials are fake, random per start, and local only.
# PostgreSQL runs as the `postgres` user when we are root: if that user cannot reach $STACK_DIR (a checkout under a
# 0700 home folder, Debian 12's default), its data and socket folder goes to a fresh `mktemp -d` under /tmp owned by
# postgres, recorded in $STACK_DIR/pg.dir so that `stop` finds it (stop copies its log into $STACK_DIR/logs and
# removes it). Every other process runs as the calling user and keeps its files in $STACK_DIR.
# Needs: postgresql-15 (apt), psycopg2-binary + asyncpg (Airflow 3 uses both drivers) and moto[server] in the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${TVB_STACK_DIR:-$ROOT/var/stack}"
VENV="${TVB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
AIRFLOW="$VENV/bin/airflow"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
PIDS="$STACK_DIR/pids"
LOGS="$STACK_DIR/logs"
TERRITORY="${TVB_STACK_TERRITORY:-call}"
CELERY=0
WORKERS="worker-1 worker-2"
BUCKET="tvb-stack"
PREFIX="observatory"

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_pg() {   # run a PostgreSQL binary as the postgres user when we are root (postgres refuses to run as root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_ports() {  # N free TCP ports on 127.0.0.1
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

spawn() {  # spawn NAME CMD...: own session (pid = process group id), logs in $LOGS/NAME.log
  local name="$1"; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local timeout="$1" what="$2"; shift 2
  local end=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"
    sleep 1
  done
}

check_prereqs() {
  [ -x "$PY" ] || die "no venv python at $PY"
  [ -x "$AIRFLOW" ] || die "airflow is not installed in $VENV"
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || die "PostgreSQL binaries not found (apt-get install postgresql-15)"
  "$PY" -c "import psycopg2, asyncpg" 2>/dev/null || die "psycopg2 / asyncpg missing: $VENV/bin/pip install psycopg2-binary asyncpg"
  [ -x "$VENV/bin/moto_server" ] || die "moto_server missing: $VENV/bin/pip install 'moto[server]'"
  if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || die "no 'postgres' user (apt-get install postgresql-15)"; fi
  if [ "$CELERY" = 1 ]; then
    command -v redis-server >/dev/null || die "redis-server missing (apt-get install redis-server)"
    "$PY" -c "import airflow.providers.celery, redis" 2>/dev/null \
      || die "Celery provider missing: $VENV/bin/pip install -r requirements.lock (apache-airflow-providers-celery)"
  fi
}

write_airflow_env() {  # the environment of every Airflow process (also handy: source it, then run `airflow …`)
  cat > "$STACK_DIR/airflow.env" <<EOF
export AIRFLOW_HOME="$STACK_DIR/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=$([ "$CELERY" = 1 ] && echo CeleryExecutor || echo LocalExecutor)
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$STACK_DIR/airflow/passwords.json"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$API_PORT"
export AIRFLOW__API_AUTH__JWT_SECRET="$JWT_SECRET"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True
export AIRFLOW_CONN_TVB_STORE='{"conn_type": "aws", "login": "stack-access-key", "password": "$S3_SECRET", "extra": {"endpoint_url": "http://127.0.0.1:$S3_PORT", "region_name": "us-east-1"}}'
export AIRFLOW_CONN_TVB_WEBHOOK='{"conn_type": "http", "host": "http://127.0.0.1:$HOOK_PORT/hook", "password": "$HOOK_TOKEN"}'
export AWS_EC2_METADATA_DISABLED=true
export PYTHONPATH="$ROOT\${PYTHONPATH:+:\$PYTHONPATH}"
export TVB_STORE_URI="s3://$BUCKET/$PREFIX"
export TVB_PUBLIC_BASE_URL="http://127.0.0.1:$S3_PORT/$BUCKET/$PREFIX"
export TVB_WORK_DIR="$STACK_DIR/work"
export TVB_TASK_RETRIES=1
export TVB_RETRY_DELAY_S=10
export GX_ANALYTICS_ENABLED=False
export NO_PROXY="127.0.0.1,localhost"
EOF
  if [ "$CELERY" = 1 ]; then cat >> "$STACK_DIR/airflow.env" <<EOF
export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__CELERY__WORKER_CONCURRENCY=1
export AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER=1
export TVB_CONFIG_DIR="$STACK_DIR/config"
EOF
  fi
}

write_tiled_config() {  # the territories as they are, plus <territory>_tiled: a copy of $TERRITORY with tiling
  # enabled and small tiles (many mapped tile tasks, for tests/test_airflow_celery.py), and the YAML files listed in
  # TVB_STACK_EXTRA_CONFIG (e.g. a synthetic region of sample/generate.py --region 4) with tiling enabled
  mkdir -p "$STACK_DIR/config"
  "$PY" - "$ROOT/config/territories" "$STACK_DIR/config" "$TERRITORY" ${TVB_STACK_EXTRA_CONFIG:-} <<'EOF'
import pathlib, shutil, sys, yaml
src, dst, territory = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
extra = [pathlib.Path(p) for p in sys.argv[4:]]
for f in src.glob("*.yaml"):
    shutil.copyfile(f, dst / f.name)
raw = yaml.safe_load((src / f"{territory}.yaml").read_text(encoding="utf-8"))
tiled = {**raw, "id": f"{territory}_tiled", "name": f"{raw['name']} (tiled)",
         "tiling": {**(raw.get("tiling") or {}), "enabled": True, "tile_size": 256, "overlap": 8}}
(dst / f"{territory}_tiled.yaml").write_text(yaml.safe_dump(tiled, allow_unicode=True, sort_keys=False),
                                             encoding="utf-8")
for f in extra:
    raw = yaml.safe_load(f.read_text(encoding="utf-8"))
    raw["tiling"] = {**(raw.get("tiling") or {}), "enabled": True, "tile_size": 512, "overlap": 8}
    (dst / f.name).write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
EOF
}

write_extra_config() {  # without --celery: the YAML files of TVB_STACK_EXTRA_CONFIG next to config/territories'
  # (as they are); with or without: the region YAMLs of TVB_STACK_EXTRA_REGIONS in $STACK_DIR/regions (tvb_region DAGs)
  if [ "$CELERY" != 1 ] && [ -n "${TVB_STACK_EXTRA_CONFIG:-}" ]; then
    mkdir -p "$STACK_DIR/config"
    cp "$ROOT"/config/territories/*.yaml ${TVB_STACK_EXTRA_CONFIG} "$STACK_DIR/config/"
    echo "export TVB_CONFIG_DIR=\"$STACK_DIR/config\"" >> "$STACK_DIR/airflow.env"
  fi
  if [ -n "${TVB_STACK_EXTRA_REGIONS:-}" ]; then
    mkdir -p "$STACK_DIR/regions"
    cp ${TVB_STACK_EXTRA_REGIONS} "$STACK_DIR/regions/"
    echo "export TVB_REGIONS_DIR=\"$STACK_DIR/regions\"" >> "$STACK_DIR/airflow.env"
  fi
}

start_redis() {
  spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode yes
  wait_for 20 "redis" "$PY" -c "import redis; redis.Redis(host='127.0.0.1', port=$REDIS_PORT).ping()"
  log "Redis on 127.0.0.1:$REDIS_PORT"
}

start_workers() {  # two Celery workers, one task slot each, each with its own name (tvb_worker.hostname)
  local w
  for w in $WORKERS; do
    TVB_WORKER_NAME="$w" AIRFLOW__CORE__HOSTNAME_CALLABLE=tvb_worker.hostname \
      PYTHONPATH="$ROOT/plugins:$PYTHONPATH" \
      spawn "$w" "$AIRFLOW" celery worker --celery-hostname "$w@%h" --concurrency 1 --skip-serve-logs
  done
  wait_for 90 "the Celery workers" "$PY" -c "
import sys
from airflow.providers.celery.executors.celery_executor_utils import app
names = {n.split('@')[0] for reply in (app.control.ping(timeout=2) or []) for n in reply}
sys.exit(0 if set('$WORKERS'.split()) <= names else 1)"
  log "Celery workers up: $WORKERS"
}

pg_dir() {  # the PostgreSQL folder of the recorded stack: $STACK_DIR/pg, or the /tmp folder named in pg.dir
  if [ -f "$STACK_DIR/pg.dir" ]; then cat "$STACK_DIR/pg.dir"; else echo "$STACK_DIR/pg"; fi
}

make_pg_dir() {  # $STACK_DIR/pg when user postgres can traverse $STACK_DIR, else a new postgres-owned /tmp folder
  if as_pg test -x "$STACK_DIR"; then
    mkdir -p "$STACK_DIR/pg"
    echo "$STACK_DIR/pg"
  else
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tvb-stack-pg.XXXXXXXX")"
    chmod 700 "$tmp"
    echo "$tmp" > "$STACK_DIR/pg.dir"
    log "user postgres cannot reach $STACK_DIR: PostgreSQL data and socket in $tmp (recorded in $STACK_DIR/pg.dir)"
    echo "$tmp"
  fi
}

remove_pg_dir() {  # after PostgreSQL stopped: keep its log in $LOGS, remove a /tmp folder recorded in pg.dir
  [ -f "$STACK_DIR/pg.dir" ] || return 0
  local dir
  dir="$(cat "$STACK_DIR/pg.dir")"
  case "$(basename "$dir")" in tvb-stack-pg.*) ;; *) die "unexpected PostgreSQL folder in $STACK_DIR/pg.dir: $dir" ;; esac
  if [ -d "$dir" ]; then
    mkdir -p "$LOGS"
    [ -f "$dir/postgres.log" ] && cp "$dir/postgres.log" "$LOGS/postgres.log"
    rm -rf "$dir"
  fi
  rm -f "$STACK_DIR/pg.dir"
}

start_postgres() {
  local pg data sock
  pg="$(make_pg_dir)"
  data="$pg/data" sock="$pg/run"
  mkdir -p "$data" "$sock"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$pg"
  as_pg test -w "$data" || die "user postgres cannot write to $data"
  as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust --no-sync --no-locale -E UTF8 >"$LOGS/initdb.log" 2>&1 \
    || die "initdb failed (see $LOGS/initdb.log)"
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$pg/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >"$LOGS/pg_ctl.log" 2>&1 || die "PostgreSQL did not start (see $pg/postgres.log)"
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres airflow
  log "PostgreSQL on 127.0.0.1:$PG_PORT (data in $data)"
}

start_s3() {
  spawn moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  wait_for 30 "moto_server" "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$S3_PORT/moto-api/', timeout=2)"
  AWS_ACCESS_KEY_ID=stack-access-key AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_EC2_METADATA_DISABLED=true "$PY" - <<EOF
import boto3
import json
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$S3_PORT", region_name="us-east-1")
s3.create_bucket(Bucket="$BUCKET")
# published releases are world-readable (as in docker-compose.yml): the report links open in a browser
s3.put_bucket_policy(Bucket="$BUCKET", Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::$BUCKET/$PREFIX/releases/*"}]}))
EOF
  log "S3 (moto) on 127.0.0.1:$S3_PORT, bucket $BUCKET (releases/ publicly readable)"
}

start_webhook_sink() {   # records each notification (JSON body) as one line; checks the bearer token
  cat > "$STACK_DIR/webhook_sink.py" <<'EOF'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, token, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != f"Bearer {token}":
            self.send_response(401); self.end_headers(); return
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(204); self.end_headers()

    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Sink).serve_forever()
EOF
  : > "$STACK_DIR/webhook.jsonl"
  spawn webhook "$PY" "$STACK_DIR/webhook_sink.py" "$HOOK_PORT" "$HOOK_TOKEN" "$STACK_DIR/webhook.jsonl"
  wait_for 15 "webhook sink" "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$HOOK_PORT/', timeout=2)"
}

start_airflow() {
  # shellcheck disable=SC1091
  source "$STACK_DIR/airflow.env"
  mkdir -p "$AIRFLOW_HOME" "$TVB_WORK_DIR"
  "$PY" - "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" "$ADMIN_PASSWORD" "$VIEWER_PASSWORD" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    json.dump({"admin": sys.argv[2], "viewer": sys.argv[3]}, f)
EOF
  local t0=$SECONDS
  "$AIRFLOW" db migrate >"$LOGS/db-migrate.log" 2>&1 || die "airflow db migrate failed (see $LOGS/db-migrate.log)"
  log "airflow db migrate: $((SECONDS - t0)) s"
  "$AIRFLOW" pools set tvb_remote_servers 2 "Fetches from remote WFS / download servers" >"$LOGS/pools.log" 2>&1 \
    || die "cannot create pool tvb_remote_servers (see $LOGS/pools.log)"
  spawn api-server "$AIRFLOW" api-server --host 127.0.0.1 --port "$API_PORT" --workers 1
  spawn scheduler "$AIRFLOW" scheduler
  spawn dag-processor "$AIRFLOW" dag-processor
  spawn triggerer "$AIRFLOW" triggerer
  if [ "$CELERY" = 1 ]; then start_workers; fi
  wait_for 90 "the api-server" "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$API_PORT/api/v2/monitor/health', timeout=2)"
  log "Airflow api-server on http://127.0.0.1:$API_PORT"
}

wait_until_ready() {  # every component healthy and the territory's DAGs parsed (seen through the REST API)
  "$PY" - "$API_PORT" "$ADMIN_PASSWORD" "$TERRITORY" "$CELERY" <<'EOF' || die "stack not ready (logs: $LOGS)"
import json, sys, time, urllib.request
port, password, territory, celery = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
base = f"http://127.0.0.1:{port}"

def call(path, token=None, data=None):
    req = urllib.request.Request(base + path, data=json.dumps(data).encode() if data else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"{}")

deadline, state = time.time() + 120, "?"
while time.time() < deadline:
    try:
        health = call("/api/v2/monitor/health")
        bad = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") not in ("healthy", None)]
        token = call("/auth/token", data={"username": "admin", "password": password})["access_token"]
        dags = {d["dag_id"] for d in call("/api/v2/dags?limit=100", token)["dags"]}
        wanted = {f"tvb_observatory_{territory}", f"tvb_fetch_{territory}"}
        if celery:
            wanted.add(f"tvb_observatory_{territory}_tiled")
        state = f"unhealthy: {bad}" if bad else f"dags parsed: {sorted(dags)}"
        if not bad and wanted <= dags:
            print("ready:", state); sys.exit(0)
    except Exception as exc:   # not up yet
        state = f"{type(exc).__name__}: {exc}"
    time.sleep(2)
print("not ready:", state, file=sys.stderr); sys.exit(1)
EOF
}

write_stack_env() {
  cat > "$STACK_DIR/stack.env" <<EOF
# written by .ci/stack.sh start; read by tests/test_airflow_stack.py (fake local credentials only)
TVB_STACK_DIR=$STACK_DIR
TVB_STACK_API_URL=http://127.0.0.1:$API_PORT
TVB_STACK_ADMIN_USER=admin
TVB_STACK_ADMIN_PASSWORD=$ADMIN_PASSWORD
TVB_STACK_VIEWER_USER=viewer
TVB_STACK_VIEWER_PASSWORD=$VIEWER_PASSWORD
TVB_STACK_TERRITORY=$TERRITORY
TVB_STACK_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
TVB_STACK_S3_ACCESS_KEY=stack-access-key
TVB_STACK_S3_SECRET_KEY=$S3_SECRET
TVB_STACK_BUCKET=$BUCKET
TVB_STACK_PREFIX=$PREFIX
TVB_STACK_STORE_URI=s3://$BUCKET/$PREFIX
TVB_STACK_WEBHOOK_LOG=$STACK_DIR/webhook.jsonl
TVB_STACK_PG_PORT=$PG_PORT
TVB_STACK_AIRFLOW_ENV=$STACK_DIR/airflow.env
TVB_STACK_LOGS=$LOGS
TVB_STACK_EXECUTOR=$([ "$CELERY" = 1 ] && echo CeleryExecutor || echo LocalExecutor)
TVB_STACK_WORKERS=$([ "$CELERY" = 1 ] && echo "${WORKERS// /,}")
TVB_STACK_TILED_TERRITORY=$([ "$CELERY" = 1 ] && echo "${TERRITORY}_tiled")
EOF
}

cmd_start() {
  check_prereqs
  [ -d "$PIDS" ] && [ -n "$(ls -A "$PIDS" 2>/dev/null)" ] && { log "a previous stack is recorded in $STACK_DIR: stopping it"; cmd_stop; }
  if [ -e "$STACK_DIR" ]; then
    [ -f "$STACK_DIR/.tvb-stack" ] || die "$STACK_DIR exists and is not a stack folder (no .tvb-stack marker): not removing it"
    remove_pg_dir
    rm -rf "$STACK_DIR"
  fi
  mkdir -p "$PIDS" "$LOGS"
  touch "$STACK_DIR/.tvb-stack"
  chmod 755 "$STACK_DIR"
  local t0=$SECONDS
  read -r PG_PORT API_PORT S3_PORT HOOK_PORT REDIS_PORT <<<"$(free_ports 5)"
  JWT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
  S3_SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
  HOOK_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
  ADMIN_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')"
  VIEWER_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')"
  write_airflow_env
  if [ "$CELERY" = 1 ]; then write_tiled_config; fi
  write_extra_config
  start_postgres
  if [ "$CELERY" = 1 ]; then start_redis; fi
  start_s3
  start_webhook_sink
  start_airflow
  wait_until_ready
  write_stack_env
  log "stack up in $((SECONDS - t0)) s; env: $STACK_DIR/stack.env; logs: $LOGS"
}

cmd_stop() {
  local f pid
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 20); do
    local alive=0
    for f in "$PIDS"/*.pid; do [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.5
  done
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    rm -f "$f"
  done
  local pg
  pg="$(pg_dir)"
  if [ -f "$pg/data/postmaster.pid" ] && [ -n "$PG_BIN" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  remove_pg_dir
  rm -f "$STACK_DIR/stack.env"
  log "stack stopped"
}

cmd_status() {
  local f
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running ($(cat "$f"))"
    else echo "$(basename "$f" .pid): DEAD (see $LOGS/$(basename "$f" .pid).log)"; fi
  done
  [ -f "$STACK_DIR/stack.env" ] && grep -E "API_URL|S3_ENDPOINT" "$STACK_DIR/stack.env" || echo "no stack.env (not started)"
}

case "${1:-}" in
  start) if [ "${2:-}" = "--celery" ]; then CELERY=1; fi; cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--celery]|stop|status" >&2; exit 2 ;;
esac

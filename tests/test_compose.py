"""Deployment files: docker-compose.yml structure (no Docker engine needed), .env.example, the Airflow image and the
QGIS release sync (run for real against a local store).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"

AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer")
ONE_SHOT = ("airflow-init", "minio-init")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET|PRIVATE|_AUTH$|ACCESS_KEY)", re.IGNORECASE)
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_services_follow_the_official_airflow_3_layout(services):
    expected = {"postgres", "redis", *AIRFLOW_SERVICES, "airflow-init", "minio", "minio-init", "qgis-server",
                "qgis-release-sync"}
    assert expected <= set(services)
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands == {"airflow-api-server": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-worker": "celery worker",
                        "airflow-triggerer": "triggerer"}
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["TVB_STORE_URI"].startswith("s3://") and "AIRFLOW_CONN_TVB_STORE" in env
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile", name


def test_every_long_running_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert check.get("interval") and check.get("retries"), name


def test_startup_order_waits_for_health(services):
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["airflow-api-server"]["condition"] == "service_healthy"
    assert services["airflow-init"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    init = "\n".join(services["airflow-init"]["command"])
    assert "pools set tvb_remote_servers" in init and _env(services["airflow-init"])["_AIRFLOW_DB_MIGRATE"] == "true"


def test_dags_plugins_and_config_are_mounted(services):
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        vols = services[name]["volumes"]
        assert "./dags:/opt/airflow/dags" in vols, name
        assert "./plugins:/opt/airflow/plugins" in vols, name
        assert any(v.startswith("./config:/opt/tvb/config") for v in vols), name
        assert _env(services[name])["TVB_CONFIG_DIR"] == "/opt/tvb/config/territories"
    for mount in ("dags", "plugins", "config/territories"):
        assert (ROOT / mount).is_dir()


def test_qgis_server_serves_the_live_release(services, compose):
    qgis = services["qgis-server"]
    assert re.match(r"\$\{QGIS_SERVER_IMAGE:-(camptocamp/qgis-server|3liz/qgis-map-server):[\w.]+\}$",
                    qgis["image"])
    assert qgis["environment"]["QGIS_PROJECT_FILE"].endswith("/current/qgis/tvb.qgs")
    assert "qgis-projects:/srv/qgis:ro" in qgis["volumes"]
    sync = services["qgis-release-sync"]
    assert sync["entrypoint"][-1] == "/opt/tvb/docker/qgis_release_sync.py"
    assert (ROOT / "docker" / "qgis_release_sync.py").is_file()
    assert "qgis-projects:/srv/qgis" in sync["volumes"]
    assert {"qgis-projects", "minio-data", "postgres-db-volume"} <= set(compose["volumes"])


def test_no_secret_is_committed(compose):
    env_vars_used = set()
    for text in _strings(compose):
        env_vars_used |= {m.group(1) for m in INTERPOLATION.finditer(text)}
    for name, svc in compose["services"].items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):     # *_FILE: a path, not a secret
                m = INTERPOLATION.fullmatch(str(value))
                assert m and (m.group(2) or "").startswith(":?"), \
                    f"{name}.{key} must be a required ${{VAR:?…}} from .env, got {value!r}"
    # connection URIs / JSON must take their credentials from .env too
    for text in _strings(compose):
        for m in re.finditer(r"://([^/@\s$]*):([^/@\s]*)@", text):
            assert m.group(2).startswith("${") and ":?" in m.group(2), f"literal credentials in {text!r}"
        if '"password"' in text:
            assert re.search(r'"password": "\$\{[A-Z0-9_]+:\?', text), text
    required = {m.group(1) for t in _strings(compose) for m in INTERPOLATION.finditer(t)
                if (m.group(2) or "").startswith(":?")}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY", "S3_SECRET_KEY"} <= required
    assert env_vars_used


def test_env_example_lists_every_variable_and_holds_no_secret(compose):
    lines = [ln for ln in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    values = dict(ln.split("=", 1) for ln in lines)
    used = {m.group(1) for t in _strings(compose) for m in INTERPOLATION.finditer(t)}
    optional_images = {"TVB_AIRFLOW_IMAGE", "MINIO_IMAGE", "MINIO_MC_IMAGE", "QGIS_SERVER_IMAGE"}
    assert used - optional_images <= set(values), sorted(used - optional_images - set(values))
    for key, value in values.items():
        if SECRET_NAME.search(key) or key in ("MINIO_ROOT_USER",):
            assert value == "", f".env.example must not hold a value for {key}"
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore
    assert not (ROOT / ".env").exists() or ".env" in gitignore


def test_airflow_image_matches_the_installed_airflow():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", text, re.MULTILINE)
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" -e /opt/tvb', text)
    copied = re.findall(r"^COPY --chown=\S+ (\S+)", text, re.MULTILINE)
    for src in copied:
        if "*" not in src:
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("apache-airflow")
    except PackageNotFoundError:
        pytest.skip("apache-airflow not installed here")
    assert installed == "3.3.2", f"the image is apache/airflow:3.3.2 but the tested Airflow is {installed}"


def test_docker_compose_config_when_docker_is_available(tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("no `docker` on this machine (the YAML structure is checked above)")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        # only a missing Compose plugin skips; any other failure of `docker compose` is a failure
        assert re.search(r"unknown (command|shorthand flag)|is not a docker command", probe.stderr + probe.stdout), \
            f"`docker compose version` failed: {probe.stderr or probe.stdout}"
        pytest.skip("no `docker compose` on this machine (the YAML structure is checked above)")
    env = tmp_path / ".env"
    env.write_text("\n".join(f"{k}={v or 'x'}" for k, v in (ln.split("=", 1) for ln in
                   ENV_EXAMPLE.read_text().splitlines() if ln and not ln.startswith("#"))), encoding="utf-8")
    proc = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env), "config", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("doc_path", [OPERATIONS, ROOT / "README.md"], ids=["operations", "readme"])
def test_deploy_section_matches_the_compose_file(services, doc_path):
    doc = doc_path.read_text(encoding="utf-8")
    assert "## Deploy" in doc
    deploy = doc.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(docker compose [^\n]+)$", deploy, re.MULTILINE)
    assert any(c.startswith("docker compose up -d") for c in commands)
    assert any(c.startswith("docker compose build") for c in commands)
    named = set()
    for c in commands:
        for word in c.split()[2:]:
            if re.fullmatch(r"[a-z][a-z0-9-]+", word) and (word.startswith(("airflow-", "qgis-", "minio"))
                                                           or word in ("postgres", "redis")):
                named.add(word)
    assert named and named <= set(services), sorted(named - set(services))


# --- the QGIS release sync, for real against a local store -----------------------------------------------------------
def _sync_module():
    spec = importlib.util.spec_from_file_location("qgis_release_sync", ROOT / "docker" / "qgis_release_sync.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _publish_fake_release(store, rid: str, gpkg: bytes, *, corrupt: bool = False) -> None:
    files = {"tvb.gpkg": gpkg, "qgis/tvb.qgs": b"<qgis/>", "qgis/tvb.qgs.cfg": b"{}", "report/index.html": b"<html>"}
    entries = []
    for path, data in files.items():
        key = f"releases/t1/{rid}/{path}"
        store.put_bytes(key, data)
        entries.append({"path": path, "key": key, "size": len(data),
                        "sha256": hashlib.sha256(b"x" if corrupt and path == "tvb.gpkg" else data).hexdigest()})
    store.put_bytes(f"releases/t1/{rid}/manifest.json", json.dumps({"release_id": rid, "files": entries}).encode())
    store.put_bytes("releases/t1/latest.json", json.dumps(
        {"release_id": rid, "manifest_key": f"releases/t1/{rid}/manifest.json"}).encode())


def test_qgis_release_sync_follows_latest_atomically(tmp_path):
    from tvb_tasks.store import open_store

    sync = _sync_module()
    store = open_store(str(tmp_path / "store"))
    target = tmp_path / "qgis"
    assert sync.sync_once(store, "t1", target) is None                  # nothing published yet
    _publish_fake_release(store, "20260101T000000Z-aaaaaaaa", b"gpkg-1")
    assert sync.sync_once(store, "t1", target) == "20260101T000000Z-aaaaaaaa"
    current = target / "t1" / "current"
    assert os.readlink(current) == "20260101T000000Z-aaaaaaaa"
    assert (current / "tvb.gpkg").read_bytes() == b"gpkg-1" and (current / "qgis" / "tvb.qgs").exists()
    assert not (current / "report").exists()                              # only what QGIS Server needs
    for n, rid in enumerate(["20260201T000000Z-bbbbbbbb", "20260301T000000Z-cccccccc"], start=2):
        _publish_fake_release(store, rid, f"gpkg-{n}".encode())
        assert sync.sync_once(store, "t1", target, keep=2) == rid
    assert (current / "tvb.gpkg").read_bytes() == b"gpkg-3"
    assert sorted(p.name for p in (target / "t1").iterdir() if not p.is_symlink()) == [
        "20260201T000000Z-bbbbbbbb", "20260301T000000Z-cccccccc"]

    _publish_fake_release(store, "20260401T000000Z-dddddddd", b"gpkg-4", corrupt=True)
    with pytest.raises(RuntimeError, match="sha256 differs from the manifest"):
        sync.sync_once(store, "t1", target)
    assert os.readlink(current) == "20260301T000000Z-cccccccc"             # still serving the previous one
    assert sync.main(["--territory", "t1", "--target", str(target), "--store", str(tmp_path / "store"),
                      "--once"]) == 1


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [(m.group(1).upper(), m.group(2).strip()) for m in
            (re.match(r"\s*([A-Za-z]+)\s+(.*)", ln) for ln in text.splitlines() if not ln.lstrip().startswith("#"))
            if m]


def test_airflow_image_installs_with_the_lock():
    """The image installs the project with requirements.lock as pip constraints, as scripts/setup.sh does, and the
    lock's Airflow is the image's."""
    steps = _dockerfile_instructions()
    lock_copy = next(i for i, (op, args) in enumerate(steps)
                     if op == "COPY" and "requirements.lock" in args.split()[:-1])
    assert steps[lock_copy][1].split()[-1] == "/opt/tvb/"
    installs = [(i, args) for i, (op, args) in enumerate(steps)
                if op == "RUN" and re.search(r"\bpip install\b", args) and "/opt/tvb" in args]
    assert len(installs) == 1, installs
    i, args = installs[0]
    assert i > lock_copy, "requirements.lock must be copied before the pip install that uses it"
    assert re.search(r"(^|\s)(-c|--constraint)(\s+|=)/opt/tvb/requirements\.lock(\s|$)", args), args
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert re.search(r"pip install .*-c requirements\.lock", setup)          # one way of applying the lock
    lock = dict(ln.split("==", 1) for ln in (ROOT / "requirements.lock").read_text(encoding="utf-8").split())
    arg = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert lock["apache-airflow"] == arg["AIRFLOW_VERSION"]
    assert re.search(rf"^apache/airflow:{re.escape(arg['AIRFLOW_VERSION'])}-python3\.11$",
                     next(a for op, a in steps if op == "FROM"))

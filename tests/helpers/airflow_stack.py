"""Client side of the production-like Airflow stack (``.ci/stack.sh start``): where its ``stack.env`` is, how to read
it, and a minimal Airflow REST API v2 client. Shared by ``test_airflow_stack.py`` and ``test_airflow_celery.py``,
which skip themselves when ``ENV_FILE`` does not exist (no stack running).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = Path(os.environ.get("TVB_STACK_ENV") or ROOT / "var" / "stack" / "stack.env")
RUN_TIMEOUT_S = float(os.environ.get("TVB_STACK_RUN_TIMEOUT_S", "1200"))


def read_env(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of ``stack.env`` (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Api:
    """Minimal Airflow REST API v2 client with a JWT from the simple auth manager (``POST /auth/token``)."""

    def __init__(self, base: str, user: str, password: str):
        self.base = base.rstrip("/")
        resp = requests.post(f"{self.base}/auth/token", json={"username": user, "password": password}, timeout=30)
        assert resp.status_code == 201, f"login as {user}: HTTP {resp.status_code} {resp.text[:300]}"
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def request(self, method: str, path: str, *, headers: dict | None = None, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/api/v2{path}", headers={**self.headers, **(headers or {})},
                                timeout=60, **kw)

    def get(self, path: str, **params) -> dict:
        resp = self.request("GET", path, params=params)
        assert resp.status_code == 200, f"GET {path}: HTTP {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def trigger(self, dag_id: str, conf: dict) -> requests.Response:
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def unpause(self, dag_id: str) -> None:
        resp = self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert resp.status_code == 200 and resp.json()["is_paused"] is False, resp.text[:300]

    def wait(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        pytest.fail(f"{dag_id} run {run_id} not finished after {timeout:.0f} s: {self.task_states(dag_id, run_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
        return {f"{t['task_id']}[{t.get('rendered_map_index') or t['map_index']}]": t["state"] for t in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        entry = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log as text (the API returns structured JSON lines)."""
        data = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                        map_index=map_index)
        return "\n".join(json.dumps(line, ensure_ascii=False) if isinstance(line, dict) else str(line)
                         for line in data.get("content") or [])

    def failure_report(self, dag_id: str, run_id: str) -> str:
        lines = [json.dumps(self.task_states(dag_id, run_id), indent=1)]
        for t in self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]:
            if t["state"] == "failed":
                log = self.task_log(dag_id, run_id, t["task_id"], t["try_number"], t["map_index"])
                lines.append(f"--- {t['task_id']} log (tail) ---\n{log[-3000:]}")
        return "\n".join(lines)


def s3_client(stack: dict[str, str]):
    """A boto3 S3 client on the stack's S3 server (credentials from the stack's env file)."""
    import boto3

    return boto3.client("s3", endpoint_url=stack["TVB_STACK_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=stack["TVB_STACK_S3_ACCESS_KEY"],
                        aws_secret_access_key=stack["TVB_STACK_S3_SECRET_KEY"])


def s3_json(s3, stack: dict[str, str], key: str) -> dict | None:
    """The JSON object at ``key`` under the stack's store prefix, or None if there is none."""
    try:
        body = s3.get_object(Bucket=stack["TVB_STACK_BUCKET"], Key=f"{stack['TVB_STACK_PREFIX']}/{key}")["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body.read())

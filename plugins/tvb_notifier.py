"""Notify people of a failed run or of a published release: a log line, and a JSON POST to an optional webhook.

The webhook is the Airflow connection ``tvb_webhook`` (absent = log only):

* host = full URL (``https://chat.example.org/hooks/abc``) or host name + schema (http/https) + port, with the path
  in extra ``endpoint``;
* password = bearer token (``Authorization: Bearer …``), or login + password = basic auth;
* extra ``headers`` (dict), ``timeout`` (s, default 10).

No secret is printed: the log shows the webhook's scheme, host and port only, never its path, query or token.
A webhook that is down never fails the pipeline: the error is logged and ``notify`` returns normally.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseNotifier

from tvb_tasks.contracts import RUN_STATUSES

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "tvb_webhook"
EVENTS = ("failure", *RUN_STATUSES, "retry")      # how a run ended (tvb_tasks.contracts), a failure or a retry
_MAX_ERROR_CHARS = 2000


def _safe_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what may be logged of a webhook address."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value is not None else None)


def build_payload(event: str, context: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> dict:
    """The JSON document sent for ``event``: DAG, run, task, territory, state, error or release (no secrets)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    params = context.get("params") or {}
    payload: dict[str, Any] = {
        "event": event,
        "sent_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "dag_id": getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "run_type": str(getattr(dag_run, "run_type", "") or "") or None,
        "logical_date": _iso(getattr(dag_run, "logical_date", None)),
        "territory": (result or {}).get("territory") or params.get("territory"),
    }
    if ti is not None:
        payload.update(task_id=getattr(ti, "task_id", None), map_index=getattr(ti, "map_index", None),
                       try_number=getattr(ti, "try_number", None))
    exc = context.get("exception")
    if exc is not None:
        payload["error"] = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
    if result:
        keep = ("status", "release_id", "previous_release", "report_url", "release_url", "manifest_url",
                "store_uri", "changed_sources", "key_figures")
        payload["release"] = {k: result[k] for k in keep if k in result}
    return payload


def summary_line(payload: Mapping[str, Any]) -> str:
    """One human-readable line for the task log."""
    where = f"{payload.get('dag_id')} / {payload.get('run_id')}"
    if payload["event"] == "failure":
        return (f"TVB run FAILED: {where}, task {payload.get('task_id')} (try {payload.get('try_number')}): "
                f"{payload.get('error', 'no error message')}")
    rel = payload.get("release") or {}
    return (f"TVB run {payload['event']}: {where}, territory {payload.get('territory')}, "
            f"release {rel.get('release_id')}" + (f", report {rel['report_url']}" if rel.get("report_url") else ""))


def webhook_request(conn: Any) -> tuple[str, dict[str, str], Any, float]:
    """URL, headers, requests ``auth`` and timeout of the webhook connection."""
    extra = conn.extra_dejson or {}
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(f"connection {WEBHOOK_CONN_ID!r} has no host / URL")
    if "://" in host:
        url = host
    else:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        url = f"{scheme}://{host}{f':{conn.port}' if conn.port else ''}{extra.get('endpoint', '')}"
    headers = {"Content-Type": "application/json",
               **{str(k): str(v) for k, v in (extra.get("headers") or {}).items()}}
    auth = None
    if conn.login and conn.password:
        auth = (conn.login, conn.password)
    elif conn.password:
        headers["Authorization"] = f"Bearer {conn.password}"
    return url, headers, auth, float(extra.get("timeout", 10))


class TvbNotifier(BaseNotifier):
    """Log + optional webhook notification; use as a callback (``on_failure_callback=TvbNotifier("failure")``)
    or call ``send(context, result)`` from a task with a stage result (``published`` / ``unchanged`` / ``dry_run``).
    """

    template_fields = ()

    def __init__(self, event: str = "failure", *, webhook_conn_id: str = WEBHOOK_CONN_ID,
                 result: Mapping[str, Any] | None = None):
        super().__init__()
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r} (known: {', '.join(EVENTS)})")
        self.event = event
        self.webhook_conn_id = webhook_conn_id
        self.result = dict(result) if result else None

    def notify(self, context) -> None:
        self.send(context, self.result)

    def send(self, context: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> dict:
        """Log the event and POST it to the webhook when configured; returns the payload and delivery status."""
        payload = build_payload(self.event, context, result)
        if self.event == "failure":
            log.error(summary_line(payload))
        else:
            log.info(summary_line(payload))
        payload["webhook"] = self._post(payload)
        return payload

    def _post(self, payload: Mapping[str, Any]) -> str:
        """POST ``payload``; returns ``not configured``, ``sent (HTTP n)`` or ``failed (…)`` — never raises."""
        conn = self._connection()
        if conn is None:
            return "not configured"
        try:
            import requests

            url, headers, auth, timeout = webhook_request(conn)
            body = json.dumps(payload, ensure_ascii=False, default=str).encode()
            resp = requests.post(url, data=body, headers=headers, auth=auth, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a notification must never break the pipeline
            log.warning("webhook %s: not delivered (%s)", self.webhook_conn_id, type(exc).__name__)
            return f"failed ({type(exc).__name__})"
        origin = _safe_origin(url)
        if resp.status_code >= 400:
            log.warning("webhook %s (%s): HTTP %s", self.webhook_conn_id, origin, resp.status_code)
            return f"failed (HTTP {resp.status_code})"
        log.info("webhook %s (%s): HTTP %s", self.webhook_conn_id, origin, resp.status_code)
        return f"sent (HTTP {resp.status_code})"

    def _connection(self):
        """The webhook connection, or None when it is not defined."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return BaseHook.get_connection(self.webhook_conn_id)
        except AirflowNotFoundException:
            return None

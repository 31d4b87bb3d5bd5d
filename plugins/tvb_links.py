"""Extra link "Release report": from a finished publish task to the report of the release it published.

The publish task returns a dict with ``report_url`` (see ``dags/tvb_observatory.py``); the link reads it from that
task instance's XCom. Airflow 3 evaluates ``get_link`` on the worker when the task ends and stores the URL in XCom
under :attr:`xcom_key`; the API server / UI then serve that stored value.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from tvb_tasks.contracts import LIVE_STATUSES

RETURN_KEY = "return_value"


def report_url_from(value: Any) -> str:
    """The ``report_url`` of a publish result dict whose release exists ('' for a dry run or a failed task)."""
    if isinstance(value, dict) and value.get("status") in LIVE_STATUSES:
        url = value.get("report_url") or ""
        return url if isinstance(url, str) else ""
    return ""


class ReleaseReportLink(BaseOperatorLink):
    """Button "Release report" on the publish task, pointing to ``releases/<territory>/<id>/report/index.html``."""

    name = "Release report"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom  # the configured XCom backend (worker side)

        return report_url_from(XCom.get_value(ti_key=ti_key, key=RETURN_KEY))

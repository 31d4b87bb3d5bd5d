"""Airflow plugin of the TVB observatory: registers the "Release report" operator extra link.

Modules of plugins/ (Airflow puts the folder on ``sys.path``; each is a plain top-level module, so the plugin manager
and the DAGs import the very same module): ``tvb_hooks`` (WFS and object-store hooks), ``tvb_notifier`` (failure /
publish notifier), ``tvb_links`` (the link), ``tvb_retry`` (fail-fast retry policy), ``tvb_dag_support`` (the
Airflow glue shared by the DAG files: asset names, default arguments, trigger form, task helpers). The publish task
of every ``tvb_observatory_<territory>`` DAG carries the link; this registration makes the UI and the API server
know it.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from tvb_links import ReleaseReportLink


class TvbObservatoryPlugin(AirflowPlugin):
    name = "tvb_observatory"
    operator_extra_links = [ReleaseReportLink()]  # noqa: RUF012 - an instance attribute of AirflowPlugin, overridden

"""``tvb sources probe`` without a service URL: one clear difference, no request (no server needed)."""
from __future__ import annotations

from tvb_tasks.config import SourceConfig
from tvb_tasks.sources.probe import probe_source


def test_probe_without_any_url_reports_it(monkeypatch):
    monkeypatch.delenv("TVB_SOURCE_URLS", raising=False)
    # a WFS source read through an Airflow connection, and a schema that names no service URL
    cfg = SourceConfig(kind="wfs", role="mining", connection_id="tvb_mbm_wfs", typename="mbm:terrils",
                       schema="mbm_bassin_minier")
    report = probe_source("mining_basin", cfg)
    assert report["url"] == "" and report["source"] == "mining_basin"
    assert report["differences"] == ["no service URL: neither the source (url / connection) nor its schema names one"]

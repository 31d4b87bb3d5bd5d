"""Hooks over Airflow connections: WFS servers (owslib-compatible settings) and the S3-compatible object store.

Credentials live in Airflow connections (UI, ``AIRFLOW_CONN_*`` env vars or a secrets backend), never in the territory
YAML, the DAGs or the logs: ``repr()`` of the settings hides the password, and no method logs a secret.

* :class:`WfsHook` — connection ``tvb_wfs_<name>`` (any type, e.g. ``http``): host = base URL of the service
  (``https://data.geopf.fr/wfs/ows`` or host + schema + port), login/password = basic auth, or with extra
  ``{"api_key_header": "X-Api-Key"}`` the password is sent in that header instead; extra ``headers`` (dict),
  ``version``, ``timeout`` (s), ``verify`` (bool or CA bundle path).
* :class:`ObjectStoreHook` — connection ``tvb_store`` (type ``aws``): login = access key id, password = secret key,
  extra ``endpoint_url`` (MinIO, Garage, moto…), ``region_name``, ``store_uri`` (``s3://bucket/prefix``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook

DEFAULT_STORE_CONN_ID = "tvb_store"


def _connection_base_url(conn: Any) -> str | None:
    """``scheme://host[:port][/path]`` from a connection whose host is a URL or a bare host name."""
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" in host:
        return host                     # a full URL, kept as written (a trailing '/' may matter to the server)
    scheme = conn.schema if conn.schema in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}"


# --- WFS -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WfsSettings:
    """What a WFS client needs: base URL, protocol version, credentials, headers, timeout (s), TLS verification."""

    url: str
    version: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 60.0
    verify: bool | str = True

    def owslib_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``owslib.wfs.WebFeatureService(**kwargs)``."""
        from owslib.util import Authentication

        kwargs: dict[str, Any] = {"url": self.url, "timeout": self.timeout, "headers": dict(self.headers) or None,
                                  "auth": Authentication(self.username, self.password, verify=self.verify)}
        if self.version:
            kwargs["version"] = self.version
        return kwargs

    def requests_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``requests.get(url, **kwargs)`` (basic auth tuple, headers, timeout, verify)."""
        auth = (self.username, self.password) if self.username else None
        return {"auth": auth, "headers": dict(self.headers), "timeout": self.timeout, "verify": self.verify}


class WfsHook(BaseHook):
    """Settings of a WFS server from an Airflow connection; ``get_conn()`` opens it with owslib."""

    conn_name_attr = "wfs_conn_id"
    default_conn_name = "tvb_wfs"
    conn_type = "http"
    hook_name = "TVB WFS server"

    def __init__(self, wfs_conn_id: str = default_conn_name, *, version: str | None = None):
        super().__init__()
        self.wfs_conn_id = wfs_conn_id
        self.version = version

    def settings(self, *, require_url: bool = True) -> WfsSettings:
        """Read the connection (raises ``ValueError`` naming the connection when it has no host/URL and
        ``require_url``; without it, ``url`` is '' and the caller keeps the URL of the territory YAML)."""
        conn = self.get_connection(self.wfs_conn_id)
        extra = conn.extra_dejson or {}
        url = extra.get("url") or _connection_base_url(conn) or ""
        if not url and require_url:
            raise ValueError(f"connection {self.wfs_conn_id!r} has no host / URL of the WFS service")
        headers = {str(k): str(v) for k, v in (extra.get("headers") or {}).items()}
        username, password = conn.login or None, conn.password or None
        key_header = extra.get("api_key_header")
        if key_header and password:
            headers[str(key_header)] = password
            username = password = None
        return WfsSettings(url=url, version=self.version or extra.get("version"), username=username,
                           password=password, headers=headers, timeout=float(extra.get("timeout", 60)),
                           verify=extra.get("verify", True))

    def get_conn(self):
        """An ``owslib`` WebFeatureService (sends GetCapabilities to the server)."""
        from owslib.wfs import WebFeatureService

        return WebFeatureService(**self.settings().owslib_kwargs())

    def source_credentials(self) -> dict[str, Any]:
        """``{"url"?, "auth", "headers"}`` as ``tvb_tasks.sources.fetch_source(url=, auth=, headers=)`` take them;
        ``url`` only when the connection has one (else the YAML URL applies)."""
        s = self.settings(require_url=False)
        creds: dict[str, Any] = {"auth": (s.username, s.password) if s.username else None,
                                 "headers": dict(s.headers)}
        if s.url:
            creds["url"] = s.url
        return creds

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {"hidden_fields": ["schema"], "relabeling": {"host": "WFS base URL"},
                "placeholders": {"extra": '{"version": "2.0.0", "headers": {}, "api_key_header": null}'}}


def source_credentials(territory: Any) -> dict[str, dict[str, Any]]:
    """Credentials of every source of ``territory`` that names an Airflow connection (``connection_id`` in the
    YAML), as ``tvb_tasks.sources.fetch_all(credentials=…)`` takes them: ``{source: {"url"?, "auth", "headers"}}``.
    Raises ``AirflowNotFoundException`` naming the connection when it is not defined."""
    return {name: WfsHook(src.connection_id).source_credentials()
            for name, src in territory.sources.items() if getattr(src, "connection_id", None)}


# --- object store --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Settings:
    """boto3 client settings of an S3-compatible store; the secret is hidden from ``repr``."""

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region_name: str | None = None
    store_uri: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        keys = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "endpoint_url", "region_name")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


class ObjectStoreHook(BaseHook):
    """A boto3 S3 client from an Airflow connection, and the ``tvb_tasks`` store on top of it."""

    conn_name_attr = "store_conn_id"
    default_conn_name = DEFAULT_STORE_CONN_ID
    conn_type = "aws"
    hook_name = "TVB object store (S3-compatible)"

    def __init__(self, store_conn_id: str = default_conn_name):
        super().__init__()
        self.store_conn_id = store_conn_id

    def settings(self) -> S3Settings:
        conn = self.get_connection(self.store_conn_id)
        extra = conn.extra_dejson or {}
        return S3Settings(
            aws_access_key_id=conn.login or extra.get("aws_access_key_id"),
            aws_secret_access_key=conn.password or extra.get("aws_secret_access_key"),
            aws_session_token=extra.get("aws_session_token"),
            endpoint_url=extra.get("endpoint_url") or _connection_base_url(conn),
            region_name=extra.get("region_name"),
            store_uri=extra.get("store_uri"),
        )

    def get_conn(self):
        """A boto3 S3 client (path-style addressing, standard retries) built from the connection."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                s3={"addressing_style": "path"}),
                            **self.settings().client_kwargs())

    def get_store(self, uri: str | None = None):
        """``tvb_tasks.store.open_store(uri, client=…)``; ``uri`` defaults to the connection's ``store_uri``."""
        from tvb_tasks.store import open_store

        uri = uri or self.settings().store_uri
        return open_store(uri, client=self.get_conn() if uri and uri.startswith("s3://") else None)


def connection_exists(conn_id: str) -> bool:
    """True when Airflow can resolve ``conn_id`` (metadata DB, ``AIRFLOW_CONN_*`` or a secrets backend)."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


@contextlib.contextmanager
def store_environment(conn_id: str = DEFAULT_STORE_CONN_ID) -> Iterator[dict[str, str]]:
    """Expose the ``conn_id`` connection to code that opens the store by URI (``tvb_tasks.pipeline``).

    The pipeline stages take only a store URI (so they run the same under the CLI); when the connection exists, its
    credentials and endpoint are given to the S3 stores opened in the block (``tvb_tasks.store.s3_settings``), not
    put in the process environment (``AWS_ACCESS_KEY_ID`` there makes rasterio build a boto3 session at every GDAL
    call). Without the connection this is a no-op (boto3's own chain applies). Yields the names (not the values) of
    the settings given.
    """
    if not connection_exists(conn_id):
        yield {}
        return
    from tvb_tasks.store import s3_settings

    with s3_settings(**ObjectStoreHook(conn_id).settings().client_kwargs()) as names:
        yield dict.fromkeys(names, "***")

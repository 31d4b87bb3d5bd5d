"""HTTP plumbing shared by the fetchers: retries with backoff, conditional downloads, URLs without secrets.

* :func:`redact_url` strips ``user:password@`` and secret query parameters (``key``, ``token``, ``apikey``,
  ``password``…) — every URL that reaches a log line, an error or snapshot metadata goes through it;
* :func:`request` retries timeouts, connection errors, HTTP 429 and 5xx with exponential backoff (bounded) and
  returns any other response (4xx included: the caller decides, e.g. to read an OGC ExceptionReport);
* :func:`download` streams a URL to a file with ``If-None-Match`` / ``If-Modified-Since`` (HTTP 304 → nothing
  downloaded), atomically, logging bytes and rate.

Credentials come in as ``auth`` (a ``(user, password)`` tuple or a requests auth object) and ``headers``; they are
never logged nor written to metadata.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .errors import SourceError
from .progress import Progress

log = logging.getLogger("tvb_tasks.sources.http")

USER_AGENT = "tvb-observatory/0.1 (sources)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SECRET_PARAM = re.compile(
    r"^(key|api[-_]?key|apikey|token|access[-_]?token|auth|authorization|password|passwd|pwd|secret|client[-_]?secret"
    r"|sig|signature|x-amz-(signature|credential|security-token))$|token|password|secret|apikey|api_key",
    re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without user info and without secret-looking query parameters (dropped, not masked)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SECRET_PARAM.search(k)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":,/"), ""))


class _RedactingFilter(logging.Filter):
    """Strips secrets from URLs in third-party log records (urllib3 logs request lines at DEBUG level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact_arg(a) for a in record.args)
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str) and ("?" in value or "@" in value):
        if value.startswith("/"):
            return redact_url("http://x" + value)[len("http://x"):]
        if "://" in value:
            return redact_url(value)
    return value


logging.getLogger("urllib3.connectionpool").addFilter(_RedactingFilter())


@dataclass(frozen=True)
class HttpOptions:
    """Connection settings of one source. Times in seconds.

    ``timeout_s`` is the connect and read timeout (the read timeout bounds the wait for each chunk, not the whole
    transfer); ``max_retries`` extra attempts after the first, waiting ``backoff_s × 2**attempt`` (≤ ``backoff_max_s``,
    or the server's ``Retry-After``).
    """

    timeout_s: float = 60.0
    connect_timeout_s: float = 15.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    auth: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True

    @classmethod
    def from_source(cls, cfg: Mapping[str, Any], *, auth: Any = None,
                    headers: Mapping[str, str] | None = None) -> "HttpOptions":
        """Options from a source's YAML keys ``timeout_s``, ``max_retries``, ``backoff_s``, plus credentials."""
        kwargs = {k: cfg[k] for k in ("timeout_s", "connect_timeout_s", "max_retries", "backoff_s", "backoff_max_s")
                  if cfg.get(k) is not None}
        return cls(**kwargs, auth=auth, headers=dict(headers or {}))


def new_session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def _retry_after(resp: requests.Response | None) -> float | None:
    value = resp.headers.get("Retry-After") if resp is not None else None
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _wait_s(opts: HttpOptions, attempt: int, resp: requests.Response | None) -> float:
    server = _retry_after(resp)
    base = server if server is not None else opts.backoff_s * (2 ** attempt) * random.uniform(0.8, 1.2)
    return min(base, opts.backoff_max_s)


def request(method: str, url: str, *, opts: HttpOptions, params: Mapping[str, Any] | None = None,
            data: bytes | str | None = None, headers: Mapping[str, str] | None = None,
            session: requests.Session | None = None, stream: bool = False, what: str | None = None
            ) -> requests.Response:
    """Send a request, retrying timeouts / connection errors / 429 / 5xx; return the final non-retryable response.

    Raises :class:`SourceError` naming ``what`` (default: the redacted URL) once ``opts.max_retries`` retries fail.
    """
    session = session or new_session()
    what = what or redact_url(url)
    all_headers = {**dict(opts.headers), **dict(headers or {})}
    last_error = ""
    attempts = opts.max_retries + 1
    for attempt in range(attempts):
        resp = None
        try:
            resp = session.request(method, url, params=params, data=data, headers=all_headers, auth=opts.auth,
                                   timeout=(opts.connect_timeout_s, opts.timeout_s), stream=stream,
                                   verify=opts.verify)
        except requests.Timeout:
            last_error = f"timed out (timeout {opts.timeout_s:g} s)"
        except requests.ConnectionError as exc:
            last_error = f"connection failed ({type(exc).__name__})"
        else:
            if resp.status_code not in RETRY_STATUSES:
                return resp
            last_error = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
            resp.close()
        if attempt < attempts - 1:
            wait = _wait_s(opts, attempt, resp)
            log.warning("%s: %s; retry %d/%d in %.1f s", what, last_error, attempt + 1, opts.max_retries, wait)
            time.sleep(wait)
    raise SourceError(f"{what}: {last_error} after {attempts} attempt(s)")


@dataclass(frozen=True)
class DownloadResult:
    """Outcome of :func:`download`. ``status`` is ``"downloaded"`` or ``"not_modified"`` (HTTP 304: no file)."""

    status: str
    path: Path | None
    etag: str | None
    last_modified: str | None
    size: int
    sha256: str | None
    duration_s: float
    url: str


def download(url: str, dest: str | Path, *, opts: HttpOptions, etag: str | None = None,
             last_modified: str | None = None, session: requests.Session | None = None,
             chunk_size: int = 1 << 20, progress_every_s: float = 5.0) -> DownloadResult:
    """Stream ``url`` to ``dest`` (atomic rename), sending ``If-None-Match`` / ``If-Modified-Since`` when given.

    Returns ``status="not_modified"`` on HTTP 304 (``dest`` untouched). A failure mid-stream restarts the download,
    within the same retry budget. Raises :class:`SourceError` on HTTP errors.
    """
    dest = Path(dest)
    what = redact_url(url)
    cond = {}
    if etag:
        cond["If-None-Match"] = etag
    if last_modified:
        cond["If-Modified-Since"] = last_modified
    started = time.monotonic()
    for attempt in range(opts.max_retries + 1):
        resp = request("GET", url, opts=opts, headers=cond, session=session, stream=True, what=what)
        if resp.status_code == 304:
            resp.close()
            log.info("%s: not modified (HTTP 304), nothing downloaded", what)
            return DownloadResult("not_modified", None, etag, last_modified, 0, None,
                                  time.monotonic() - started, what)
        if resp.status_code >= 400:
            snippet = resp.text[:300].strip() if not resp.raw.closed else ""
            resp.close()
            raise SourceError(f"{what}: HTTP {resp.status_code} {resp.reason or ''} {snippet}".strip())
        total = int(resp.headers.get("Content-Length") or 0) or None
        progress = Progress(log, f"download {what}", total=total, unit="bytes", every_s=progress_every_s)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for block in resp.iter_content(chunk_size):
                    out.write(block)
                    h.update(block)
                    progress.update(nbytes=len(block))
            if total is not None and progress.bytes != total:
                raise requests.ConnectionError(f"short read: {progress.bytes} of {total} bytes")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            Path(tmp).unlink(missing_ok=True)
            if attempt >= opts.max_retries:
                raise SourceError(f"{what}: download interrupted ({exc}) after {attempt + 1} attempt(s)") from None
            log.warning("%s: download interrupted (%s); restarting", what, type(exc).__name__)
            time.sleep(_wait_s(opts, attempt, None))
            continue
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            resp.close()
        os.replace(tmp, dest)
        progress.done()
        return DownloadResult("downloaded", dest, resp.headers.get("ETag"), resp.headers.get("Last-Modified"),
                              progress.bytes, h.hexdigest(), time.monotonic() - started, what)
    raise SourceError(f"{what}: download failed")  # pragma: no cover - loop always returns or raises

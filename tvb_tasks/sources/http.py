"""HTTP plumbing shared by the fetchers: retries with backoff, conditional downloads, URLs without secrets.

* :func:`redact_url` strips ``user:password@`` and secret query parameters (``key``, ``token``, ``apikey``,
  ``password``…) — every URL that reaches a log line, an error or snapshot metadata goes through it;
* :func:`request` retries timeouts, connection errors, HTTP 429 and 5xx with exponential backoff (bounded) and
  returns any other response (4xx included: the caller decides, e.g. to read an OGC ExceptionReport);
* :func:`download` streams a URL to a file with ``If-None-Match`` / ``If-Modified-Since`` (HTTP 304 → nothing
  downloaded), atomically, logging bytes and rate.

Three time limits bound every read: ``connect_timeout_s`` (TCP/TLS connect), ``timeout_s`` (the longest wait for
any byte) and ``deadline_s``, the *overall* wall-clock budget of one source's read — all its requests, pages, retries
and back-off waits. The read timeout alone cannot stop a server that trickles one byte every 20 s; the deadline
does: a watchdog timer shuts down the sockets of the read when the budget runs out (sessions from
:func:`new_session` register every connection's socket with the active deadline), and the error names the URL.

Two size limits bound what a server can make us hold: ``max_bytes`` (default 2 GiB) for a download, streamed to
disk and cut (file removed) once it passes the limit, and ``max_page_bytes`` (default 256 MiB) for a response read
into memory (a WFS page, capabilities, an error body). Both are read as a stream and stop as soon as the limit is
passed (a ``Content-Length`` above it is refused before reading); the error names the URL and the YAML knob.

Credentials come in as ``auth`` (a ``(user, password)`` tuple or a requests auth object) and ``headers``; they are
never logged nor written to metadata.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tvb_tasks.errors import InvalidInputError

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


DEFAULT_DEADLINE_S = 1800.0
DEFAULT_MAX_BYTES = 2 * 1024 ** 3          # a download streamed to disk
DEFAULT_MAX_PAGE_BYTES = 256 * 1024 ** 2   # one response held in memory (WFS page, capabilities, error body)
OPTION_KEYS = ("timeout_s", "connect_timeout_s", "deadline_s", "max_retries", "backoff_s", "backoff_max_s",
               "max_bytes", "max_page_bytes")


@dataclass(frozen=True)
class HttpOptions:
    """Connection settings of one source. Times in seconds.

    ``timeout_s`` is the read timeout (the longest wait for any chunk, not the whole transfer) and
    ``connect_timeout_s`` the connect timeout; ``deadline_s`` bounds the whole read of the source (every request,
    page, retry and wait; ``None`` = no overall limit), counted from ``started_at`` (``time.monotonic()``; set by
    :meth:`started`, else each call starts its own budget). ``max_retries`` extra attempts after the first, waiting
    ``backoff_s × 2**attempt`` (≤ ``backoff_max_s``, or the server's ``Retry-After``), never past the deadline.
    ``max_bytes`` caps a download (bytes written to disk), ``max_page_bytes`` a response read into memory.
    """

    timeout_s: float = 60.0
    connect_timeout_s: float = 15.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    auth: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    deadline_s: float | None = DEFAULT_DEADLINE_S
    started_at: float | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES

    def __post_init__(self) -> None:
        for name in ("timeout_s", "connect_timeout_s", "deadline_s"):
            value = getattr(self, name)
            if value is not None and not (float(value) > 0 and math.isfinite(float(value))):
                raise InvalidInputError(f"{name} must be a finite positive number of seconds, got {value!r}")
        for name in ("max_bytes", "max_page_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive whole number of bytes, got {value!r}")

    @classmethod
    def from_source(cls, cfg: Mapping[str, Any], *, auth: Any = None,
                    headers: Mapping[str, str] | None = None) -> HttpOptions:
        """Options from a source's YAML keys ``timeout_s``, ``connect_timeout_s``, ``deadline_s``,
        ``max_retries``, ``backoff_s``, ``backoff_max_s``, plus credentials; the deadline starts now."""
        kwargs = {k: cfg[k] for k in OPTION_KEYS if cfg.get(k) is not None}
        try:
            return cls(**kwargs, auth=auth, headers=dict(headers or {})).started()
        except (TypeError, ValueError) as exc:
            raise SourceError(f"invalid HTTP options {kwargs}: {exc}") from None

    def started(self) -> HttpOptions:
        """A copy whose overall deadline runs from now (unchanged when already started)."""
        return self if self.started_at is not None else dataclasses.replace(self, started_at=time.monotonic())

    def deadline_at(self) -> float | None:
        """The monotonic time the deadline expires, or None without a deadline."""
        if self.deadline_s is None:
            return None
        return (self.started_at if self.started_at is not None else time.monotonic()) + float(self.deadline_s)


# --- overall deadline: a watchdog that shuts the read's sockets ---------------------------------------------------
class _Deadline:
    """One active deadline: the sockets used under it are shut down when it expires (from a timer thread)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_active = threading.local()


@contextlib.contextmanager
def _deadline_guard(at: float | None):
    """Within the block, sockets of :func:`new_session` sessions are shut down at monotonic time ``at``."""
    if at is None:
        yield None
        return
    guard = _Deadline(at)
    timer = threading.Timer(min(max(0.0, at - time.monotonic()), threading.TIMEOUT_MAX / 2), guard.fire)
    timer.daemon = True
    stack = _active.__dict__.setdefault("stack", [])
    stack.append(guard)
    timer.start()
    try:
        yield guard
    finally:
        timer.cancel()
        stack.remove(guard)


def _register_socket(sock: socket.socket | None) -> None:
    for guard in getattr(_active, "stack", []):
        guard.register(sock)


class _GuardedMixin:
    def getresponse(self, *args, **kwargs):           # the socket exists once the request is sent
        _register_socket(getattr(self, "sock", None))
        return cast(Any, super()).getresponse(*args, **kwargs)    # a mixin of the connection classes below


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections register their socket with the active deadline."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):       # HTTP(S) proxies use the same pool classes
            manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
        return manager


def deadline_message(what: str, opts: HttpOptions) -> str:
    budget = "" if opts.deadline_s is None else f" of {opts.deadline_s:g} s"
    return (f"{what}: no complete answer within the overall deadline{budget} "
            f"(connect timeout {opts.connect_timeout_s:g} s, read timeout {opts.timeout_s:g} s); the server is "
            "stalled or too slow — raise deadline_s for this source in the territory YAML or use --deadline")


def too_large_message(what: str, limit: int, knob: str, received: int | None = None) -> str:
    got = f"{received} bytes received so far" if received is not None else "announced by Content-Length"
    return (f"{what}: response larger than {knob} = {limit} bytes ({got}); stopped reading — raise {knob} for "
            "this source in the territory YAML if the file is really that large")


def _announced_size(resp: requests.Response) -> int | None:
    value = (resp.headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _read_capped(resp: requests.Response, limit: int, what: str) -> None:
    """Read ``resp``'s body (streamed) into ``resp.content``, at most ``limit`` bytes (decoded), else raise."""
    announced = _announced_size(resp)
    if announced is not None and announced > limit:
        resp.close()
        raise SourceError(too_large_message(what, limit, "max_page_bytes"))
    buf = bytearray()
    for chunk in resp.iter_content(1 << 16):
        buf += chunk
        if len(buf) > limit:
            resp.close()
            raise SourceError(too_large_message(what, limit, "max_page_bytes", len(buf)))
    resp._content = bytes(buf)              # what requests itself stores when it reads the body (stream=False)
    resp._content_consumed = True


def error_snippet(resp: requests.Response, limit: int = 300) -> str:
    """The first ``limit`` characters of an error body, reading no more than that from the stream."""
    try:
        data = resp.content[:limit] if resp._content_consumed else next(resp.iter_content(limit), b"")
    except requests.RequestException:
        return ""
    return data.decode("utf-8", "replace")[:limit].strip()


def new_session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    adapter = _DeadlineAdapter()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
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
    opts = opts.started()
    at = opts.deadline_at()
    all_headers = {**dict(opts.headers), **dict(headers or {})}
    last_error = ""
    attempts = opts.max_retries + 1
    for attempt in range(attempts):
        resp = None
        left = None if at is None else at - time.monotonic()
        if left is not None and left <= 0:
            raise SourceError(deadline_message(what, opts) + (f"; last error: {last_error}" if last_error else ""))
        timeout = (opts.connect_timeout_s, opts.timeout_s) if left is None else \
            (min(opts.connect_timeout_s, left), min(opts.timeout_s, left))
        with _deadline_guard(at) as guard:
            try:
                resp = session.request(method, url, params=params, data=data, headers=all_headers, auth=opts.auth,
                                       timeout=timeout, stream=True, verify=opts.verify)
                if not stream and resp.status_code not in RETRY_STATUSES:    # body into memory, bounded
                    _read_capped(resp, opts.max_page_bytes, what)
            except requests.TooManyRedirects as exc:
                raise SourceError(f"{what}: too many redirects (redirect loop?) — last redirect to "
                                  f"{redact_url(exc.response.url) if exc.response is not None else 'unknown'}"
                                  ) from None
            except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if resp is not None:                 # the body read failed: retry as a failed request
                    resp.close()
                    resp = None
                if guard is not None and guard.expired:
                    raise SourceError(deadline_message(what, opts)) from None
                last_error = (f"timed out (connect {timeout[0]:g} s / read {timeout[1]:g} s)"
                              if isinstance(exc, requests.Timeout)
                              else f"connection failed ({type(exc).__name__})")
            except requests.RequestException as exc:
                raise SourceError(f"{what}: request failed ({type(exc).__name__}: {exc})") from None
            if resp is not None and guard is not None and guard.expired:   # body cut at the deadline
                resp.close()
                raise SourceError(deadline_message(what, opts))
        if resp is not None:
            if resp.status_code not in RETRY_STATUSES:
                return resp
            last_error = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
            resp.close()
        if attempt < attempts - 1:
            wait = _wait_s(opts, attempt, resp)
            if at is not None and time.monotonic() + wait >= at:
                raise SourceError(deadline_message(what, opts) + f"; last error: {last_error}")
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
    opts = opts.started()
    session = session or new_session()
    cond = {}
    if etag:
        cond["If-None-Match"] = etag
    if last_modified:
        cond["If-Modified-Since"] = last_modified
    started = time.monotonic()
    for attempt in range(opts.max_retries + 1):
        with _deadline_guard(opts.deadline_at()) as guard:
            outcome = _download_once(url, dest, opts=opts, cond=cond, session=session, what=what,
                                     chunk_size=chunk_size, progress_every_s=progress_every_s, guard=guard,
                                     started=started, attempt=attempt, etag=etag, last_modified=last_modified)
        if outcome is not None:
            return outcome
    raise SourceError(f"{what}: download failed")  # pragma: no cover - loop always returns or raises


def _download_once(url: str, dest: Path, *, opts: HttpOptions, cond: dict, session: requests.Session, what: str,
                   chunk_size: int, progress_every_s: float, guard: _Deadline | None, started: float,
                   attempt: int, etag: str | None, last_modified: str | None) -> DownloadResult | None:
    """One download attempt; None when interrupted and worth retrying."""
    resp = request("GET", url, opts=opts, headers=cond, session=session, stream=True, what=what)
    if resp.status_code == 304:
        resp.close()
        log.info("%s: not modified (HTTP 304), nothing downloaded", what)
        return DownloadResult("not_modified", None, etag, last_modified, 0, None,
                              time.monotonic() - started, what)
    if resp.status_code >= 400:
        snippet = error_snippet(resp) if not resp.raw.closed else ""
        resp.close()
        raise SourceError(f"{what}: HTTP {resp.status_code} {resp.reason or ''} {snippet}".strip())
    total = _announced_size(resp) or None
    if total is not None and total > opts.max_bytes:
        resp.close()
        raise SourceError(too_large_message(what, opts.max_bytes, "max_bytes"))
    progress = Progress(log, f"download {what}", total=total, unit="bytes", every_s=progress_every_s)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for block in resp.iter_content(chunk_size):
                if progress.bytes + len(block) > opts.max_bytes:
                    raise SourceError(too_large_message(what, opts.max_bytes, "max_bytes",
                                                        progress.bytes + len(block)))
                out.write(block)
                h.update(block)
                progress.update(nbytes=len(block))
        if guard is not None and guard.expired:      # a close-delimited body ends "cleanly" when cut
            raise requests.ConnectionError("cut by the overall deadline")
        if total is not None and progress.bytes != total:
            raise requests.ConnectionError(f"short read: {progress.bytes} of {total} bytes")
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        Path(tmp).unlink(missing_ok=True)
        if guard is not None and guard.expired:
            raise SourceError(deadline_message(what, opts) + f" ({progress.bytes} bytes received)") from None
        if attempt >= opts.max_retries:
            raise SourceError(f"{what}: download interrupted ({exc}) after {attempt + 1} attempt(s)") from None
        wait = _wait_s(opts, attempt, None)
        at = opts.deadline_at()
        if at is not None and time.monotonic() + wait >= at:
            raise SourceError(deadline_message(what, opts) + f" (download interrupted: {exc})") from None
        log.warning("%s: download interrupted (%s); restarting", what, type(exc).__name__)
        time.sleep(wait)
        return None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        resp.close()
    os.replace(tmp, dest)
    progress.done()
    return DownloadResult("downloaded", dest, resp.headers.get("ETag"), resp.headers.get("Last-Modified"),
                          progress.bytes, h.hexdigest(), time.monotonic() - started, what)

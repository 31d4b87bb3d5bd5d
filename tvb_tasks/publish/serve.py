"""Serve an object store over HTTP (``tvb serve``), with the byte-range requests PMTiles needs.

A release's web map reads ``tvb.pmtiles`` with ``Range: bytes=a-b`` requests and its pages link to each other by
relative paths, so a browser can only use a release through HTTP (a ``file://`` page cannot fetch its tiles). This
server maps ``GET /<key>`` to the store object ``<key>`` (``/…/`` → ``…/index.html``), answers single ranges with
206 / 416, ``HEAD`` with the size, and never lists folders or serves anything outside the store.

:func:`viewer_base_url` is the one place deciding which http(s) URL the CLI, the demo and the Airflow "Release
report" link print: ``TVB_PUBLIC_BASE_URL``, else the territory's ``publish.public_base_url``, else the local
``tvb serve`` address (``http://127.0.0.1:<TVB_SERVE_PORT or 8000>``).
"""
from __future__ import annotations

import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tvb_tasks.errors import InvalidInputError

from ..store import NotFound, S3Store, Store, media_type, validate_key

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json", ".pmtiles": "application/octet-stream",
                 ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8", ".png": "image/png",
                 ".pdf": "application/pdf", ".svg": "image/svg+xml"}


def default_port() -> int:
    """``TVB_SERVE_PORT`` or 8000."""
    return int(os.environ.get("TVB_SERVE_PORT") or DEFAULT_PORT)


def viewer_base_url(territory=None) -> str:
    """The http(s) URL under which the store root is readable in a browser (no trailing slash)."""
    base = os.environ.get("TVB_PUBLIC_BASE_URL") or (territory.publish.public_base_url if territory is not None else None)
    return (base or f"http://{DEFAULT_HOST}:{default_port()}").rstrip("/")


def key_for_path(url_path: str) -> str | None:
    """Store key of a request path (``/a/b/`` → ``a/b/index.html``); None for a path that is no valid key."""
    path = unquote(urlsplit(url_path).path)
    if path.endswith("/") or path == "":
        path += "index.html"
    key = path.lstrip("/")
    if any(part.startswith(".") for part in key.split("/")):     # .locks/, .tmp-…: store internals
        return None
    try:
        return validate_key(key)
    except ValueError:
        return None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=a-b`` range within ``size`` bytes; None when unsatisfiable.

    Raises ValueError on a malformed header (the caller then ignores it and sends the whole object, per RFC 9110).
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise InvalidInputError(f"unsupported Range {header!r}")
    if m.group(1) == "":
        start, end = max(0, size - int(m.group(2))), size - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
    if start >= size or start > end:
        return None
    return start, end


def read_range(store: Store, key: str, start: int, end: int) -> bytes:
    """Bytes ``start..end`` (inclusive) of an object: a seek for a local store, a ranged GET on S3."""
    local = store.local_path(key)
    if local is not None:
        try:
            with open(local, "rb") as f:
                f.seek(start)
                return f.read(end - start + 1)
        except FileNotFoundError:
            raise NotFound(store.url(key)) from None
    if isinstance(store, S3Store):
        from botocore.exceptions import ClientError

        try:
            obj = store.client.get_object(Bucket=store.bucket, Key=store._key(key), Range=f"bytes={start}-{end}")
        except ClientError:
            raise NotFound(store.url(key)) from None
        return obj["Body"].read()
    return store.get_bytes(key)[start:end + 1]


def object_info(store: Store, key: str) -> tuple[int, str] | None:
    """(size, etag) of an object, None when absent. A local file is only stat-ed (no hashing per request)."""
    local = store.local_path(key)
    if local is not None:
        if not local.is_file():
            return None
        st = local.stat()
        return st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"
    info = store.head(key)
    return (info.size, info.etag.strip('"')) if info else None


def content_type(key: str) -> str:
    ext = "." + key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""
    return CONTENT_TYPES.get(ext) or media_type(key)


class StoreServer(ThreadingHTTPServer):
    """Threaded HTTP server over a :class:`Store` (``store``); ``quiet`` silences the request log."""

    store: Store
    quiet: bool = False


class StoreHandler(BaseHTTPRequestHandler):
    """GET / HEAD of store objects with single-range support. ``server.store`` is the :class:`Store`."""

    server: StoreServer

    server_version = "tvb-serve"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one short line per request on stderr, as http.server does
        if getattr(self.server, "quiet", False):
            return
        super().log_message(fmt, *args)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _error(self, code: int, message: str, extra: dict | None = None) -> None:
        data = f"{code} {message}\n".encode()
        self.send_response(code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer(self, body: bool) -> None:
        store: Store = self.server.store
        key = key_for_path(self.path)
        info = object_info(store, key) if key else None
        if not key or info is None:
            self._error(404, "introuvable / not found")
            return
        size, etag = info
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            try:
                rng = parse_range(header, size)
            except ValueError:      # malformed: ignored, the whole object is sent
                pass
            else:
                if rng is None:
                    self._error(416, "plage invalide / range not satisfiable", {"Content-Range": f"bytes */{size}"})
                    return
                (start, end), status = rng, 206
        data = read_range(store, key, start, end) if body and size else b""
        self.send_response(status)
        self.send_header("Content-Type", content_type(key))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1 if size else 0))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if etag:
            self.send_header("ETag", f'"{etag}"')
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length, ETag")
        self.end_headers()
        if body:
            self.wfile.write(data)


def make_server(store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                quiet: bool = False) -> StoreServer:
    """A threaded HTTP server over ``store`` (port 0 = any free port); call ``serve_forever()`` to run it."""
    server = StoreServer((host, port), StoreHandler)
    server.daemon_threads = True
    server.store = store
    server.quiet = quiet
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    if isinstance(host, bytes | bytearray):
        host = host.decode()
    return f"http://{host}:{port}"

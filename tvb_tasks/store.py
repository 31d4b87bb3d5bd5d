"""One object-store interface: a local folder (default) or S3 (boto3), with create-only and compare-and-swap writes.

Keys are ``/``-separated relative paths (``releases/call/<id>/manifest.json``); they are validated so that no key
can escape the store (no ``..``, no absolute path, no backslash). Both back-ends give the same semantics:

* ``put_bytes(key, data, create_only=True)`` fails with :class:`ObjectExists` when the key exists
  (S3: ``If-None-Match: *``; local: an atomic hard link that fails on an existing name);
* ``put_bytes(key, data, if_match=etag)`` replaces the object only if its current ETag is ``etag`` and raises
  :class:`PreconditionFailed` otherwise (S3: ``If-Match``; local: a lock file around compare + atomic rename).
  ``if_match=""`` means "the key must not exist yet".

Clean-up: ``list_stats(prefix)`` gives each object's size and last-modified time (POSIX seconds; local: the file's
mtime, S3: ``LastModified``) and ``delete_many(keys)`` deletes a batch (S3: ``DeleteObjects``, 1000 keys a request;
local: the files, then the folders they leave empty); :func:`delete_prefix` removes everything under a folder prefix.

Credentials never appear here: S3 uses boto3's own chain (environment, profile) or a client built by an Airflow hook.
"""
from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import mimetypes
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import DeterministicError, InvalidInputError, TVBError

_KEY_RE = re.compile(r"^[A-Za-z0-9._\-][A-Za-z0-9._\-/]*$")
MULTIPART_THRESHOLD = 64 * 1024 * 1024
S3_DELETE_BATCH = 1000                  # keys per DeleteObjects request (the S3 maximum)

mimetypes.add_type("application/geopackage+sqlite3", ".gpkg")
mimetypes.add_type("application/vnd.apache.parquet", ".parquet")
mimetypes.add_type("application/vnd.pmtiles", ".pmtiles")
mimetypes.add_type("application/geo+json", ".geojson")


class StoreError(TVBError, RuntimeError):
    """Base error of the object store."""


def os_error_text(exc: OSError) -> str:
    """A short readable reason for an OS error, saying "disk full" for ENOSPC / EDQUOT."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full (no space left on device; errno {exc.errno})"
    return f"{exc.strerror or exc} (errno {exc.errno})"


class NotFound(StoreError):
    pass


class ObjectExists(StoreError, DeterministicError):
    pass


class PreconditionFailed(StoreError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class ObjectStat:
    """An object's key, size (bytes) and last-modified time (POSIX seconds, UTC)."""

    key: str
    size: int
    modified: float


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ValueError (no traversal)."""
    if not key or not _KEY_RE.match(key) or key.startswith("/") or "//" in key:
        raise InvalidInputError(f"invalid object key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInputError(f"invalid object key {key!r} (no '.' or '..' segments)")
    return key


def media_type(key: str) -> str:
    if key.endswith((".tif", ".tiff")):
        return "image/tiff; application=geotiff; profile=cloud-optimized"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class Store:
    """Interface; see module docstring. ``uri`` is the store's root URI (``file:///…`` or ``s3://bucket/prefix``)."""

    uri: str

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None,
                  content_type: str | None = None) -> str:
        raise NotImplementedError

    def put_file(self, key: str, path: str | Path, *, create_only: bool = False,
                 content_type: str | None = None) -> str:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        raise NotImplementedError

    def head(self, key: str) -> ObjectInfo | None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def list_stats(self, prefix: str = "") -> builtins.list[ObjectStat]:
        """The objects under ``prefix`` (as :meth:`list`) with their size and last-modified time, sorted by key."""
        raise NotImplementedError

    def delete_many(self, keys: builtins.list[str]) -> None:
        """Delete ``keys`` (missing ones are ignored); raise :class:`StoreError` naming a key that could not go."""
        for key in keys:
            self.delete(key)

    def download(self, key: str, path: str | Path) -> Path:
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """The key's path on disk when the store is a local folder, else None."""
        return None

    def list_partial(self, prefix: str = "") -> builtins.list[tuple[str, float]]:  # `list` is the method here
        """Leftovers of interrupted writes under ``prefix`` as ``(key, mtime as POSIX seconds)``: a local store's
        ``.tmp-*`` files a killed process left behind (S3 writes are atomic: none)."""
        return []

    def url(self, key: str) -> str:
        """URL of an object, or of a folder when ``key`` ends with ``/``."""
        folder = key.endswith("/") and len(key) > 1
        return f"{self.uri.rstrip('/')}/{validate_key(key[:-1] if folder else key)}" + ("/" if folder else "")

    def materialize(self, key: str, cache_dir: str | Path) -> Path:
        """A local file with the object's content: the file itself for a local store, else a cached download."""
        local = self.local_path(key)
        if local is not None:
            if not local.exists():
                raise NotFound(f"{self.url(key)}: no such object")
            return local
        target = Path(cache_dir) / validate_key(key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.download(key, target)
        return target


class LocalStore(Store):
    """A folder on the local filesystem, with the same create-only / CAS semantics as S3."""

    def __init__(self, root: str | Path, *, create: bool = True):
        self.root = Path(root).resolve()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a folder; give a folder "
                             "(file:///absolute/folder or a path)")
        if not create and not self.root.is_dir():
            raise StoreError(f"no store at {self.root.as_uri()} (the folder does not exist; check --store / "
                             "TVB_STORE_URI)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.root} ({exc.strerror or type(exc).__name__})"
                             ) from None
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    @staticmethod
    def _etag(path: Path) -> str:
        return sha256_file(path)[:32]

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        with open(lock_dir / (hashlib.sha1(key.encode()).hexdigest() + ".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_tmp(self, target: Path, writer) -> Path:
        """Write to a ``.tmp-*`` file next to ``target`` and fsync it (unless ``TVB_STORE_FSYNC=0``, which the tests
        set: no crash durability needed, ~1.5 ms less wait per object); on failure remove it and raise
        :class:`StoreError` naming the object (``disk full`` for ENOSPC / EDQUOT)."""
        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                writer(f)
                f.flush()
                if os.environ.get("TVB_STORE_FSYNC") != "0":     # durable before the rename; "0": tests only
                    os.fsync(f.fileno())
        except OSError as exc:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"{self.uri.rstrip('/')}/{target.relative_to(self.root).as_posix()}: "
                             f"{os_error_text(exc)}") from None
        return Path(tmp)

    def _commit(self, key: str, tmp: Path, create_only: bool, if_match: str | None) -> str:
        target = self._path(key)
        try:
            if create_only:
                try:
                    os.link(tmp, target)        # atomic, fails if the name exists
                except FileExistsError:
                    raise ObjectExists(f"{self.url(key)}: object exists (create-only write refused)") from None
            elif if_match is not None:
                with self._lock(key):
                    current = self._etag(target) if target.exists() else ""
                    if current != if_match:
                        raise PreconditionFailed(
                            f"{self.url(key)}: changed concurrently (expected ETag {if_match or 'none'}, "
                            f"found {current or 'none'})")
                    os.replace(tmp, target)
            else:
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return self._etag(target)

    def put_bytes(self, key, data, *, create_only=False, if_match=None, content_type=None):
        tmp = self._write_tmp(self._path(key), lambda f: f.write(data))
        return self._commit(key, tmp, create_only, if_match)

    def put_file(self, key, path, *, create_only=False, content_type=None):
        def copy(f):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        tmp = self._write_tmp(self._path(key), copy)
        return self._commit(key, tmp, create_only, None)

    def get_with_etag(self, key):
        p = self._path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.url(key)}: no such object") from None
        return data, hashlib.sha256(data).hexdigest()[:32]

    def head(self, key):
        p = self._path(key)
        if not p.is_file():
            return None
        return ObjectInfo(key, p.stat().st_size, self._etag(p))

    def list_partial(self, prefix=""):
        out = []
        for p in self.root.rglob(".tmp-*"):
            rel = p.relative_to(self.root).as_posix()
            if p.is_file() and rel.startswith(prefix) and not rel.startswith(".locks/"):
                out.append((rel, p.stat().st_mtime))
        return sorted(out)

    def list(self, prefix=""):
        base = self.root
        out = []
        for p in base.rglob("*"):
            if p.is_file():
                rel = p.relative_to(base).as_posix()
                if rel.startswith(prefix) and not rel.startswith(".locks/") and "/.tmp-" not in "/" + rel:
                    out.append(rel)
        return sorted(out)

    def delete(self, key):
        self._path(key).unlink(missing_ok=True)

    def list_stats(self, prefix=""):
        # walk only the folder the prefix is in, not the whole store
        folder = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        out = []
        for p in folder.rglob("*") if folder.is_dir() else ():
            rel = p.relative_to(self.root).as_posix()
            if rel.startswith(prefix) and not rel.startswith(".locks/") and "/.tmp-" not in "/" + rel:
                try:
                    st = p.stat()
                except FileNotFoundError:       # deleted meanwhile
                    continue
                if p.is_file():
                    out.append(ObjectStat(rel, st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.key)

    def delete_many(self, keys):
        folders = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.url(key)}: cannot delete: {os_error_text(exc)}") from None
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):   # deepest first
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()               # only when empty
                except OSError:
                    break
                folder = folder.parent

    def download(self, key, path):
        src = self._path(key)
        if not src.exists():
            raise NotFound(f"{self.url(key)}: no such object")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        return Path(path)


#: boto3 client settings of the S3 stores opened in a :func:`s3_settings` block (empty: boto3's own chain).
_S3_SETTINGS: dict[str, str] = {}


@contextlib.contextmanager
def s3_settings(**client_kwargs: str | None) -> Iterator[list[str]]:
    """Credentials and endpoint (boto3 client keywords: ``aws_access_key_id``, ``aws_secret_access_key``,
    ``aws_session_token``, ``endpoint_url``, ``region_name``) of the S3 stores opened in this block by URI
    (:func:`open_store`), given to boto3's client directly, then the previous settings restored. Yields the names
    set (never the values).

    Not through the environment on purpose: with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` in
    ``os.environ``, rasterio (1.4) builds a boto3 session at every GDAL call it wraps — ``rasterize`` took 20–30 ms
    instead of 0.6 ms, which made the tiled part tasks 7–9× slower on workers whose store connection was exposed
    that way. Code that opens the store by URI inside the block is unchanged."""
    saved = dict(_S3_SETTINGS)
    _S3_SETTINGS.update({k: v for k, v in client_kwargs.items() if v})
    try:
        yield sorted(k for k, v in client_kwargs.items() if v)
    finally:
        _S3_SETTINGS.clear()
        _S3_SETTINGS.update(saved)


class S3Store(Store):
    """An S3 bucket (AWS or compatible: MinIO, Garage, moto) under an optional prefix.

    ``endpoint_url`` defaults to the :func:`s3_settings` block's, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
    (boto3 reads them itself) or ``TVB_S3_ENDPOINT_URL``. Credentials come from ``client`` (e.g. an Airflow hook's),
    the :func:`s3_settings` block, or boto3's chain.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        settings = dict(_S3_SETTINGS)
        endpoint_url = (endpoint_url or settings.pop("endpoint_url", None) or os.environ.get("TVB_S3_ENDPOINT_URL")
                        or None)
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
            **settings)
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _code(exc) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def put_bytes(self, key, data, *, create_only=False, if_match=None, content_type=None):
        from botocore.exceptions import ClientError

        kwargs = {"Bucket": self.bucket, "Key": self._key(key), "Body": data,
                  "ContentType": content_type or media_type(key)}
        if create_only or if_match == "":
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            resp = self.client.put_object(**kwargs)
        except ClientError as exc:
            code = self._code(exc)
            if code in ("NoSuchKey", "404") and if_match:
                # If-Match on a missing key: S3 answers 404, the CAS contract is "precondition failed"
                raise PreconditionFailed(f"{self.url(key)}: changed concurrently (If-Match {if_match!r}: "
                                         "object no longer exists)") from None
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                if create_only:
                    raise ObjectExists(f"{self.url(key)}: object exists (create-only write refused)") from None
                raise PreconditionFailed(f"{self.url(key)}: changed concurrently (If-Match {if_match!r} failed)") from None
            raise StoreError(f"{self.url(key)}: S3 put failed: {code or exc}") from None
        return resp["ETag"]

    def put_file(self, key, path, *, create_only=False, content_type=None):
        size = os.path.getsize(path)
        if size < MULTIPART_THRESHOLD:
            return self.put_bytes(key, Path(path).read_bytes(), create_only=create_only, content_type=content_type)
        return self._multipart(key, path, create_only=create_only, content_type=content_type or media_type(key))

    def _multipart(self, key: str, path: str | Path, *, create_only: bool, content_type: str) -> str:
        """Multipart upload of a large file; with ``create_only`` the completion carries ``If-None-Match: *``."""
        from botocore.exceptions import ClientError

        s3key = self._key(key)
        if create_only and self.exists(key):
            raise ObjectExists(f"{self.url(key)}: object exists (create-only write refused)")
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=s3key, ContentType=content_type)
        parts, part_size = [], 16 * 1024 * 1024
        try:
            with open(path, "rb") as f:
                for number, chunk in enumerate(iter(lambda: f.read(part_size), b""), start=1):
                    r = self.client.upload_part(Bucket=self.bucket, Key=s3key, UploadId=upload["UploadId"],
                                                PartNumber=number, Body=chunk)
                    parts.append({"PartNumber": number, "ETag": r["ETag"]})
            kwargs = {"Bucket": self.bucket, "Key": s3key, "UploadId": upload["UploadId"],
                      "MultipartUpload": {"Parts": parts}}
            if create_only:
                kwargs["IfNoneMatch"] = "*"
            resp = self.client.complete_multipart_upload(**kwargs)
        except ClientError as exc:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3key, UploadId=upload["UploadId"])
            if self._code(exc) in ("PreconditionFailed", "412"):
                raise ObjectExists(f"{self.url(key)}: object exists (create-only write refused)") from None
            raise StoreError(f"{self.url(key)}: multipart upload failed: {self._code(exc) or exc}") from None
        return resp["ETag"]

    def get_with_etag(self, key):
        from botocore.exceptions import ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"{self.url(key)}: no such object") from None
            raise StoreError(f"{self.url(key)}: S3 get failed: {self._code(exc) or exc}") from None
        return resp["Body"].read(), resp["ETag"]

    def head(self, key):
        from botocore.exceptions import ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StoreError(f"{self.url(key)}: S3 head failed: {self._code(exc) or exc}") from None
        return ObjectInfo(key, resp["ContentLength"], resp["ETag"])

    def list(self, prefix=""):
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self._full_prefix(prefix)):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                out.append(k[len(self.prefix) + 1:] if self.prefix else k)
        return sorted(out)

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _full_prefix(self, prefix: str) -> str:
        # a prefix may end with "/" (a folder): validate it without the slash, then put the slash back
        full = self._key(prefix.rstrip("/")) if prefix.rstrip("/") else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        return full

    def list_stats(self, prefix=""):
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self._full_prefix(prefix)):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                out.append(ObjectStat(k[len(self.prefix) + 1:] if self.prefix else k, int(obj["Size"]),
                                      obj["LastModified"].timestamp()))
        return sorted(out, key=lambda o: o.key)

    def delete_many(self, keys):
        from botocore.exceptions import ClientError

        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = keys[start:start + S3_DELETE_BATCH]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True})
            except ClientError as exc:
                raise StoreError(f"{self.url(batch[0])} (and {len(batch) - 1} more): S3 delete failed: "
                                 f"{self._code(exc) or exc}") from None
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise StoreError(f"s3://{self.bucket}/{first.get('Key')}: S3 delete failed: {first.get('Code')} "
                                 f"({len(errors)} of {len(batch)} keys not deleted)")

    def download(self, key, path):
        from botocore.exceptions import ClientError

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as exc:
            raise NotFound(f"{self.url(key)}: cannot download: {self._code(exc) or exc}") from None
        return Path(path)


def delete_prefix(store: Store, prefix: str) -> tuple[int, int]:
    """Delete every object under the folder ``prefix`` (``work/call/0123abcd/``; must end with ``/``), with a local
    store's ``.tmp-*`` leftovers there. Returns ``(objects, bytes)`` deleted; raises :class:`StoreError` when the
    store refuses a deletion (what was deleted before stays deleted: rerunning finishes the job)."""
    if not prefix.endswith("/") or not prefix.strip("/"):
        raise InvalidInputError(f"delete_prefix needs a folder prefix ending with '/', got {prefix!r}")
    validate_key(prefix.rstrip("/"))
    stats = store.list_stats(prefix)
    partial = [k for k, _ in store.list_partial(prefix)]
    store.delete_many([o.key for o in stats] + partial)
    return len(stats) + len(partial), sum(o.size for o in stats)


def default_store_uri() -> str:
    """``TVB_STORE_URI`` or the project-local folder ``var/store``."""
    from .config import PROJECT_ROOT

    return os.environ.get("TVB_STORE_URI") or (PROJECT_ROOT / "var" / "store").as_uri()


def open_store(uri: str | None = None, *, client=None, create: bool = True) -> Store:
    """Open ``file:///path``, a plain path, or ``s3://bucket[/prefix]`` (endpoint from env or ``client``).

    ``None`` means the default store; an empty or blank ``uri`` is refused. With ``create=False`` (read-only
    commands) a local store folder that does not exist is an error ("no store at …"), never created."""
    if uri is not None and not uri.strip():
        raise InvalidInputError("empty store URI: give file:///absolute/folder, a path or s3://bucket (or omit --store "
                                "for the default)")
    uri = uri or default_store_uri()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInputError(f"invalid S3 store URI {uri!r}: no bucket")
        return S3Store(parsed.netloc, parsed.path, client=client)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInputError(f"unsupported store URI {uri!r}: file:// with host {parsed.netloc!r} would be "
                                    f"written locally at {parsed.path!r}; use file:///absolute/path (local folders "
                                    "only) or s3://")
        if not parsed.path:
            raise InvalidInputError(f"invalid store URI {uri!r}: no path (use file:///absolute/path)")
        return LocalStore(unquote(parsed.path), create=create)
    if parsed.scheme == "":
        return LocalStore(uri, create=create)
    raise InvalidInputError(f"unsupported store URI {uri!r} (use file:// or s3://)")

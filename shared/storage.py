"""Object storage for audio and results: one interface, two backends.

``LocalStorage`` keeps objects as files under a root folder (one machine, or a shared volume); ``S3Storage``
talks to MinIO or any S3-compatible server through the minio SDK. Both take the same keys (``"a/b/c"``, checked
the same way) and raise the same errors: ``ObjectNotFound`` for a missing key and ``StorageUnavailable`` (503)
when the backend cannot be reached or refuses us. Error messages never carry credentials or internal tracebacks;
the original exception stays chained (``__cause__``) for logs.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self, cast
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from shared.errors import ObjectNotFound, StorageUnavailable
from shared.settings import CommonSettings

DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_CHUNK_SIZE = 1 << 20

# Connection settings for S3. minio's own default (5 min timeouts, 5 retries) keeps a request hanging for minutes
# when the server is down; ours report it in seconds:
# - connection refused (server stopped): 3 attempts, back-off 0 s then 0.4 s -> about 0.4 s (measured);
# - no answer to connect (host down, packets dropped): 3 x 2 s + 0.4 s -> about 6.5 s;
# - connected but no reply (hung server): 30 s read timeout, retried once for idempotent requests -> at most
#   about 60 s (measured). ping() has its own client (5 s read timeout, no read retry) so health checks answer
#   within about 5 s.
S3_CONNECT_TIMEOUT_S = 2.0
S3_READ_TIMEOUT_S = 30.0
S3_RETRIES = 2
S3_READ_RETRIES = 1
S3_BACKOFF_FACTOR = 0.2
S3_PING_READ_TIMEOUT_S = 5.0

# Temporary files of LocalStorage's atomic writes start with this; keys may not use it.
_TMP_PREFIX = ".m4t-tmp-"

# S3 error codes that mean our credentials or settings are wrong, not that the server is down.
_S3_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    }
)
_S3_MISSING_KEY_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchVersion"})


class Storage(Protocol):
    """What the gateway and the workers need from object storage."""

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None: ...

    def put_file(self, key: str, fileobj: BinaryIO, length: int, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store exactly ``length`` bytes read from ``fileobj``, streaming (never the whole file in memory)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Generator[bytes, None, None]:
        """The object in chunks. ``ObjectNotFound`` is raised here, before the first chunk; close() the
        generator when stopping early to release the file or connection at once (else garbage collection
        does it)."""
        ...

    def download_to(self, key: str, path: Path) -> None:
        """Stream the object into ``path`` (atomically replaced; parent folders created)."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete one object; a missing key is fine."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (which may not be empty); return how many."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys that start with ``prefix`` (a plain string prefix, as in S3), in sorted order."""
        ...

    def ping(self) -> None:
        """Return if storage is usable; raise ``StorageUnavailable`` otherwise."""
        ...

    def close(self) -> None: ...


# --- keys ----------------------------------------------------------------------------------------------------


def check_key(key: str) -> str:
    """A key is ``"a/b/c"``: non-empty parts, no ``.``/``..``, not absolute, no backslash or NUL."""
    if not key:
        raise ValueError("storage key is empty")
    _check_parts(key, key.split("/"))
    return key


def check_prefix(prefix: str) -> str:
    """Like a key, but may be empty or end with ``/``."""
    parts = prefix.split("/")
    if parts[-1] == "":
        parts.pop()
    if parts:
        _check_parts(prefix, parts)
    return prefix


def _check_parts(key: str, parts: list[str]) -> None:
    if "\\" in key or "\x00" in key:
        raise ValueError(f"storage key {key!r} contains a backslash or NUL")
    if key.startswith("/"):
        raise ValueError(f"storage key {key!r} is absolute")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"storage key {key!r} has an empty, '.' or '..' part")
        if part.startswith(_TMP_PREFIX):
            raise ValueError(f"storage key {key!r} uses the reserved prefix {_TMP_PREFIX!r}")


class _ExactReader:
    """Reads exactly ``length`` bytes from ``fileobj``: never past it, and ValueError if it ends early."""

    def __init__(self, fileobj: BinaryIO, length: int) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, not {length}")
        self._fileobj = fileobj
        self._length = length
        self._left = length

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        if want == 0:
            return b""
        data = self._fileobj.read(want)
        if not data:
            raise ValueError(f"stream ended after {self._length - self._left} of {self._length} bytes")
        self._left -= len(data)
        return data

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        while chunk := self.read(chunk_size):
            yield chunk


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new temporary file in ``folder`` (created if missing), mode 0o666 minus the umask like any new file
    (``mkstemp`` would make it 0o600, unreadable to a worker running as another user)."""
    for attempt in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileNotFoundError:
            # A concurrent delete pruned the empty folder between mkdir and open: make it again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_atomically(path: Path, chunks: Iterable[bytes], *, fsync: bool = False) -> None:
    """Write to a temporary file in the same folder, then ``os.replace`` it: readers never see half a file."""
    fd, tmp = _create_temp(path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# --- local folder --------------------------------------------------------------------------------------------


class LocalStorage:
    """Objects as files under ``root``. ``content_type`` is not kept (the callers know their formats).

    Writes are atomic (temporary file + ``os.replace``); ``fsync=True`` also flushes each file to disk before
    it becomes visible, for durability across power loss.
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        _write_atomically(self._path(key), [data], fsync=self.fsync)

    def put_file(self, key: str, fileobj: BinaryIO, length: int, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        path = self._path(key)
        _write_atomically(path, _ExactReader(fileobj, length).chunks(), fsync=self.fsync)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at key {key!r}") from None

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Generator[bytes, None, None]:
        return _primed(self._stream(key, chunk_size))

    def _stream(self, key: str, chunk_size: int) -> Generator[bytes, None, None]:
        path = self._path(key)
        try:
            file = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at key {key!r}") from None
        with file:
            yield b""  # primed: the file is open
            while chunk := file.read(chunk_size):
                yield chunk

    def download_to(self, key: str, path: Path) -> None:
        with contextlib.closing(self.open_stream(key)) as chunks:
            _write_atomically(Path(path), chunks)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            if path.is_file():
                return path.stat().st_size
        except FileNotFoundError:
            pass
        raise ObjectNotFound(f"no object at key {key!r}")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            path.unlink()
            self._prune_empty_dirs([path.parent])

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        deleted = 0
        parents: set[Path] = set()
        for key in list(self.list_keys(prefix)):
            path = self.root / key
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted += 1
                parents.add(path.parent)
        self._prune_empty_dirs(parents)
        return deleted

    def list_keys(self, prefix: str) -> Iterator[str]:
        check_prefix(prefix)
        folder, _, partial = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            rel = here.relative_to(self.root).as_posix()
            if here == base and partial:  # the prefix's last part is partial: filter the first level
                dirnames[:] = [d for d in dirnames if d.startswith(partial)]
                filenames = [f for f in filenames if f.startswith(partial)]
            keys.extend(
                name if rel == "." else f"{rel}/{name}" for name in filenames if not name.startswith(_TMP_PREFIX)
            )
        return iter(sorted(keys))

    def ping(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise StorageUnavailable("local storage folder is missing or not writable")

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _prune_empty_dirs(self, folders: Iterable[Path]) -> None:
        """Remove folders left empty by deletes, deepest first, never the root."""
        for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
            current = folder
            while current != self.root and self.root in current.parents:
                try:
                    current.rmdir()
                except OSError:  # not empty (or already gone): stop climbing
                    break
                current = current.parent


def _primed(stream: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """Run ``stream`` up to its first (empty) yield, so opening errors raise now, not at the first chunk.

    A suspended generator runs its ``finally``/``with`` on close() or garbage collection; one never started
    would not, so priming also guarantees the opened file or connection is released.
    """
    next(stream)
    return stream


# --- S3 / MinIO ----------------------------------------------------------------------------------------------


def s3_http_client(
    *, read_timeout_s: float = S3_READ_TIMEOUT_S, read_retries: int = S3_READ_RETRIES, maxsize: int = 10
) -> urllib3.PoolManager:
    """A connection pool for minio with short timeouts and few retries (see ``S3_*`` above)."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=S3_CONNECT_TIMEOUT_S, read=read_timeout_s),
        retries=urllib3.Retry(
            total=S3_RETRIES,
            connect=S3_RETRIES,
            read=read_retries,
            backoff_factor=S3_BACKOFF_FACTOR,
            status_forcelist=(500, 502, 503, 504),
        ),
        maxsize=maxsize,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


_LIFECYCLE_UNSUPPORTED = frozenset({"NotImplemented", "NotSupported", "XNotImplemented"})
ExpiryRuleOutcome = Literal["set", "unsupported", "bucket_has_rules"]


class S3Storage:
    """Objects in one bucket of MinIO or another S3-compatible server.

    The bucket is created at construction when missing (``create_bucket=False`` skips that and the network);
    a race with another process creating it is fine. Construction then raises ``StorageUnavailable`` if the
    server cannot be reached or refuses the credentials. ``put_file`` uploads in parts of 5 MiB (multipart above
    that), so at most one part is in memory.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        if "://" in endpoint:
            raise ValueError(
                f"S3 endpoint must be host:port without a scheme (got {endpoint!r}); use s3_secure for https"
            )
        self.endpoint = endpoint
        self.bucket = bucket
        self._http = s3_http_client()
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=self._http
        )
        self._ping_http = s3_http_client(read_timeout_s=S3_PING_READ_TIMEOUT_S, read_retries=0, maxsize=1)
        self._ping_client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._ping_http,
        )
        if create_bucket:
            try:
                self.ensure_bucket()
            except BaseException:
                self.close()
                raise

    def ensure_bucket(self) -> None:
        with self._errors():
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def set_expiry_rule(self, prefix: str, days: int) -> ExpiryRuleOutcome:
        """Ask the server to delete the objects under ``prefix`` ``days`` after they were written (a bucket
        lifecycle rule named ``m4t-expire-<prefix>``). A bucket whose lifecycle holds any rule of someone else's
        is left as it is (``"bucket_has_rules"``): the SDK cannot write every rule back exactly as it was, and an
        operator's rules are not ours to rewrite. ``"unsupported"`` when the server has no lifecycle rules."""
        check_prefix(prefix)
        if days < 1:
            raise ValueError("an expiry rule needs at least 1 day")
        rule_id = f"m4t-expire-{prefix.strip('/').replace('/', '-')}"
        ours = Rule(ENABLED, rule_filter=Filter(prefix=prefix), rule_id=rule_id, expiration=Expiration(days=days))
        with self._errors():
            try:
                current = self._client.get_bucket_lifecycle(self.bucket)
            except S3Error as exc:
                if exc.code in _LIFECYCLE_UNSUPPORTED:
                    return "unsupported"
                raise
            except ValueError:  # a rule the SDK cannot parse (e.g. a size-only filter): someone else's
                return "bucket_has_rules"
            if current is not None and any(rule.rule_id != rule_id for rule in current.rules):
                return "bucket_has_rules"
            try:
                self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig([ours]))
            except S3Error as exc:
                if exc.code in _LIFECYCLE_UNSUPPORTED:
                    return "unsupported"
                raise
        return "set"

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        self.put_file(key, io.BytesIO(data), len(data), content_type)

    def put_file(self, key: str, fileobj: BinaryIO, length: int, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        check_key(key)
        reader = _ExactReader(fileobj, length)
        with self._errors(key):
            # minio only calls read() on it.
            self._client.put_object(self.bucket, key, cast(BinaryIO, reader), length, content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        with contextlib.closing(self.open_stream(key)) as chunks:
            return b"".join(chunks)

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Generator[bytes, None, None]:
        return _primed(self._stream(key, chunk_size))

    def _stream(self, key: str, chunk_size: int) -> Generator[bytes, None, None]:
        check_key(key)
        with self._errors(key):
            response = self._client.get_object(self.bucket, key)
        try:
            yield b""  # primed: the response is open
            with self._errors(key):
                yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def download_to(self, key: str, path: Path) -> None:
        with contextlib.closing(self.open_stream(key)) as chunks:
            _write_atomically(Path(path), chunks)

    def size(self, key: str) -> int:
        check_key(key)
        with self._errors(key):
            return self._client.stat_object(self.bucket, key).size or 0

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        with self._errors(key):
            self._client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        keys = list(self.list_keys(prefix))
        with self._errors():
            # remove_objects is lazy: iterating its result sends the batched deletes and yields failures.
            failures = list(self._client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)))
        if failures:
            codes = sorted({str(f.code) for f in failures})
            raise StorageUnavailable(f"storage could not delete {len(failures)} objects (S3 errors: {codes})")
        return len(keys)

    def list_keys(self, prefix: str) -> Iterator[str]:
        check_prefix(prefix)
        return self._list_keys(prefix)

    def _list_keys(self, prefix: str) -> Iterator[str]:
        with self._errors():
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield str(obj.object_name)

    def ping(self) -> None:
        with self._errors():
            found = self._ping_client.bucket_exists(self.bucket)
        if not found:
            raise StorageUnavailable("storage bucket does not exist (check the storage URL)")

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()
        self._ping_http.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate minio/urllib3 exceptions into ours (messages without endpoint or credentials)."""
        try:
            yield
        except S3Error as exc:
            raise _from_s3_error(exc, key) from exc
        except (urllib3.exceptions.HTTPError, MinioException, ConnectionError, TimeoutError) as exc:
            raise StorageUnavailable(
                "storage is unreachable (connection refused, timed out or broken); retry later"
            ) from exc


def _from_s3_error(exc: S3Error, key: str | None) -> ObjectNotFound | StorageUnavailable:
    code = str(exc.code)
    if key is not None and code in _S3_MISSING_KEY_CODES:
        return ObjectNotFound(f"no object at key {key!r}")
    if code in _S3_AUTH_CODES:
        return StorageUnavailable(
            f"storage refused our credentials (S3 error {code}): a credentials/config problem; check the S3 "
            "access key, secret key and region settings"
        )
    if code == "NoSuchBucket":
        return StorageUnavailable("storage bucket does not exist (check the storage URL)")
    return StorageUnavailable(f"storage request failed (S3 error {code})")


# --- from settings -------------------------------------------------------------------------------------------


def storage_from_url(
    url: str,
    *,
    s3_endpoint: str | None,
    s3_access_key: str | None,
    s3_secret_key: str | None,
    s3_secure: bool = False,
    s3_region: str | None = None,
) -> Storage:
    """``file:///abs/path`` or ``file://relative/path`` -> LocalStorage; ``s3://bucket`` -> S3Storage."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        raw = parts.netloc + parts.path  # "file://relative/path" puts "relative" in netloc
        if not raw:
            raise ValueError(f"storage URL {url!r} has no path: use file:///absolute/path or file://relative/path")
        return LocalStorage(Path(raw))
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not bucket or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"storage URL {url!r} must be s3://bucket (no path or query)")
        if not (s3_endpoint and s3_access_key and s3_secret_key):
            given = {"s3_endpoint": s3_endpoint, "s3_access_key": s3_access_key, "s3_secret_key": s3_secret_key}
            missing = ", ".join(name for name, value in given.items() if not value)
            raise ValueError(f"storage URL {url!r} needs {missing} (the M4T_S3_* settings)")
        return S3Storage(s3_endpoint, s3_access_key, s3_secret_key, bucket, secure=s3_secure, region=s3_region)
    raise ValueError(f"storage URL {url!r} must start with file:// or s3://")


def storage_from_settings(settings: CommonSettings) -> Storage:
    """The storage the ``M4T_STORAGE_URL`` and ``M4T_S3_*`` settings name."""
    return storage_from_url(
        settings.resolved_storage_url,
        s3_endpoint=settings.s3_endpoint,
        s3_access_key=settings.s3_access_key,
        s3_secret_key=settings.s3_secret_key,
        s3_secure=settings.s3_secure,
        s3_region=settings.s3_region,
    )

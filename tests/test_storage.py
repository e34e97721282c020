"""The storage contract, run on both backends: a local folder and S3 on a real SeaweedFS server."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import socket
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, cast

import pytest
import redis
from minio import Minio
from services import RedisServer, S3Server, free_port
from stack import WorkerProcess, stack_env

from shared.errors import ObjectNotFound, StorageUnavailable
from shared.storage import LocalStorage, S3Storage, Storage, storage_from_url

BIG_SIZE = 12_000_000  # > 5 MiB: a multipart upload on S3 (three parts)


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_storage(s3_server: S3Server) -> Iterator[S3Storage]:
    """One bucket for this module; tests keep apart by key prefix (``ns``)."""
    with S3Storage(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"test-storage-{secrets.token_hex(4)}"
    ) as storage:
        yield storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        with LocalStorage(tmp_path / "store") as local:
            yield local
    else:
        yield request.getfixturevalue("s3_storage")


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own."""
    return f"t-{secrets.token_hex(4)}/"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG_SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class RecordingReader:
    """A file wrapper that remembers the largest single read()."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj = fileobj
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.fileobj.read(size)
        self.largest_read = max(self.largest_read, len(data))
        return data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the contract, on both backends --------------------------------------------------------------------------


def test_put_and_get_bytes(storage: Storage, ns: str) -> None:
    storage.put_bytes(ns + "a/b.txt", b"hello", content_type="text/plain")
    assert storage.get_bytes(ns + "a/b.txt") == b"hello"
    storage.put_bytes(ns + "a/b.txt", b"replaced")
    assert storage.get_bytes(ns + "a/b.txt") == b"replaced"
    storage.put_bytes(ns + "empty", b"")
    assert storage.get_bytes(ns + "empty") == b""
    assert storage.size(ns + "empty") == 0


def test_put_file_streams_a_big_file(storage: Storage, ns: str, big_file: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = big_file
    with path.open("rb") as f:
        reader = RecordingReader(f)
        storage.put_file(ns + "big.bin", cast(BinaryIO, reader), BIG_SIZE)
    assert 0 < reader.largest_read <= 8 << 20  # read in chunks/parts, never the whole 12 MB at once
    assert storage.size(ns + "big.bin") == BIG_SIZE
    out = tmp_path / "out" / "big.bin"
    storage.download_to(ns + "big.bin", out)
    assert sha256_file(out) == digest


def test_put_file_stores_exactly_length_bytes(storage: Storage, ns: str) -> None:
    storage.put_file(ns + "head", io.BytesIO(b"0123456789"), 4)
    assert storage.get_bytes(ns + "head") == b"0123"
    with pytest.raises(ValueError, match="ended after 3 of 10 bytes"):
        storage.put_file(ns + "short", io.BytesIO(b"abc"), 10)
    assert not storage.exists(ns + "short")


def test_open_stream_chunks_reassemble(storage: Storage, ns: str) -> None:
    data = os.urandom(3500)
    storage.put_bytes(ns + "s.bin", data)
    chunks = list(storage.open_stream(ns + "s.bin", chunk_size=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 1000, 500]
    assert b"".join(chunks) == data


def test_open_stream_missing_raises_before_iterating(storage: Storage, ns: str) -> None:
    with pytest.raises(ObjectNotFound):
        storage.open_stream(ns + "missing")


def test_open_stream_closed_early_releases_the_object(storage: Storage, ns: str) -> None:
    storage.put_bytes(ns + "s.bin", b"x" * 5000)
    for _ in range(20):  # more than the connection pool holds, were connections leaked
        stream = storage.open_stream(ns + "s.bin", chunk_size=1000)
        assert next(stream) == b"x" * 1000
        stream.close()
    assert storage.get_bytes(ns + "s.bin") == b"x" * 5000


def test_download_to_replaces_the_file(storage: Storage, ns: str, tmp_path: Path) -> None:
    storage.put_bytes(ns + "d.bin", b"new content")
    target = tmp_path / "deep" / "er" / "d.bin"
    storage.download_to(ns + "d.bin", target)
    assert target.read_bytes() == b"new content"
    target.write_bytes(b"old content that is longer")
    storage.download_to(ns + "d.bin", target)
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in target.parent.iterdir()) == ["d.bin"]  # no temp file left behind
    with pytest.raises(ObjectNotFound):
        storage.download_to(ns + "missing", tmp_path / "nothing.bin")
    assert not (tmp_path / "nothing.bin").exists()


def test_size_exists_delete(storage: Storage, ns: str) -> None:
    key = ns + "x/y.bin"
    assert not storage.exists(key)
    storage.put_bytes(key, b"12345")
    assert storage.exists(key)
    assert storage.size(key) == 5
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # missing is fine
    with pytest.raises(ObjectNotFound):
        storage.size(key)
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(key)
    assert not storage.exists(ns + "x")  # a "folder" is not an object


def test_list_keys_and_delete_prefix(storage: Storage, ns: str) -> None:
    keys = [ns + k for k in ("job1/a", "job1/b/c", "job10/x", "job2/y")]
    for key in keys:
        storage.put_bytes(key, b"-")
    assert list(storage.list_keys(ns)) == keys
    assert list(storage.list_keys(ns + "job1/")) == [ns + "job1/a", ns + "job1/b/c"]
    assert list(storage.list_keys(ns + "job1")) == keys[:3]  # a plain string prefix, as in S3
    assert list(storage.list_keys(ns + "job1/b/c")) == [ns + "job1/b/c"]
    assert list(storage.list_keys(ns + "nothing/")) == []

    assert storage.delete_prefix(ns + "job1/") == 2
    assert list(storage.list_keys(ns)) == [ns + "job10/x", ns + "job2/y"]
    assert storage.delete_prefix(ns + "job1/") == 0
    with pytest.raises(ValueError, match="non-empty prefix"):
        storage.delete_prefix("")


@pytest.mark.parametrize(
    "key", ["", "/abs/path", "a/../b", "..", "a\\b", "a//b", "./a", "a/", "a/.m4t-tmp-1234", "a\x00b"]
)
def test_bad_keys_are_rejected(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="storage key"):
        storage.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="storage key"):
        storage.get_bytes(key)


@pytest.mark.parametrize("prefix", ["/abs", "../", "a/../", "a\\"])
def test_bad_prefixes_are_rejected(storage: Storage, prefix: str) -> None:
    with pytest.raises(ValueError, match="storage key"):
        list(storage.list_keys(prefix))
    with pytest.raises(ValueError, match="storage key"):
        storage.delete_prefix(prefix)


def test_ping(storage: Storage) -> None:
    storage.ping()


# --- local folder --------------------------------------------------------------------------------------------


def test_local_keys_stay_inside_the_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.put_bytes("a/b/c.txt", b"x")
    assert (tmp_path / "root" / "a" / "b" / "c.txt").read_bytes() == b"x"
    with pytest.raises(ValueError, match="storage key"):
        storage.put_bytes("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()


def test_local_delete_prunes_empty_folders(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("jobs/j1/in.wav", b"x")
    storage.put_bytes("jobs/j1/out/0.wav", b"x")
    storage.put_bytes("jobs/j2/in.wav", b"x")
    assert storage.delete_prefix("jobs/j1/") == 2
    assert not (tmp_path / "jobs" / "j1").exists()
    assert (tmp_path / "jobs" / "j2" / "in.wav").exists()
    storage.delete("jobs/j2/in.wav")
    assert list(tmp_path.iterdir()) == []  # the root itself stays
    storage.put_bytes("jobs/j1/again", b"x")  # folders come back on the next write
    assert storage.get_bytes("jobs/j1/again") == b"x"


def test_local_failed_write_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("k", b"old")
    with pytest.raises(ValueError, match="ended after"):
        storage.put_file("k", io.BytesIO(b"new"), 100)
    assert storage.get_bytes("k") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_local_ping_fails_when_the_folder_is_gone(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    (tmp_path / "store").rmdir()
    with pytest.raises(StorageUnavailable):
        storage.ping()


# --- S3 specifics --------------------------------------------------------------------------------------------


def test_s3_big_put_file_is_multipart(
    s3_server: S3Server, s3_storage: S3Storage, ns: str, big_file: tuple[Path, str]
) -> None:
    path, _ = big_file
    with path.open("rb") as f:
        s3_storage.put_file(ns + "big.bin", f, BIG_SIZE)
    client = Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, secure=False)
    try:
        etag = client.stat_object(s3_storage.bucket, ns + "big.bin").etag
    finally:
        client._http.clear()
    assert etag is not None
    assert etag.endswith("-3")  # three parts of 5 MiB, 5 MiB and the rest


def test_s3_bucket_creation_tolerates_a_race(s3_server: S3Server) -> None:
    bucket = f"race-{secrets.token_hex(4)}"

    def create(_: int) -> None:
        S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket).close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(4)))  # re-raises the first error, if any


@pytest.mark.parametrize("wrong", ["secret", "access_key"])
def test_s3_wrong_credentials_are_reported_without_the_secret(
    s3_server: S3Server, s3_storage: S3Storage, wrong: str
) -> None:
    secret = f"wrong-{secrets.token_hex(8)}" if wrong == "secret" else s3_server.secret_key
    access_key = "nobody" if wrong == "access_key" else s3_server.access_key

    with pytest.raises(StorageUnavailable) as at_construction:
        S3Storage(s3_server.endpoint, access_key, secret, s3_storage.bucket)
    with (
        S3Storage(s3_server.endpoint, access_key, secret, s3_storage.bucket, create_bucket=False) as storage,
        pytest.raises(StorageUnavailable) as on_read,
    ):
        storage.get_bytes("any/key")

    for exc in (at_construction.value, on_read.value):
        assert "credentials" in exc.message
        assert exc.status_code == 503
        full_text = "".join(traceback.format_exception(exc))  # message, chained cause and all
        assert secret not in full_text
        assert s3_server.secret_key not in full_text


def test_s3_down_is_reported_quickly(tmp_path: Path) -> None:
    with S3Server(tmp_path / "weed") as server:
        storage = S3Storage(server.endpoint, server.access_key, server.secret_key, "short-lived")
        with storage:
            storage.put_bytes("k", b"v")
            assert storage.get_bytes("k") == b"v"
            server.kill()
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="unreachable"):
                storage.get_bytes("k")
            with pytest.raises(StorageUnavailable, match="unreachable"):
                storage.ping()
            with pytest.raises(StorageUnavailable, match="unreachable"):
                storage.put_bytes("k2", b"v")
            assert time.monotonic() - started < 10


def test_s3_nothing_listening_fails_at_construction() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        S3Storage(f"127.0.0.1:{free_port()}", "key", "secret", "bucket")
    assert time.monotonic() - started < 10


def test_s3_ping_of_a_hung_server_answers_within_seconds() -> None:
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts connections, never replies
        endpoint = f"127.0.0.1:{hung.getsockname()[1]}"
        with S3Storage(endpoint, "key", "secret", "bucket", create_bucket=False) as storage:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="unreachable"):
                storage.ping()
            assert time.monotonic() - started < 8  # 5 s read timeout, no retry


# --- storage_from_url ----------------------------------------------------------------------------------------


def test_storage_from_url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = storage_from_url(f"file://{tmp_path}/abs", s3_endpoint=None, s3_access_key=None, s3_secret_key=None)
    assert isinstance(absolute, LocalStorage)
    assert absolute.root == tmp_path / "abs"

    monkeypatch.chdir(tmp_path)
    relative = storage_from_url("file://rel/store", s3_endpoint=None, s3_access_key=None, s3_secret_key=None)
    assert isinstance(relative, LocalStorage)
    assert relative.root == tmp_path / "rel" / "store"


def test_storage_from_url_s3(s3_server: S3Server) -> None:
    with pytest.raises(ValueError, match="s3_access_key, s3_secret_key"):
        storage_from_url("s3://bucket", s3_endpoint=s3_server.endpoint, s3_access_key=None, s3_secret_key="")
    storage = storage_from_url(
        "s3://from-url",
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    )
    assert isinstance(storage, S3Storage)
    with storage:
        storage.ping()


@pytest.mark.parametrize("url", ["", "http://x", "s3://", "s3://bucket/sub/path", "file://"])
def test_storage_from_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="storage URL"):
        storage_from_url(url, s3_endpoint="127.0.0.1:1", s3_access_key="a", s3_secret_key="b")


# --- the test servers themselves -----------------------------------------------------------------------------


def test_redis_server_restart_keeps_port_and_data(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=True) as server:
        port = server.port
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
        server.restart()
        assert server.port == port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with redis.Redis.from_url(server.url) as client:
            assert client.get("k") == b"v"
        server.kill()
        assert not server.running
        server.start()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
    assert not server.running


def test_redis_url_fixture_gives_an_empty_db(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left", "behind")  # flushed before the next test that asks for redis_url


# --- expiry rule (bucket lifecycle) ------------------------------------------------------------------------------


def bucket_rules(storage: S3Storage, s3_server: S3Server) -> dict[str, tuple[str | None, int | None]]:
    """The bucket's lifecycle rules as the server holds them, read with a client of our own."""
    raw = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key, secure=False)
    config = raw.get_bucket_lifecycle(storage.bucket)
    rules = config.rules if config else []
    return {
        str(rule.rule_id): (
            rule.rule_filter.prefix if rule.rule_filter else None,
            rule.expiration.days if rule.expiration else None,
        )
        for rule in rules
    }


def test_the_expiry_rule_is_set_replaced_and_never_touches_an_operators_rules(s3_server: S3Server) -> None:
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

    raw = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key, secure=False)
    with S3Storage(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"test-expiry-{secrets.token_hex(4)}"
    ) as storage:
        assert storage.set_expiry_rule("jobs/", 8) == "set"
        assert bucket_rules(storage, s3_server) == {"m4t-expire-jobs": ("jobs/", 8)}
        assert storage.set_expiry_rule("jobs/", 9) == "set"  # a restart with another TTL replaces ours
        assert bucket_rules(storage, s3_server) == {"m4t-expire-jobs": ("jobs/", 9)}
        with pytest.raises(ValueError, match="at least 1 day"):
            storage.set_expiry_rule("jobs/", 0)

    with S3Storage(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, f"test-expiry-{secrets.token_hex(4)}"
    ) as storage:
        operators = Rule(
            ENABLED, rule_filter=Filter(prefix="backups/"), rule_id="operator", expiration=Expiration(days=30)
        )
        raw.set_bucket_lifecycle(storage.bucket, LifecycleConfig([operators]))
        assert storage.set_expiry_rule("jobs/", 8) == "bucket_has_rules"
        assert bucket_rules(storage, s3_server) == {"operator": ("backups/", 30)}


def test_the_webhook_worker_sets_the_expiry_rule_from_the_result_ttl(tmp_path: Path, s3_server: S3Server) -> None:
    bucket = f"test-expiry-worker-{secrets.token_hex(4)}"
    with RedisServer(tmp_path / "redis") as redis_server:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"s3://{bucket}",
            model="unused",
            data_dir=tmp_path / "data",
            s3=s3_server.settings_env,
            M4T_RESULT_TTL_S=str(2 * 86400),
            M4T_VISIBILITY_TIMEOUT_S=str(6 * 3600),
        )
        with WorkerProcess(tmp_path, env, worker_name="webhooks", role="webhooks"):
            storage = S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket)
            with storage:
                # 2 days of TTL + 6 h of the longest run, rounded up to 3 days, + 1 day of margin
                assert bucket_rules(storage, s3_server) == {"m4t-expire-jobs": ("jobs/", 4)}

"""Fixtures shared by the whole test suite. Add new fixtures under a section heading of their own.

Servers are real processes (see ``services.py``), started once per session and always stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from services import RedisServer, S3Server

# Apps built in the test process (TestClient) read their settings from the environment: no language detector unless a
# test asks for one (its default mode costs 1.2 GiB and 7-25 s at start-up; see tests/stack.py NO_DETECTION).
os.environ.setdefault("M4T_DETECT_ACCURACY", "off")

# --- real servers, one per test session ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis (db 0), emptied with FLUSHALL before each test; restarted first if a test stopped it.

    Tests that stop, kill or restart Redis on purpose should start a ``RedisServer`` of their own.
    """
    if not redis_server.running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


# --- the tiny model --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random SeamlessM4T v2 checkpoint, built once per session (loaded like the real model)."""
    from worker.tiny_model import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("models"))

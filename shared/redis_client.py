"""Redis clients with short timeouts, so a Redis outage is reported in seconds rather than hanging a request."""

from __future__ import annotations

import redis
import redis.asyncio

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 10.0


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=15,
    )


def async_redis(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=15,
    )

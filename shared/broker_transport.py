"""The Redis transport of the broker: kombu's, with one repair, so a worker survives a Redis restart.

On a lost broker connection, Celery 5.7's consumer first ``collect()``-s the connection (which detaches kombu's
``Connection`` from its transport: ``transport.client = None``) and then closes it. Closing a channel that holds
unacknowledged messages restores them to their queue through a fresh Redis pool, whose parameters kombu reads from
``transport.client``: ``AttributeError: 'NoneType' object has no attribute 'hostname'``, which is not a connection
error, so Celery calls it unrecoverable and the whole worker shuts down (tests/test_faults.py, the Redis restart).
Each channel here keeps the connection it was opened for and reads the parameters from it once the transport has
been detached; restoring or acknowledging then fails (Redis down) or succeeds (Redis back) as a connection error
would, and the consumer reconnects.

``make_celery`` selects it with ``broker_transport``; everything else is kombu's Redis transport unchanged.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._opened_for = self.connection.client  # the kombu Connection: host, port, credentials, options

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        opened_for = getattr(self, "_opened_for", None)  # None while kombu's own __init__ connects
        if transport.client is not None or opened_for is None:
            params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
            return params
        transport.client = opened_for
        try:
            params = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        finally:
            transport.client = None
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"

"""Who is calling: the API key of a request, checked on every call (revocation takes effect at once), and what
that key may see. Jobs belong to the key that made them; another key gets 404 for them; admin keys see all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from gateway.deps import ServicesDep
from shared.api_keys import ApiKey, ApiKeyStore
from shared.errors import Unauthorized
from shared.jobs import JobRecord


@dataclass(frozen=True)
class Caller:
    key: ApiKey | None
    """None when auth is off: everyone is the same anonymous caller, who sees everything."""

    @property
    def owner(self) -> str:
        return self.key.id if self.key else ""

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    def sees(self, record: JobRecord) -> bool:
        return self.admin or record.owner == self.owner

    @property
    def listing_owner(self) -> str | None:
        """Whose jobs a listing shows: None for everyone's."""
        return None if self.admin else self.owner


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


async def authenticate(request: Request, services: ServicesDep) -> Caller:
    if not services.settings.auth_enabled:
        return Caller(None)
    token = presented_key(request)
    if token is None:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    store = ApiKeyStore(services.redis)
    key = await run_in_threadpool(store.lookup, token)
    if key is None:
        raise Unauthorized("invalid or revoked API key")
    await run_in_threadpool(store.count_request, key)
    return Caller(key)


CallerDep = Annotated[Caller, Depends(authenticate)]

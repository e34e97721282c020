"""A job's life after submission: listing, cancellation, live events (SSE), webhook deliveries."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.auth import CallerDep
from gateway.deps import ServicesDep
from gateway.routes.jobs import ERROR_RESPONSES, job_view, load_job
from gateway.schemas import JobList, JobOut, WebhookEventList
from gateway.services import Services
from gateway.waiting import fetch_job, follow_events
from shared.errors import InvalidRequest, JobNotFound, M4TError
from shared.job_view import job_to_api
from shared.jobs import CancelOutcome, JobStatus
from shared.webhook_events import WebhookEventStore, event_to_api

router = APIRouter(prefix="/api/v1", tags=["jobs"])

_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


class JobAlreadyFinished(M4TError):
    code = "job_finished"
    status_code = 409


def _encode_cursor(cursor: tuple[float, str] | None) -> str | None:
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(f"{cursor[0]!r}:{cursor[1]}".encode()).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        score, job_id = raw.split(":", 1)
        return float(score), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API gave out", details={"field": "cursor"}) from exc


@router.get("/jobs", response_model=JobList, responses=ERROR_RESPONSES, summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> dict[str, Any]:
    before = _decode_cursor(cursor) if cursor else None
    # One more than asked: a next page exists only if it comes back.
    records, _ = await run_in_threadpool(
        lambda: services.store.list_jobs(status=status, limit=limit + 1, before=before, owner=caller.listing_owner)
    )
    more = len(records) > limit
    records = records[:limit]
    jobs = [await job_view(services, record, request) for record in records]
    next_cursor = (records[-1].created_at, records[-1].id) if more else None
    return {"jobs": jobs, "next_cursor": _encode_cursor(next_cursor)}


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={**ERROR_RESPONSES, 202: {"model": JobOut, "description": "Running: it stops at its next batch"}},
    summary="Cancel a job",
    description="A queued job is cancelled at once (200) and never runs. A running job stops at its next batch "
    "boundary (202, `cancel_requested: true`) and ends `cancelled`, its partial outputs deleted. A finished job "
    "answers 409.",
)
async def cancel_job(job_id: str, request: Request, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    record = await load_job(services, job_id, caller)
    outcome = await run_in_threadpool(services.store.request_cancel, job_id)
    if outcome is CancelOutcome.MISSING:
        raise JobNotFound(f"no job with id '{job_id}'", details={"job_id": job_id})
    if outcome is CancelOutcome.FINISHED:
        raise JobAlreadyFinished(
            f"the job has already {'been ' if record.status is JobStatus.CANCELLED else ''}{record.status.value}",
            details={"job_id": job_id},
        )
    latest = await load_job(services, job_id, caller)
    body = await job_view(services, latest, request)
    return JSONResponse(body, status_code=200 if outcome is CancelOutcome.CANCELLED else 202)


def _sse(event_id: str, event: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _job_events(services: Services, job_id: str, last_id: str, base_url: str) -> AsyncIterator[str]:
    async for event in follow_events(services.aredis, job_id, last_id):
        if event is None:
            yield ": keep-alive\n\n"
            continue
        payload = dict(event.data)
        if event.event == "status":
            record = await fetch_job(services.aredis, job_id)
            payload["job"] = job_to_api(record, base_url) if record else None
        yield _sse(event.id, event.event, {"job_id": job_id, **payload})


@router.get(
    "/jobs/{job_id}/events",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    response_class=StreamingResponse,
    summary="Live status and progress (Server-Sent Events)",
    description="Events `status` (with the whole job) and `progress` (`done`, `total`), from the job's creation "
    "(or after `Last-Event-ID` on reconnect), ending with the terminal status event.",
)
async def job_events(job_id: str, request: Request, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    await load_job(services, job_id, caller)
    last_id = request.headers.get("last-event-id", "").strip()
    if not _STREAM_ID.match(last_id):
        last_id = "0-0"
    return StreamingResponse(
        _job_events(services, job_id, last_id, str(request.base_url)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/jobs/{job_id}/webhooks",
    response_model=WebhookEventList,
    responses=ERROR_RESPONSES,
    summary="A job's webhook events and every delivery attempt",
)
async def job_webhooks(job_id: str, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    await load_job(services, job_id, caller)
    store = WebhookEventStore(services.redis)
    found = await run_in_threadpool(store.for_job, job_id)
    return {"events": [event_to_api(event, attempts) for event, attempts in found]}

"""Health and languages."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.deps import ServicesDep
from gateway.language_detection import detectable_codes
from gateway.schemas import HealthOut, LanguagesOut
from gateway.services import Services
from shared.languages import TEXT_ALIASES, LanguageSupport, language_name
from shared.tasks import Task
from shared.workers import Heartbeat

router = APIRouter(prefix="/api/v1", tags=["service"])


def package_version() -> str:
    try:
        return version("seamlessm4t-api")
    except PackageNotFoundError:
        return "unknown"


def _check(services: Services) -> tuple[dict[str, str], list[Heartbeat], int | None]:
    checks: dict[str, str] = {}
    beats: list[Heartbeat] = []
    depth: int | None = None
    try:
        services.redis.ping()
        beats = services.registry.alive()
        depth = services.store.queued_count()
        checks["redis"] = "ok"
    except Exception:  # noqa: BLE001 - health reports the outage instead of failing
        checks["redis"] = "unreachable"
    try:
        services.storage.ping()
        checks["storage"] = "ok"
    except Exception:  # noqa: BLE001 - health reports the outage instead of failing
        checks["storage"] = "unreachable"
    return checks, beats, depth


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Redis or storage unreachable"}},
    summary="Service health",
)
async def health(services: ServicesDep) -> JSONResponse:
    checks, beats, depth = await run_in_threadpool(_check, services)
    inference = [b for b in beats if b.role == "inference" and b.model_loaded]
    if any(v != "ok" for v in checks.values()):
        status = "unhealthy"
    elif not inference:
        status = "degraded"
    else:
        status = "healthy"
    checks["workers"] = f"{len(inference)} alive"
    first = inference[0] if inference else None
    gpu = next((b.gpu_memory for b in inference if b.gpu_memory), None)
    now = time.time()
    services_health = {
        task.value: {
            "model_loaded": any(task.value in b.tasks for b in inference),
            "device": next((b.device for b in inference if task.value in b.tasks), None),
            "workers": sum(1 for b in inference if task.value in b.tasks),
        }
        for task in Task
    }
    body: dict[str, Any] = {
        "status": status,
        "model_loaded": bool(inference),
        "device": first.device if first else None,
        "gpu_available": any(b.gpu_available for b in inference),
        "gpu_memory": gpu.model_dump() if gpu else None,
        "services": services_health,
        "workers": [
            {
                "name": b.name,
                "device": b.device,
                "model": b.model,
                "dtype": b.dtype,
                "gpu_memory": b.gpu_memory.model_dump() if b.gpu_memory else None,
                "jobs_done": b.jobs_done,
                "jobs_failed": b.jobs_failed,
                "current_job": b.current_job,
                "jobs_in_flight": b.jobs_in_flight,
                "job_slots": b.job_slots,
                "units_waiting": b.units_waiting,
                "mean_batch_items": b.mean_batch_items,
                "last_error": b.last_error,
                "seen_s_ago": round(max(0.0, now - b.seen_at), 1),
            }
            for b in inference
        ],
        "queue_depth": depth,
        "checks": checks,
        "version": package_version(),
    }
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


def _listing(codes: frozenset[str]) -> list[dict[str, str]]:
    return [{"code": code, "name": language_name(code)} for code in sorted(codes)]


def languages_body(support: LanguageSupport, from_model: bool, *, detection: bool) -> dict[str, Any]:
    return {
        "from_model": from_model,
        "modalities": {
            "speech_input": _listing(support.speech_input),
            "text_input": _listing(support.text),
            "text_output": _listing(support.text),
            "speech_output": _listing(support.speech_output),
        },
        "detectable": _listing(detectable_codes() & support.text) if detection else [],
        "tasks": {
            task.value: {
                "source": "speech_input" if task.speech_input else "text_input",
                "target": "speech_output" if task.speech_output else "text_output",
                "source_required": not task.speech_input,
                "sources": sorted(support.sources(task)),
                "targets": sorted(support.targets(task)),
            }
            for task in Task
        },
        "aliases": dict(TEXT_ALIASES),
    }


@router.get("/languages", response_model=LanguagesOut, summary="Supported languages per modality and task")
async def languages(services: ServicesDep) -> dict[str, Any]:
    support, from_model = await run_in_threadpool(services.languages)
    return languages_body(support, from_model, detection=services.detector is not None)

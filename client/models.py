"""Typed results: plain frozen dataclasses built from the API's JSON. Each keeps the JSON it came from in ``raw``, so
fields the server adds later are still reachable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int = 0
    fraction: float = 0.0

    @classmethod
    def from_api(cls, data: dict[str, Any] | None) -> Progress:
        data = data or {}
        return cls(int(data.get("done", 0)), int(data.get("total", 0)), float(data.get("fraction", 0.0)))


@dataclass(frozen=True)
class AudioInfo:
    url: str
    format: str
    sample_rate: int
    duration_s: float

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AudioInfo:
        return cls(str(data["url"]), str(data["format"]), int(data["sample_rate"]), float(data["duration_s"]))


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    output_start_s: float | None = None
    output_end_s: float | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Segment:
        return cls(
            float(data["start_s"]),
            float(data["end_s"]),
            str(data.get("text", "")),
            _opt_float(data.get("output_start_s")),
            _opt_float(data.get("output_end_s")),
        )


@dataclass(frozen=True)
class Result:
    text: str
    audio: AudioInfo | None = None
    segments: list[Segment] | None = None
    """Speech input only: the source segments with their translations, in order."""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Result:
        audio = data.get("audio")
        segments = data.get("segments")
        return cls(
            str(data.get("text", "")),
            AudioInfo.from_api(audio) if audio else None,
            [Segment.from_api(s) for s in segments] if segments is not None else None,
        )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as the API shows it (``GET /api/v1/jobs/{id}``)."""

    id: str
    task: str
    status: str
    """``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
    src_lang: str | None
    """As submitted: ``"auto"`` when the server detected the text's language (then see ``detected_src_lang``)."""
    tgt_lang: str
    options: dict[str, Any]
    input: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: Progress
    result: Result | None
    error: JobError | None
    queue_position: int | None
    cancel_requested: bool
    webhook_url: str | None
    expires_at: str | None
    timings: dict[str, float]
    links: dict[str, str]
    priority: str = "normal"
    detected_src_lang: str | None = None
    """For ``src_lang="auto"``: the language the server detected, which the job is translated from."""
    detected_src_lang_confidence: float | None = None
    replayed: bool = False
    """True when a submission with an ``Idempotency-Key`` returned an existing job."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any], *, replayed: bool = False) -> Job:
        error = data.get("error")
        result = data.get("result")
        position = data.get("queue_position")
        return cls(
            id=str(data["id"]),
            task=str(data["task"]),
            status=str(data["status"]),
            src_lang=_opt_str(data.get("src_lang")),
            detected_src_lang=_opt_str(data.get("detected_src_lang")),
            detected_src_lang_confidence=_opt_float(data.get("detected_src_lang_confidence")),
            tgt_lang=str(data.get("tgt_lang", "")),
            options=dict(data.get("options") or {}),
            input=dict(data.get("input") or {}),
            created_at=str(data.get("created_at", "")),
            started_at=_opt_str(data.get("started_at")),
            finished_at=_opt_str(data.get("finished_at")),
            progress=Progress.from_api(data.get("progress")),
            result=Result.from_api(result) if result else None,
            error=JobError(str(error["code"]), str(error.get("message", ""))) if error else None,
            queue_position=int(position) if position is not None else None,
            cancel_requested=bool(data.get("cancel_requested", False)),
            priority=str(data.get("priority") or "normal"),
            webhook_url=_opt_str(data.get("webhook_url")),
            expires_at=_opt_str(data.get("expires_at")),
            timings={str(k): float(v) for k, v in (data.get("timings") or {}).items()},
            links={str(k): str(v) for k, v in (data.get("links") or {}).items()},
            replayed=replayed,
            raw=data,
        )

    @property
    def terminal(self) -> bool:
        """The job has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def text(self) -> str | None:
        """The translated text of a succeeded job."""
        return self.result.text if self.result else None

    @property
    def speech_input(self) -> bool:
        return self.task.startswith("s2")

    @property
    def speech_output(self) -> bool:
        return self.task.endswith("st")


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of ``GET /api/v1/jobs/{id}/events``: ``status`` (with the whole job), ``progress``
    (``done``, ``total``), or another type the server may add (``cancel_requested``)."""

    id: str
    type: str
    data: dict[str, Any]

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return str(value) if value is not None else None

    @property
    def terminal(self) -> bool:
        return self.type == "status" and self.status in TERMINAL_STATUSES

    @property
    def job(self) -> Job | None:
        data = self.data.get("job")
        return Job.from_api(data) if isinstance(data, dict) else None

    @property
    def done(self) -> int | None:
        value = self.data.get("done")
        return int(value) if value is not None else None

    @property
    def total(self) -> int | None:
        value = self.data.get("total")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class WebhookAttempt:
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class WebhookEvent:
    """A job's webhook event (``id`` is the ``webhook-id`` header) and every delivery attempt."""

    id: str
    type: str
    url: str
    status: str
    """``pending``, ``delivered``, ``failed`` or ``stopped``."""
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None
    attempts: list[WebhookAttempt]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> WebhookEvent:
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            url=str(data["url"]),
            status=str(data["status"]),
            created_at=str(data["created_at"]),
            delivered_at=_opt_str(data.get("delivered_at")),
            next_attempt_at=_opt_str(data.get("next_attempt_at")),
            attempts=[
                WebhookAttempt(
                    str(a["at"]),
                    int(a["status_code"]) if a.get("status_code") is not None else None,
                    _opt_str(a.get("error")),
                    float(a.get("duration_ms", 0.0)),
                )
                for a in data.get("attempts") or []
            ],
        )


@dataclass(frozen=True)
class Health:
    """``GET /api/v1/health``: ``status`` is ``healthy``, ``degraded`` (no worker) or ``unhealthy`` (Redis or
    storage unreachable; the server answers 503, which the client returns rather than raises)."""

    status: str
    model_loaded: bool
    device: str | None
    gpu_available: bool
    queue_depth: int | None
    checks: dict[str, str]
    workers: list[dict[str, Any]]
    services: dict[str, dict[str, Any]]
    version: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Health:
        depth = data.get("queue_depth")
        return cls(
            status=str(data["status"]),
            model_loaded=bool(data.get("model_loaded", False)),
            device=_opt_str(data.get("device")),
            gpu_available=bool(data.get("gpu_available", False)),
            queue_depth=int(depth) if depth is not None else None,
            checks={str(k): str(v) for k, v in (data.get("checks") or {}).items()},
            workers=list(data.get("workers") or []),
            services=dict(data.get("services") or {}),
            version=str(data.get("version", "")),
            raw=data,
        )

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


@dataclass(frozen=True)
class Language:
    code: str
    name: str


@dataclass(frozen=True)
class TaskLanguages:
    source: str
    target: str
    source_required: bool
    sources: list[str]
    targets: list[str]


@dataclass(frozen=True)
class Languages:
    """``GET /api/v1/languages``: codes per modality (``speech_input``, ``text_input``, ``text_output``,
    ``speech_output``) and per task."""

    from_model: bool
    modalities: dict[str, list[Language]]
    tasks: dict[str, TaskLanguages]
    aliases: dict[str, str]
    detectable: list[Language] = field(default_factory=list)
    """Text languages ``src_lang="auto"`` can detect (empty when the server does not detect)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Languages:
        return cls(
            from_model=bool(data.get("from_model", False)),
            modalities={
                str(name): [Language(str(item["code"]), str(item["name"])) for item in items]
                for name, items in (data.get("modalities") or {}).items()
            },
            tasks={
                str(name): TaskLanguages(
                    str(t["source"]),
                    str(t["target"]),
                    bool(t["source_required"]),
                    [str(c) for c in t["sources"]],
                    [str(c) for c in t["targets"]],
                )
                for name, t in (data.get("tasks") or {}).items()
            },
            aliases={str(k): str(v) for k, v in (data.get("aliases") or {}).items()},
            detectable=[Language(str(item["code"]), str(item["name"])) for item in data.get("detectable") or []],
            raw=data,
        )

    def targets(self, task: str) -> list[str]:
        """The target codes of a task (``s2st`` ...)."""
        return self.tasks[task].targets if task in self.tasks else []

"""Request and response models of the public API (they are also its OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.priority import Priority

# The names of shared.audio_encode.OUTPUT_FORMATS (a test keeps them equal).
OutputFormat = Literal["wav", "flac", "ogg", "mp3", "opus", "aac", "pcm"]
TextTask = Literal["t2tt", "t2st"]
SpeechTask = Literal["s2st", "s2tt"]
JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class JobOptions(_Strict):
    speaker_id: int | None = Field(default=None, ge=0, le=10_000, description="Vocoder voice (speech output)")
    output_format: OutputFormat = Field(
        default="wav",
        description="Audio format of speech output: wav (16-bit PCM), flac, ogg (Vorbis), mp3, opus (Ogg Opus), "
        "aac (AAC in .m4a) or pcm (raw 16-bit little-endian mono at the result's sample_rate, no header)",
    )
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="POSTed a signed event when the job succeeds, fails or is cancelled"
    )
    priority: Priority = Field(
        default=Priority.NORMAL,
        description="high, normal or low: orders work in the queue and inside a worker (up to the API key's maximum)",
    )

    @field_validator("speaker_id", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # Lax mode would take JSON true/false as 1/0 (form values stay strings, which lax mode needs).
        if isinstance(value, bool):
            raise ValueError("Input should be a valid integer, not a boolean")
        return value


class TextJobRequest(JobOptions):
    """``POST /api/v1/jobs`` with a JSON body: a text-input job."""

    task: TextTask
    text: str = Field(description="Text to translate")
    src_lang: str = Field(
        min_length=1,
        max_length=16,
        description='Source language code, e.g. fra, or "auto": the gateway detects it (GET /api/v1/languages '
        "lists which it can; 422 `language_not_detected` when it cannot tell)",
    )
    tgt_lang: str = Field(min_length=1, max_length=16, description="Target language code, e.g. eng")


class SpeechJobForm(JobOptions):
    """``POST /api/v1/jobs`` as multipart form: a speech-input job (the file goes in ``audio_file``)."""

    task: SpeechTask
    src_lang: str | None = Field(
        default=None, max_length=16, description='Optional: speech needs no source language ("auto" is taken as none)'
    )
    tgt_lang: str = Field(min_length=1, max_length=16)


class SeedTextRequest(JobOptions):
    """The seed API's text body: ``{"text": ..., "src_lang": ..., "tgt_lang": ...}``."""

    text: str
    src_lang: str = Field(min_length=1, max_length=16, description='Source language code, or "auto" (detected)')
    tgt_lang: str = Field(min_length=1, max_length=16)


class SeedSpeechForm(JobOptions):
    src_lang: str | None = Field(default=None, max_length=16)
    tgt_lang: str = Field(min_length=1, max_length=16)


# Responses ---------------------------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    valid: list[str] | None = None
    job_id: str | None = None
    limit: float | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    job_id: str | None = Field(default=None, description="The job behind the call, when there is one")


class OpenAIErrorBody(BaseModel):
    """OpenAI's error body, on /v1."""

    error: OpenAIErrorDetail


class Progress(BaseModel):
    done: int
    total: int
    fraction: float


class AudioResult(BaseModel):
    url: str
    format: str = Field(
        description="An `output_format`; jobs made by `/v1/audio/speech` also have `aac_adts` (raw ADTS AAC) and "
        "`pcm_24k` (raw 16-bit mono at 24 kHz), OpenAI's `aac` and `pcm`"
    )
    sample_rate: int
    duration_s: float


class Segment(BaseModel):
    start_s: float = Field(description="Start in the source audio (seconds)")
    end_s: float = Field(description="End in the source audio (seconds)")
    text: str
    output_start_s: float | None = Field(default=None, description="Start in the output audio (speech output)")
    output_end_s: float | None = Field(default=None, description="End in the output audio (speech output)")
    tokens: list[int] | None = Field(default=None, description="Text output (s2tt): the generated token ids")
    avg_logprob: float | None = Field(
        default=None, description="Text output (s2tt): mean log-probability of the generated tokens"
    )


class JobResult(BaseModel):
    text: str
    audio: AudioResult | None = None
    segments: list[Segment] | None = Field(default=None, description="Speech input: the segments, in order")


class JobErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    task: Literal["s2st", "s2tt", "t2st", "t2tt"]
    status: JobStatusName
    src_lang: str | None = Field(description="As submitted: `auto` when the gateway detected the text's language")
    detected_src_lang: str | None = Field(
        default=None, description='`src_lang: "auto"`: the detected language, which the job is translated from'
    )
    detected_src_lang_confidence: float | None = Field(
        default=None, description="The detector's confidence in `detected_src_lang` (0-1)"
    )
    tgt_lang: str
    options: dict[str, Any]
    input: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: Progress
    result: JobResult | None
    error: JobErrorOut | None
    priority: Priority = Field(default=Priority.NORMAL, description="high, normal or low")
    queue_position: int | None = Field(
        default=None, description="Queued jobs: how many jobs would run before this one, plus one (1 = next to run)"
    )
    cancel_requested: bool = False
    webhook_url: str | None = None
    expires_at: str
    timings: dict[str, float] = Field(
        description="queued_s (waiting for a worker), run_s (on the worker), engine_s (in the model)"
    )
    links: dict[str, str]


class LanguageOut(BaseModel):
    code: str
    name: str


class TaskLanguages(BaseModel):
    source: Literal["speech_input", "text_input"]
    target: Literal["text_output", "speech_output"]
    source_required: bool
    sources: list[str]
    targets: list[str]


class LanguagesOut(BaseModel):
    from_model: bool = Field(description="True when the lists come from a loaded model (a worker reported them)")
    modalities: dict[str, list[LanguageOut]]
    detectable: list[LanguageOut] = Field(
        description='Text input languages `src_lang: "auto"` can detect (empty when detection is off)'
    )
    tasks: dict[str, TaskLanguages]
    aliases: dict[str, str]


class GpuMemoryOut(BaseModel):
    total: float
    free: float
    used: float


class ServiceHealth(BaseModel):
    model_loaded: bool
    device: str | None
    workers: int


class WorkerOut(BaseModel):
    name: str
    device: str
    model: str
    dtype: str
    gpu_memory: GpuMemoryOut | None
    jobs_done: int
    jobs_failed: int
    current_job: str | None
    jobs_in_flight: int = Field(description="Jobs the worker holds now; their units share generate calls")
    job_slots: int = Field(description="Most jobs it may hold (M4T_WORKER_JOBS + M4T_WORKER_HIGH_SLOTS)")
    units_waiting: int = Field(description="Units (text chunks, speech segments) queued for the model")
    mean_batch_items: float | None = Field(description="Mean items per generate call over the last minute")
    last_error: str | None
    seen_s_ago: float


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    model_loaded: bool
    device: str | None
    gpu_available: bool
    gpu_memory: GpuMemoryOut | None
    services: dict[str, ServiceHealth]
    workers: list[WorkerOut]
    queue_depth: int | None = Field(description="Jobs waiting for a worker")
    checks: dict[str, str]
    version: str


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class WebhookAttemptOut(BaseModel):
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookEventOut(BaseModel):
    id: str = Field(description="The `webhook-id` header: stable across retries")
    type: str
    url: str
    status: Literal["pending", "delivered", "failed", "stopped"]
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None
    attempts: list[WebhookAttemptOut]


class WebhookEventList(BaseModel):
    events: list[WebhookEventOut]

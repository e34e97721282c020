"""Settings, read once per process from ``M4T_*`` environment variables (or a ``.env`` file) and passed in.

One class per process kind, built on a shared base: ``GatewaySettings`` for the API, ``WorkerSettings`` for the
inference worker, ``ServeSettings`` for ``m4t serve`` (the one-machine stack, which needs both). Every field has
a docstring: ``m4t settings`` prints them as the README's table.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.iso639 import to_m4t_code
from shared.languages import CHECKPOINT_TEXT_LANGS, TEXT_ALIASES

WRITTEN_LANGS = frozenset(CHECKPOINT_TEXT_LANGS) | frozenset(TEXT_ALIASES)

DEFAULT_MODEL = "facebook/seamless-m4t-v2-large"


class CommonSettings(BaseSettings):
    """What every process needs: where Redis and storage are, and how jobs live."""

    model_config = SettingsConfigDict(
        env_prefix="M4T_",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis: the Celery broker, the job store and worker heartbeats."""

    data_dir: Path = Path("data")
    """Local state folder: the embedded Redis, local storage and the tiny model's cache live under it."""

    storage_url: str = ""
    """Where audio and results go: `s3://bucket` (MinIO/S3) or `file:///path`. Empty: `file://<data_dir>/storage`."""

    s3_endpoint: str | None = None
    """S3/MinIO endpoint as `host:port` (for `s3://` storage)."""

    s3_access_key: str | None = None
    """S3/MinIO access key."""

    s3_secret_key: str | None = None
    """S3/MinIO secret key."""

    s3_secure: bool = False
    """Use TLS to reach S3/MinIO."""

    s3_region: str | None = None
    """S3 region, when the server needs one."""

    inference_queue: str = "m4t.inference"
    """Celery queue of inference jobs; only model workers consume it."""

    result_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    """How long job records and their files are kept after creation (seconds)."""

    job_lease_s: float = Field(default=30.0, gt=0)
    """A running job's lease: a worker renews it while it works; when it lapses the job is requeued (seconds)."""

    visibility_timeout_s: int = Field(default=6 * 3600, ge=1)
    """Redis broker visibility timeout: larger than the longest job, so Celery never hands a live job to a
    second worker. Crashed workers' jobs come back through the job lease instead (seconds)."""

    max_attempts: int = Field(default=3, ge=1)
    """How many times a job may be started before it fails (crash-loop guard): with the last transient error's
    code (e.g. `storage_unavailable`), else `too_many_attempts`."""

    retry_delay_s: float = Field(default=10.0, gt=0)
    """First delay before a job that hit a transient failure (storage unreachable) runs again; doubles each time."""

    max_audio_s: float = Field(default=4 * 3600.0, gt=0)
    """Longest audio accepted (seconds). The gateway refuses longer files (413) from their container's length, or
    from a scan of their packets where the container states none; the worker stops decoding any file at this
    length and fails the job with `audio_too_long` (a header can understate the length)."""

    api_host: str = "127.0.0.1"
    """Address the API binds to."""

    api_port: int = Field(default=8000, validation_alias=AliasChoices("M4T_API_PORT", "FASTAPI_PORT"))
    """Port of the API."""

    gone_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    """After a job expires, how long its id still answers 410 Gone (then 404) (seconds)."""

    webhook_secrets: str = ""
    """Webhook signing secrets, `whsec_...`, comma-separated: events are signed with every one (rotation).
    Empty: `m4t serve` generates one (kept in `<data_dir>/webhook_secret`); elsewhere webhooks are refused."""

    webhook_allow_hosts: str = ""
    """Webhook hosts or CIDRs allowed even though they are private or loopback (e.g. `receiver.internal,10.0.0.0/8`)."""

    webhook_queue: str = "m4t.webhooks"
    """Celery queue of webhook deliveries; only `m4t worker --role webhooks` consumes it."""

    webhook_timeout_s: float = Field(default=15.0, gt=0)
    """Timeout of one webhook delivery attempt (seconds)."""

    webhook_retry_schedule_s: str = "5,300,1800,7200,18000,36000"
    """Delays before each webhook retry (seconds, ±10% jitter); after the last, the event is marked failed."""

    public_url: str = ""
    """Base URL clients reach the API at, for links in webhook events (default `http://<api_host>:<api_port>`)."""

    sweep_interval_s: float = Field(default=60.0, gt=0)
    """How often the webhook worker deletes the stored files of expired jobs (seconds)."""

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"http://{host}:{self.api_port}"

    @property
    def retry_schedule(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule_s.replace(" ", "").split(",") if part)

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"file://{(self.data_dir / 'storage').resolve()}"


class GatewaySettings(CommonSettings):
    """The FastAPI gateway."""

    auth: Literal["auto", "on", "off"] = "auto"
    """API keys on every /api/v1 endpoint but health and languages: `on`, `off`, or `auto` (on unless the API binds
    to loopback only). docker-compose sets `on`."""

    max_queue: int = Field(default=5000, ge=1)
    """When more jobs than this are queued, submissions get 503 `queue_full` with Retry-After instead of piling up."""

    max_upload_mb: float = Field(default=500.0, gt=0)
    """Largest audio upload accepted (MiB); bigger uploads are refused with 413 while streaming."""

    max_text_chars: int = Field(
        default=200_000, ge=1, validation_alias=AliasChoices("M4T_MAX_TEXT_CHARS", "MAX_TEXT_LENGTH")
    )
    """Longest text accepted (characters)."""

    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    """How long an `Idempotency-Key` is remembered (seconds)."""

    ui_mount: bool = False
    """Also serve the web UI (Gradio, the `ui` extra) at `/ui` of the API: one port for everything."""

    ui_api_key: str | None = None
    """API key the web UI sends when the visitor types none. Whoever can open the UI acts with this key; empty:
    visitors type their own (none needed while auth is off)."""

    api_processes: int = Field(default=1, ge=1)
    """Gateway processes serving the API port (uvicorn workers): one process keeps one core busy at 130-210 text
    submissions/s (measured on 2 shared cores); give it more where there are more cores. Each loads its own language
    detector (`M4T_DETECT_ACCURACY`). Not with `M4T_UI_MOUNT`."""

    detect_accuracy: Literal["high", "low", "off"] = "high"
    """Language detection for `src_lang: "auto"` (text input): lingua's `high` accuracy mode (right on short
    sentences; 1.2 GiB in each gateway process, 7-26 s of a core to load at start-up), `low` (0.13 GiB, 1 s; wrong on
    some text under ~120 characters) or `off` ("auto" is refused). Measured with bench/detect.py."""

    detect_min_confidence: float = Field(default=0.5, ge=0, le=1)
    """The least confidence (0-1) at which `src_lang: "auto"` takes the detected language; below it the submission
    gets 422 `language_not_detected`."""

    sync_wait_s: float = Field(default=60.0, ge=0)
    """How long the seed-compatible endpoints (`/api/v1/s2st` ...) wait for the result before answering 202."""

    openai_wait_s: float = Field(default=570.0, gt=0, le=3600)
    """How long a call to the OpenAI-compatible API (`/v1/audio/...`) waits for its job before answering 504 with the
    job's id (then fetch it from `/api/v1/jobs/{id}`). Below the official SDK's own 600 s timeout."""

    default_transcribe_lang: str | None = None
    """The spoken language assumed by `/v1/audio/transcriptions` when a request names none (ISO 639-1 like `fr`, or a
    SeamlessM4T code). Unset: such a request gets 400 naming `language`. Open WebUI, for one, sends no language."""

    @field_validator("default_transcribe_lang")
    @classmethod
    def _check_transcribe_lang(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if to_m4t_code(value) not in WRITTEN_LANGS:
            raise ValueError(
                f"'{value}' is not a language SeamlessM4T writes (an ISO 639-1 code like 'fr', or its own like 'fra')"
            )
        return value.strip()

    @property
    def auth_enabled(self) -> bool:
        if self.auth == "auto":
            return self.api_host not in ("127.0.0.1", "localhost", "::1")
        return self.auth == "on"


class WorkerSettings(CommonSettings):
    """An inference worker: one resident model on one device."""

    model: str = Field(default=DEFAULT_MODEL, validation_alias=AliasChoices("M4T_MODEL", "MODEL_NAME"))
    """Model to load: a hub id, a local folder, or `tiny` (a small random checkpoint built locally, for demos)."""

    device: str = "auto"
    """`auto` (cuda if available, else cpu), `cpu`, `cuda` or `cuda:N`."""

    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """`auto`: fp16 on CUDA; on CPU bf16 where the CPU computes it natively (AVX512-BF16, AMX), else fp32. Or
    `fp32`, `fp16`, `bf16`."""

    num_threads: int | None = Field(default=None, ge=1)
    """CPU threads for torch (default: torch's own choice)."""

    batch_size: int = Field(default=8, ge=1)
    """Most items (segments, chunks) per generate call, from any of the jobs in flight."""

    worker_jobs: int = Field(default=32, ge=1)
    """Most normal- and low-priority jobs one worker holds at once; their units share generate calls."""

    worker_high_slots: int = Field(default=2, ge=0)
    """Extra job slots kept for `high` jobs, so one starts at once even when every other slot holds a long job."""

    batch_max_tokens: int = Field(default=2048, ge=16)
    """Size budget of a text-input generate call: items x longest input (tokens)."""

    batch_max_audio_s: float = Field(default=160.0, gt=0)
    """Size budget of a speech-input generate call: items x longest segment (seconds of audio)."""

    batch_wait_ms: float = Field(default=5.0, ge=0)
    """When the next generate call is not full, wait at least this long for more units (milliseconds); never
    while a full call is queued."""

    batch_wait_fraction: float = Field(default=0.1, ge=0, le=1)
    """A call that is not full waits up to this share of the recent duration of a generate call of the same
    kind, when that is longer than M4T_BATCH_WAIT_MS: jobs sent together reach the worker over a spread of time,
    and the ones that miss a call wait a whole call. 0 turns it off (a lone job then starts sooner)."""

    job_batch_share: float = Field(default=0.5, gt=0, le=1)
    """Largest share of one generate call that a single job may take while other jobs' units wait."""

    ageing_s: float = Field(default=30.0, gt=0)
    """A waiting job gains one priority level per this many seconds waited, so low and long jobs always move."""

    prep_concurrency: int = Field(default=2, ge=1)
    """Jobs decoding audio, running the VAD or splitting text at the same time (alongside the model)."""

    shutdown_grace_s: float = Field(default=30.0, gt=0)
    """On SIGTERM: finish the generate call on the device, hand every unfinished job back to the queue, and exit
    within this many seconds (below docker-compose's `stop_grace_period` and systemd's `TimeoutStopSec`: 45 s)."""

    segment_max_s: float = Field(default=20.0, ge=2.0, le=60.0)
    """Longest speech segment given to the model (seconds): long audio is cut at pauses into segments this long at
    most (Meta's advice: 15-20 s; the speech encoder has 4096 positions)."""

    text_chunk_tokens: int = Field(default=160, ge=16, le=1000)
    """Token budget of one text chunk: long text is split into sentences packed into chunks this long at most."""

    max_output_pause_s: float = Field(default=2.0, ge=0)
    """Longest pause kept between translated speech segments in speech output (seconds)."""

    text_num_beams: int = Field(default=5, ge=1)
    """Beam size of text decoding (Meta's `m4t_predict` default: 5)."""

    no_repeat_ngram_size: int = Field(default=0, ge=0)
    """Block repeated n-grams of this size in text decoding; 0 = off (Meta's default; 4 when turned on there)."""

    max_len_a: float = Field(default=1.0, ge=0)
    """Text output length bound `a * source_length + b` (Meta's `max_len_a`: 1)."""

    max_len_b: int = Field(default=200, ge=1)
    """Text output length bound `a * source_length + b` (Meta's `max_len_b`: 200)."""

    max_new_tokens: int = Field(default=1024, ge=1)
    """Hard cap on generated text tokens per item, whatever the input length."""

    default_speaker_id: int = Field(default=0, ge=0)
    """Vocoder speaker used when a request names none."""

    gpu_cleanup_interval: int = Field(
        default=5, ge=0, validation_alias=AliasChoices("M4T_GPU_CLEANUP_INTERVAL", "GPU_CLEANUP_INTERVAL")
    )
    """Empty the CUDA cache every N jobs (0 = never)."""

    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """How often a worker publishes its heartbeat (seconds)."""

    fault_oom_over_items: int | None = Field(default=None, ge=0)
    """TEST HOOK, never in production: the engine raises CUDA out-of-memory for batches of more items than this."""

    fault_oom_marker: str | None = None
    """TEST HOOK, never in production: the engine raises CUDA out-of-memory on text containing this marker."""

    fault_crash_marker: str | None = None
    """TEST HOOK, never in production: the worker kills itself on text containing this marker."""

    fault_slow_batch_s: float | None = Field(default=None, ge=0)
    """TEST HOOK, never in production: every batch waits this long first (a slow GPU, on demand)."""

    worker_name: str = Field(default_factory=lambda: f"worker@{socket.gethostname()}")
    """Name of this worker in heartbeats and Flower."""

    use_gpu: bool | None = Field(default=None, validation_alias=AliasChoices("M4T_USE_GPU", "USE_GPU"))
    """The seed's `USE_GPU`: false forces `M4T_DEVICE=cpu` (prefer M4T_DEVICE)."""

    @model_validator(mode="after")
    def _apply_use_gpu(self) -> WorkerSettings:
        if self.use_gpu is False and self.device == "auto":
            object.__setattr__(self, "device", "cpu")
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"


class ServeSettings(GatewaySettings, WorkerSettings):
    """`m4t serve`: the whole stack on one machine."""

    ui_port: int = Field(default=7860, ge=0, le=65535)
    """Port of the web UI `m4t serve` starts (0: none; none either when `M4T_UI_MOUNT` serves it at `/ui`)."""

    flower_port: int = 5555
    """Port of Flower (Celery monitoring)."""

    flower_user: str = "admin"
    """Flower basic-auth user."""

    flower_password: str | None = None
    """Flower basic-auth password (generated and printed at start-up when empty)."""


SETTINGS_CLASSES: tuple[type[CommonSettings], ...] = (
    CommonSettings,
    GatewaySettings,
    WorkerSettings,
    ServeSettings,
)

"""A Python client of the seamlessm4t-api HTTP API (needs only httpx).

```python
from client import Client, JobFailed

with Client("http://localhost:8000", api_key=None) as m4t:
    job = m4t.translate_speech("talk.flac", tgt_lang="eng")      # submit, then wait (SSE, else polling)
    print(job.text)
    print(m4t.subtitles(job, "srt"))
    job = m4t.submit("t2st", text="Bonjour", src_lang="fra", tgt_lang="spa", output_format="mp3")
    m4t.wait(job)                                                  # raises JobFailed if it fails or is cancelled
    m4t.download_audio(job, "hola.mp3")
```

``AsyncClient`` has the same methods for asyncio. Every error is an ``APIError`` with the server's ``code``,
``message`` and HTTP ``status``. ``verify_webhook`` checks the signature of a webhook the service sent.
"""

from client.aio import AsyncClient
from client.errors import (
    APIError,
    Conflict,
    ConnectionFailed,
    Gone,
    InvalidRequest,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    WaitTimeout,
)
from client.models import (
    AudioInfo,
    Event,
    Health,
    Job,
    JobError,
    Language,
    Languages,
    Progress,
    Result,
    Segment,
    TaskLanguages,
    WebhookAttempt,
    WebhookEvent,
)
from client.sync import Client
from client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "APIError",
    "AsyncClient",
    "AudioInfo",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Gone",
    "Health",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobFailed",
    "Language",
    "Languages",
    "NotFound",
    "PayloadTooLarge",
    "Progress",
    "RateLimited",
    "Result",
    "Segment",
    "ServerError",
    "ServiceUnavailable",
    "TaskLanguages",
    "Unauthorized",
    "UnsupportedMediaType",
    "WaitTimeout",
    "WebhookAttempt",
    "WebhookEvent",
    "WebhookVerificationError",
    "verify_webhook",
]

"""``/v1/models``: the loaded model and the OpenAI model names the API accepts (any ``model`` string is accepted
and echoed; these are the ones listed)."""

from __future__ import annotations

from typing import Any, Final

from shared.errors import M4TError

OWNER: Final = "seamlessm4t-api"
CREATED: Final = 1701302400
"""2023-11-30, when SeamlessM4T v2 was published: the ``created`` of every model listed."""

SERVICE_MODEL: Final = "seamless-m4t-v2"
ALIASES: Final = (
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
)
"""OpenAI's audio model names: tools that send them are served by the loaded model."""


class ModelNotFound(M4TError):
    code = "model_not_found"
    status_code = 404


def model_ids(loaded: list[str]) -> list[str]:
    """The loaded model(s) first, then the service's own name, then OpenAI's names."""
    ids: list[str] = []
    for model in [*loaded, SERVICE_MODEL, *ALIASES]:
        if model not in ids:
            ids.append(model)
    return ids


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": OWNER}

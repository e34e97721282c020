"""The request parameters of the OpenAI-compatible routes, as OpenAI names them.

Parameters OpenAI has and this service cannot use are accepted and ignored (documented in the README's table);
unknown ones are ignored too, so tools written for a newer OpenAI API keep working."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData, UploadFile

from gateway.openai_compat.voices import VoiceRef
from shared.errors import InvalidRequest

FILE_FIELD = "file"
TextFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

SPEECH_ENCODINGS: dict[str, str] = {
    "mp3": "mp3",
    "opus": "opus",
    "aac": "aac_adts",  # OpenAI sends raw ADTS AAC (audio/aac), not M4A
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm_24k",  # raw 16-bit little-endian mono at 24 kHz, OpenAI's pcm
}
"""OpenAI's speech ``response_format`` -> the encoding the worker writes (``shared.audio_encode``)."""


class _OpenAIParams(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AudioTextParams(_OpenAIParams):
    """What transcriptions and translations share."""

    model: str = Field(min_length=1, max_length=256, description="Any name: accepted and echoed (see /v1/models)")
    prompt: str | None = Field(default=None, max_length=20_000, description="Accepted and ignored")
    response_format: TextFormat = "json"
    temperature: float = Field(default=0.0, ge=0, le=1, description="Accepted and ignored: decoding is beam search")


class TranscriptionParams(AudioTextParams):
    language: str | None = Field(
        default=None,
        max_length=32,
        description="The spoken language: ISO 639-1 (`fr`) or a SeamlessM4T code (`fra`). Default: "
        "`M4T_DEFAULT_TRANSCRIBE_LANG`; without it, required.",
    )
    timestamp_granularities: list[Literal["segment", "word"]] = Field(
        default_factory=list, max_length=2, description="`segment` only: word timestamps are not available"
    )
    stream: bool = Field(default=False, description="Server-Sent Events, one delta per segment (json and text only)")
    include: list[str] = Field(default_factory=list, max_length=4, description="Accepted and ignored")


class TranslationParams(AudioTextParams):
    target_language: str | None = Field(
        default=None, max_length=32, description="Extension: the language to translate into (default: English)"
    )


class SpeechParams(_OpenAIParams):
    input: str = Field(min_length=1, description="The text to speak")
    model: str = Field(min_length=1, max_length=256, description="Any name: accepted and echoed")
    voice: str | int | VoiceRef = Field(description="An OpenAI voice name, or a vocoder speaker number (0-199)")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="0.25-4.0, by FFmpeg's atempo (pitch kept)")
    instructions: str | None = Field(default=None, max_length=4096, description="Accepted and ignored")
    stream_format: Literal["audio", "sse"] = Field(default="audio", description="`audio` only")
    language: str | None = Field(
        default=None, max_length=32, description="Extension: the language to speak. Default: the text's language"
    )
    source_language: str | None = Field(
        default=None, max_length=32, description="Extension: the language of `input`. Default: detected"
    )


def form_params(form: FormData) -> tuple[dict[str, Any], UploadFile]:
    """The plain fields of an OpenAI multipart form, and its file. ``name[]`` fields (repeatable, as the SDK sends
    lists) become lists under ``name``; any other field may be given once."""
    upload = form.get(FILE_FIELD)
    if not isinstance(upload, UploadFile):
        raise InvalidRequest(f"'{FILE_FIELD}' is required (a file part)", details={"field": FILE_FIELD})
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name == FILE_FIELD:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a plain field, not a file", details={"field": name})
        if name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(value)
            continue
        if name in fields:
            raise InvalidRequest(f"'{name}' is given more than once", details={"field": name})
        if value != "":
            fields[name] = value
    return fields, upload


def multipart_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI schema of a multipart request made of ``model``'s fields and the ``file`` part."""
    schema = model.model_json_schema()
    schema.pop("$defs", None)
    properties = schema["properties"]
    for name in [n for n, prop in properties.items() if prop.get("type") == "array"]:
        properties[f"{name}[]"] = properties.pop(name)  # lists go as repeated `name[]` fields, as the SDK sends them
    properties[FILE_FIELD] = {"type": "string", "format": "binary", "description": "The audio, any container"}
    schema["required"] = [*schema.get("required", []), FILE_FIELD]
    return schema

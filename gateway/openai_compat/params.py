"""The request parameters of the OpenAI-compatible routes, as OpenAI names them.

Parameters OpenAI has and this service cannot use are accepted and ignored (documented in the README's table);
unknown ones are ignored too, so tools written for a newer OpenAI API keep working."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.openai_compat.voices import VoiceRef

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

    model: str = Field(
        min_length=1, max_length=256, description="Any name: accepted, echoed in `x-m4t-model` (see /v1/models)"
    )
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
    languages: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Used when `language` is not given and it names exactly one language",
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
    model: str = Field(min_length=1, max_length=256, description="Any name: accepted, echoed in `x-m4t-model`")
    voice: str | int | VoiceRef = Field(
        description='An OpenAI voice name, a vocoder speaker number (0-199), or `{"id": name or number}`'
    )
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

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_shape(cls, value: Any) -> Any:
        """One error on ``voice`` whatever is wrong with it (a union would report one per member)."""
        if isinstance(value, dict) and isinstance(value.get("id"), str | int) and not isinstance(value["id"], bool):
            return VoiceRef(id=str(value["id"]))
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError('voice must be a voice name, a speaker number or {"id": ...}')
        return value


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

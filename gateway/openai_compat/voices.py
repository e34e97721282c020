"""OpenAI's voice names -> fixed speakers of SeamlessM4T v2's vocoder (``speaker_id``).

SeamlessM4T v2's vocoder has 200 speakers (0-199), none of them named; each OpenAI voice picks one fixed speaker, so
the same voice always sounds the same. A number (``"voice": 17`` or ``"17"``) picks a speaker directly, and so does
``{"id": "17"}``. Numbers above ``MAX_SPEAKER`` are refused here; the worker checks the rest against the loaded
vocoder."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from shared.errors import InvalidRequest

MAX_SPEAKER: Final = 10_000
"""The largest speaker number accepted (as ``speaker_id`` on /api/v1)."""

VOICE_SPEAKERS: Final[dict[str, int]] = {
    "alloy": 0,
    "ash": 1,
    "ballad": 2,
    "coral": 3,
    "echo": 4,
    "fable": 5,
    "onyx": 6,
    "nova": 7,
    "sage": 8,
    "shimmer": 9,
    "verse": 10,
    "marin": 11,
    "cedar": 12,
}


class VoiceRef(BaseModel):
    """OpenAI's custom-voice object: here its ``id`` is a speaker number or a voice name."""

    model_config = ConfigDict(extra="ignore")

    id: str


Voice = str | int | VoiceRef


def speaker_for(voice: Voice) -> int:
    """The vocoder speaker of an OpenAI ``voice`` value."""
    name = voice.id if isinstance(voice, VoiceRef) else voice
    if isinstance(name, int) and not isinstance(name, bool):
        number: int | None = name
    else:
        text = str(name).strip().lower()
        if text in VOICE_SPEAKERS:
            return VOICE_SPEAKERS[text]
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None
    if number is None or not 0 <= number <= MAX_SPEAKER:
        raise InvalidRequest(
            f"voice {name!r} is not one of {', '.join(VOICE_SPEAKERS)} nor a speaker number (0-199 for SeamlessM4T v2)",
            details={"field": "voice", "valid": list(VOICE_SPEAKERS)},
        )
    return number

"""Subtitles (SRT and WebVTT) from a speech job's segments: source start/end seconds and translated text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUBTITLE_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Iterable[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    """Cues in order, without empty texts, never overlapping (a hard cut's overlap is given to the later cue)."""
    cues: list[tuple[float, float, str]] = []
    for segment in segments:
        text = " ".join(str(segment.get("text", "")).split())
        if not text:
            continue
        start, end = float(segment["start_s"]), float(segment["end_s"])
        if cues and start < cues[-1][1]:
            previous = cues[-1]
            cues[-1] = (previous[0], max(previous[0], start), previous[2])
        cues.append((start, max(start, end), text))
    return cues


def to_srt(segments: Iterable[Mapping[str, Any]]) -> str:
    blocks = [
        f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for index, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Mapping[str, Any]]) -> str:
    blocks = ["WEBVTT\n"]
    blocks += [f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n" for start, end, text in _cues(segments)]
    return "\n".join(blocks)

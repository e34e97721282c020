"""The four SeamlessM4T v2 tasks and what goes in and out of each."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    S2ST = "s2st"
    S2TT = "s2tt"
    T2ST = "t2st"
    T2TT = "t2tt"

    @property
    def speech_input(self) -> bool:
        return self in (Task.S2ST, Task.S2TT)

    @property
    def speech_output(self) -> bool:
        return self in (Task.S2ST, Task.T2ST)

    @property
    def description(self) -> str:
        return {
            Task.S2ST: "speech-to-speech translation",
            Task.S2TT: "speech-to-text translation",
            Task.T2ST: "text-to-speech translation",
            Task.T2TT: "text-to-text translation",
        }[self]

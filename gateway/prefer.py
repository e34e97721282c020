"""The ``Prefer`` request header (RFC 7240): ``respond-async`` and ``wait=N``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preferences:
    respond_async: bool = False
    wait_s: float | None = None


def parse_prefer(header: str | None) -> Preferences:
    if not header:
        return Preferences()
    respond_async = False
    wait_s: float | None = None
    for item in header.split(","):
        token = item.split(";")[0].strip().lower()
        name, _, value = token.partition("=")
        if name == "respond-async":
            respond_async = True
        elif name == "wait" and value.strip().isdigit():
            wait_s = float(value.strip())
    return Preferences(respond_async=respond_async, wait_s=wait_s)

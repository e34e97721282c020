"""The languages of OpenAI-style requests: ISO 639-1 codes (``fr``) or SeamlessM4T codes (``fra``), through
``shared.iso639``, checked against what the loaded model reads and speaks. Refusals name the request's own
parameter (``language``, ``target_language``, ``source_language``) and list what it takes."""

from __future__ import annotations

from collections.abc import Iterable

from shared.errors import UnsupportedLanguage
from shared.iso639 import ISO_639_1, to_m4t_code
from shared.languages import TEXT_ALIASES, LanguageSupport


def _iso_codes(codes: Iterable[str]) -> list[str]:
    wanted = set(codes)
    return sorted(iso for iso, code in ISO_639_1.items() if code in wanted or (code == "zsm" and "zlm" in wanted))


def _checked(value: str, allowed: frozenset[str], support: LanguageSupport, *, field: str, what: str) -> str:
    code = support.normalize_text_code(to_m4t_code(value))
    if code in allowed:
        return code
    valid = sorted(allowed)
    raise UnsupportedLanguage(
        f"{field} '{value}' is not a language {what}. Valid: ISO 639-1 codes {' '.join(_iso_codes(valid))}, "
        f"or SeamlessM4T codes {' '.join(valid)}",
        details={"field": field, "valid": valid},
    )


def text_language(value: str, support: LanguageSupport, *, field: str) -> str:
    """A language the model writes (the text of a transcription or a translation)."""
    return _checked(value, support.text, support, field=field, what="the model writes as text")


def spoken_language(value: str, support: LanguageSupport, *, field: str) -> str:
    """A language the model both hears and writes: what a transcription is in."""
    heard_and_written = frozenset(
        code for code in support.text if code in support.speech_input or _alias_of(code) in support.speech_input
    )
    return _checked(value, heard_and_written, support, field=field, what="the model hears and writes")


def _alias_of(code: str) -> str:
    return next((alias for alias, target in TEXT_ALIASES.items() if target == code), code)


def speech_language(value: str, support: LanguageSupport, *, field: str) -> str:
    """One of the languages the model speaks (36 for SeamlessM4T v2)."""
    return _checked(value, support.speech_output, support, field=field, what="the model can speak")

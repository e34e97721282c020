"""The language of text input, for ``src_lang: "auto"``: detected offline by the gateway at submission.

lingua-language-detector does the statistics (its n-gram models ship in its wheel; nothing is downloaded). It
knows 75 languages, 67 of which the model reads as text; ``LINGUA_CODES`` maps them to SeamlessM4T's codes.
Three rules keep it from guessing where it cannot tell:

- Chinese is one language to lingua; ``cmn`` (Simplified) or ``cmn_Hant`` (Traditional) is decided by script,
  with the CC-CEDICT character tables of ``hanzidentifier``: text whose characters are all Simplified gets
  ``cmn``, all Traditional ``cmn_Hant``; text whose characters are the same in both scripts, or mixes the two, is
  refused, and so is text with characters of written Cantonese (``yue``, which lingua does not know).
- Pairs of standard languages written alike (``CONFUSABLE``: Malay and Indonesian, Bokmål and Nynorsk, Bosnian
  and Croatian) are refused whenever the best candidate is one of them: lingua ranks the members of each pair
  within a few tenths of each other even on text that is plainly one of them.
- The best candidate must reach ``min_confidence`` (lingua's relative confidence among its 67 languages), and
  ``SINGLE_WORD_MIN_CONFIDENCE`` when the text is one word: one word shared by several languages is refused.
  Tokens that mix Latin letters with digits (``a8f3``, ``10djd``: codes, not words) are left out first, so a few
  random letters and digits leave too little to go by. A best candidate the loaded model does not read is
  refused, never swapped for the runner-up.

A refusal is ``LanguageNotDetected`` (422 ``language_not_detected``), whose message asks for ``src_lang``.
The worker never needs any of this: the job message carries the detected code.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import hanzidentifier
from lingua import Language, LanguageDetectorBuilder

from shared.errors import LanguageNotDetected
from shared.languages import language_name

PREFIX_CHARS = 3000
"""Detection reads at most this many characters from the start of the text: enough for any language lingua knows,
and it bounds the time one submission spends in the detector (a few milliseconds, see bench/detect.py)."""

SINGLE_WORD_MIN_CONFIDENCE = 0.9
"""The bar for text of one word (or one run of characters without spaces, as Chinese or Thai is written): a word
most languages could hold scores 0.1-0.6, a word in a script only one language uses 1.0 (bench/detect.py)."""

Accuracy = Literal["high", "low"]

LINGUA_CODES: dict[str, str] = {
    "AFRIKAANS": "afr",
    "ARABIC": "arb",  # lingua's Arabic is Modern Standard Arabic; ary and arz are not told apart from it
    "ARMENIAN": "hye",
    "AZERBAIJANI": "azj",
    "BASQUE": "eus",
    "BELARUSIAN": "bel",
    "BENGALI": "ben",
    "BOKMAL": "nob",
    "BOSNIAN": "bos",
    "BULGARIAN": "bul",
    "CATALAN": "cat",
    "CHINESE": "cmn",  # or cmn_Hant, by script
    "CROATIAN": "hrv",
    "CZECH": "ces",
    "DANISH": "dan",
    "DUTCH": "nld",
    "ENGLISH": "eng",
    "ESTONIAN": "est",
    "FINNISH": "fin",
    "FRENCH": "fra",
    "GANDA": "lug",
    "GEORGIAN": "kat",
    "GERMAN": "deu",
    "GREEK": "ell",
    "GUJARATI": "guj",
    "HEBREW": "heb",
    "HINDI": "hin",
    "HUNGARIAN": "hun",
    "ICELANDIC": "isl",
    "INDONESIAN": "ind",
    "IRISH": "gle",
    "ITALIAN": "ita",
    "JAPANESE": "jpn",
    "KAZAKH": "kaz",
    "KOREAN": "kor",
    "LATVIAN": "lvs",
    "LITHUANIAN": "lit",
    "MACEDONIAN": "mkd",
    "MALAY": "zlm",  # Meta's zsm; the checkpoint's token is zlm
    "MARATHI": "mar",
    "MONGOLIAN": "khk",
    "NYNORSK": "nno",
    "PERSIAN": "pes",
    "POLISH": "pol",
    "PORTUGUESE": "por",
    "PUNJABI": "pan",
    "ROMANIAN": "ron",
    "RUSSIAN": "rus",
    "SERBIAN": "srp",
    "SHONA": "sna",
    "SLOVAK": "slk",
    "SLOVENE": "slv",
    "SOMALI": "som",
    "SPANISH": "spa",
    "SWAHILI": "swh",
    "SWEDISH": "swe",
    "TAGALOG": "tgl",
    "TAMIL": "tam",
    "TELUGU": "tel",
    "THAI": "tha",
    "TURKISH": "tur",
    "UKRAINIAN": "ukr",
    "URDU": "urd",
    "VIETNAMESE": "vie",
    "WELSH": "cym",
    "YORUBA": "yor",
    "ZULU": "zul",
}
"""lingua's languages that SeamlessM4T reads as text, by lingua's name. Not here (the model cannot read them):
Albanian, Esperanto, Latin, Maori, Sotho, Tsonga, Tswana, Xhosa."""

CHINESE = "CHINESE"
SIMPLIFIED, TRADITIONAL = "cmn", "cmn_Hant"

CONFUSABLE: tuple[frozenset[str], ...] = (
    frozenset({"ind", "zlm"}),
    frozenset({"nob", "nno"}),
    frozenset({"bos", "hrv"}),
)
"""Languages lingua cannot reliably tell apart (measured: bench/detect.py): never guessed between."""

CANTONESE_CHARACTERS = frozenset("嘅咗喺嗰冇佢啲嚟嘢咩噉")
"""Characters of written Cantonese that Standard Written Chinese does not use (possessive 嘅, perfective 咗, "at"
喺, "that" 嗰, "not have" 冇, "he/she" 佢, plural 啲, "come" 嚟, "thing" 嘢, "what" 咩, "so" 噉): lingua would call
such text Chinese, and its Traditional script ``cmn_Hant``."""

_DISPLAY = {"zlm": "zsm"}  # how a refusal names a code: the one users know from Meta's tables


def detectable_codes() -> frozenset[str]:
    """The codes ``src_lang: "auto"`` can come out as (before restricting them to what the loaded model reads)."""
    mapped = {*LINGUA_CODES.values(), TRADITIONAL}
    return frozenset(mapped - {code for group in CONFUSABLE for code in group})


@dataclass(frozen=True)
class Detection:
    code: str
    """The SeamlessM4T text code the worker translates from."""
    confidence: float
    """lingua's relative confidence in that language, among the languages the model reads (0..1)."""


def words(text: str) -> list[str]:
    """The whitespace-separated tokens that hold a letter, without their edge punctuation, less those mixing Latin
    letters and digits."""
    kept = []
    for token in text.split():
        core = token.strip(string.punctuation)
        if any(ch.isalpha() for ch in core) and not (core.isascii() and any(ch.isdigit() for ch in core)):
            kept.append(core)
    return kept


def _named(codes: Iterable[str]) -> str:
    shown = sorted(_DISPLAY.get(code, code) for code in codes)
    return " or ".join(f"{code} ({language_name(code)})" for code in shown)


def _refuse(why: str, *, valid: Iterable[str] = ()) -> LanguageNotDetected:
    choices = sorted(_DISPLAY.get(code, code) for code in valid)
    return LanguageNotDetected(
        f"{why}; pass src_lang with the text's language code instead of 'auto'",
        details={"field": "src_lang", "valid": choices} if choices else {"field": "src_lang"},
    )


def chinese_script(text: str) -> str:
    """``cmn`` or ``cmn_Hant`` by the characters of ``text``, or ``LanguageNotDetected`` when they cannot tell."""
    if CANTONESE_CHARACTERS.intersection(text):
        raise _refuse("the text is Chinese with characters of written Cantonese", valid=(TRADITIONAL, "yue"))
    identity = hanzidentifier.identify(text)
    if identity == hanzidentifier.SIMPLIFIED:
        return SIMPLIFIED
    if identity == hanzidentifier.TRADITIONAL:
        return TRADITIONAL
    if identity == hanzidentifier.BOTH:
        why = "the text is Chinese, but its characters are the same in Simplified and Traditional script"
    else:
        why = "the text is Chinese, but it mixes Simplified and Traditional characters"
    raise _refuse(why, valid=(SIMPLIFIED, TRADITIONAL))


class TextLanguageDetector:
    """Built once per gateway process at start-up (the models load then: ``preload``), used by every submission
    with ``src_lang: "auto"``; thread-safe."""

    def __init__(self, *, min_confidence: float, accuracy: Accuracy = "high", preload: bool = True) -> None:
        self.min_confidence = min_confidence
        self.accuracy = accuracy
        builder = LanguageDetectorBuilder.from_languages(*(Language.from_str(name) for name in LINGUA_CODES))
        if accuracy == "low":
            builder = builder.with_low_accuracy_mode()
        if preload:
            builder = builder.with_preloaded_language_models()
        self._lingua = builder.build()

    def detect(self, text: str, readable: frozenset[str]) -> Detection:
        """The language of ``text`` (its first ``PREFIX_CHARS`` characters), which must be one of ``readable`` (the
        text codes the loaded model reads), or ``LanguageNotDetected``."""
        kept = words(text[:PREFIX_CHARS])
        prefix = " ".join(kept)
        confidences = {
            LINGUA_CODES[value.language.name]: value.value
            for value in self._lingua.compute_language_confidence_values(prefix)
        }
        if not any(confidences.values()):
            raise _refuse("the text has no words in a script of a language the detector knows")
        code, confidence = max(confidences.items(), key=lambda item: item[1])
        bar = max(self.min_confidence, SINGLE_WORD_MIN_CONFIDENCE) if len(kept) == 1 else self.min_confidence
        group = next((group for group in CONFUSABLE if code in group), None)
        if group is not None and sum(confidences.get(c, 0.0) for c in group) >= bar:
            raise _refuse(f"the text is {_named(group)}, which cannot be told apart reliably", valid=group)
        if confidence < bar:
            runner_up = sorted(confidences, key=confidences.__getitem__, reverse=True)[1:2]
            shown = f"{_named([code])} at {confidence:.2f}" + (f", then {_named(runner_up)}" if runner_up else "")
            one_word = " for one word" if len(kept) == 1 else ""
            raise _refuse(
                f"the text's language could not be told with confidence (best guess {shown}; "
                f"at least {bar:.2f} is needed{one_word})"
            )
        if code == SIMPLIFIED:
            code = chinese_script(prefix)
        if code not in readable:
            # Never the runner-up instead: with the right language out of the running, a neighbour's confidence
            # says nothing.
            raise _refuse(f"the text is {_named([code])}, which the loaded model does not read")
        return Detection(code, round(confidence, 4))

"""ISO 639-1 codes (``fr``, ``zh``), as OpenAI-style clients send them, and SeamlessM4T's own codes (``fra``,
``cmn``), with the English names OpenAI writes in its responses (``"french"``).

One table, ``ISO_639_1``, derived from the languages module: each two-letter code maps to the SeamlessM4T code of
the language it names, for the languages the model reads or speaks. Where one ISO code covers several of the
model's varieties, it maps to the standard one (``ar`` -> ``arb``, ``zh`` -> ``cmn``, ``ms`` -> ``zsm``, ``no`` ->
``nob``, ``fa`` -> ``pes``); the others are reached by their own codes. A region or script subtag is read where it
picks a variety (``zh-TW``, ``zh-Hant`` -> ``cmn_Hant``) and dropped otherwise (``pt-BR`` -> ``por``).

``openai_language_name`` gives the name OpenAI (Whisper) writes for a language, lowercase: the model's varieties
without an ISO 639-1 code get their English name (``"egyptian arabic"``).
"""

from __future__ import annotations

from typing import Final

from shared.languages import LANGUAGE_NAMES, SPEECH_INPUT_LANGS, TEXT_ALIASES, language_name

# ISO 639-1 -> (SeamlessM4T code, the name OpenAI/Whisper writes).
_TABLE: Final[dict[str, tuple[str, str]]] = {
    "af": ("afr", "afrikaans"),
    "am": ("amh", "amharic"),
    "ar": ("arb", "arabic"),
    "as": ("asm", "assamese"),
    "az": ("azj", "azerbaijani"),
    "be": ("bel", "belarusian"),
    "bg": ("bul", "bulgarian"),
    "bn": ("ben", "bengali"),
    "bs": ("bos", "bosnian"),
    "ca": ("cat", "catalan"),
    "cs": ("ces", "czech"),
    "cy": ("cym", "welsh"),
    "da": ("dan", "danish"),
    "de": ("deu", "german"),
    "el": ("ell", "greek"),
    "en": ("eng", "english"),
    "es": ("spa", "spanish"),
    "et": ("est", "estonian"),
    "eu": ("eus", "basque"),
    "fa": ("pes", "persian"),
    "ff": ("fuv", "fulah"),
    "fi": ("fin", "finnish"),
    "fr": ("fra", "french"),
    "ga": ("gle", "irish"),
    "gl": ("glg", "galician"),
    "gu": ("guj", "gujarati"),
    "he": ("heb", "hebrew"),
    "hi": ("hin", "hindi"),
    "hr": ("hrv", "croatian"),
    "hu": ("hun", "hungarian"),
    "hy": ("hye", "armenian"),
    "id": ("ind", "indonesian"),
    "ig": ("ibo", "igbo"),
    "is": ("isl", "icelandic"),
    "it": ("ita", "italian"),
    "ja": ("jpn", "japanese"),
    "jv": ("jav", "javanese"),
    "ka": ("kat", "georgian"),
    "kk": ("kaz", "kazakh"),
    "km": ("khm", "khmer"),
    "kn": ("kan", "kannada"),
    "ko": ("kor", "korean"),
    "ky": ("kir", "kyrgyz"),
    "lb": ("ltz", "luxembourgish"),
    "lg": ("lug", "ganda"),
    "lo": ("lao", "lao"),
    "lt": ("lit", "lithuanian"),
    "lv": ("lvs", "latvian"),
    "mk": ("mkd", "macedonian"),
    "ml": ("mal", "malayalam"),
    "mn": ("khk", "mongolian"),
    "mr": ("mar", "marathi"),
    "ms": ("zsm", "malay"),
    "mt": ("mlt", "maltese"),
    "my": ("mya", "burmese"),
    "nb": ("nob", "norwegian"),
    "ne": ("npi", "nepali"),
    "nl": ("nld", "dutch"),
    "nn": ("nno", "nynorsk"),
    "no": ("nob", "norwegian"),
    "ny": ("nya", "chichewa"),
    "oc": ("oci", "occitan"),
    "om": ("gaz", "oromo"),
    "or": ("ory", "odia"),
    "pa": ("pan", "punjabi"),
    "pl": ("pol", "polish"),
    "ps": ("pbt", "pashto"),
    "pt": ("por", "portuguese"),
    "ro": ("ron", "romanian"),
    "ru": ("rus", "russian"),
    "sd": ("snd", "sindhi"),
    "sk": ("slk", "slovak"),
    "sl": ("slv", "slovenian"),
    "sn": ("sna", "shona"),
    "so": ("som", "somali"),
    "sr": ("srp", "serbian"),
    "sv": ("swe", "swedish"),
    "sw": ("swh", "swahili"),
    "ta": ("tam", "tamil"),
    "te": ("tel", "telugu"),
    "tg": ("tgk", "tajik"),
    "th": ("tha", "thai"),
    "tl": ("tgl", "tagalog"),
    "tr": ("tur", "turkish"),
    "uk": ("ukr", "ukrainian"),
    "ur": ("urd", "urdu"),
    "uz": ("uzn", "uzbek"),
    "vi": ("vie", "vietnamese"),
    "xh": ("xho", "xhosa"),
    "yo": ("yor", "yoruba"),
    "zh": ("cmn", "chinese"),
    "zu": ("zul", "zulu"),
}

ISO_639_1: Final[dict[str, str]] = {iso: code for iso, (code, _) in _TABLE.items()}
"""Two-letter code -> SeamlessM4T code."""

_EXTRA_CODES: Final[dict[str, str]] = {
    "jw": "jav",  # Whisper's code for Javanese
    "yue": "yue",  # Cantonese has no two-letter code; Whisper uses the three-letter one
}
_TRADITIONAL_SUBTAGS: Final = frozenset({"hant", "tw", "hk", "mo"})

_NAMES: Final[dict[str, str]] = {
    **{code: language_name(code).lower() for code in LANGUAGE_NAMES},
    **{code: name for code, name in reversed(_TABLE.values())},
    "cmn_Hant": "chinese",
    "zlm": "malay",
    "yue": "cantonese",
}

_KNOWN: Final = frozenset(LANGUAGE_NAMES) | frozenset(SPEECH_INPUT_LANGS) | frozenset(TEXT_ALIASES)


def to_m4t_code(value: str) -> str:
    """The SeamlessM4T code for an ISO 639-1 code, a BCP 47 tag (``zh-TW``) or a SeamlessM4T code (returned as
    is). Anything else is returned unchanged, for the languages check to refuse with the list of valid codes."""
    raw = value.strip()
    if raw in _KNOWN:
        return raw
    primary, *subtags = raw.replace("_", "-").split("-")
    primary = primary.lower()
    if primary in ("zh", "cmn") and any(tag.lower() in _TRADITIONAL_SUBTAGS for tag in subtags):
        return "cmn_Hant"
    if primary in ISO_639_1:
        return ISO_639_1[primary]
    if primary in _EXTRA_CODES:
        return _EXTRA_CODES[primary]
    return primary if primary in _KNOWN else raw


def openai_language_name(code: str) -> str:
    """The lowercase English name OpenAI writes for the language of ``code`` (``fra`` -> ``"french"``)."""
    return _NAMES.get(code, code)

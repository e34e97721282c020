"""Language codes per modality, and the validation of a task's source and target languages.

What the *loaded checkpoint* accepts is what counts: workers publish the lists they read from the model's
generation config (``LanguageSupport.from_generation_config``), and the gateway validates against those. The
static tables below only hold what a checkpoint cannot tell: display names, the speech-input list (the speech
encoder is language-agnostic) and the lists of the published checkpoint, used until a worker has reported.
Source: ../shared/reference/languages.md (Meta's tables and transformers' conversion script).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import UnsupportedLanguage
from shared.tasks import Task

AUTO = "auto"
"""``src_lang`` of text input whose language the gateway detects (the job keeps it; the worker gets the detected
code)."""

# Malay text is `zsm` in Meta's tables but `zlm` in the transformers checkpoint.
TEXT_ALIASES: dict[str, str] = {"zsm": "zlm"}


def _codes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


LANGUAGE_NAMES: dict[str, str] = {
    "afr": "Afrikaans",
    "amh": "Amharic",
    "arb": "Modern Standard Arabic",
    "ary": "Moroccan Arabic",
    "arz": "Egyptian Arabic",
    "asm": "Assamese",
    "ast": "Asturian",
    "azj": "North Azerbaijani",
    "bel": "Belarusian",
    "ben": "Bengali",
    "bos": "Bosnian",
    "bul": "Bulgarian",
    "cat": "Catalan",
    "ceb": "Cebuano",
    "ces": "Czech",
    "ckb": "Central Kurdish",
    "cmn": "Mandarin Chinese",
    "cmn_Hant": "Mandarin Chinese",
    "cym": "Welsh",
    "dan": "Danish",
    "deu": "German",
    "ell": "Greek",
    "eng": "English",
    "est": "Estonian",
    "eus": "Basque",
    "fin": "Finnish",
    "fra": "French",
    "fuv": "Nigerian Fulfulde",
    "gaz": "West Central Oromo",
    "gle": "Irish",
    "glg": "Galician",
    "guj": "Gujarati",
    "heb": "Hebrew",
    "hin": "Hindi",
    "hrv": "Croatian",
    "hun": "Hungarian",
    "hye": "Armenian",
    "ibo": "Igbo",
    "ind": "Indonesian",
    "isl": "Icelandic",
    "ita": "Italian",
    "jav": "Javanese",
    "jpn": "Japanese",
    "kam": "Kamba",
    "kan": "Kannada",
    "kat": "Georgian",
    "kaz": "Kazakh",
    "kea": "Kabuverdianu",
    "khk": "Halh Mongolian",
    "khm": "Khmer",
    "kir": "Kyrgyz",
    "kor": "Korean",
    "lao": "Lao",
    "lit": "Lithuanian",
    "ltz": "Luxembourgish",
    "lug": "Ganda",
    "luo": "Luo",
    "lvs": "Standard Latvian",
    "mai": "Maithili",
    "mal": "Malayalam",
    "mar": "Marathi",
    "mkd": "Macedonian",
    "mlt": "Maltese",
    "mni": "Meitei",
    "mya": "Burmese",
    "nld": "Dutch",
    "nno": "Norwegian Nynorsk",
    "nob": "Norwegian Bokmål",
    "npi": "Nepali",
    "nya": "Nyanja",
    "oci": "Occitan",
    "ory": "Odia",
    "pan": "Punjabi",
    "pbt": "Southern Pashto",
    "pes": "Western Persian",
    "pol": "Polish",
    "por": "Portuguese",
    "ron": "Romanian",
    "rus": "Russian",
    "sat": "Santali",
    "slk": "Slovak",
    "slv": "Slovenian",
    "sna": "Shona",
    "snd": "Sindhi",
    "som": "Somali",
    "spa": "Spanish",
    "srp": "Serbian",
    "swe": "Swedish",
    "swh": "Swahili",
    "tam": "Tamil",
    "tel": "Telugu",
    "tgk": "Tajik",
    "tgl": "Tagalog",
    "tha": "Thai",
    "tur": "Turkish",
    "ukr": "Ukrainian",
    "urd": "Urdu",
    "uzn": "Northern Uzbek",
    "vie": "Vietnamese",
    "xho": "Xhosa",
    "yor": "Yoruba",
    "yue": "Cantonese",
    "zlm": "Colloquial Malay",
    "zsm": "Standard Malay",
    "zul": "Zulu",
}
LANGUAGE_SCRIPTS: dict[str, str] = {
    "afr": "Latn",
    "amh": "Ethi",
    "arb": "Arab",
    "ary": "Arab",
    "arz": "Arab",
    "asm": "Beng",
    "ast": "Latn",
    "azj": "Latn",
    "bel": "Cyrl",
    "ben": "Beng",
    "bos": "Latn",
    "bul": "Cyrl",
    "cat": "Latn",
    "ceb": "Latn",
    "ces": "Latn",
    "ckb": "Arab",
    "cmn": "Hans",
    "cmn_Hant": "Hant",
    "cym": "Latn",
    "dan": "Latn",
    "deu": "Latn",
    "ell": "Grek",
    "eng": "Latn",
    "est": "Latn",
    "eus": "Latn",
    "fin": "Latn",
    "fra": "Latn",
    "fuv": "Latn",
    "gaz": "Latn",
    "gle": "Latn",
    "glg": "Latn",
    "guj": "Gujr",
    "heb": "Hebr",
    "hin": "Deva",
    "hrv": "Latn",
    "hun": "Latn",
    "hye": "Armn",
    "ibo": "Latn",
    "ind": "Latn",
    "isl": "Latn",
    "ita": "Latn",
    "jav": "Latn",
    "jpn": "Jpan",
    "kam": "Latn",
    "kan": "Knda",
    "kat": "Geor",
    "kaz": "Cyrl",
    "kea": "Latn",
    "khk": "Cyrl",
    "khm": "Khmr",
    "kir": "Cyrl",
    "kor": "Kore",
    "lao": "Laoo",
    "lit": "Latn",
    "ltz": "Latn",
    "lug": "Latn",
    "luo": "Latn",
    "lvs": "Latn",
    "mai": "Deva",
    "mal": "Mlym",
    "mar": "Deva",
    "mkd": "Cyrl",
    "mlt": "Latn",
    "mni": "Beng",
    "mya": "Mymr",
    "nld": "Latn",
    "nno": "Latn",
    "nob": "Latn",
    "npi": "Deva",
    "nya": "Latn",
    "oci": "Latn",
    "ory": "Orya",
    "pan": "Guru",
    "pbt": "Arab",
    "pes": "Arab",
    "pol": "Latn",
    "por": "Latn",
    "ron": "Latn",
    "rus": "Cyrl",
    "sat": "Olck",
    "slk": "Latn",
    "slv": "Latn",
    "sna": "Latn",
    "snd": "Arab",
    "som": "Latn",
    "spa": "Latn",
    "srp": "Cyrl",
    "swe": "Latn",
    "swh": "Latn",
    "tam": "Taml",
    "tel": "Telu",
    "tgk": "Cyrl",
    "tgl": "Latn",
    "tha": "Thai",
    "tur": "Latn",
    "ukr": "Cyrl",
    "urd": "Arab",
    "uzn": "Latn",
    "vie": "Latn",
    "xho": "Latn",
    "yor": "Latn",
    "yue": "Hant",
    "zlm": "Latn",
    "zsm": "Latn",
    "zul": "Latn",
}
CHECKPOINT_TEXT_LANGS: tuple[str, ...] = _codes(
    "afr amh arb ary arz asm azj bel ben bos bul cat ceb ces ckb cmn cmn_Hant cym dan deu ell eng est eus fin "
    "fra fuv gaz gle glg guj heb hin hrv hun hye ibo ind isl ita jav jpn kan kat kaz khk khm kir kor lao lit "
    "lug luo lvs mai mal mar mkd mlt mni mya nld nno nob npi nya ory pan pbt pes pol por ron rus sat slk slv "
    "sna snd som spa srp swe swh tam tel tgk tgl tha tur ukr urd uzn vie yor yue zlm zul"
)
CHECKPOINT_T2U_LANGS: tuple[str, ...] = _codes(
    "arb ben cat ces cmn cym dan deu eng est fin fra hin ind ita jpn kan kor mlt nld pes pol por ron rus slk "
    "spa swe swh tam tel tgl tha tur ukr urd uzn vie"
)
CHECKPOINT_VOCODER_LANGS: tuple[str, ...] = _codes(
    "arb ben cat ces cmn cym dan deu eng est fin fra hin ind ita jpn kor mlt nld pes pol por ron rus slk spa "
    "swe swh tel tgl tha tur ukr urd uzn vie"
)
SPEECH_INPUT_LANGS: tuple[str, ...] = _codes(
    "afr amh arb ary arz asm ast azj bel ben bos bul cat ceb ces ckb cmn cmn_Hant cym dan deu ell eng est eus "
    "fin fra fuv gaz gle glg guj heb hin hrv hun hye ibo ind isl ita jav jpn kam kan kat kaz kea khk khm kir "
    "kor lao lit ltz lug luo lvs mai mal mar mkd mlt mni mya nld nno nob npi nya oci ory pan pbt pes pol por "
    "ron rus slk slv sna snd som spa srp swe swh tam tel tgk tgl tha tur ukr urd uzn vie xho yor yue zlm zul"
)


NO_SPACE_LANGS: frozenset[str] = frozenset({"cmn", "cmn_Hant", "yue", "jpn", "tha", "lao", "khm", "mya"})
"""Written without spaces between words."""

NO_SENTENCE_SPACE_LANGS: frozenset[str] = frozenset({"cmn", "cmn_Hant", "yue", "jpn"})
"""Written without a space between sentences either: pieces of text are glued with ""."""


def sentence_separator(lang: str) -> str:
    """What goes between two sentences (or two segments' texts) written in ``lang``."""
    return "" if lang in NO_SENTENCE_SPACE_LANGS else " "


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


@dataclass(frozen=True)
class LanguageSupport:
    """The languages one checkpoint handles, per modality."""

    text: frozenset[str]
    speech_output: frozenset[str]
    speech_input: frozenset[str]

    @classmethod
    def published_checkpoint(cls) -> LanguageSupport:
        """The lists of facebook/seamless-m4t-v2-large, before any worker has reported its own."""
        return cls(
            text=frozenset(CHECKPOINT_TEXT_LANGS),
            speech_output=frozenset(CHECKPOINT_VOCODER_LANGS),
            speech_input=frozenset(SPEECH_INPUT_LANGS),
        )

    @classmethod
    def from_generation_config(cls, generation_config: Any) -> LanguageSupport:
        """Read the lists from a loaded model's generation config.

        Speech output needs all three tables: text decoder, text-to-unit and vocoder (``kan`` and ``tam`` have
        text-to-unit ids but no vocoder id, so ``generate`` would reject them).
        """
        text = set(getattr(generation_config, "text_decoder_lang_to_code_id", None) or {})
        t2u = set(getattr(generation_config, "t2u_lang_code_to_id", None) or {})
        vocoder = set(getattr(generation_config, "vocoder_lang_code_to_id", None) or {})
        return cls(
            text=frozenset(text),
            speech_output=frozenset(text & t2u & vocoder),
            speech_input=frozenset(SPEECH_INPUT_LANGS),
        )

    def to_json(self) -> dict[str, list[str]]:
        return {
            "text": sorted(self.text),
            "speech_output": sorted(self.speech_output),
            "speech_input": sorted(self.speech_input),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Iterable[str]]) -> LanguageSupport:
        return cls(
            text=frozenset(data["text"]),
            speech_output=frozenset(data["speech_output"]),
            speech_input=frozenset(data["speech_input"]),
        )

    def sources(self, task: Task) -> frozenset[str]:
        return self.speech_input if task.speech_input else self.text

    def targets(self, task: Task) -> frozenset[str]:
        return self.speech_output if task.speech_output else self.text

    def normalize_text_code(self, code: str) -> str:
        code = code.strip()
        if code in self.text:
            return code
        return TEXT_ALIASES.get(code, code)

    def validate_target(self, task: Task, tgt_lang: str) -> str:
        """The target code as the model wants it, or ``UnsupportedLanguage``."""
        tgt = self.normalize_text_code(tgt_lang)
        targets = self.targets(task)
        if tgt not in targets:
            what = "speech output" if task.speech_output else "text output"
            raise UnsupportedLanguage(
                f"tgt_lang '{tgt_lang}' is not supported for {what} ({task.value}). "
                f"Valid codes: {' '.join(sorted(targets))}",
                details={"field": "tgt_lang", "valid": sorted(targets)},
            )
        return tgt

    def validate(self, task: Task, src_lang: str | None, tgt_lang: str) -> tuple[str | None, str]:
        """Return the (source, target) codes as the model wants them, or raise ``UnsupportedLanguage``.

        Speech input needs no source language (the speech encoder is language-agnostic); one given is checked
        against the speech-input table and passed through. Text input needs one, and an unknown one is refused:
        the tokenizer would silently use ``<unk>`` as the language prefix.
        """
        tgt = self.validate_target(task, tgt_lang)
        if task.speech_input:
            src = src_lang.strip() if src_lang else None
            if src and src not in self.speech_input and self.normalize_text_code(src) not in self.speech_input:
                raise UnsupportedLanguage(
                    f"src_lang '{src_lang}' is not a supported speech input language. "
                    f"Valid codes: {' '.join(sorted(self.speech_input))}",
                    details={"field": "src_lang", "valid": sorted(self.speech_input)},
                )
            return src or None, tgt
        if not src_lang or not src_lang.strip():
            raise UnsupportedLanguage(
                f"src_lang is required for text input ({task.value})",
                details={"field": "src_lang", "valid": sorted(self.text)},
            )
        src = self.normalize_text_code(src_lang)
        if src not in self.text:
            raise UnsupportedLanguage(
                f"src_lang '{src_lang}' is not supported for text input. Valid codes: {' '.join(sorted(self.text))}",
                details={"field": "src_lang", "valid": sorted(self.text)},
            )
        return src, tgt

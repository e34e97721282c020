"""ISO 639-1 codes (and BCP 47 tags) as OpenAI-style clients send them -> SeamlessM4T's codes, and back to the names
OpenAI writes."""

from __future__ import annotations

import pytest

from shared.iso639 import ISO_639_1, openai_language_name, to_m4t_code
from shared.languages import CHECKPOINT_TEXT_LANGS, CHECKPOINT_VOCODER_LANGS, SPEECH_INPUT_LANGS, TEXT_ALIASES


def test_every_iso_code_names_a_language_of_the_model() -> None:
    model = set(CHECKPOINT_TEXT_LANGS) | set(SPEECH_INPUT_LANGS) | set(TEXT_ALIASES)
    assert not {iso: code for iso, code in ISO_639_1.items() if code not in model}
    assert all(len(iso) == 2 for iso in ISO_639_1)


def test_every_spoken_language_has_an_iso_code() -> None:
    """Each of the 36 speech-output languages can be asked for as OpenAI clients ask."""
    assert set(CHECKPOINT_VOCODER_LANGS) <= set(ISO_639_1.values())


@pytest.mark.parametrize(
    ("sent", "code", "name"),
    [
        ("fr", "fra", "french"),
        ("FR", "fra", "french"),
        ("zh", "cmn", "chinese"),
        ("zh-TW", "cmn_Hant", "chinese"),
        ("zh-Hant-HK", "cmn_Hant", "chinese"),
        ("zh_CN", "cmn", "chinese"),
        ("ms", "zsm", "malay"),
        ("no", "nob", "norwegian"),
        ("pt-BR", "por", "portuguese"),
        ("jw", "jav", "javanese"),
        ("fra", "fra", "french"),
        ("arz", "arz", "egyptian arabic"),
        ("cmn_Hant", "cmn_Hant", "chinese"),
    ],
)
def test_codes_and_names(sent: str, code: str, name: str) -> None:
    assert to_m4t_code(sent) == code
    assert openai_language_name(code) == name


def test_unknown_codes_pass_through_for_the_check_to_refuse() -> None:
    assert to_m4t_code("xx") == "xx"
    assert to_m4t_code("klingon") == "klingon"

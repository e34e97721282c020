"""``src_lang: "auto"``: the gateway's language detector (``gateway/language_detection.py``) on its own, then through a
real gateway and worker (tiny model) over HTTP: the detected code on the job, the job translated from it, and
422 ``language_not_detected`` for text whose language cannot be told."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from lingua import Language
from services import RedisServer
from stack import GatewayProcess, WorkerProcess, stack_env

from gateway.language_detection import (
    CONFUSABLE,
    LINGUA_CODES,
    PREFIX_CHARS,
    TextLanguageDetector,
    detectable_codes,
    words,
)
from shared.errors import LanguageNotDetected
from shared.job_view import job_to_api
from shared.jobs import JobRecord, JobStatus
from shared.languages import CHECKPOINT_TEXT_LANGS, TEXT_ALIASES, LanguageSupport
from shared.settings import GatewaySettings
from shared.tasks import Task
from shared.webhooks import build_event

API = "/api/v1"
README = Path(__file__).parent.parent / "README.md"
READABLE = LanguageSupport.published_checkpoint().text
DEFAULT_BAR: float = GatewaySettings.model_fields["detect_min_confidence"].default

CLEAR = {
    "eng": "I would like a cup of tea and a slice of cake, please.",
    "fra": "Le musée ouvre ses portes à neuf heures tous les matins.",
    "deu": "Meine Schwester wohnt seit drei Jahren in einer kleinen Stadt.",
    "spa": "El mercado abre temprano y cierra a las dos de la tarde.",
    "ita": "Domani andiamo al mare con tutta la famiglia.",
    "por": "A minha avó faz o melhor bolo de chocolate do mundo.",
    "pol": "Moja siostra mieszka w Krakowie od trzech lat.",
    "tur": "Annem her sabah bahçedeki çiçekleri sular.",
    "rus": "Моя сестра живёт в Москве уже три года.",
    "ukr": "Моя сестра живе в Києві вже три роки.",
    "ell": "Η αδελφή μου μένει στην Αθήνα εδώ και τρία χρόνια.",
    "arb": "تعيش أختي في القاهرة منذ ثلاث سنوات.",
    "hin": "मेरी बहन तीन साल से दिल्ली में रहती है।",
    "jpn": "妹は三年前から大阪に住んでいます。",
    "kor": "제 여동생은 삼 년 전부터 서울에 살고 있어요.",
    "vie": "Em gái tôi đã sống ở Hà Nội được ba năm rồi.",
    "cmn": "我妹妹在北京已经住了三年了。",
    "cmn_Hant": "我妹妹在台北已經住了三年了。",
}
"""Short everyday sentences, one per language (others than bench/detect.py's)."""

PAIRS = {
    "ind": ("Adik perempuan saya sudah tinggal di Jakarta selama tiga tahun.", ["ind", "zsm"]),
    "zsm": ("Adik perempuan saya sudah tinggal di Kuala Lumpur selama tiga tahun.", ["ind", "zsm"]),
    "nob": ("Søsteren min har bodd i Bergen i tre år.", ["nno", "nob"]),
    "hrv": ("Moja sestra živi u Zagrebu već tri godine.", ["bos", "hrv"]),
}
"""Text of a language whose twin the detector cannot tell it from, and the codes the refusal offers."""

UNTELLABLE = ["xq7 zk93 pvw", "a8f3k2 qz91x", "10djd 7sdmmnr", "12345 678", "die", "no", "Hotel", "taxi"]
"""A few random letters and digits, digits alone, single words several languages share."""


# --- the detector on its own ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> TextLanguageDetector:
    """The gateway's default: lingua's high-accuracy mode, models preloaded, the default bar."""
    return TextLanguageDetector(min_confidence=DEFAULT_BAR)


@pytest.mark.parametrize("code", sorted(CLEAR))
def test_clear_sentences_are_detected(detector: TextLanguageDetector, code: str) -> None:
    detected = detector.detect(CLEAR[code], READABLE)
    assert detected.code == code
    assert DEFAULT_BAR <= detected.confidence <= 1.0


def test_simplified_and_traditional_chinese_are_told_apart_by_script(detector: TextLanguageDetector) -> None:
    assert detector.detect("请问火车站在哪里？我们要去机场。", READABLE).code == "cmn"
    assert detector.detect("請問火車站在哪裡？我們要去機場。", READABLE).code == "cmn_Hant"
    for same_in_both in ("你好", "中文很有意思"):  # every character the same in both scripts: no guess
        with pytest.raises(LanguageNotDetected, match="same in Simplified and Traditional") as refused:
            detector.detect(same_in_both, READABLE)
        assert refused.value.details["valid"] == ["cmn", "cmn_Hant"]
    with pytest.raises(LanguageNotDetected, match="mixes Simplified and Traditional"):
        detector.detect("我们今天去公園散步", READABLE)


@pytest.mark.parametrize("code", sorted(PAIRS))
def test_pairs_the_detector_cannot_tell_apart_are_refused(detector: TextLanguageDetector, code: str) -> None:
    text, offered = PAIRS[code]
    with pytest.raises(LanguageNotDetected, match="cannot be told apart") as refused:
        detector.detect(text, READABLE)
    assert refused.value.details == {"field": "src_lang", "valid": offered}
    assert "src_lang" in refused.value.message


@pytest.mark.parametrize("text", UNTELLABLE)
def test_text_whose_language_cannot_be_told_is_refused(detector: TextLanguageDetector, text: str) -> None:
    with pytest.raises(LanguageNotDetected, match="pass src_lang") as refused:
        detector.detect(text, READABLE)
    assert refused.value.code == "language_not_detected"
    assert refused.value.status_code == 422


def test_a_language_the_loaded_model_does_not_read_is_refused_not_swapped(detector: TextLanguageDetector) -> None:
    with pytest.raises(LanguageNotDetected, match=r"fra \(French\), which the loaded model does not read"):
        detector.detect(CLEAR["fra"], READABLE - {"fra"})


def test_only_a_bounded_prefix_is_read(detector: TextLanguageDetector) -> None:
    french = (CLEAR["fra"] + " ") * (PREFIX_CHARS // len(CLEAR["fra"]) + 1)
    assert detector.detect(french + CLEAR["deu"] * 400, READABLE).code == "fra"  # the German is past the prefix


def test_tokens_of_letters_and_digits_are_not_words() -> None:
    assert words("Order a8f3k2, (please)! 12 x 2024年我们") == ["Order", "please", "x", "2024年我们"]


def _readme_list(label: str) -> set[str]:
    found = re.search(rf"\*\*{re.escape(label)} \((\d+)\)\*\*[^`]*`([^`]+)`", README.read_text())
    assert found, f"the README has no list '{label}'"
    codes = set(found.group(2).split())
    assert len(codes) == int(found.group(1))
    return codes


def test_coverage_is_lingua_s_languages_that_the_model_reads_as_the_readme_says() -> None:
    unreadable = {"ALBANIAN", "ESPERANTO", "LATIN", "MAORI", "SOTHO", "TSONGA", "TSWANA", "XHOSA"}
    assert {language.name for language in Language.all()} == set(LINGUA_CODES) | unreadable  # a new one: map it
    assert set(LINGUA_CODES.values()) <= set(CHECKPOINT_TEXT_LANGS)
    detected = _readme_list("Detected")
    refused = {TEXT_ALIASES.get(code, code) for code in _readme_list("Known to lingua but always refused")}
    unknown = _readme_list("Not known to lingua")
    assert detectable_codes() == detected
    assert refused == {code for group in CONFUSABLE for code in group}
    assert detected | refused | unknown == set(CHECKPOINT_TEXT_LANGS)
    assert len(CHECKPOINT_TEXT_LANGS) == len(detected) + len(refused) + len(unknown)


def test_the_webhook_event_carries_the_detected_language() -> None:
    record = JobRecord(
        id="a" * 32,
        task=Task.T2TT,
        status=JobStatus.SUCCEEDED,
        tgt_lang="eng",
        src_lang="auto",
        detected_src_lang="fra",
        detected_src_lang_confidence=0.93,
        input_key="k",
        created_at=time.time(),
        result={"text": "hello"},
    )
    assert record.to_message().src_lang == "fra"  # what the worker translates from
    stored = JobRecord.from_hash(record.to_hash())
    assert (stored.src_lang, stored.detected_src_lang, stored.detected_src_lang_confidence) == ("auto", "fra", 0.93)
    data = build_event(job_to_api(record, "http://api"), event_type="job.succeeded", base_url=None)["data"]
    assert (data["src_lang"], data["detected_src_lang"], data["detected_src_lang_confidence"]) == ("auto", "fra", 0.93)


# --- through a real gateway and worker --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[httpx.Client, str]]:
    """A worker, a gateway with the default detector, and one with detection off, on one Redis."""
    workdir = tmp_path_factory.mktemp("detect")
    with RedisServer(workdir / "redis") as redis_server, ExitStack() as cleanup:
        env = stack_env(
            redis_url=redis_server.url,
            storage_url=f"file://{workdir / 'storage'}",
            model=tiny_model_dir,
            data_dir=workdir / "data",
        )
        detecting = {**env, "M4T_DETECT_ACCURACY": GatewaySettings.model_fields["detect_accuracy"].default}
        gateway = GatewayProcess(workdir, detecting)
        gateway.ready_timeout_s = 90.0  # the detector's models load before the gateway answers
        without = GatewayProcess(workdir / "off", env)
        processes = [gateway, WorkerProcess(workdir, env), without]
        for process in processes:
            cleanup.callback(process.stop)
        with ThreadPoolExecutor(len(processes)) as pool:  # the detector and the model load side by side
            for started in [pool.submit(process.start) for process in processes]:
                started.result()
        with httpx.Client(base_url=gateway.url, timeout=60) as client:
            yield client, without.url


def _finished(api: httpx.Client, location: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(location).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {job}")


@pytest.mark.parametrize(("task", "code"), [("t2tt", "fra"), ("t2tt", "cmn_Hant"), ("t2st", "deu")])
def test_auto_jobs_are_translated_from_the_detected_language(
    stack: tuple[httpx.Client, str], task: str, code: str
) -> None:
    api, _ = stack
    body = {"task": task, "text": CLEAR[code], "src_lang": "auto", "tgt_lang": "spa"}
    submitted = api.post(f"{API}/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    assert (submitted.json()["src_lang"], submitted.json()["detected_src_lang"]) == ("auto", code)
    job = _finished(api, submitted.headers["location"])
    # The worker refuses "auto" (it is no language code): success means the message carried the detected one.
    assert job["status"] == "succeeded", job["error"]
    assert (job["src_lang"], job["detected_src_lang"]) == ("auto", code)
    assert DEFAULT_BAR <= job["detected_src_lang_confidence"] <= 1.0
    assert job["result"]["text"]


def test_the_seed_endpoint_takes_auto_too(stack: tuple[httpx.Client, str]) -> None:
    api, _ = stack
    done = api.post(f"{API}/t2tt", json={"text": CLEAR["ita"], "src_lang": "auto", "tgt_lang": "eng"})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["detected_src_lang"]) == ("succeeded", "ita")


@pytest.mark.parametrize("text", ["xq7 zk93 pvw", "die", PAIRS["ind"][0], "你好"])
def test_untellable_text_is_refused_at_submission(stack: tuple[httpx.Client, str], text: str) -> None:
    api, _ = stack
    before = len(api.get(f"{API}/jobs").json()["jobs"])
    refused = api.post(f"{API}/jobs", json={"task": "t2tt", "text": text, "src_lang": "auto", "tgt_lang": "eng"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "language_not_detected"
    assert error["field"] == "src_lang"
    assert "pass src_lang" in error["message"]
    assert len(api.get(f"{API}/jobs").json()["jobs"]) == before  # no job was made


def test_speech_input_takes_auto_as_no_source_language(stack: tuple[httpx.Client, str]) -> None:
    api, _ = stack
    with (Path(__file__).parent / "data" / "speech_fr.wav").open("rb") as audio:
        fields = {"task": "s2tt", "src_lang": "auto", "tgt_lang": "eng"}
        submitted = api.post(f"{API}/jobs", files={"audio_file": audio}, data=fields)
    assert submitted.status_code == 202, submitted.text
    assert (submitted.json()["src_lang"], submitted.json()["detected_src_lang"]) == (None, None)
    assert _finished(api, submitted.headers["location"])["status"] == "succeeded"


def test_a_missing_src_lang_is_still_a_validation_error(stack: tuple[httpx.Client, str]) -> None:
    api, _ = stack
    refused = api.post(f"{API}/jobs", json={"task": "t2tt", "text": CLEAR["fra"], "tgt_lang": "eng"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_request"
    assert refused.json()["error"]["field"] == "src_lang"


def test_languages_lists_what_can_be_detected(stack: tuple[httpx.Client, str]) -> None:
    api, without = stack
    detectable = {item["code"] for item in api.get(f"{API}/languages").json()["detectable"]}
    assert {"fra", "deu", "cmn", "cmn_Hant", "jpn"} <= detectable
    assert not {"ind", "zlm", "nob", "nno", "bos", "hrv", "glg", "yue"} & detectable
    assert httpx.get(f"{without}{API}/languages").json()["detectable"] == []


def test_with_detection_off_auto_is_refused(stack: tuple[httpx.Client, str]) -> None:
    _, without = stack
    body = {"task": "t2tt", "text": CLEAR["fra"], "src_lang": "auto", "tgt_lang": "eng"}
    refused = httpx.post(f"{without}{API}/jobs", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "language_not_detected"
    assert "M4T_DETECT_ACCURACY=off" in refused.json()["error"]["message"]


def test_the_python_client_submits_auto_and_shows_the_detected_language(stack: tuple[httpx.Client, str]) -> None:
    from client import Client

    api, _ = stack
    with Client(str(api.base_url)) as client:
        job = client.translate_text(CLEAR["por"], src_lang="auto", tgt_lang="eng")
    assert (job.status, job.src_lang, job.detected_src_lang) == ("succeeded", "auto", "por")
    assert job.detected_src_lang_confidence is not None and job.detected_src_lang_confidence >= DEFAULT_BAR

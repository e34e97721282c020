"""Tests of worker/segmentation.py: Silero VAD segmentation of long audio at pauses.

Real speech: short espeak-ng utterances in six languages and a ~87 s English monologue without pauses longer than
0.2 s (tests/data/make_speech.sh made them; their speech starts at their first sample and ends at their last).
Long inputs are built here by putting them between silences of known durations at known positions, so the expected
boundaries are exact. The planning rules are also checked on synthetic speech regions (no VAD), exhaustively.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr
import torch

from shared.audio import decode_audio
from worker.segmentation import MIN_SPEECH_S, SpeechSegment, SpeechSegmenter, _Limits, _plan, _Region

Array = npt.NDArray[np.float32]

SR = 16_000
DATA = Path(__file__).parent / "data"
LANGS = ("en", "fr", "de", "es", "hi", "zh")
TOLERANCE_S = 0.3  # how far a segment edge may be from the true edge of the speech
MAX_S = 20.0
OVERLAP_S = 0.5


@pytest.fixture(scope="module")
def segmenter() -> SpeechSegmenter:
    return SpeechSegmenter()


@pytest.fixture(scope="module")
def clips() -> dict[str, Array]:
    return {lang: decode_audio(DATA / f"utt_{lang}.ogg") for lang in LANGS}


@pytest.fixture(scope="module")
def monologue() -> Array:
    return decode_audio(DATA / "monologue_en.ogg")


def build(parts: Sequence[Array | float]) -> tuple[Array, list[tuple[float, float]]]:
    """Concatenate speech (arrays) and silences (floats, seconds): the audio and the true (start, end) of the speech.

    Consecutive arrays count as one stretch of speech.
    """
    pieces: list[Array] = []
    speech: list[tuple[float, float]] = []
    position = 0
    previous_was_speech = False
    for part in parts:
        if isinstance(part, float):
            pieces.append(np.zeros(round(part * SR), dtype=np.float32))
            previous_was_speech = False
        else:
            start, end = position / SR, (position + len(part)) / SR
            if previous_was_speech:
                speech[-1] = (speech[-1][0], end)
            else:
                speech.append((start, end))
            pieces.append(part)
            previous_was_speech = True
        position += len(pieces[-1])
    return np.concatenate(pieces), speech


def check_invariants(segments: Sequence[SpeechSegment], duration: float, *, max_s: float = MAX_S) -> None:
    """Rules 5 and 6: sorted, inside the audio, never too long, overlapping only after a hard cut, by OVERLAP_S."""
    for segment in segments:
        assert 0 <= segment.start_s < segment.end_s <= duration + 1e-9, segment
        assert segment.duration_s <= max_s + 1e-9, segment
    for first, second in itertools.pairwise(segments):
        if first.hard_cut:
            assert first.end_s - second.start_s == pytest.approx(OVERLAP_S, abs=1e-6), (first, second)
        else:
            assert first.end_s <= second.start_s, (first, second)
    if segments:
        assert not segments[-1].hard_cut


def assert_matches(segments: Sequence[SpeechSegment], truth: Sequence[tuple[float, float]]) -> None:
    """One segment per true stretch of speech, edges within TOLERANCE_S, and no speech left out (50 ms slack)."""
    found = [(round(s.start_s, 3), round(s.end_s, 3)) for s in segments]
    assert len(segments) == len(truth), (found, truth)
    for segment, (start, end) in zip(segments, truth, strict=True):
        assert abs(segment.start_s - start) <= TOLERANCE_S, (found, truth)
        assert abs(segment.end_s - end) <= TOLERANCE_S, (found, truth)
        assert segment.start_s <= start + 0.05 and segment.end_s >= end - 0.05, (found, truth)
        assert not segment.hard_cut


def rms_db(wave: Array) -> float:
    return 10 * math.log10(float(np.mean(np.square(wave, dtype=np.float64))) + 1e-12)


def pauses(wave: Array, *, floor_db: float = -40.0) -> list[float]:
    """Lengths of the silent gaps (10 ms frames 40 dB below the loudest) between the first and the last sound."""
    hop = SR // 100
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    quiet = level < level.max() + floor_db
    loud = np.flatnonzero(~quiet)
    gaps: list[float] = []
    run = 0
    for is_quiet in quiet[loud[0] : loud[-1] + 1]:
        if is_quiet:
            run += 1
        elif run:
            gaps.append(run * hop / SR)
            run = 0
    return gaps


# --- the test audio ----------------------------------------------------------------------------------------------


def test_test_audio_is_what_the_tests_assume(clips: dict[str, Array], monologue: Array) -> None:
    for lang, clip in clips.items():
        assert 2.0 <= len(clip) / SR <= 5.0, lang
        assert max(pauses(clip), default=0.0) < 0.2, lang  # one utterance: no pause inside
        assert rms_db(clip[:800]) > -50 and rms_db(clip[-800:]) > -50, lang  # trimmed: sound at both ends
    assert 85 <= len(monologue) / SR <= 95
    assert max(pauses(monologue)) <= 0.2  # 0.15 s with espeak-ng 1.51


# --- rules 1-3 on real speech ------------------------------------------------------------------------------------


def test_multilingual_segments_sit_at_the_pauses(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    # Pauses of 0.6 s merge (shorter than merge_pause_s); 1.5 s and 3 s always end a segment.
    c = clips
    wave, speech = build([1.0, c["en"], 0.6, c["fr"], 1.5, c["de"], 3.0, c["es"], 0.6, c["hi"], 1.5, c["zh"], 0.7])
    merged = [(speech[0][0], speech[1][1]), speech[2], (speech[3][0], speech[4][1]), speech[5]]
    segments = segmenter.segment_array(wave)
    assert_matches(segments, merged)
    check_invariants(segments, len(wave) / SR)


def test_merge_pause_decides_what_stays_together(clips: dict[str, Array]) -> None:
    c = clips
    wave, speech = build([0.5, c["en"], 0.6, c["fr"], 1.5, c["de"], 3.0, c["es"], 0.6, c["hi"], 1.5, c["zh"], 0.5])
    # With merge_pause_s=2 the 1.5 s pauses no longer split; the 3 s one still does.
    segments = SpeechSegmenter(merge_pause_s=2.0).segment_array(wave)
    assert_matches(segments, [(speech[0][0], speech[2][1]), (speech[3][0], speech[5][1])])
    # With merge_pause_s=0.5 every pause splits.
    segments = SpeechSegmenter(merge_pause_s=0.5).segment_array(wave)
    assert_matches(segments, speech)


def test_speech_at_the_very_edges(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    wave, speech = build([clips["de"], 2.0, clips["es"]])  # no silence before the first word or after the last
    segments = segmenter.segment_array(wave)
    assert_matches(segments, speech)
    assert segments[0].start_s == 0.0
    assert segments[-1].end_s == pytest.approx(len(wave) / SR)


# --- rules 4 and 5: long speech ---------------------------------------------------------------------------------


def test_monologue_is_cut_hard_into_overlapping_pieces(segmenter: SpeechSegmenter, monologue: Array) -> None:
    wave, [(start, end)] = build([1.0, monologue, 1.0])
    segments = segmenter.segment_array(wave)
    check_invariants(segments, len(wave) / SR)
    # Fewest pieces that fit: ceil((87.5 - 0.5) / (20 - 0.5)) = 5, of about equal length (no short leftover).
    length = end - start + 0.2  # with the padding
    assert len(segments) == math.ceil((length - OVERLAP_S) / (MAX_S - OVERLAP_S)) == 5
    assert [s.hard_cut for s in segments] == [True, True, True, True, False]
    assert min(s.duration_s for s in segments) > 0.75 * length / len(segments)
    # They cover all the speech (consecutive pieces overlap, checked above).
    assert segments[0].start_s <= start and segments[-1].end_s >= end


def test_hard_cuts_fall_between_words(segmenter: SpeechSegmenter, monologue: Array) -> None:
    # Each cut point (the middle of the overlap) is moved to a gap Silero saw or to the quietest 32 ms frame within
    # 2 s: much quieter than the speech around it (a random point of this speech is -4 dB, only 5 % are below -28).
    wave, _ = build([1.0, monologue, 1.0])
    level = rms_db(monologue)
    for segment in segmenter.segment_array(wave)[:-1]:
        cut = round((segment.end_s - OVERLAP_S / 2) * SR)
        assert rms_db(wave[cut - 320 : cut + 320]) < level - 25, segment


def test_continuous_speech_is_cut_at_its_longest_pause(segmenter: SpeechSegmenter, monologue: Array) -> None:
    # 8 s + 0.4 s pause + 8 s + 0.8 s pause + 8 s = 25.2 s: too long for one segment; both pauses are shorter than
    # merge_pause_s, so it is split once, at the longer pause (splitting at the other one would also fit).
    parts = monologue[: 8 * SR], monologue[8 * SR : 16 * SR], monologue[16 * SR : 24 * SR]
    wave, speech = build([0.5, parts[0], 0.4, parts[1], 0.8, parts[2], 0.5])
    segments = segmenter.segment_array(wave)
    assert_matches(segments, [(speech[0][0], speech[1][1]), speech[2]])


def test_one_clear_pause_in_long_speech(segmenter: SpeechSegmenter, monologue: Array) -> None:
    wave, speech = build([monologue[: 14 * SR], 0.7, monologue[14 * SR : 28 * SR]])
    segments = segmenter.segment_array(wave)
    assert_matches(segments, speech)


def test_a_smaller_limit_splits_a_merged_stretch(clips: dict[str, Array]) -> None:
    wave, speech = build([0.5, clips["es"], 0.6, clips["hi"], 0.5])  # 6.7 s of speech with one 0.6 s pause
    assert len(SpeechSegmenter().segment_array(wave)) == 1
    segments = SpeechSegmenter(max_segment_s=5.0).segment_array(wave)
    assert_matches(segments, speech)
    check_invariants(segments, len(wave) / SR, max_s=5.0)


# --- streaming ---------------------------------------------------------------------------------------------------


def blocks_of(wave: Array, sizes: Sequence[int]) -> Iterator[Array]:
    position, index = 0, 0
    while position < len(wave):
        size = sizes[index % len(sizes)]
        yield wave[position : position + size]
        position += size
        index += 1


def test_streaming_gives_the_same_segments(
    segmenter: SpeechSegmenter, clips: dict[str, Array], monologue: Array
) -> None:
    c = clips
    wave, _ = build([0.3, c["en"], 0.6, c["fr"], 1.5, c["de"], 0.4, monologue[: 30 * SR], 1.2, c["zh"], 0.2])
    whole = segmenter.segment_array(wave)
    assert len(whole) == 5 and sum(s.hard_cut for s in whole) == 1
    for sizes in ([7 * SR], [1, 511, 513, 3 * SR + 17, 0, 100_000]):
        streamed = segmenter.segment(blocks_of(wave, sizes))
        assert len(streamed) == len(whole)
        for one, other in zip(streamed, whole, strict=True):
            assert one.start_s == pytest.approx(other.start_s, abs=0.1)
            assert one.end_s == pytest.approx(other.end_s, abs=0.1)
            assert one.hard_cut == other.hard_cut
        # In fact frames sit on one grid whatever the block sizes, so the result is the same to the sample.
        assert streamed == whole
    # Some 7 s block edges fall inside speech (and were not turned into pauses: the segments are the same).
    assert any(s.start_s < edge < s.end_s for s in whole for edge in range(7, len(wave) // SR, 7))


def test_blocks_of_other_types_and_empty_input(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    wave, speech = build([1.0, clips["fr"], 1.0])
    read_only = wave.copy()
    read_only.flags.writeable = False  # torch.from_numpy would warn (an error under this suite's filterwarnings)
    assert_matches(segmenter.segment([read_only[:SR], read_only[SR:]]), speech)
    assert_matches(segmenter.segment_array(wave.astype(np.float64)), speech)
    assert_matches(segmenter.segment_array(wave[::-1].copy()[::-1]), speech)  # not contiguous
    assert segmenter.segment([]) == []
    assert segmenter.segment([np.zeros(0, np.float32)]) == []
    assert segmenter.segment_array(np.zeros(100, np.float32)) == []


# --- rules 7 and 8: blips, silence, noise -----------------------------------------------------------------------


def test_silence_and_white_noise_give_nothing(segmenter: SpeechSegmenter) -> None:
    assert segmenter.segment_array(np.zeros(60 * SR, np.float32)) == []
    rng = np.random.default_rng(0)
    # Silero scores white noise below 0.06 at any level (measured: 0.01 to 0.3 RMS), far under the 0.5 threshold.
    for level in (0.01, 0.1, 0.3):
        noise = (rng.standard_normal(20 * SR) * level).astype(np.float32)
        assert segmenter.segment_array(noise) == [], level


def test_speech_in_noise_is_still_found(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    wave, speech = build([1.0, clips["en"], 2.0, clips["fr"], 2.0, clips["de"], 1.0])
    rng = np.random.default_rng(1)
    noise_level = math.sqrt(float(np.mean(clips["en"] ** 2))) / 10  # 20 dB SNR
    noisy = wave + (rng.standard_normal(len(wave)) * noise_level).astype(np.float32)
    assert_matches(segmenter.segment_array(noisy), speech)


def test_short_sounds_alone_are_dropped(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    # A 0.2 s piece of a word alone is not reported (Silero or the 0.25 s blip rule); 0.35 s is.
    blip, word = clips["en"][SR : SR + SR // 5], clips["en"][SR : SR + 7 * SR // 20]
    assert segmenter.segment_array(build([2.0, blip, 2.0])[0]) == []
    wave, speech = build([2.0, word, 2.0])
    assert_matches(segmenter.segment_array(wave), speech)


# --- a long file -------------------------------------------------------------------------------------------------


def test_ten_minutes_of_meeting(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    # Groups of 1-3 utterances 0.4-0.8 s apart (one segment each: at most 3 x 4.9 + 2 x 0.8 = 16.3 s), groups
    # 1.2-12 s apart: one segment per group, edges within 0.3 s of the truth.
    rng = np.random.default_rng(7)
    parts: list[Array | float] = [1.0]
    groups: list[tuple[float, float]] = []
    position = 1.0
    while position < 590:
        start = position
        for index in range(int(rng.integers(1, 4))):
            if index:
                pause = float(rng.choice([0.4, 0.6, 0.8]))
                parts.append(pause)
                position += pause
            clip = clips[LANGS[int(rng.integers(len(LANGS)))]]
            parts.append(clip)
            position += len(clip) / SR
        groups.append((start, position))
        gap = float(rng.choice([1.2, 2.0, 4.0, 12.0]))
        parts.append(gap)
        position += gap
    wave, _ = build(parts)
    assert 590 <= len(wave) / SR <= 620
    started = time.perf_counter()
    segments = segmenter.segment_array(wave)
    elapsed = time.perf_counter() - started
    assert len(segments) == len(groups) > 40
    for segment, (start, end) in zip(segments, groups, strict=True):
        assert abs(segment.start_s - start) <= TOLERANCE_S and abs(segment.end_s - end) <= TOLERANCE_S
    check_invariants(segments, len(wave) / SR)
    # About 6 s on 2 busy cores (1 % of real time); 40 s would mean the VAD runs on several threads again.
    assert elapsed < 40, elapsed


# --- threads, parameters, 8 kHz ----------------------------------------------------------------------------------


def test_importing_silero_keeps_the_thread_count() -> None:
    # `import silero_vad` calls torch.set_num_threads(1): only a fresh process imports it for the first time.
    code = (
        "import torch; torch.set_num_threads(3); from worker.segmentation import SpeechSegmenter; "
        "SpeechSegmenter(); import sys; print(torch.get_num_threads(), 'silero_vad' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["3", "True"], done.stderr


def test_thread_count_is_restored(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        SpeechSegmenter()
        assert torch.get_num_threads() == 3
        segmenter.segment_array(clips["en"])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_segment_s": 0.5},
        {"min_pause_s": 0.0},
        {"merge_pause_s": 0.2},
        {"pad_s": -0.1},
        {"overlap_s": 5.0},
        {"threshold": 0.1},
        {"threshold": 1.0},
        {"max_segment_s": float("nan")},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        SpeechSegmenter(**kwargs)


def test_bad_audio_is_refused(segmenter: SpeechSegmenter) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        segmenter.segment_array(np.zeros(SR, np.float32), sample_rate=44_100)
    with pytest.raises(ValueError, match="1-D"):
        segmenter.segment_array(np.zeros((2, SR), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        segmenter.segment_array(np.full(SR, np.nan, np.float32))


def test_8khz_audio(segmenter: SpeechSegmenter, clips: dict[str, Array]) -> None:
    wave, speech = build([1.0, clips["hi"], 1.5, clips["es"], 1.0])
    at_8k = soxr.resample(wave, SR, 8_000).astype(np.float32)
    assert_matches(segmenter.segment_array(at_8k, sample_rate=8_000), speech)


# --- the planning rules on synthetic regions (no VAD) -----------------------------------------------------------


def limits(*, max_s: float = MAX_S, merge_s: float = 1.0, pad_s: float = 0.1, overlap_s: float = OVERLAP_S) -> _Limits:
    return _Limits(
        max_len=int(max_s * SR),
        merge_gap=round(merge_s * SR),
        pad=round(pad_s * SR),
        overlap=round(overlap_s * SR),
        min_speech=round(MIN_SPEECH_S * SR),
        snap=round(min(2.0, max_s / 4) * SR),
        frame=512,
    )


def seconds(plan: Sequence[tuple[int, int, bool]]) -> list[tuple[float, float, bool]]:
    return [(round(start / SR, 6), round(end / SR, 6), hard) for start, end, hard in plan]


def region(start_s: float, end_s: float) -> _Region:
    return _Region(round(start_s * SR), round(end_s * SR))


def test_plan_blips() -> None:
    # Alone (>= merge_pause_s from other speech): dropped when under 0.25 s; near speech: kept in the stretch.
    regions = [region(1.0, 1.2), region(3.0, 6.0), region(6.5, 6.6), region(9.0, 9.3)]
    assert seconds(_plan(regions, 10 * SR, limits())) == [(2.9, 6.7, False), (8.9, 9.4, False)]


def test_plan_padding_shrinks_at_edges_neighbours_and_the_limit() -> None:
    regions = [region(0.05, 3.0), region(4.1, 8.0), region(9.1, 29.0)]
    plan = seconds(_plan(regions, round(29.1 * SR), limits(pad_s=0.6)))
    # 0.05 s to the start of the audio; half of the 1.1 s gaps; 19.9 s of speech leaves room for 0.1 s of padding,
    # split in two (and the end of the audio is 0.1 s away).
    assert plan == [(0.0, 3.55, False), (3.55, 8.55, False), (9.05, 29.05, False)]


def test_plan_recursive_longest_pause_split() -> None:
    # 30 s of 5 s regions; the longest pause (0.9 s) splits first, then 0.7 s in the right half.
    gaps = [0.4, 0.9, 0.5, 0.7, 0.3]
    regions, position = [], 0.0
    for gap in [*gaps, 0.0]:
        regions.append(region(position, position + 5.0))
        position += 5.0 + gap
    plan = seconds(_plan(regions, round(position * SR) + SR, limits(pad_s=0.0)))
    assert plan == [(0.0, 10.4, False), (11.3, 21.8, False), (22.5, 32.8, False)]


def test_plan_hard_cut_prefers_micro_pauses() -> None:
    long = _Region(SR, 51 * SR, micro=[(round(17.0 * SR), round(17.1 * SR)), (round(18.0 * SR), round(18.2 * SR))])
    plan = seconds(_plan([long], 52 * SR, limits()))
    # 50.2 s padded -> 3 pieces; first ideal cut near 17.7 s; the longer micro-pause (centre 18.1 s) wins.
    assert plan[0] == (0.9, 18.35, True)
    assert [hard for _, _, hard in plan] == [True, True, False]
    assert plan[1][0] == 17.85
    assert plan[-1][1] == 51.1


@pytest.mark.parametrize("seed", range(40))
def test_plan_invariants_on_random_regions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lim = limits(max_s=float(rng.choice([5.0, 12.0, 20.0])), pad_s=float(rng.choice([0.0, 0.1, 0.5])))
    regions: list[_Region] = []
    position = int(rng.integers(0, 2 * SR))
    for _ in range(int(rng.integers(0, 40))):
        length = int(rng.choice([rng.integers(SR // 20, SR), rng.integers(SR, 8 * SR), rng.integers(8 * SR, 60 * SR)]))
        if length > lim.max_len:  # the detector keeps micro-pauses and frame energies for these only
            starts = rng.integers(position, position + length - 2048, size=int(rng.integers(0, 20)))
            micro = sorted((int(m), int(m) + 2048) for m in starts)
            energy = rng.random(-(-length // 512)).astype(np.float32) if rng.random() < 0.5 else None
            regions.append(_Region(position, position + length, micro, energy))
        else:
            regions.append(_Region(position, position + length))
        position += length + int(rng.choice([round(0.3 * SR), round(0.7 * SR), 2 * SR]))
    total = position + int(rng.integers(0, SR))
    plan = _plan(regions, total, lim)
    segments = [SpeechSegment(start / SR, end / SR, hard) for start, end, hard in plan]
    check_invariants(segments, total / SR, max_s=lim.max_len / SR)
    # Every region of at least MIN_SPEECH_S is covered by the union of the segments.
    for speech in regions:
        if speech.end - speech.start >= lim.min_speech:
            covered = sorted((s, e) for s, e, _ in plan if s < speech.end and e > speech.start)
            reach = speech.start
            for s, e in covered:
                assert s <= reach, (speech, covered)
                reach = max(reach, e)
            assert reach >= speech.end

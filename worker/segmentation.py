"""Cut long audio into speech segments of at most ``max_segment_s`` at pauses, with Silero VAD.

SeamlessM4T v2's speech encoder takes short utterances (Meta advises 15-20 s); meetings and lectures are cut here
into segments that are translated in batches and joined. Each :class:`SpeechSegment` carries its start and end
in the source audio (users see them as subtitle timestamps).

How it works
    Silero VAD (``silero-vad`` 6.x, its TorchScript model from the wheel: no network) gives a speech probability
    for every frame of 512 samples (32 ms at 16 kHz; 256 samples at 8 kHz). Frames are cut on an absolute grid
    from the first sample. One model call per frame is slow (its cost is the call, not the maths), so the audio is
    read in *stretches* of 384 frames (12.3 s) on that grid, and 16 stretches run side by side as one batch: one
    model call per frame position, about 4x less time. Each stretch starts from a fresh model state, warmed up on the
    32 frames (1 s) of audio before it (silence before the first), whose outputs are dropped. Compared with one
    sequential pass over the whole file, 0.1 % of frames land on the other side of the threshold (measured on the
    test speech; the sequential pass is no more "right": both are the same model seeing a different past).
    Streamed blocks of any size give exactly the same frames, probabilities and segments as one array, because
    stretches sit on the same grid: speech across a block edge is neither split nor lost. Only timestamps are kept
    (a few per speech region), never audio beyond the 16 stretches being run (12.6 MB at 16 kHz); speech that goes
    on for more than ``max_segment_s`` without a pause also keeps 4 bytes per frame (450 KB per hour) to place its
    hard cuts.
    The last partial frame is zero-padded (as Silero's own ``get_speech_timestamps`` does). Timestamps are
    multiples of one sample, from the first sample of the first block.

Rules
    1. Speech regions: a region starts at the first frame with probability >= ``threshold`` and ends where the
       probability stays below ``threshold - 0.15`` (Silero's own hysteresis) for at least ``min_pause_s``
       (rounded to whole frames: 9 frames = 0.288 s for 0.3 s). Shorter dips stay inside the region; the ones of
       at least 2 frames (64 ms, typically the gap between two words) are remembered as *micro-pauses*, and the
       energy of each frame too, but only for regions longer than ``max_segment_s`` (the only ones that need them,
       see rule 5).
    2. Silence is never part of a segment, except padding of up to ``pad_s`` on each side of the speech. Padding
       shrinks where two segments are closer than ``2 * pad_s`` (each gets half the gap), at the ends of the
       audio, and where the full padding would make a segment longer than ``max_segment_s``.
    3. Regions separated by pauses shorter than ``merge_pause_s`` form a *stretch*; a pause >= ``merge_pause_s``
       always ends one. A stretch whose speech (first start to last end) fits in ``max_segment_s`` becomes one
       segment, so segment boundaries always sit at pauses of at least ``min_pause_s``.
    4. A longer stretch is split at its longest internal pause (ties: the one nearest the middle), and each side
       again until every piece fits or is a single region (iteratively: no recursion limit on hour-long stretches).
    5. A single region longer than ``max_segment_s`` (speech without any pause >= ``min_pause_s``) is cut hard
       into the fewest pieces that fit, of about equal length (no 2 s leftover at the end). Each cut point may move
       up to 2 s (at most ``max_segment_s / 4``) from its ideal place, as far as the limit allows: to the longest
       micro-pause there, or else to the middle of the quietest 32 ms frame there. Silero rarely sees gaps between
       words in fluent speech (4 micro-pauses in the 87 s test monologue), but the quietest frame within 2 s is
       nearly always one: the cuts in that monologue sit 30-75 dB below its average level, where a random point is
       at -4 dB (median). Consecutive pieces overlap by exactly ``overlap_s``, centred on the cut point; every
       piece except the last is marked ``hard_cut=True``. No segment is ever longer than ``max_segment_s``,
       padding included.
    6. Segments are sorted, inside ``[0, duration]``, and do not overlap except by ``overlap_s`` after a hard cut.
    7. Blips: a stretch (or a piece after the splitting of rule 4) with less than ``MIN_SPEECH_S`` = 0.25 s of speech
       is dropped: clicks, coughs, breaths (Silero's own default ``min_speech_duration_ms`` is 250 too). It is a
       guard: Silero itself did not report 0.05-0.2 s snippets of a word alone in silence at all, while 0.3 s ones
       came out as segments. A short region *near* other speech (a pause < ``merge_pause_s`` away) is kept as part
       of its stretch: a short "yes" inside a sentence survives.
    8. No speech gives ``[]``: silence, and white noise too (Silero scores it at most 0.05, measured from 0.01 to
       0.3 RMS). Speech in white noise at 10-30 dB SNR is found with the same edges as in silence.

Defaults and why
    * ``max_segment_s=20``: Meta's advice for SeamlessM4T (15-20 s); its own ``Transcriber`` uses 20 s chunks with
      Silero VAD; the encoder's 4096 positions only overflow with minutes of audio.
    * ``min_pause_s=0.3``: gaps between words in fluent speech are under 0.2 s (espeak-ng: at most 0.15 s; stop
      consonants make 50-100 ms of silence inside words) while pauses at clause and sentence ends last 0.3 s and
      more. Silero found pauses of 0.3 s reliably on our test speech; shorter would cut between words.
    * ``merge_pause_s=1.0``: a pause of a second or more is a sentence or turn boundary; keeping those apart gives
      subtitle-sized segments, while the shorter pauses inside a sentence keep its words together for the model.
    * ``pad_s=0.1``: Silero's edges are accurate to 1-2 frames (the first speech frame starts within about 30 ms
      of the true onset, the end comes 30-60 ms late); 0.1 s protects soft onsets (fricatives) and final releases,
      and, being at most ``min_pause_s / 2``, never makes neighbours overlap.
    * ``overlap_s=0.5``: a word or two at conversational speed, so that a word damaged by a hard cut is whole in
      at least one of the two pieces.
    * ``threshold=0.5``: Silero's default; with ``threshold - 0.15`` to end speech, as Silero does.

Cost (2 shared x86-64 cores, torch 2.13 CPU, one thread): 10 min of speech in 1.8 s, 0.3 % of real time (6.9 s
one frame at a time; `.venv/bin/python bench/long_audio.py` reports it as `vad_alone`). Memory: the 16 stretches
being run (12.6 MB at 16 kHz) and their frame grid (13 MB), plus a block or two: 10 min of audio peaked at 29 MB
of Python allocations in 30 s blocks and 31 MB in 60 s blocks (tracemalloc).

Traps
    * Importing ``silero_vad`` calls ``torch.set_num_threads(1)``; we restore the caller's thread count.
    * The VAD must run on ONE intra-op thread: its ops are tiny, and with 2 threads on 2 busy cores the same audio
      took 30 times longer (29 s instead of 0.95 s for 87 s). :meth:`SpeechSegmenter.segment` sets 1 thread while
      it runs and restores the previous count afterwards. With PyTorch's OpenMP backend (Linux wheels) the count
      is per OS thread, so other threads are not affected; elsewhere it may be process-wide for that moment.
    * The model is stateful (recurrent state, context): one segmenter runs one ``segment`` call at a time (a lock
      serialises concurrent calls).
    * ``torch.from_numpy`` warns on read-only arrays: blocks that are not writable are copied.
    * Silero's ``read_audio`` needs torchaudio/torchcodec: decode with ``shared.audio`` instead.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["MIN_SPEECH_S", "SpeechSegment", "SpeechSegmenter"]

MIN_SPEECH_S: Final = 0.25
"""Stretches with less speech than this are dropped (rule 7)."""

_NEG_THRESHOLD_OFFSET: Final = 0.15  # Silero's hysteresis: speech ends below threshold - 0.15
_MICRO_PAUSE_FRAMES: Final = 2  # dips of at least this many frames are candidate hard-cut points
_SNAP_S: Final = 2.0  # a hard cut may move this far (at most max_segment_s / 4) to reach a micro-pause
_FRAME_SAMPLES: Final = {16_000: 512, 8_000: 256}  # what Silero accepts
_STREAMS: Final = 16  # the VAD runs this many stretches of the audio side by side, one batched model call per frame
_STREAM_FRAMES: Final = 384  # frames per stretch (12.3 s at 16 kHz)
_WARMUP_FRAMES: Final = 32  # frames (1 s) before a stretch that the model sees first and whose output is dropped


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of the source audio to translate as one utterance."""

    start_s: float
    """Start in the source audio, seconds."""
    end_s: float
    """End in the source audio, seconds."""
    hard_cut: bool = False
    """True when this segment was cut at the length limit without a pause: it overlaps the next by ``overlap_s``."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class _Region:
    """Speech found by the VAD, in samples.

    Only for regions longer than the limit (the others never need them): ``micro`` holds (start, end) of
    micro-pauses, ``energy`` the mean square of each frame from ``start`` on.
    """

    start: int
    end: int
    micro: list[tuple[int, int]] = field(default_factory=list)
    energy: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class _Limits:
    """The segmenter's parameters, in samples."""

    max_len: int
    merge_gap: int
    pad: int
    overlap: int
    min_speech: int
    snap: int
    frame: int


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class SpeechSegmenter:
    """Finds speech segments in long audio; see the module docstring for the rules. Thread-safe, reusable."""

    def __init__(
        self,
        *,
        max_segment_s: float = 20.0,
        min_pause_s: float = 0.3,
        merge_pause_s: float = 1.0,
        pad_s: float = 0.1,
        overlap_s: float = 0.5,
        threshold: float = 0.5,
    ) -> None:
        _check(math.isfinite(max_segment_s) and max_segment_s >= 1.0, "max_segment_s must be at least 1 s")
        _check(math.isfinite(min_pause_s) and min_pause_s > 0, "min_pause_s must be positive")
        _check(math.isfinite(merge_pause_s) and merge_pause_s >= min_pause_s, "merge_pause_s must be >= min_pause_s")
        _check(math.isfinite(pad_s) and pad_s >= 0, "pad_s must be >= 0")
        _check(
            math.isfinite(overlap_s) and 0 <= overlap_s < max_segment_s / 4, "overlap_s must be in [0, max_segment_s/4)"
        )
        _check(_NEG_THRESHOLD_OFFSET < threshold < 1, "threshold must be in (0.15, 1)")
        self.max_segment_s = max_segment_s
        self.min_pause_s = min_pause_s
        self.merge_pause_s = merge_pause_s
        self.pad_s = pad_s
        self.overlap_s = overlap_s
        self.threshold = threshold
        self._lock = threading.Lock()
        self._model = _load_silero()

    # ------------------------------------------------------------------------------------------------ public

    def segment(self, blocks: Iterable[np.ndarray], *, sample_rate: int = 16_000) -> list[SpeechSegment]:
        """Segments of consecutive mono float blocks (any sizes); the audio's duration is the blocks' total.
        Blocks are read without a copy and may be kept until 16 stretches are full: do not reuse one buffer for
        several blocks."""
        frame = _FRAME_SAMPLES.get(sample_rate)
        if frame is None:
            raise ValueError(f"sample_rate must be 16000 or 8000 (Silero VAD), not {sample_rate}")
        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    regions, total = self._detect(blocks, sample_rate, frame)
            finally:
                torch.set_num_threads(threads)
        limits = _Limits(
            max_len=int(self.max_segment_s * sample_rate),
            merge_gap=round(self.merge_pause_s * sample_rate),
            pad=round(self.pad_s * sample_rate),
            overlap=round(self.overlap_s * sample_rate),
            min_speech=round(MIN_SPEECH_S * sample_rate),
            snap=round(min(_SNAP_S, self.max_segment_s / 4) * sample_rate),
            frame=frame,
        )
        return [
            SpeechSegment(start / sample_rate, end / sample_rate, hard)
            for start, end, hard in _plan(regions, total, limits)
        ]

    def segment_array(self, wave: np.ndarray, *, sample_rate: int = 16_000) -> list[SpeechSegment]:
        """Segments of one mono float array."""
        return self.segment([wave], sample_rate=sample_rate)

    # ------------------------------------------------------------------------------------------------ the VAD

    def _detect(self, blocks: Iterable[np.ndarray], sample_rate: int, frame: int) -> tuple[list[_Region], int]:
        """Run the VAD over the blocks: speech regions (samples) and the total number of samples."""
        detector = _Detector(
            threshold=self.threshold,
            pause_frames=max(1, round(self.min_pause_s * sample_rate / frame)),
            frame=frame,
            keep_micro_longer_than=int(self.max_segment_s * sample_rate),
        )
        group = _STREAMS * _STREAM_FRAMES * frame
        history = np.zeros(_WARMUP_FRAMES * frame, dtype=np.float32)  # before the first sample: silence
        pending: list[npt.NDArray[np.float32]] = []  # samples not yet run, in order
        waiting = total = 0
        for raw in blocks:
            block = _as_block(raw)
            del raw
            total += len(block)
            pending.append(block)  # kept, not copied, until 16 stretches are full
            waiting += len(block)
            del block
            while waiting >= group:
                joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending = []  # the blocks are in ``joined`` now: let them go
                history = self._run_streams(detector, joined[:group], history, sample_rate, frame)
                rest = joined[group:].copy()  # a view would keep all of ``joined`` alive
                del joined
                pending, waiting = ([rest] if len(rest) else []), len(rest)
        if waiting:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            tail = np.zeros(-(-waiting // frame) * frame, dtype=np.float32)  # the last partial frame zero-padded
            tail[:waiting] = joined
            del joined, pending
            self._run_streams(detector, tail, history, sample_rate, frame)
        self._model.reset_states()
        return detector.finish(total), total

    def _run_streams(
        self,
        detector: _Detector,
        samples: npt.NDArray[np.float32],
        history: npt.NDArray[np.float32],
        rate: int,
        frame: int,
    ) -> npt.NDArray[np.float32]:
        """Run the VAD on whole frames as parallel streams of ``_STREAM_FRAMES``, each warmed up on the
        ``_WARMUP_FRAMES`` before it; push the probabilities in order; return the samples that warm up the next."""
        frames = len(samples) // frame
        streams = -(-frames // _STREAM_FRAMES)
        padding = np.zeros(streams * _STREAM_FRAMES * frame - len(samples), dtype=np.float32)
        grid = np.concatenate([history, samples, padding]).reshape(-1, frame)
        row = grid.strides[0]
        windows = np.lib.stride_tricks.as_strided(
            grid, shape=(streams, _WARMUP_FRAMES + _STREAM_FRAMES, frame), strides=(row * _STREAM_FRAMES, row, 4)
        )
        model = self._model
        model.reset_states()  # each stream starts fresh (and Silero resets on a change of batch size anyway)
        probs = np.empty((streams, _STREAM_FRAMES), dtype=np.float32)
        for step in range(_WARMUP_FRAMES + _STREAM_FRAMES):
            out = model(torch.from_numpy(np.ascontiguousarray(windows[:, step])), rate)
            if step >= _WARMUP_FRAMES:
                probs[:, step - _WARMUP_FRAMES] = out.numpy().reshape(streams)
        energies = _frame_energies(samples[: frames * frame], frame)
        for index, prob in enumerate(probs.reshape(-1)[:frames].tolist()):
            detector.push(prob, float(energies[index]))
        if len(samples) >= len(history):
            return samples[len(samples) - len(history) :].copy()
        return np.concatenate([history, samples])[len(samples) :]


def _load_silero() -> Any:
    """Silero's TorchScript model from the wheel; restores the thread count its import sets to 1."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        model = load_silero_vad()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


def _frame_energies(samples: npt.NDArray[np.float32], frame: int) -> npt.NDArray[np.float32]:
    """Mean square of each whole frame."""
    frames = samples.reshape(-1, frame)
    energies: npt.NDArray[np.float32] = np.einsum("ij,ij->i", frames, frames) / np.float32(frame)
    return energies


def _as_block(raw: np.ndarray) -> npt.NDArray[np.float32]:
    block = np.asarray(raw)
    if block.ndim != 1:
        raise ValueError(f"audio blocks must be 1-D (mono), got shape {block.shape}")
    if block.dtype != np.float32 or not block.flags.c_contiguous or not block.flags.writeable:
        block = np.array(block, dtype=np.float32)  # a writable contiguous copy: torch.from_numpy needs one
    if not math.isfinite(float(np.sum(block, dtype=np.float64))):  # NaN/inf propagate; float32 cannot overflow it
        raise ValueError("audio blocks must not contain NaN or infinity")
    return block


class _Detector:
    """Silero's hysteresis over frame probabilities, one frame at a time (rule 1)."""

    def __init__(self, *, threshold: float, pause_frames: int, frame: int, keep_micro_longer_than: int) -> None:
        self.threshold = threshold
        self.neg_threshold = threshold - _NEG_THRESHOLD_OFFSET
        self.pause_frames = pause_frames
        self.frame = frame
        self.keep_micro_longer_than = keep_micro_longer_than
        self.regions: list[_Region] = []
        self.index = 0  # of the next frame
        self.start: int | None = None  # first frame of the open region
        self.quiet_from: int | None = None  # first frame of the current dip inside the open region
        self.micro: list[tuple[int, int]] = []
        self.energy = array("f")  # of the open region's frames

    def push(self, prob: float, energy: float) -> None:
        index = self.index
        self.index += 1
        if self.start is None:
            if prob >= self.threshold:
                self.start, self.quiet_from, self.micro, self.energy = index, None, [], array("f", [energy])
            return
        self.energy.append(energy)
        if prob >= self.threshold:
            if self.quiet_from is not None:
                if index - self.quiet_from >= _MICRO_PAUSE_FRAMES:
                    self.micro.append((self.quiet_from * self.frame, index * self.frame))
                self.quiet_from = None
        elif prob < self.neg_threshold:
            if self.quiet_from is None:
                self.quiet_from = index
            if index + 1 - self.quiet_from >= self.pause_frames:
                self._close(self.quiet_from * self.frame)

    def _close(self, end: int) -> None:
        assert self.start is not None
        start = self.start * self.frame
        if end - start > self.keep_micro_longer_than:
            energy = np.frombuffer(self.energy, dtype=np.float32, count=-(-(end - start) // self.frame)).copy()
            self.regions.append(_Region(start, end, self.micro, energy))
        else:
            self.regions.append(_Region(start, end))
        self.start, self.quiet_from, self.micro, self.energy = None, None, [], array("f")

    def finish(self, total: int) -> list[_Region]:
        if self.start is not None:
            end = self.index * self.frame if self.quiet_from is None else self.quiet_from * self.frame
            self._close(min(end, total))
        return self.regions


# ------------------------------------------------------------------------------------------------ planning


def _plan(regions: Sequence[_Region], total: int, limits: _Limits) -> list[tuple[int, int, bool]]:
    """Rules 2-7 on speech regions (samples): ``(start, end, hard_cut)`` in samples, sorted."""
    pieces: list[list[_Region]] = []
    for stretch in _stretches(regions, limits.merge_gap):
        for piece in _split_at_pauses(stretch, limits.max_len):
            if sum(region.end - region.start for region in piece) >= limits.min_speech:
                pieces.append(piece)
    out: list[tuple[int, int, bool]] = []
    for index, piece in enumerate(pieces):
        start, end = piece[0].start, piece[-1].end
        before = pieces[index - 1][-1].end if index else None
        after = pieces[index + 1][0].start if index + 1 < len(pieces) else None
        pad_left = min(limits.pad, start, (start - before) // 2 if before is not None else limits.pad)
        pad_right = min(limits.pad, total - end, (after - end) // 2 if after is not None else limits.pad)
        pad_left, pad_right = max(pad_left, 0), max(pad_right, 0)
        if end - start <= limits.max_len:
            room = limits.max_len - (end - start)
            pad_left = min(pad_left, room // 2)
            pad_right = min(pad_right, room - pad_left)
            out.append((start - pad_left, end + pad_right, False))
        else:  # a single region longer than the limit (rule 5)
            out.extend(_hard_cuts(start - pad_left, end + pad_right, piece[0], limits))
    return out


def _stretches(regions: Sequence[_Region], merge_gap: int) -> list[list[_Region]]:
    """Regions grouped by pauses shorter than ``merge_gap`` (rule 3)."""
    groups: list[list[_Region]] = []
    for region in regions:
        if groups and region.start - groups[-1][-1].end < merge_gap:
            groups[-1].append(region)
        else:
            groups.append([region])
    return groups


def _split_at_pauses(stretch: list[_Region], max_len: int) -> list[list[_Region]]:
    """Split at the longest pause until every piece fits or is one region (rule 4), in order."""
    done: list[list[_Region]] = []
    todo = [stretch]
    while todo:
        piece = todo.pop()
        if len(piece) == 1 or piece[-1].end - piece[0].start <= max_len:
            done.append(piece)
            continue
        middle = (piece[0].start + piece[-1].end) / 2

        def preference(i: int, piece: list[_Region] = piece, middle: float = middle) -> tuple[int, float]:
            gap_start, gap_end = piece[i].end, piece[i + 1].start
            return gap_end - gap_start, -abs((gap_start + gap_end) / 2 - middle)

        cut = max(range(len(piece) - 1), key=preference)
        todo.append(piece[cut + 1 :])  # popped after the left part: output stays in order
        todo.append(piece[: cut + 1])
    return done


def _hard_cuts(start: int, end: int, region: _Region, limits: _Limits) -> list[tuple[int, int, bool]]:
    """Cut ``[start, end)`` (one long region, padded) into the fewest pieces <= max_len overlapping by ``overlap``.

    Each cut point (the middle of an overlap) goes to the longest micro-pause near its ideal place, else to the
    quietest frame there, else to the ideal place itself.
    """
    max_len, overlap, frame = limits.max_len, limits.overlap, limits.frame
    count = -(-(end - start - overlap) // (max_len - overlap))  # ceil
    half = overlap // 2
    micro_ends = [(a + b) // 2 + half for a, b in region.micro]  # piece end that puts the cut in the micro-pause
    out: list[tuple[int, int, bool]] = []
    piece_start = start
    for index in range(count - 1):
        after = count - index - 1  # pieces still to come after this one
        lowest = end - after * (max_len - overlap)  # the rest must still fit in `after` pieces
        highest = piece_start + max_len
        ideal = piece_start + (end - piece_start + after * overlap) // (after + 1)  # equal shares of what is left
        ideal = min(max(ideal, lowest), highest)  # (only integer rounding could put it outside)
        low, high = max(lowest, ideal - limits.snap), min(highest, ideal + limits.snap)
        piece_end = ideal
        first, last = bisect.bisect_left(micro_ends, low), bisect.bisect_right(micro_ends, high)
        if first < last:
            best = max(
                range(first, last),
                key=lambda i: (region.micro[i][1] - region.micro[i][0], -abs(micro_ends[i] - ideal)),
            )
            piece_end = micro_ends[best]
        elif region.energy is not None:
            offset = region.start + frame // 2 + half  # piece end for a cut in the middle of frame 0
            first = max(0, -(-(low - offset) // frame))
            last = min(len(region.energy) - 1, (high - offset) // frame)
            if first <= last:
                piece_end = offset + frame * (first + int(np.argmin(region.energy[first : last + 1])))
        out.append((piece_start, piece_end, True))
        piece_start = piece_end - overlap
    out.append((piece_start, end, False))
    return out

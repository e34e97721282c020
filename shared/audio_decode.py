"""Probing an upload and decoding it to 16 kHz mono float32, with FFmpeg (PyAV) and libsoxr.

No torch here: the gateway imports this module. Files are opened by :mod:`shared.audio_container` (from their
bytes only, through an allow-list of demuxers; see there for what is read and why that is safe). Nothing is read
through libsndfile any more: decoding the same WAV, FLAC, OGG and MP3 files in turn, FFmpeg's path ran at 1.6x,
1.1x, 0.9x and 1.3x the speed of the libsndfile path it replaces (``bench/audio_read.py --compare-root``), and
libsndfile reads none of the other containers.

Length: what the gateway charges and limits
    ``probe_audio`` decodes nothing but the last packets. It takes the length from the container where the
    container states it exactly: WAV/W64/AIFF/CAF/AU (the data size), FLAC (STREAMINFO), OGG (the last page's
    granule position), MP4/M4A/MOV (the sample tables), WebM/MKV (the segment duration) and WMA/ASF (the header).
    It then checks that the file really reaches that length: it seeks to half a second before the stated end and
    decodes what is there; a file cut short (nothing there, or a last packet that does not decode), or a header
    claiming hours in a few KB, is :class:`InvalidAudio`. Where a demuxer cannot seek there (a FLAC without a
    seek table), the packets are scanned instead. Where the container states no length (MP3, whose Xing/LAME
    header FFmpeg cannot tell apart from its own estimate from the bit rate; ADTS AAC; AMR; AVI; a WebM written
    live; a FLAC of "unknown" length), the probe scans the packets, without decoding them, and sums their
    durations; when an MP3's header agrees with the scan (within three frames) its exact, gapless length is kept.
    An MP3 whose header understates its length is therefore measured as it is, at the gateway already. Float
    PCM (the only samples a container can hold as NaN/Inf) is also scanned, as raw packet bytes, to refuse
    NaN/Inf at submission. A scan reads the whole file: about 19 ms per MiB of MP3 (4 s for 4 hours at
    128 kb/s), 0.4 ms per MiB of WAV. FFmpeg's WAV demuxer (as libsndfile) reads a ``data`` size larger than
    the file as "what is there": a WAV cut short is a valid shorter file, as every player treats it.
Length: what the worker decodes
    The decoders never go past ``max_seconds`` (the worker passes ``M4T_MAX_AUDIO_S``): on the first codec
    frame past it they raise :class:`AudioTooLong`, whatever the header said, so a file that understates its
    length can neither run the worker past the limit nor be silently cut at the length it claimed (as
    libsndfile cut an MP3 at its Xing header's length). A file whose container states its length and that
    decodes to less than that, by more than 1 % or two codec frames (at most 0.25 s), is :class:`InvalidAudio`
    (truncated or corrupt); up to two frames more than stated are the codec's padding and are cut. A frame that
    fails to decode is :class:`InvalidAudio` (a FLAC frame failing its CRC included), except in MP3, ADTS AAC
    and AMR: those are streams of independent frames without an exact length, and a damaged frame is skipped,
    as players do. The probe decodes only the end of a file, so a file damaged in the middle may pass it and
    fail in the worker (the job then fails with ``invalid_audio``); the reverse can happen for damaged headers.

Decoding
    Decoded frames are gathered 65 536 samples at a time (an ``AudioFifo``), converted to float32 (integer
    samples scaled to [-1, 1)), downmixed by averaging *all* their channels (no channel dropped, none weighted:
    LFE included), checked for NaN/Inf and pushed through one streaming ``soxr.ResampleStream`` (quality "HQ").
    Memory is bounded by the output blocks, never by the input's size x channels. The output length is
    ``round(frames * target / rate)`` (halves up), and at least one sample: a 1-frame file decodes to one sample,
    the mean of its input. A stream that changes its sample rate mid-way (concatenated MP3s) is resampled piece
    by piece, each piece to its own exact length. Opus always decodes at 48 kHz (the rate FFmpeg reports for
    it, whatever rate the encoder was fed). Planar frames of 8 channels or more are interleaved by FFmpeg before
    numpy sees them (see :class:`_Packer`: PyAV 18.1 crashes on their planes).

Resampler: libsoxr "HQ", not FFmpeg's swresample (``av.AudioResampler``)
    Measured on the French speech clip resampled to 44.1 and 48 kHz and back to 16 kHz, and on tones
    (``bench/audio_read.py --resampler``, results in ``bench/results/resampler.json``): soxr HQ ran 1 530x
    (44.1 kHz) and 2 280x (48 kHz) real time (2 shared cores), swresample with its defaults 690x and 680x (fed in
    4096-sample frames, as we would use it); soxr keeps 7 kHz at -0.01 dB where swresample loses 0.39 dB, and
    rejects a tone just above the new Nyquist frequency (8.4 kHz, which would alias to 7.6 kHz) by 132-152 dB
    where swresample lets it through at -22 dB. soxr is twice as fast and far cleaner; swresample would only
    save a small dependency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import BinaryIO, Final, TypeAlias

import av
import av.error
import numpy as np
import numpy.typing as npt
import soxr
from av.audio.frame import AudioFrame

from shared.audio_container import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioSource,
    OpenedAudio,
    check_channels_and_rate,
    open_audio,
    readable_source,
)
from shared.errors import AudioTooLong, InvalidAudio

__all__ = [
    "RESAMPLE_QUALITY",
    "TARGET_SAMPLE_RATE",
    "AudioInfo",
    "AudioSource",
    "decode_audio",
    "iter_decoded_blocks",
    "probe_audio",
]

TARGET_SAMPLE_RATE: Final = 16_000
RESAMPLE_QUALITY: Final = "HQ"

PROBE_TIME_LIMIT_S: Final = 60.0
"""The most ``probe_audio`` may take (open, end check, packet scan); past it the file is :class:`InvalidAudio`."""
OPEN_TIME_LIMIT_S: Final = 60.0
"""The most the decoders may take to open a file (FFmpeg's probing); decoding itself is bounded by its length."""

Waveform: TypeAlias = npt.NDArray[np.float32]

# Containers whose stated length is exact (see the module docstring); every other length is measured by a scan.
_STATED_LENGTH: Final = frozenset(
    {"wav", "w64", "aiff", "caf", "au", "flac", "ogg", "m4a", "mp4", "mov", "3gp", "webm", "mkv", "wma"}
)
# Streams of independent frames without an exact length: a frame that does not decode is skipped.
_LENIENT: Final = frozenset({"mp3", "aac", "amr"})
# Float PCM codecs -> numpy dtype of their packets' bytes (the only samples that can be NaN/Inf).
_FLOAT_PCM: Final = {"pcm_f32le": "<f4", "pcm_f32be": ">f4", "pcm_f64le": "<f8", "pcm_f64be": ">f8"}
# Integer sample formats: (scale to [-1, 1), offset subtracted first).
_INT_SCALE: Final = {"u8": (1 / 128, 128.0), "s16": (1 / 32768, 0.0), "s32": (1 / 2**31, 0.0), "s64": (1 / 2**63, 0.0)}

_MIN_FRACTION: Final = 0.99  # a stated length must be reached within 1 % (or two packets/frames, if more)
_FRAME_SLACK_CAP_S: Final = 0.25
_END_CHECK_LEAD_S: Final = 0.5  # the end check seeks this much before the point it must reach
_PLANES_IN_FRAME: Final = 8  # AV_NUM_DATA_POINTERS: frames with more planes keep them elsewhere (see _Packer)
_BATCH_SAMPLES: Final = 2**16  # decoded samples (per channel) downmixed and resampled at a time
_HOLDBACK: Final = 64  # output samples kept back until a piece ends, so that its final length can be trimmed
_DECODE_BLOCK_SAMPLES: Final = 2**16
_INITIAL_CAPACITY_CAP: Final = 2**26  # decode_audio pre-allocates at most this many samples up front

_NO_FRAMES: Final = "The audio file contains no audio frames: it is empty, truncated or corrupt."
_CORRUPT: Final = "The audio could not be decoded: the file is corrupt or truncated."
_NOT_FINITE: Final = "The audio contains NaN or infinite sample values."


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, as the gateway sees it without decoding (validated; see the module docstring)."""

    format: str  # the container: "wav", "flac", "ogg", "mp3", "m4a", "mp4", "mov", "webm", "mkv", "aiff", ...
    subtype: str  # FFmpeg's codec name: "pcm_s16le", "pcm_f32le", "flac", "vorbis", "opus", "mp3", "aac", ...
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


# ------------------------------------------------------------------------------------------------- length


def _hinted_seconds(opened: OpenedAudio) -> float | None:
    """The length the container gives (stated, or FFmpeg's own estimate from the bit rate), if any."""
    stream = opened.stream
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    duration = opened.container.duration
    if duration is not None and duration > 0:
        return duration / av.time_base
    return None


def _stated_seconds(opened: OpenedAudio) -> float | None:
    """The length the container states, if it is one whose statement is exact (else None: measure it)."""
    return _hinted_seconds(opened) if opened.format in _STATED_LENGTH else None


def _slack_s(stated_s: float, frame_s: float) -> float:
    """How far short of its stated length a complete stream may end: 1 %, or two codec frames (capped at 0.25 s:
    lossy codecs end up to a frame early or late, and muxers round)."""
    return max((1 - _MIN_FRACTION) * stated_s, min(2 * frame_s, _FRAME_SLACK_CAP_S))


def _start_ticks(opened: OpenedAudio) -> int:
    return opened.stream.start_time or 0


def _reaches(opened: OpenedAudio, stated_s: float) -> bool | None:
    """Whether the stream really goes on to (about) ``stated_s``: seek to just before that and decode what is
    there. A file cut short has nothing there, or a last packet that fails to decode. None when the demuxer
    cannot seek there (FLAC without a seek table refuses seeks in small files): the stream is then unusable,
    and the caller measures the file again from its start."""
    stream = opened.stream
    time_base = stream.time_base
    if time_base is None:
        return True
    context = stream.codec_context
    start = _start_ticks(opened)
    tail_s = max(0.0, stated_s - _slack_s(stated_s, _FRAME_SLACK_CAP_S) - _END_CHECK_LEAD_S)
    try:
        opened.container.seek(start + int(tail_s / time_base), stream=stream, backward=True)
    except av.error.FFmpegError:
        return None
    context.flush_buffers()
    reached_s = 0.0
    longest_s = 0.0
    warmed_up = False  # decoders that need context (overlap, bit reservoir) may fail on the first packets after a seek
    try:
        for packet in opened.container.demux(stream):
            opened.check_deadline()
            ticks = packet.pts if packet.pts is not None else packet.dts
            length_s = float((packet.duration or 0) * time_base)
            longest_s = max(longest_s, length_s)
            if ticks is not None and float((ticks - start) * time_base) + length_s < tail_s:
                continue  # before the tail (a seek that landed early, without an index): skipped, not decoded
            try:
                frames = context.decode(packet)
            except av.error.FFmpegError:
                if warmed_up and opened.format not in _LENIENT:
                    return False
                continue
            for frame in frames:
                warmed_up = True
                length_s = frame.samples / frame.sample_rate
                longest_s = max(longest_s, length_s)
                if frame.time is not None:
                    reached_s = max(reached_s, frame.time - start * float(time_base) + length_s)
                elif ticks is not None:
                    reached_s = max(reached_s, float((ticks - start) * time_base) + length_s)
    except av.error.FFmpegError:
        return False
    opened.check_deadline()
    return reached_s >= stated_s - _slack_s(stated_s, longest_s)


@dataclass(frozen=True)
class _Scan:
    seconds: float
    longest_packet_s: float


def _scan(opened: OpenedAudio) -> _Scan:
    """Read every packet of the stream without decoding it: how far they reach, and (for float PCM) a check of
    every sample for NaN/Inf."""
    stream = opened.stream
    time_base = stream.time_base
    if time_base is None:
        return _Scan(0.0, 0.0)
    dtype = _FLOAT_PCM.get(opened.codec)
    start = _start_ticks(opened)
    end_ticks = summed = longest = 0
    try:
        for packet in opened.container.demux(stream):
            opened.check_deadline()
            if packet.size == 0:
                continue
            if dtype is not None:
                raw = bytes(packet)
                itemsize = np.dtype(dtype).itemsize
                if not np.isfinite(np.frombuffer(raw, dtype=dtype, count=len(raw) // itemsize)).all():
                    raise InvalidAudio(_NOT_FINITE)
            length = packet.duration or 0
            summed += length
            longest = max(longest, length)
            ticks = packet.pts if packet.pts is not None else packet.dts
            if ticks is not None:
                end_ticks = max(end_ticks, ticks - start + length)
    except av.error.FFmpegError:
        pass  # a damaged tail: the length is what came before it (the decoders find the same)
    opened.check_deadline()
    return _Scan(float(max(end_ticks, summed) * time_base), float(longest * time_base))


def _truncated(stated_s: float) -> InvalidAudio:
    return InvalidAudio(
        "The audio file is truncated or corrupt: its audio ends before the length its header states.",
        details={"stated_s": round(stated_s, 3)},
    )


def _resolved_seconds(stated: float | None, hint: float | None, scan: _Scan) -> float:
    """The length from a scan, and what the container said."""
    if stated is not None:
        if scan.seconds < stated - _slack_s(stated, scan.longest_packet_s):
            raise _truncated(stated)
        if scan.seconds > stated + _slack_s(stated, scan.longest_packet_s):
            return scan.seconds  # the header understates the length: the packets are the truth
        return stated
    if hint is not None and abs(hint - scan.seconds) <= max((1 - _MIN_FRACTION) * hint, 3 * scan.longest_packet_s):
        # An MP3's LAME header, say: exact, without the encoder's delay and padding that the packets include.
        return hint
    return scan.seconds


def _probed(fileobj: BinaryIO, deadline: float) -> AudioInfo:
    with open_audio(fileobj, deadline=deadline) as opened:
        info = AudioInfo(opened.format, opened.codec, opened.sample_rate, opened.channels, 0)
        hint = _hinted_seconds(opened)
        stated = _stated_seconds(opened)
        seconds: float | None = None
        if stated is None or opened.codec in _FLOAT_PCM:  # float PCM: every sample is read for NaN/Inf anyway
            seconds = _resolved_seconds(stated, hint, _scan(opened))
        else:
            reached = _reaches(opened, stated)
            if reached is False:
                raise _truncated(stated)
            if reached:
                seconds = stated
    if seconds is None:  # the end check could not seek: measure from the start instead
        with open_audio(fileobj, deadline=deadline) as opened:
            seconds = _resolved_seconds(stated, hint, _scan(opened))
    frames = round(seconds * info.sample_rate)
    if frames <= 0:
        raise InvalidAudio(_NO_FRAMES)
    return replace(info, frames=frames)


# ------------------------------------------------------------------------------------------------ decoding


class _Packer:
    """Converts planar frames of 8 or more channels to interleaved float32 (in C, through FFmpeg's ``aformat``).

    PyAV 18's ``AudioFrame.planes`` (and so ``to_ndarray``) counts planes until a null pointer, reading past the
    end of FFmpeg's plane array when a planar frame has 8 channels or more: it then reads garbage pointers, and a
    Vorbis, Opus or AAC 7.1 file crashes the process (seen: a segmentation fault on every 8-channel Vorbis file).
    Such frames are therefore never touched plane by plane: they are interleaved first, which leaves one plane.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, int, str] | None = None

    @staticmethod
    def needed(frame: AudioFrame) -> bool:
        return bool(frame.format.is_planar) and frame.layout.nb_channels >= _PLANES_IN_FRAME

    def pack(self, frame: AudioFrame) -> list[AudioFrame]:
        key = (frame.layout.name, frame.sample_rate, frame.format.name)
        out = self.flush() if key != self._key else []
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            self._key = key
        return out + list(self._resampler.resample(frame))

    def flush(self) -> list[AudioFrame]:
        if self._resampler is None:
            return []
        out = list(self._resampler.resample(None))
        self._resampler, self._key = None, None
        return out


def _mono(frame: AudioFrame) -> Waveform:
    """The frame's samples as float32 in [-1, 1), averaged over all its channels (a planar frame of 8 or more
    channels must have gone through :class:`_Packer` first)."""
    fmt = frame.format
    channels = frame.layout.nb_channels
    if channels > MAX_CHANNELS:
        raise InvalidAudio(f"The audio has {channels} channels; at most {MAX_CHANNELS} are accepted.")
    data = frame.to_ndarray()
    base = fmt.name[:-1] if fmt.is_planar else fmt.name
    scale, offset = _INT_SCALE.get(base, (1.0, 0.0))
    # Planar: channels x samples; packed: samples x channels. A float32 matrix-vector product averages them.
    samples = data if fmt.is_planar else data.reshape(-1, channels)
    if channels == 1:
        mono = samples.reshape(-1).astype(np.float32)
        if scale != 1.0 or offset:
            mono = (mono - np.float32(offset)) * np.float32(scale)
        return mono
    weights = np.full(channels, scale / channels, dtype=np.float32)
    values = samples.astype(np.float32, copy=False)
    out: Waveform = weights @ values if fmt.is_planar else values @ weights
    if offset:
        out -= np.float32(offset * scale)
    return out


def _drain(fifo: av.AudioFifo) -> Iterator[AudioFrame]:
    """What the FIFO holds, as one frame (nothing when it is empty)."""
    frame = fifo.read(fifo.samples) if fifo.samples else None
    if frame is not None:
        yield frame


def _output_length(frames: int, rate: int, target: int) -> int:
    """round(frames * target / rate), halves up, at least 1 for a non-empty input."""
    if frames <= 0:
        return 0
    return max(1, (2 * frames * target + rate) // (2 * rate))


class _Pending:
    """Decoded output waiting to be cut into blocks of a fixed size."""

    def __init__(self) -> None:
        self._parts: list[Waveform] = []
        self.size = 0

    def push(self, part: Waveform) -> None:
        if len(part):
            self._parts.append(part)
            self.size += len(part)

    def take(self, count: int) -> Waveform:
        if count >= self.size:
            out = np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
            self._parts, self.size = [], 0
            return out.astype(np.float32, copy=False)
        pieces: list[Waveform] = []
        need = count
        while need:
            first = self._parts[0]
            if len(first) <= need:
                pieces.append(first)
                self._parts.pop(0)
                need -= len(first)
            else:
                pieces.append(first[:need])
                self._parts[0] = first[need:]
                need = 0
        self.size -= count
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0].copy()

    def drop_last(self, count: int) -> None:
        """Remove the last ``count`` samples (at most ``size``)."""
        keep = self.size - min(count, self.size)
        kept = self.take(keep) if keep else np.zeros(0, dtype=np.float32)
        self._parts, self.size = [], 0
        self.push(kept)


class _Piece:
    """A run of input at one sample rate, through one soxr stream, trimmed or padded to its exact length."""

    def __init__(self, rate: int, target: int, *, first: bool) -> None:
        self.rate, self.target, self.first = rate, target, first
        self._resampler = (
            soxr.ResampleStream(rate, target, 1, dtype="float32", quality=RESAMPLE_QUALITY) if rate != target else None
        )
        self.frames = 0
        self.produced = 0
        self._sum = 0.0

    def push(self, mono: Waveform, pending: _Pending) -> None:
        self.frames += len(mono)
        self._sum += float(mono.sum(dtype=np.float64))
        self._give(self._resampler.resample_chunk(mono, last=False) if self._resampler else mono, pending)

    def finish(self, pending: _Pending) -> None:
        if self._resampler is not None:
            self._give(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True), pending)
        missing = _output_length(self.frames, self.rate, self.target) - self.produced
        if missing < 0:
            pending.drop_last(-missing)  # within the held-back tail: never more than a few samples
        elif missing:
            # Only for input shorter than half an output sample (soxr gives nothing) or a sample of rounding:
            # pad with the input's mean (a 1-frame file decodes to its value), or with silence.
            fill = self._sum / self.frames if self.first and self.produced == 0 else 0.0
            pending.push(np.full(missing, fill, dtype=np.float32))

    def _give(self, out: Waveform, pending: _Pending) -> None:
        self.produced += len(out)
        pending.push(out)


class _Decoder:
    """An opened, validated source plus the streaming decode loop; a context manager owning the source."""

    def __init__(self, source: AudioSource, target_sample_rate: int, max_seconds: float | None) -> None:
        _check_rate_argument(target_sample_rate)
        self.target = target_sample_rate
        self.max_seconds = max_seconds
        self._stack = ExitStack()
        try:
            fileobj, size = self._stack.enter_context(readable_source(source, spool=True))
            if size == 0:
                raise InvalidAudio("The audio file is empty.")
            self.opened = self._stack.enter_context(open_audio(fileobj, deadline=time.monotonic() + OPEN_TIME_LIMIT_S))
            self.opened.upload.clear_deadline()
            self.stated_s = _stated_seconds(self.opened)
            self.longest_packet_s = 0.0  # a packet may span more than the frames it decodes to (Opus pre-skip)
            self.longest_frame_s = 0.0
            self.decoded_s = 0.0
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    @property
    def expected_samples(self) -> int | None:
        if self.stated_s is None:
            return None
        return max(1, round(self.stated_s * self.target))

    def _frames(self) -> Iterator[AudioFrame]:
        """Decoded frames, planar ones of 8 or more channels interleaved (see :class:`_Packer`)."""
        opened = self.opened
        context = opened.stream.codec_context
        lenient = opened.format in _LENIENT
        packer = _Packer()
        longest = 0
        try:
            for packet in opened.container.demux(opened.stream):
                longest = max(longest, packet.duration or 0)
                try:
                    frames = context.decode(packet)
                except av.error.FFmpegError:
                    if not lenient:
                        raise InvalidAudio(_CORRUPT) from None
                    continue
                for frame in frames:
                    if _Packer.needed(frame):
                        yield from packer.pack(frame)
                    else:
                        yield from packer.flush()
                        yield frame
            yield from packer.flush()
        except av.error.FFmpegError:
            raise InvalidAudio(_CORRUPT) from None
        finally:
            time_base = opened.stream.time_base
            self.longest_packet_s = float(longest * time_base) if time_base is not None else 0.0

    def _batches(self) -> Iterator[AudioFrame]:
        """The decoded frames gathered into frames of about ``_BATCH_SAMPLES`` samples (an ``AudioFifo`` per run of
        frames with the same format, layout and rate): downmixing, checking and resampling then run a few times a
        second of audio instead of once per codec frame (Vorbis decodes 256-sample frames). Limits are checked on
        every codec frame, before it is buffered."""
        fifo = av.AudioFifo()
        key: tuple[str, int, int] | None = None
        finished_s = 0.0  # input seconds of the runs before the current one
        frames_in_run = 0
        for frame in self._frames():
            count = frame.samples
            if not count:
                continue
            rate = frame.sample_rate
            frame_key = (frame.format.name, frame.layout.nb_channels, rate)
            if frame_key != key:
                check_channels_and_rate(frame_key[1], rate)
                yield from _drain(fifo)
                if key is not None:
                    finished_s += frames_in_run / key[2]
                fifo, key, frames_in_run = av.AudioFifo(), frame_key, 0
            frames_in_run += count
            self.longest_frame_s = max(self.longest_frame_s, count / rate)
            self.decoded_s = finished_s + frames_in_run / rate
            if self.max_seconds is not None and self.decoded_s > self.max_seconds:
                raise AudioTooLong(
                    f"audio is longer than the limit of {self.max_seconds:g} s (decoding stopped there)",
                    details={"limit": self.max_seconds, "decoded_s": round(self.decoded_s, 3)},
                )
            frame.pts = None  # the FIFO would otherwise insist on gapless timestamps
            fifo.write(frame)
            if fifo.samples >= _BATCH_SAMPLES:
                yield from _drain(fifo)
        yield from _drain(fifo)

    def blocks(self, block_len: int) -> Iterator[Waveform]:
        stated = self.stated_s
        # Output kept back until the end: a piece's last samples may be trimmed (soxr's rounding), and so may a
        # codec's padding past the stated length (up to _FRAME_SLACK_CAP_S).
        holdback = _HOLDBACK + (math.ceil(_FRAME_SLACK_CAP_S * self.target) if stated is not None else 0)
        pending = _Pending()
        piece: _Piece | None = None
        emitted = 0
        for batch in self._batches():
            mono = _mono(batch)
            if not np.isfinite(mono).all():
                raise InvalidAudio(_NOT_FINITE)
            if piece is None or piece.rate != batch.sample_rate:
                if piece is not None:
                    piece.finish(pending)
                piece = _Piece(batch.sample_rate, self.target, first=piece is None)
            piece.push(mono, pending)
            while pending.size >= block_len + holdback:
                emitted += block_len
                yield pending.take(block_len)
        if piece is None:
            raise InvalidAudio(_NO_FRAMES)
        piece.finish(pending)
        decoded_s = self.decoded_s
        longest_frame_s = max(self.longest_frame_s, self.longest_packet_s)
        if stated is not None:
            if decoded_s < stated - _slack_s(stated, longest_frame_s):
                raise InvalidAudio(
                    "The audio ended early: the file is truncated or corrupt.",
                    details={"stated_s": round(stated, 3), "decoded_s": round(decoded_s, 3)},
                )
            if 0 < decoded_s - stated <= min(2 * longest_frame_s, _FRAME_SLACK_CAP_S):
                # The codec's padding of its last frame (AAC, Vorbis): the container says where the audio ends.
                surplus = emitted + pending.size - max(1, round(stated * self.target))
                pending.drop_last(min(max(surplus, 0), pending.size - 1))
        while pending.size:
            yield pending.take(block_len)


def _check_rate_argument(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"target_sample_rate must be an int in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")


def _check_max_seconds(max_seconds: float | None) -> None:
    if max_seconds is not None and (not math.isfinite(max_seconds) or max_seconds <= 0):
        raise ValueError("max_seconds must be a positive number of seconds, or None")


# ---------------------------------------------------------------------------------------------- public API


def probe_audio(source: AudioSource) -> AudioInfo:
    """What a file holds, without decoding it (see the module docstring).

    ``source`` is a path, ``bytes`` or a seekable binary file object (read from its start; its position is
    restored). Raises :class:`UnsupportedMediaType` for what is not audio in a format we read (or a codec FFmpeg
    cannot decode) and :class:`InvalidAudio` for empty, truncated, corrupt or implausible files.
    """
    with readable_source(source, spool=False) as (fileobj, size):
        if size == 0:
            raise InvalidAudio("The audio file is empty.")
        return _probed(fileobj, time.monotonic() + PROBE_TIME_LIMIT_S)


def iter_decoded_blocks(
    source: AudioSource,
    *,
    block_s: float = 30.0,
    target_sample_rate: int = TARGET_SAMPLE_RATE,
    max_seconds: float | None = None,
) -> Iterator[Waveform]:
    """Decode ``source`` to mono float32 at ``target_sample_rate``, as consecutive blocks.

    Every block has ``round(block_s * target_sample_rate)`` samples except the last, which is shorter (and
    never empty). Concatenated they equal :func:`decode_audio`. Memory stays at a few blocks whatever the
    file's length. Arguments are checked at once (``ValueError``); errors about the audio itself
    (:class:`InvalidAudio`, :class:`UnsupportedMediaType`, :class:`AudioTooLong` once more than ``max_seconds``
    have been decoded) come from the first ``next()``, or later for a file that turns out corrupt, truncated,
    too long or to contain NaN/Inf mid-way. Closing the iterator early releases the source.
    """
    if not math.isfinite(block_s) or block_s <= 0:
        raise ValueError("block_s must be a positive number of seconds")
    _check_rate_argument(target_sample_rate)
    _check_max_seconds(max_seconds)
    block_len = max(1, round(block_s * target_sample_rate))
    return _iter_blocks(source, block_len, target_sample_rate, max_seconds)


def _iter_blocks(
    source: AudioSource, block_len: int, target_sample_rate: int, max_seconds: float | None
) -> Iterator[Waveform]:
    with _Decoder(source, target_sample_rate, max_seconds) as decoder:
        yield from decoder.blocks(block_len)


def decode_audio(
    source: AudioSource, *, target_sample_rate: int = TARGET_SAMPLE_RATE, max_seconds: float | None = None
) -> Waveform:
    """Decode a whole file to a 1-D mono float32 array at ``target_sample_rate`` (16 kHz by default).

    Channels are averaged (all of them), the rate converted with soxr "HQ". Raises :class:`InvalidAudio`
    (empty, corrupt, truncated, NaN/Inf), :class:`UnsupportedMediaType`, or :class:`AudioTooLong` past
    ``max_seconds``. Peak memory is about the output plus a few MiB; for hours of audio prefer
    :func:`iter_decoded_blocks`.
    """
    _check_max_seconds(max_seconds)
    with _Decoder(source, target_sample_rate, max_seconds) as decoder:
        expected = decoder.expected_samples
        capacity = min(expected, _INITIAL_CAPACITY_CAP) if expected else _DECODE_BLOCK_SAMPLES
        out = np.empty(capacity, dtype=np.float32)
        filled = 0
        for block in decoder.blocks(_DECODE_BLOCK_SAMPLES):
            end = filled + len(block)
            if end > len(out):
                grown = np.empty(max(end, len(out) + len(out) // 2), dtype=np.float32)
                grown[:filled] = out[:filled]
                out = grown
            out[filled:end] = block
            filled = end
    return out if filled == len(out) else out[:filled].copy()

"""Model output as an audio file: one table of output formats and one encoder for all of them.

No torch here: the gateway imports this module (for content types and file names).

The formats (``ENCODINGS``; the job API offers the first seven, :data:`OUTPUT_FORMATS`)
    ========  =========================  ==========================  ======  ==================================
    name      container / codec          content type                file    rate when not asked for one
    ========  =========================  ==========================  ======  ==================================
    wav       WAV, PCM 16-bit            audio/wav                   .wav    the input's
    flac      FLAC, 16-bit               audio/flac                  .flac   the input's
    ogg       Ogg Vorbis (libsndfile)    audio/ogg                   .ogg    the input's (at most 192 kHz)
    mp3       MP3 (LAME), 32 kb/s/ch     audio/mpeg                  .mp3    the input's, else the next MPEG rate
    opus      Ogg Opus, 32 kb/s/ch       audio/ogg; codecs=opus      .opus   the input's, else the next Opus rate
    aac       AAC-LC in MP4, 48 kb/s/ch  audio/mp4                   .m4a    the input's, else the next AAC rate
    pcm       raw s16le, no header       application/octet-stream    .pcm    16 kHz (the model's rate)
    aac_adts  AAC-LC in ADTS             audio/aac                   .aac    24 kHz (OpenAI's speech API)
    pcm_24k   raw s16le, no header       application/octet-stream    .pcm    24 kHz (OpenAI's speech API)
    ========  =========================  ==========================  ======  ==================================

    ``out_rate`` picks another rate (one the codec takes, else :class:`InvalidRequest`); the samples are then
    resampled with soxr "HQ" (the decoder's converter) to ``round(frames * out_rate / sample_rate)`` frames.
    "The next rate" is the lowest one the codec takes above the input's, else its highest (Opus: 8/12/16/24/
    48 kHz; MP3: the MPEG rates 8..48 kHz; AAC: 7.35..96 kHz), so the model's 16 kHz is kept by every format.
    Samples are clipped to [-1, 1] first; NaN/Inf is :class:`InvalidAudio`.

Content types
    Ogg Opus is ``audio/ogg; codecs=opus`` (RFC 7845): ``audio/opus`` names the RTP payload (RFC 7587), not a
    file. Raw PCM is ``application/octet-stream``: ``audio/L16`` is defined as big-endian (RFC 2586), and our
    samples are little-endian 16-bit, mono at the job's ``sample_rate``, as OpenAI's ``pcm`` and most tools
    (``ffplay -f s16le -ar 16000 -ch_layout mono``) expect.

One encoder: PyAV (FFmpeg's libraries), except Vorbis
    Every format but ``ogg`` is muxed and encoded by FFmpeg through PyAV, muxer and encoder both ``bitexact``
    so that no FFmpeg version lands in the output (nor an ID3 tag in MP3, nor an 8 KiB padding block in FLAC).
    The PyPI wheels of PyAV carry no libvorbis, and FFmpeg's own Vorbis encoder is experimental and refuses
    mono, so ``ogg`` stays on libsndfile (``soundfile``), as before this module. Encode speed
    (``bench/encode.py``; README) is not the reason either way: every format encodes tens to thousands of times
    faster than real time, far faster than the model speaks.

Empty and very short input
    Every format gives a valid file for 0 samples and for 1. wav, flac and ogg hold 0 frames (a FLAC with an
    empty STREAMINFO: 0 "total samples", i.e. unknown, and no frames); pcm is then 0 bytes. mp3, opus and aac
    cannot hold nothing (their decoders refuse a stream without a frame), so they get one sample of silence.
    Lossy codecs pad short input to whole frames: an MP3 of 1 sample decodes to ~50 samples, and ADTS AAC
    decodes to its 1024 priming samples plus whole frames (ADTS has no field for either; MP4 says both in its
    edit list).

Traps (PyAV 18 / FFmpeg 8)
    * PyAV writes no header until the first packet: without ``start_encoding()`` a 0-frame WAV or FLAC is 0
      bytes.
    * Frames need ``pts`` counted from 0: without them libopus's pre-skip is not subtracted at the end and an
      Ogg Opus decodes 6.5 ms longer than its input, and the MP4 edit list keeps AAC's 1024 priming samples.
    * MP4 ``+faststart`` (the index ahead of the audio, so that a player can start before the download ends)
      re-reads the output by name: it fails on a file object, so ``aac`` is written to a temporary file.
    * ``AudioFrame.from_ndarray`` fails on planar audio of 8 channels: we hand over interleaved ``flt``.
    * More than 8 channels have no named FFmpeg layout: ``"N channels"`` works for PCM (WAV, raw) only.
    * ``atempo`` takes 0.5..100 per instance: slower than 0.5 is two instances in a row.
    * libsndfile segfaults writing Vorbis in one call of more than ~2 M samples (we write in blocks of
      ``_WRITE_BLOCK_FRAMES``) and at rates above ~200 kHz (``ogg`` tops out at 192 kHz). A segfault cannot be
      caught: these limits must stay.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from shared.audio_container import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from shared.audio_decode import RESAMPLE_QUALITY, TARGET_SAMPLE_RATE
from shared.errors import InvalidAudio, InvalidRequest

__all__ = [
    "CONTENT_TYPES",
    "ENCODINGS",
    "EXTENSIONS",
    "MAX_SPEED",
    "MIN_SPEED",
    "MODEL_SAMPLE_RATE",
    "OUTPUT_FORMATS",
    "AudioEncoding",
    "change_tempo",
    "encode_audio",
    "output_rate",
]

MODEL_SAMPLE_RATE: Final = TARGET_SAMPLE_RATE  # what SeamlessM4T v2's vocoder speaks, and what uploads decode to
MIN_RATE: Final = MIN_SAMPLE_RATE  # the rates encoded are the rates read
MAX_RATE: Final = MAX_SAMPLE_RATE

Waveform = npt.NDArray[np.float32]

_MP3_RATES: Final = frozenset({8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000})
_OPUS_RATES: Final = frozenset({8_000, 12_000, 16_000, 24_000, 48_000})
_AAC_RATES: Final = frozenset(
    {7_350, 8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000, 88_200, 96_000}
)
_NAMED_LAYOUTS: Final = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_BITEXACT: Final = (("fflags", "+bitexact"),)
_ENCODE_BLOCK_FRAMES: Final = 65_536
_WRITE_BLOCK_FRAMES: Final = 16_384  # libsndfile Vorbis: never one big write (see the traps)
MIN_SPEED: Final = 0.25  # OpenAI's speech API's ``speed`` range
MAX_SPEED: Final = 4.0
_ATEMPO_MIN: Final = 0.5  # one atempo instance takes 0.5..100 (FFmpeg >= 4.3)
_TEMPO_TAIL_S: Final = 0.2  # silence that pushes atempo's held-back windows out (see change_tempo)


@dataclass(frozen=True)
class AudioEncoding:
    """One output format: how it is made and how it is served."""

    name: str
    container: str  # FFmpeg muxer ("ogg" with codec "libvorbis": written by libsndfile)
    codec: str  # FFmpeg encoder
    content_type: str
    extension: str  # without the dot
    default_rate: int | None = None  # None: the input's rate, when the codec takes it
    rates: frozenset[int] | None = None  # None: any rate in MIN_RATE..max_rate
    max_rate: int = MAX_RATE
    max_channels: int = 8
    bit_rate_per_channel: int | None = None  # lossy codecs
    muxer_options: tuple[tuple[str, str], ...] = _BITEXACT
    pads_empty: bool = False  # cannot hold 0 samples: one sample of silence instead
    via_file: bool = False  # the muxer must re-read its output (MP4 +faststart)

    def accepts(self, rate: int) -> bool:
        return rate in self.rates if self.rates is not None else MIN_RATE <= rate <= self.max_rate

    def rate_for(self, sample_rate: int) -> int:
        """The rate this format is written at when the caller asks for none (see the module docstring)."""
        if self.default_rate is not None:
            return self.default_rate
        if self.accepts(sample_rate):
            return sample_rate
        if self.rates is None:
            return min(max(sample_rate, MIN_RATE), self.max_rate)
        higher = [rate for rate in self.rates if rate > sample_rate]
        return min(higher) if higher else max(self.rates)


_PCM = "application/octet-stream"

ENCODINGS: Final[dict[str, AudioEncoding]] = {
    e.name: e
    for e in (
        AudioEncoding("wav", "wav", "pcm_s16le", "audio/wav", "wav", max_channels=64),
        AudioEncoding(
            "flac", "flac", "flac", "audio/flac", "flac", muxer_options=(*_BITEXACT, ("metadata_header_padding", "0"))
        ),
        AudioEncoding("ogg", "ogg", "libvorbis", "audio/ogg", "ogg", max_rate=192_000, max_channels=64),
        AudioEncoding(
            "mp3",
            "mp3",
            "libmp3lame",
            "audio/mpeg",
            "mp3",
            rates=_MP3_RATES,
            max_channels=2,
            bit_rate_per_channel=32_000,
            muxer_options=(*_BITEXACT, ("id3v2_version", "0")),
            pads_empty=True,
        ),
        AudioEncoding(
            "opus",
            "ogg",
            "libopus",
            "audio/ogg; codecs=opus",
            "opus",
            rates=_OPUS_RATES,
            bit_rate_per_channel=32_000,
            pads_empty=True,
        ),
        AudioEncoding(
            "aac",
            "ipod",
            "aac",
            "audio/mp4",
            "m4a",
            rates=_AAC_RATES,
            bit_rate_per_channel=48_000,
            muxer_options=(*_BITEXACT, ("movflags", "+faststart")),
            pads_empty=True,
            via_file=True,
        ),
        AudioEncoding("pcm", "s16le", "pcm_s16le", _PCM, "pcm", default_rate=MODEL_SAMPLE_RATE, max_channels=64),
        # The OpenAI-compatible speech route's variants: ADTS AAC and raw PCM, both at 24 kHz.
        AudioEncoding(
            "aac_adts",
            "adts",
            "aac",
            "audio/aac",
            "aac",
            default_rate=24_000,
            rates=_AAC_RATES,
            bit_rate_per_channel=48_000,
            pads_empty=True,
        ),
        AudioEncoding("pcm_24k", "s16le", "pcm_s16le", _PCM, "pcm", default_rate=24_000, max_channels=64),
    )
}
OUTPUT_FORMATS: Final = ("wav", "flac", "ogg", "mp3", "opus", "aac", "pcm")  # what the job API offers
CONTENT_TYPES: Final = {name: encoding.content_type for name, encoding in ENCODINGS.items()}
EXTENSIONS: Final = {name: encoding.extension for name, encoding in ENCODINGS.items()}


def _encoding(fmt: str) -> AudioEncoding:
    encoding = ENCODINGS.get(fmt.lower()) if isinstance(fmt, str) else None
    if encoding is None:
        raise InvalidRequest(f"Unknown audio output format {fmt!r}; expected one of {', '.join(ENCODINGS)}.")
    return encoding


def _check_rate(rate: object, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise InvalidRequest(f"The {what} must be an integer number of Hz.")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidRequest(f"The {what} must be within {MIN_RATE}..{MAX_RATE} Hz.")
    return rate


def output_rate(fmt: str, sample_rate: int = MODEL_SAMPLE_RATE, out_rate: int | None = None) -> int:
    """The rate :func:`encode_audio` writes ``fmt`` at for input at ``sample_rate`` (and ``out_rate``, if given)."""
    encoding = _encoding(fmt)
    rate = _check_rate(sample_rate, "input sample rate")
    if out_rate is None:
        return encoding.rate_for(rate)
    target = _check_rate(out_rate, "output sample rate")
    if not encoding.accepts(target):
        allowed = sorted(encoding.rates) if encoding.rates is not None else f"{MIN_RATE}..{encoding.max_rate}"
        raise InvalidRequest(f"{encoding.name} output supports {allowed} Hz, not {target} Hz.")
    return target


def _resample(data: Waveform, rate: int, target: int) -> Waveform:
    """``data`` at ``target``: ``round(frames * target / rate)`` frames (at least one, for non-empty input)."""
    frames = data.shape[0]
    if rate == target or frames == 0:
        return data
    length = max(1, (2 * frames * target + rate) // (2 * rate))
    out = soxr.resample(data, rate, target, quality=RESAMPLE_QUALITY)
    if out.shape[0] == 0:  # soxr gives nothing for a sample shorter than half an output sample
        out = data[:1]
    if out.shape[0] < length:
        out = np.concatenate([out, np.zeros((length - out.shape[0], data.shape[1]), dtype=np.float32)])
    return np.ascontiguousarray(np.clip(out[:length], -1.0, 1.0), dtype=np.float32)


def encode_audio(
    waveform: npt.ArrayLike,
    fmt: str = "wav",
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    out_rate: int | None = None,
) -> bytes:
    """Encode float samples (1-D mono, or 2-D frames x channels) at ``sample_rate`` as a complete ``fmt`` file.

    ``fmt`` is a name of :data:`ENCODINGS` (case-insensitive); the file is at :func:`output_rate`, resampled
    when that differs from ``sample_rate``. Raises :class:`InvalidRequest` for an unknown format or a rate or
    channel count the format cannot hold, :class:`InvalidAudio` for NaN/Inf samples, ``ValueError`` for an array
    that is not 1-D/2-D.
    """
    encoding = _encoding(fmt)
    data = np.asarray(waveform, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, np.newaxis]
    if data.ndim != 2 or data.shape[1] < 1:
        raise ValueError(f"waveform must be 1-D or 2-D (frames x channels), not of shape {data.shape}")
    channels = data.shape[1]
    if channels > encoding.max_channels:
        raise InvalidRequest(f"{encoding.name} output holds at most {encoding.max_channels} channels, not {channels}.")
    rate = output_rate(encoding.name, sample_rate, out_rate)
    if not np.isfinite(data).all():
        raise InvalidAudio("The waveform to encode contains NaN or infinite sample values.")
    data = _resample(np.ascontiguousarray(np.clip(data, -1.0, 1.0), dtype=np.float32), sample_rate, rate)
    if data.shape[0] == 0 and encoding.pads_empty:
        data = np.zeros((1, channels), dtype=np.float32)
    try:
        if encoding.codec == "libvorbis":
            return _write_vorbis(data, rate)
        return _encode_ffmpeg(encoding, data, rate)
    except (sf.LibsndfileError, av.FFmpegError) as exc:
        raise InvalidRequest(f"Cannot encode {channels}-channel audio at {rate} Hz as {encoding.name}.") from exc


def _write_vorbis(data: Waveform, rate: int) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, data.shape[1], subtype="VORBIS", format="OGG") as snd:
        for start in range(0, data.shape[0], _WRITE_BLOCK_FRAMES):
            snd.write(data[start : start + _WRITE_BLOCK_FRAMES])
    return buffer.getvalue()


def _layout(channels: int) -> str:
    return _NAMED_LAYOUTS.get(channels, f"{channels} channels")


def _frames(data: Waveform, rate: int, layout: str) -> Iterator[av.AudioFrame]:
    for start in range(0, data.shape[0], _ENCODE_BLOCK_FRAMES):
        block = np.ascontiguousarray(data[start : start + _ENCODE_BLOCK_FRAMES])
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = start
        yield frame


def _encode_ffmpeg(encoding: AudioEncoding, data: Waveform, rate: int) -> bytes:
    if not encoding.via_file:
        buffer = io.BytesIO()
        _mux(encoding, data, rate, buffer)
        return buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="m4t-encode-") as tmp:
        path = Path(tmp) / f"out.{encoding.extension}"
        _mux(encoding, data, rate, str(path))
        return path.read_bytes()


def _mux(encoding: AudioEncoding, data: Waveform, rate: int, target: str | io.BytesIO) -> None:
    channels = data.shape[1]
    layout = _layout(channels)
    with av.open(target, "w", format=encoding.container, options=dict(encoding.muxer_options)) as container:
        stream = container.add_stream(encoding.codec, rate=rate, layout=layout, options={"flags": "+bitexact"})
        if not isinstance(stream, av.AudioStream):  # every codec of the table is an audio encoder
            raise TypeError(f"{encoding.codec} is not an audio codec")
        if encoding.bit_rate_per_channel is not None:
            per_channel = encoding.bit_rate_per_channel
            if encoding.codec == "aac":  # AAC holds at most 6144 bits per channel per 1024-sample frame
                per_channel = min(per_channel, 6 * rate)
            stream.codec_context.bit_rate = per_channel * channels
        container.start_encoding()  # the header, even when no packet follows (a 0-frame WAV or FLAC)
        for frame in _frames(data, rate, layout):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def change_tempo(waveform: npt.ArrayLike, speed: float, *, sample_rate: int = MODEL_SAMPLE_RATE) -> Waveform:
    """Mono float32 ``waveform`` played ``speed`` times as fast, its pitch kept: FFmpeg's ``atempo`` (WSOLA), what
    OpenAI's speech API's ``speed`` asks for. Exactly ``round(len / speed)`` samples come back; 1.0 returns the input
    as is.

    ``atempo`` keeps back its last window (about 60 ms of input at 16 kHz, per instance, whatever the length), so
    the input gets ``_TEMPO_TAIL_S`` of silence first and the output is cut to length: a 1 s tone at speed 4 would
    otherwise last 0.22-0.24 s, not 0.25 s.

    Raises :class:`InvalidRequest` (``details.field`` "speed") for a speed outside MIN_SPEED..MAX_SPEED.
    """
    if not (isinstance(speed, int | float) and MIN_SPEED <= speed <= MAX_SPEED):
        raise InvalidRequest(
            f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed!r}.", details={"field": "speed"}
        )
    data = np.ascontiguousarray(waveform, dtype=np.float32)
    if data.ndim != 1:
        raise ValueError(f"waveform must be 1-D (mono), not of shape {data.shape}")
    if speed == 1.0 or data.shape[0] == 0:
        return data
    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(sample_rate=sample_rate, format="flt", layout="mono", time_base=Fraction(1, sample_rate))
    ]
    nodes += [graph.add("atempo", repr(factor)) for factor in _atempo_factors(speed)]
    nodes.append(graph.add("aformat", sample_fmts="flt", channel_layouts="mono"))
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    pieces: list[Waveform] = []
    padded = np.concatenate([data, np.zeros(round(_TEMPO_TAIL_S * sample_rate), dtype=np.float32)])
    for frame in _frames(padded[:, np.newaxis], sample_rate, "mono"):
        graph.push(frame)
        pieces.extend(_pull_all(graph))
    graph.push(None)
    pieces.extend(_pull_all(graph))
    length = round(data.shape[0] / speed)
    out = np.concatenate([*pieces, np.zeros(length, dtype=np.float32)])[:length]
    return np.ascontiguousarray(out, dtype=np.float32)


def _atempo_factors(speed: float) -> list[float]:
    """One ``atempo`` within its 0.5..100, or two equal ones (each at least 0.5) for slower speeds."""
    if speed >= _ATEMPO_MIN:
        return [speed]
    return [speed**0.5] * 2


def _pull_all(graph: av.filter.Graph) -> Iterator[Waveform]:
    """Every frame the graph has ready: it asks for more input (EAGAIN) until it has a whole window."""
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        yield np.ascontiguousarray(frame.to_ndarray().reshape(-1), dtype=np.float32)

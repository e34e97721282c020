"""Property-based fuzzing of the audio probe and decoder (``shared.audio``, on FFmpeg) with hypothesis.

Whatever bytes come in, ``probe_audio`` and ``decode_audio`` either succeed or raise ``InvalidAudio`` /
``UnsupportedMediaType`` with one of our own messages: never another exception, never an FFmpeg or libsndfile
message, never a crash, and every example finishes within the deadline. What decodes is 1-D finite float32 at
16 kHz. For valid files, what decodes also probes (the gateway never refuses audio the worker could translate) and
its length follows the probed duration.

Inputs: arbitrary bytes (also behind each format's magic number), mutations of real files (bit flips,
truncations, header bytes overwritten): WAV, FLAC, OGG Vorbis, OGG Opus and MP3 made from a short clip of
``tests/data/speech_en.wav``, and the committed M4A (AAC, ALAC), MOV, MP4 with video, WebM (Opus), MKV (Vorbis),
AIFF, CAF, WMA and AMR files; and valid files with random rates, channel counts and lengths. Deterministic
(``derandomize=True``, no example database) and bounded (about 460 examples in all, several seconds).
"""

from __future__ import annotations

import io
import math
import struct
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.audio import TARGET_SAMPLE_RATE, AudioInfo, decode_audio, probe_audio
from shared.errors import InvalidAudio, UnsupportedMediaType

DATA = Path(__file__).parent / "data"

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


pytestmark = pytest.mark.timeout(120)

# The clip every mutated file is made from: 0.3 s of espeak-ng speech (16 kHz mono).
CLIP_FRAMES = 4_800
# (container, subtype, rate, channels) of each base file: PCM WAV and FLAC in stereo at 44.1 kHz, so that their
# channel and rate fields matter (and the decoders downmix and resample), the others mono at 16 kHz.
BASES: dict[str, tuple[str, str, int, int]] = {
    "wav_pcm16": ("WAV", "PCM_16", 44_100, 2),
    "wav_float": ("WAV", "FLOAT", 16_000, 1),
    "rf64": ("RF64", "PCM_16", 16_000, 1),
    "flac": ("FLAC", "PCM_16", 44_100, 2),
    "ogg_vorbis": ("OGG", "VORBIS", 16_000, 1),
    "ogg_opus": ("OGG", "OPUS", 16_000, 1),
    "mp3": ("MP3", "MPEG_LAYER_III", 16_000, 1),
}
# The committed container files (tests/data/make_containers.py), mutated like the others.
COMMITTED = {
    "m4a_aac": "speech_en.m4a",
    "m4a_alac": "speech_fr_alac.m4a",
    "mov": "speech_en.mov",
    "mp4_video": "speech_en_video.mp4",
    "webm_opus": "speech_en.webm",
    "mkv_vorbis": "speech_fr.mkv",
    "aiff": "speech_en.aiff",
    "caf": "speech_fr.caf",
    "wma": "speech_en.wma",
    "amr": "speech_en.amr",
}
MAGIC = [
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"RF64\xff\xff\xff\xffWAVEds64",
    b"fLaC",
    b"OggS\x00\x02",
    b"ID3\x04\x00",
    b"\xff\xfb",
    b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00",
    b"\x1a\x45\xdf\xa3",  # EBML (Matroska, WebM)
    b"FORM\x00\x00\x10\x00AIFF",
    b"caff\x00\x01\x00\x00",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF
    b"#!AMR\n",
    b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n",
    b"ffconcat version 1.0\n",
]


@cache
def clip() -> np.ndarray:
    wave, rate = sf.read(DATA / "speech_en.wav", dtype="float32")
    assert rate == 16_000
    return np.asarray(wave[8_000 : 8_000 + CLIP_FRAMES], dtype=np.float32)


@cache
def base_file(name: str) -> bytes:
    if name in COMMITTED:
        return (DATA / COMMITTED[name]).read_bytes()
    container, subtype, rate, channels = BASES[name]
    wave = clip()
    if rate != 16_000:
        wave = np.interp(np.arange(round(len(wave) * rate / 16_000)) * 16_000 / rate, np.arange(len(wave)), wave)
    frames = np.repeat(np.asarray(wave, dtype=np.float32)[:, None], channels, axis=1)
    frames[:, -1] *= 0.5  # channels differ
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format=container, subtype=subtype)
    return buffer.getvalue()


# --- the properties ---------------------------------------------------------------------------------------------


def _check_error(exc: InvalidAudio | UnsupportedMediaType) -> None:
    """Our own message: no libsndfile text, no internal detail."""
    message = exc.message
    assert isinstance(message, str) and message
    lowered = message.lower()
    assert "libsndfile" not in lowered and "psf_" not in lowered and "error opening" not in lowered, message
    assert "errno" not in lowered and "avformat" not in lowered and "avcodec" not in lowered, message
    assert exc.status_code in (415, 422)


def _output_samples(frames: int, rate: int) -> int:
    """The decoders' documented output length: round(frames * 16 000 / rate), halves up, at least 1."""
    return max(1, (2 * frames * TARGET_SAMPLE_RATE + rate) // (2 * rate))


def check_audio(data: bytes, *, valid: bool = False) -> tuple[AudioInfo | None, np.ndarray | None]:
    """Probe and decode ``data``; assert the properties; return what each gave (None when refused).

    For ``valid`` files, what decodes also probes and the lengths agree. Damaged files may be refused by one and
    not the other (the probe decodes only the end of the stream), and a damaged header can state any length:
    there the worker's limit on what it decodes and the quota's charge of what was decoded take over (tested in
    test_audio.py and test_api_containers.py), so only the typed errors and a sane waveform are asserted.
    """
    info: AudioInfo | None = None
    wave: np.ndarray | None = None
    try:
        info = probe_audio(data)
    except (InvalidAudio, UnsupportedMediaType) as exc:
        _check_error(exc)
    try:
        wave = decode_audio(data)
    except (InvalidAudio, UnsupportedMediaType) as exc:
        _check_error(exc)
    if info is not None:
        assert info.format in FORMATS
        assert info.frames >= 1 and 1 <= info.channels <= 64
        assert 1_000 <= info.sample_rate <= 384_000
        assert math.isfinite(info.duration_s) and info.duration_s > 0
    if wave is not None:
        assert isinstance(wave, np.ndarray)
        assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) >= 1
        assert np.isfinite(wave).all()
    if valid:
        assert info is not None and wave is not None, "valid audio refused"
        # What the worker decodes is what the gateway measured, within 1 % or a few codec frames (packets hold
        # the encoder's delay and padding; containers state lengths to a frame).
        expected = _output_samples(info.frames, info.sample_rate)
        slack = expected // 100 + round(0.3 * TARGET_SAMPLE_RATE)
        assert expected - slack <= len(wave) <= expected + slack, (len(wave), expected, info)
    return info, wave


# --- arbitrary bytes --------------------------------------------------------------------------------------------


@fuzz(40)
@given(st.binary(max_size=2_048))
def test_arbitrary_bytes(data: bytes) -> None:
    check_audio(data)


@fuzz(40)
@given(st.sampled_from(MAGIC), st.binary(max_size=2_048))
def test_arbitrary_bytes_behind_a_magic_number(magic: bytes, tail: bytes) -> None:
    check_audio(magic + tail)


# --- mutated real files -----------------------------------------------------------------------------------------

base_names = st.sampled_from(sorted([*BASES, *COMMITTED]))
FORMATS = {"wav", "w64", "aiff", "caf", "au", "flac", "ogg", "mp3", "aac", "amr", "m4a", "mp4", "mov", "3gp"}
FORMATS |= {"webm", "mkv", "wma", "avi"}


@fuzz(90)
@given(base_names, st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(base_file(name))
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    check_audio(bytes(data))


@fuzz(70)
@given(base_names, st.floats(0, 1, exclude_max=True))
def test_truncations(name: str, keep: float) -> None:
    data = base_file(name)
    check_audio(data[: int(keep * len(data))])


@fuzz(90)
@given(base_names, st.integers(0, 127), st.binary(min_size=1, max_size=8))
def test_header_bytes_overwritten(name: str, offset: int, patch: bytes) -> None:
    """The first 128 bytes hold most containers' headers (RIFF/fmt/data, STREAMINFO, Ogg/Vorbis/Opus, Xing,
    ftyp, EBML, FORM/COMM, ASF header)."""
    data = bytearray(base_file(name))
    data[offset : offset + len(patch)] = patch
    check_audio(bytes(data))


def _wav_fields(data: bytes) -> dict[str, tuple[int, str]]:
    """Offsets and struct formats of a RIFF WAVE's header fields."""
    fmt = data.index(b"fmt ") + 8
    chunk = data.index(b"data")
    return {
        "riff_size": (4, "<I"),
        "format_tag": (fmt, "<H"),
        "channels": (fmt + 2, "<H"),
        "sample_rate": (fmt + 4, "<I"),
        "byte_rate": (fmt + 8, "<I"),
        "block_align": (fmt + 12, "<H"),
        "bits": (fmt + 14, "<H"),
        "data_size": (chunk + 4, "<I"),
    }


WAV_FIELDS = ["riff_size", "format_tag", "channels", "sample_rate", "byte_rate", "block_align", "bits", "data_size"]
INTERESTING_U32 = [
    0,
    1,
    2,
    7,
    8,
    255,
    256,
    999,
    1_000,
    8_000,
    16_000,
    384_000,
    384_001,
    2**16 - 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
]


@fuzz(40)
@given(
    st.sampled_from(["wav_pcm16", "wav_float"]),
    st.sampled_from(WAV_FIELDS),
    st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, 2**32 - 1)),
)
def test_wav_header_fields(name: str, field: str, value: int) -> None:
    data = bytearray(base_file(name))
    offset, layout = _wav_fields(bytes(data))[field]
    data[offset : offset + struct.calcsize(layout)] = struct.pack(layout, value % 2 ** (8 * struct.calcsize(layout)))
    check_audio(bytes(data))


@fuzz(25)
@given(
    st.sampled_from(["sample_rate", "channels", "bits", "total_samples"]),
    st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, 2**36 - 1)),
)
def test_flac_streaminfo_fields(field: str, value: int) -> None:
    """STREAMINFO bits 80..143: rate (20 bits), channels - 1 (3), bits per sample - 1 (5), total samples (36)."""
    data = bytearray(base_file("flac"))
    start = 8 + 10  # "fLaC", the metadata block header, then min/max block and frame sizes
    packed = int.from_bytes(data[start : start + 8], "big")
    shift, width = {"sample_rate": (44, 20), "channels": (41, 3), "bits": (36, 5), "total_samples": (0, 36)}[field]
    mask = ((1 << width) - 1) << shift
    packed = (packed & ~mask) | ((value % (1 << width)) << shift)
    data[start : start + 8] = packed.to_bytes(8, "big")
    check_audio(bytes(data))


# --- valid files ------------------------------------------------------------------------------------------------

# (container, subtype, rates, most channels): what each encoder writes.
ENCODINGS = [
    ("WAV", "PCM_16", st.integers(1_000, 384_000), 8),
    ("WAV", "FLOAT", st.integers(1_000, 384_000), 8),
    ("WAV", "PCM_U8", st.integers(1_000, 384_000), 2),
    # libFLAC writes the streamable subset: rates up to 65 535 Hz, or multiples of 10 Hz.
    ("FLAC", "PCM_24", st.integers(1_000, 65_535) | st.integers(100, 38_400).map(lambda r: 10 * r), 8),
    ("OGG", "VORBIS", st.integers(8_000, 192_000), 8),
    ("OGG", "OPUS", st.sampled_from([8_000, 12_000, 16_000, 24_000, 48_000]), 2),
    (
        "MP3",
        "MPEG_LAYER_III",
        st.sampled_from([8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000]),
        2,
    ),
]


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[bytes, str, int, int, int]:
    container, subtype, rates, most_channels = draw(st.sampled_from(ENCODINGS))
    rate = draw(rates)
    channels = draw(st.integers(1, most_channels))
    if subtype == "VORBIS":
        # FFmpeg's Vorbis decoder gives nothing for a stream's last packet as libsndfile writes it (up to 128
        # frames lost at the end, less than 1 ms at 192 kHz, 16 ms at 8 kHz); a one-packet stream decodes to
        # nothing at all. Files that short are refused by the gateway anyway (under 0.1 s).
        frames = draw(st.integers(1_024, 4_000))
    else:
        frames = draw(st.one_of(st.integers(1, 8), st.integers(1, 4_000)))
    amplitude = draw(st.sampled_from([0.0, 1e-4, 0.5, 1.0, 4.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    wave = np.random.default_rng(seed).uniform(-amplitude, amplitude, (frames, channels)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=container, subtype=subtype)
    return buffer.getvalue(), container, rate, channels, frames


@fuzz(60)
@given(valid_files())
def test_valid_files_probe_exactly_and_decode(case: tuple[bytes, str, int, int, int]) -> None:
    data, container, rate, channels, frames = case
    info, wave = check_audio(data, valid=True)
    assert info is not None and wave is not None
    opus = info.subtype == "opus"
    assert (info.sample_rate, info.channels) == (48_000 if opus else rate, channels)  # Opus decodes at 48 kHz
    if container in ("WAV", "FLAC", "OGG") and not opus:
        assert info.frames == frames
    if container in ("WAV", "FLAC"):
        assert len(wave) == _output_samples(frames, rate)

"""Property-based fuzzing of the audio probe and decoder (``shared.audio``) with hypothesis.

Whatever bytes come in, ``probe_audio`` and ``decode_audio`` either succeed or raise ``InvalidAudio`` /
``UnsupportedMediaType`` with one of our own messages: never another exception, never a libsndfile message, and
every example finishes within the deadline. What decodes is 1-D finite float32 at 16 kHz whose length follows
the probed duration; what decodes also probes (the gateway never refuses audio the worker could translate).

Inputs: arbitrary bytes (also behind each format's magic number), mutations of real files made from a short
clip of ``tests/data/speech_en.wav`` (bit flips, truncations, header fields overwritten) in WAV, FLAC, OGG Vorbis,
OGG Opus and MP3, and valid files with random rates, channel counts and lengths. Deterministic
(``derandomize=True``, no example database) and bounded (345 examples in all, a few seconds).
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
MAGIC = [
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"RF64\xff\xff\xff\xffWAVEds64",
    b"fLaC",
    b"OggS\x00\x02",
    b"ID3\x04\x00",
    b"\xff\xfb",
]


@cache
def clip() -> np.ndarray:
    wave, rate = sf.read(DATA / "speech_en.wav", dtype="float32")
    assert rate == 16_000
    return np.asarray(wave[8_000 : 8_000 + CLIP_FRAMES], dtype=np.float32)


@cache
def base_file(name: str) -> bytes:
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
    assert exc.status_code in (415, 422)


def _output_samples(frames: int, rate: int) -> int:
    """The decoders' documented output length: round(frames * 16 000 / rate), halves up, at least 1."""
    return max(1, (2 * frames * TARGET_SAMPLE_RATE + rate) // (2 * rate))


def check_audio(data: bytes) -> tuple[AudioInfo | None, np.ndarray | None]:
    """Probe and decode ``data``; assert the properties; return what each gave (None when refused)."""
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
        assert info.format in ("wav", "flac", "ogg", "mp3")
        assert info.frames >= 1 and 1 <= info.channels <= 64
        assert 1_000 <= info.sample_rate <= 384_000
        assert math.isfinite(info.duration_s) and info.duration_s > 0
    if wave is not None:
        assert isinstance(wave, np.ndarray)
        assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) >= 1
        assert np.isfinite(wave).all()
        assert info is not None, "audio that decodes must pass the probe (the gateway would refuse it)"
        expected = _output_samples(info.frames, info.sample_rate)
        if info.format == "mp3":
            # libsndfile never decodes past its MP3 frame estimate; a damaged MP3 decodes to what survives.
            assert len(wave) <= expected
        else:
            # WAV, FLAC and OGG: at least 99 % of the claimed frames, never more.
            floor = _output_samples(math.ceil(0.99 * info.frames), info.sample_rate)
            assert floor <= len(wave) <= expected, (len(wave), expected, info)
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

base_names = st.sampled_from(sorted(BASES))


@fuzz(50)
@given(base_names, st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(base_file(name))
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    check_audio(bytes(data))


@fuzz(40)
@given(base_names, st.floats(0, 1, exclude_max=True))
def test_truncations(name: str, keep: float) -> None:
    data = base_file(name)
    check_audio(data[: int(keep * len(data))])


@fuzz(50)
@given(base_names, st.integers(0, 127), st.binary(min_size=1, max_size=8))
def test_header_bytes_overwritten(name: str, offset: int, patch: bytes) -> None:
    """The first 128 bytes hold every container's header (RIFF/fmt/data, STREAMINFO, Ogg/Vorbis/Opus, Xing)."""
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
    info, wave = check_audio(data)
    assert info is not None and wave is not None, f"valid {container} refused"
    assert (info.sample_rate, info.channels) == (rate, channels)
    if container in ("WAV", "FLAC", "OGG") and info.subtype != "OPUS":
        assert info.frames == frames
        assert len(wave) == _output_samples(frames, rate)

"""Tests of shared/audio.py: probing, decoding to 16 kHz mono, streaming and the typed errors (encoding:
test_audio_encode.py).

Probing and decoding (shared/audio_decode.py, on FFmpeg) are tested here with files that libsndfile writes; the
other containers, and what FFmpeg must never open, are in test_audio_container.py.

Every signal is generated here: sine tones with a different frequency in each channel, so that a downmix that
drops a channel shows up as a missing peak in the spectrum of the decoded audio.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from shared.audio import (
    TARGET_SAMPLE_RATE,
    AudioInfo,
    decode_audio,
    duration_s,
    iter_decoded_blocks,
    probe_audio,
)
from shared.audio_encode import OUTPUT_FORMATS, encode_audio
from shared.errors import AudioTooLong, InvalidAudio, UnsupportedMediaType

Array = npt.NDArray[np.float32]

AMPLITUDE = 0.5
# One tone per channel, all well below the Nyquist frequency of 8 kHz audio and inside every codec's passband.
# The 8th channel is the LFE of the Vorbis/Opus 7.1 layout, which Opus low-passes: it gets a bass tone.
CHANNEL_TONES = (440.0, 620.0, 800.0, 980.0, 1160.0, 1340.0, 1520.0, 110.0)

# name -> (libsndfile container, subtype, our format name)
CODECS: dict[str, tuple[str, str, str]] = {
    "wav_pcm16": ("WAV", "PCM_16", "wav"),
    "wav_float": ("WAV", "FLOAT", "wav"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "ogg_vorbis": ("OGG", "VORBIS", "ogg"),
    "ogg_opus": ("OGG", "OPUS", "ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}
# name -> the codec FFmpeg reports (AudioInfo.subtype)
FFMPEG_CODECS = {
    "wav_pcm16": "pcm_s16le",
    "wav_float": "pcm_f32le",
    "flac": "flac",
    "ogg_vorbis": "vorbis",
    "ogg_opus": "opus",
    "mp3": "mp3",
}
LOSSLESS = {"wav_pcm16", "wav_float", "flac"}
RATES = (8_000, 16_000, 44_100, 48_000)
LAYOUTS = (1, 2, 8)


def _matrix() -> list[Any]:
    cases = []
    for codec in CODECS:
        for rate in RATES:
            for channels in LAYOUTS:
                if codec == "ogg_opus" and rate == 44_100:
                    continue  # Opus cannot be written at 44.1 kHz (8/12/16/24/48 kHz only)
                if codec == "mp3" and channels > 2:
                    continue  # MP3 holds at most 2 channels
                cases.append(pytest.param(codec, rate, channels, id=f"{codec}-{rate}-{channels}ch"))
    return cases


def tone(rate: int, seconds: float, freqs: tuple[float, ...], amplitude: float = AMPLITUDE) -> Array:
    """``len(freqs)`` channels, channel i a sine at freqs[i] (0 Hz: silence), frames x channels float32."""
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate
    columns = [amplitude * np.sin(2 * np.pi * f * t) if f else np.zeros_like(t) for f in freqs]
    return np.stack(columns, axis=1).astype(np.float32)


def write(data: Array, rate: int, codec: str) -> bytes:
    container, subtype, _ = CODECS[codec]
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def wav_bytes(data: Array, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def amplitude_at(signal: Array, rate: int, freq: float) -> float:
    """Amplitude of the sine at ``freq`` (Hann-windowed spectrum, peak within +-3 bins)."""
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal * window)) * 2 / window.sum()
    bin_hz = rate / len(signal)
    centre = round(freq / bin_hz)
    return float(spectrum[max(centre - 3, 0) : centre + 4].max())


def peak_hz(signal: Array, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum)) * rate / len(signal)


def frame_tolerance(codec: str, frames: int) -> int:
    """1 % of the length; MP3 also two MPEG-1 frames (2 x 1152 samples): the probe sums the MP3's packets, which
    include the encoder's delay and padding (the decoder drops them, using the LAME header)."""
    return frames // 100 + (2 * 1152 if codec == "mp3" else 0)


# ------------------------------------------------------------------------------------- probe and decode


@pytest.mark.parametrize(("codec", "rate", "channels"), _matrix())
def test_probe_and_decode_every_format_rate_and_layout(codec: str, rate: int, channels: int) -> None:
    freqs = CHANNEL_TONES[:channels]
    data = write(tone(rate, 1.0, freqs), rate, codec)
    fmt = CODECS[codec][2]
    reported_rate = 48_000 if codec == "ogg_opus" else rate  # Opus always decodes at 48 kHz

    info = probe_audio(io.BytesIO(data))
    assert (info.format, info.subtype, info.sample_rate, info.channels) == (
        fmt,
        FFMPEG_CODECS[codec],
        reported_rate,
        channels,
    )
    assert abs(info.frames - reported_rate) <= frame_tolerance(codec, reported_rate)
    assert info.duration_s == pytest.approx(1.0, abs=frame_tolerance(codec, reported_rate) / reported_rate)

    decoded = decode_audio(data)
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    assert abs(len(decoded) - TARGET_SAMPLE_RATE) <= frame_tolerance(codec, TARGET_SAMPLE_RATE)
    assert np.isfinite(decoded).all()
    # Every channel's tone is in the downmix at 1/channels of its amplitude: no channel dropped, none doubled.
    expected = AMPLITUDE / channels
    for freq in freqs:
        measured = amplitude_at(decoded, TARGET_SAMPLE_RATE, freq)
        if codec in LOSSLESS:
            assert measured == pytest.approx(expected, rel=0.05), freq
        else:
            assert 0.6 * expected < measured < 1.4 * expected, freq
    assert any(abs(peak_hz(decoded, TARGET_SAMPLE_RATE) - f) <= 3 for f in freqs)


@pytest.mark.parametrize("codec", list(CODECS))
def test_tone_only_in_right_channel_is_not_lost(codec: str) -> None:
    data = write(tone(48_000, 1.0, (0.0, 1000.0)), 48_000, codec)
    decoded = decode_audio(data)
    assert peak_hz(decoded, TARGET_SAMPLE_RATE) == pytest.approx(1000.0, abs=3)
    assert amplitude_at(decoded, TARGET_SAMPLE_RATE, 1000.0) == pytest.approx(AMPLITUDE / 2, rel=0.3)
    assert amplitude_at(decoded, TARGET_SAMPLE_RATE, 440.0) < 0.01


def test_pcm16_at_16k_decodes_to_the_samples_themselves() -> None:
    samples = tone(16_000, 0.5, (440.0,))
    decoded = decode_audio(wav_bytes(samples, 16_000))
    np.testing.assert_allclose(decoded, samples[:, 0], atol=1 / 32768)


def test_target_sample_rate_is_honoured() -> None:
    data = wav_bytes(tone(44_100, 1.0, (300.0,)), 44_100)
    decoded = decode_audio(data, target_sample_rate=8_000)
    assert len(decoded) == 8_000
    assert peak_hz(decoded, 8_000) == pytest.approx(300.0, abs=2)


# ------------------------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("codec", list(CODECS))
def test_blocks_concatenate_to_decode_audio(codec: str) -> None:
    rate = 48_000
    data = write(tone(rate, 2.3, (440.0, 1000.0)), rate, codec)
    blocks = list(iter_decoded_blocks(io.BytesIO(data), block_s=0.5))
    assert [len(b) for b in blocks[:-1]] == [8_000] * (len(blocks) - 1)
    assert 0 < len(blocks[-1]) <= 8_000
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), decode_audio(data), atol=1e-6)


def test_many_decoded_frames_resample_as_one_signal() -> None:
    """FFmpeg hands over one FLAC frame (4096 samples) at a time; through one soxr stream they must give what
    resampling the whole downmixed signal at once gives: the resampler's state carries over between frames."""
    samples = tone(44_100, 1.5, (440.0, 1000.0, 0.0))
    data = write(samples, 44_100, "flac")
    decoded = decode_audio(data)
    downmix = np.round(samples * 32767) / 32768  # what PCM_16 holds
    whole = soxr.resample(downmix.mean(axis=1), 44_100, 16_000, quality="HQ").astype(np.float32)
    assert len(decoded) == len(whole) == 24_000
    np.testing.assert_allclose(decoded, whole, atol=2e-5)


def test_iterator_checks_arguments_at_once_and_audio_lazily() -> None:
    with pytest.raises(ValueError, match="block_s"):
        iter_decoded_blocks(b"whatever", block_s=0)
    with pytest.raises(ValueError, match="target_sample_rate"):
        iter_decoded_blocks(b"whatever", target_sample_rate=0)
    blocks = iter_decoded_blocks(b"not audio at all, just text")
    with pytest.raises(UnsupportedMediaType):
        next(blocks)


def test_nan_in_a_late_block_fails_the_stream() -> None:
    samples = tone(16_000, 10.0, (440.0,))
    samples[150_000, 0] = np.nan  # at 9.4 s: decoded samples are checked 65 536 at a time (4.1 s at 16 kHz)
    blocks = iter_decoded_blocks(wav_bytes(samples, 16_000, "FLOAT"), block_s=0.1)
    assert len(next(blocks)) == 1_600  # the first blocks are fine...
    with pytest.raises(InvalidAudio, match="NaN"):
        list(blocks)  # ...until the bad one is read


# ---------------------------------------------------------------------------------------- our output read back


@pytest.mark.parametrize("fmt", [f for f in OUTPUT_FORMATS if f != "pcm"])
def test_every_output_format_reads_back_through_the_upload_decoder(fmt: str) -> None:
    """A user may upload what the service made: every output format but raw pcm probes and decodes."""
    waveform = tone(16_000, 1.0, (440.0,))[:, 0]
    encoded = encode_audio(waveform, fmt, sample_rate=16_000)
    info = probe_audio(encoded)
    assert info.duration_s == pytest.approx(1.0, abs=0.08)
    decoded = decode_audio(encoded)
    assert len(decoded) == pytest.approx(16_000, abs=0.08 * 16_000)
    assert amplitude_at(decoded, 16_000, 440.0) == pytest.approx(AMPLITUDE, rel=0.3)


def test_duration_s() -> None:
    assert duration_s(np.zeros(24_000, dtype=np.float32)) == 1.5
    assert duration_s(np.zeros((4_410, 2), dtype=np.float32), 44_100) == 0.1
    assert duration_s(np.zeros(0, dtype=np.float32)) == 0.0
    assert AudioInfo("wav", "PCM_16", 8_000, 1, 4_000).duration_s == 0.5
    with pytest.raises(ValueError, match="positive"):
        duration_s(np.zeros(3, dtype=np.float32), 0)


# -------------------------------------------------------------------------------------------------- sources


def test_path_bytes_bytearray_and_file_objects(tmp_path: Path) -> None:
    data = wav_bytes(tone(16_000, 0.25, (440.0,)), 16_000)
    path = tmp_path / "tone.wav"
    path.write_bytes(data)
    expected = decode_audio(data)
    assert len(expected) == 4_000
    for source in (path, str(path), bytearray(data), io.BytesIO(data)):
        assert probe_audio(source).frames == 4_000  # type: ignore[arg-type]
        np.testing.assert_array_equal(decode_audio(source), expected)  # type: ignore[arg-type]
    with path.open("rb") as fileobj:
        np.testing.assert_array_equal(decode_audio(fileobj), expected)


def test_file_object_is_read_from_its_start_and_its_position_restored() -> None:
    data = wav_bytes(tone(16_000, 0.25, (440.0,)), 16_000)
    stream = io.BytesIO(data)
    stream.seek(0, io.SEEK_END)  # as left by a writer that forgot to rewind
    assert probe_audio(stream).frames == 4_000
    assert stream.tell() == len(data)
    assert len(decode_audio(stream)) == 4_000
    assert stream.tell() == len(data)
    assert not stream.closed


class _NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_stream_is_spooled_for_decoding_and_refused_by_probe() -> None:
    data = write(tone(48_000, 0.5, (440.0, 1000.0)), 48_000, "flac")
    decoded = decode_audio(_NonSeekable(data))  # type: ignore[arg-type]
    np.testing.assert_array_equal(decoded, decode_audio(data))
    with pytest.raises(ValueError, match="seekable"):
        probe_audio(_NonSeekable(data))  # type: ignore[arg-type]


def test_missing_path_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_audio(tmp_path / "nope.wav")


# ------------------------------------------------------------------------------------------------ bad input


def test_zero_length_input() -> None:
    with pytest.raises(InvalidAudio, match="empty") as excinfo:
        probe_audio(b"")
    assert (excinfo.value.code, excinfo.value.status_code) == ("invalid_audio", 422)
    with pytest.raises(InvalidAudio, match="empty"):
        decode_audio(io.BytesIO())


def test_random_bytes() -> None:
    noise = np.random.default_rng(0).bytes(4096)
    with pytest.raises(UnsupportedMediaType) as excinfo:
        probe_audio(noise)
    assert (excinfo.value.code, excinfo.value.status_code) == ("unsupported_media_type", 415)
    assert "Error" not in excinfo.value.message  # our message, not libsndfile's
    with pytest.raises(UnsupportedMediaType):
        decode_audio(noise)
    # Whatever libsndfile's sniffers make of other noise, only our typed errors come out.
    for seed in range(1, 40):
        with pytest.raises((UnsupportedMediaType, InvalidAudio)):
            decode_audio(np.random.default_rng(seed).bytes(2048))


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("This is not audio.\n" * 100)
    with pytest.raises(UnsupportedMediaType, match="not audio in a format we read"):
        probe_audio(path)
    with pytest.raises(UnsupportedMediaType):
        decode_audio(path)


@pytest.mark.parametrize(
    ("container", "fmt", "codec"),
    [
        ("AIFF", "aiff", "pcm_s16be"),
        ("AU", "au", "pcm_s16be"),
        ("W64", "w64", "pcm_s16le"),
        ("CAF", "caf", "pcm_s16be"),
    ],
)
def test_pcm_containers_libsndfile_writes_are_read(container: str, fmt: str, codec: str) -> None:
    """Refused (415) while libsndfile read uploads; FFmpeg reads them all."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(16_000, 0.5, (440.0, 880.0)), 16_000, format=container, subtype="PCM_16")
    info = probe_audio(buffer.getvalue())
    assert (info.format, info.subtype, info.channels, info.frames) == (fmt, codec, 2, 8_000)
    decoded = decode_audio(buffer.getvalue())
    assert len(decoded) == 8_000
    assert amplitude_at(decoded, 16_000, 880.0) == pytest.approx(AMPLITUDE / 2, rel=0.05)


def test_wav_cut_short_is_the_shorter_file_it_holds() -> None:
    """Decision (FFmpeg's, as libsndfile's and every player's): a ``data`` chunk that claims more than the file
    holds is read as what is there. Nothing parses the RIFF chunks to second-guess it: the length charged and
    decoded is the length that is really there."""
    data = wav_bytes(tone(16_000, 2.0, (440.0,)), 16_000)
    cut = data[: len(data) // 2]
    info = probe_audio(cut)
    assert info.frames == (len(cut) - 44) // 2
    assert len(decode_audio(cut)) == info.frames
    assert len(decode_audio(data[:-1])) == 31_999  # the last frame lost one byte of two
    assert probe_audio(data[:-1]).frames in (31_999, 32_000)  # FFmpeg rounds the half frame up


def test_wav_header_claiming_hours_with_1_kb_of_data_is_1_kb_of_audio() -> None:
    data = bytearray(wav_bytes(tone(16_000, 1.0, (440.0,)), 16_000)[: 44 + 1024])
    claimed = 4 * 3600 * 16_000 * 2  # four hours of 16-bit mono
    struct.pack_into("<I", data, 4, 36 + claimed)
    struct.pack_into("<I", data, 40, claimed)
    assert probe_audio(bytes(data)).frames == 512
    assert len(decode_audio(bytes(data))) == 512


def test_compressed_headers_claiming_far_more_than_the_file_holds() -> None:
    mp3 = bytearray(write(tone(16_000, 1.0, (440.0,)), 16_000, "mp3"))
    xing = mp3.find(b"Xing")  # LAME's VBR header: flags (4 bytes), then the number of MPEG frames
    assert xing > 0
    mp3[xing + 8 : xing + 12] = (0x00FFFFFF).to_bytes(4, "big")  # 16.7 M frames, ~9.7 G samples in ~4 KB
    assert sf.info(io.BytesIO(bytes(mp3))).frames > 10**9  # libsndfile believes it
    assert probe_audio(bytes(mp3)).duration_s == pytest.approx(1.0, abs=0.15)  # the probe counts the packets
    assert len(decode_audio(bytes(mp3))) == pytest.approx(16_000, abs=1152)

    flac = bytearray(write(tone(16_000, 1.0, (440.0,)), 16_000, "flac"))
    packed = int.from_bytes(flac[18:26], "big")
    flac[18:26] = ((packed & ~((1 << 36) - 1)) | 2**35).to_bytes(8, "big")  # 34 G samples
    with pytest.raises(InvalidAudio, match="truncated or corrupt"):
        probe_audio(bytes(flac))
    with pytest.raises(InvalidAudio, match="ended early"):
        decode_audio(bytes(flac))


def test_mp3_whose_header_understates_its_length_is_measured_and_decoded_whole() -> None:
    """A 1 s MP3 (its Xing header says 1 s) followed by 20 s more: libsndfile stopped at the header's 1 s (the
    rest silently dropped); the probe counts all of it, and the decoders decode all of it."""
    lying = write(tone(16_000, 1.0, (440.0,)), 16_000, "mp3") + write(tone(16_000, 20.0, (440.0,)), 16_000, "mp3")
    assert sf.info(io.BytesIO(lying)).frames == 16_000
    assert probe_audio(lying).duration_s == pytest.approx(21.0, abs=0.3)
    assert len(decode_audio(lying)) / 16_000 == pytest.approx(21.0, abs=0.3)


def test_decoders_stop_past_max_seconds() -> None:
    """The worker passes M4T_MAX_AUDIO_S: nothing is decoded much past it, whatever the header said."""
    lying = write(tone(16_000, 1.0, (440.0,)), 16_000, "mp3") + write(tone(16_000, 20.0, (440.0,)), 16_000, "mp3")
    with pytest.raises(AudioTooLong) as excinfo:
        decode_audio(lying, max_seconds=5.0)
    assert (excinfo.value.code, excinfo.value.status_code) == ("audio_too_long", 413)
    assert excinfo.value.details["limit"] == 5.0
    assert 5.0 < excinfo.value.details["decoded_s"] < 5.1
    blocks = iter_decoded_blocks(wav_bytes(tone(16_000, 12.0, (440.0,)), 16_000), block_s=0.5, max_seconds=10)
    received = [next(blocks) for _ in range(8)]  # 4 s come through...
    with pytest.raises(AudioTooLong):
        received += list(blocks)  # ...then the decoder passes 10 s and stops
    assert sum(len(b) for b in received) <= 10 * 16_000
    assert len(decode_audio(wav_bytes(tone(16_000, 2.0, (440.0,)), 16_000), max_seconds=2.0)) == 32_000
    with pytest.raises(ValueError, match="max_seconds"):
        iter_decoded_blocks(b"whatever", max_seconds=0)


def test_a_sample_rate_change_mid_stream_is_resampled_piece_by_piece() -> None:
    """Two MP3s at different rates, one after the other (what a naive concatenation gives)."""
    first = write(tone(16_000, 1.0, (440.0,)), 16_000, "mp3")
    second = write(tone(24_000, 1.0, (1000.0,)), 24_000, "mp3")
    decoded = decode_audio(first + second)
    assert len(decoded) == pytest.approx(32_000, abs=2 * 1152)
    assert peak_hz(decoded[2_000:14_000], 16_000) == pytest.approx(440.0, abs=5)
    assert peak_hz(decoded[-14_000:-2_000], 16_000) == pytest.approx(1000.0, abs=5)


def test_streamed_wav_with_unknown_length_placeholders_is_accepted() -> None:
    data = bytearray(wav_bytes(tone(16_000, 0.5, (440.0,)), 16_000))
    for placeholder in (0xFFFFFFFF, 0x7FFFFFFF):  # what ffmpeg/arecord write when they cannot seek back
        struct.pack_into("<I", data, 4, placeholder)
        struct.pack_into("<I", data, 40, placeholder)
        assert probe_audio(bytes(data)).frames == 8_000
        assert len(decode_audio(bytes(data))) == 8_000


def test_big_endian_rifx_wav_is_refused_rather_than_decoded_as_noise() -> None:
    """FFmpeg 8.1 decodes RIFX's big-endian PCM as if it were little-endian (libsndfile read it right)."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(16_000, 1.0, (440.0, 880.0)), 16_000, format="WAV", subtype="PCM_24", endian="BIG")
    data = buffer.getvalue()
    assert data[:4] == b"RIFX"
    with av.open(io.BytesIO(data)) as container:  # what FFmpeg itself makes of it
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    assert np.abs(np.concatenate(frames, axis=1)).max() > 0.9 * 2**31  # full-scale noise from a 0.5 tone
    with pytest.raises(UnsupportedMediaType, match="RIFX"):
        probe_audio(data)
    with pytest.raises(UnsupportedMediaType, match="RIFX"):
        decode_audio(data)


@pytest.mark.parametrize("container", ["RF64", "WAVEX"])
def test_rf64_and_wavex_are_wav(container: str) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, tone(16_000, 0.5, (440.0, 880.0)), 16_000, format=container, subtype="FLOAT")
    info = probe_audio(buffer.getvalue())
    assert (info.format, info.subtype, info.channels, info.frames) == ("wav", "pcm_f32le", 2, 8_000)
    assert len(decode_audio(buffer.getvalue())) == 8_000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wav_with_nan_or_inf(bad: float) -> None:
    samples = tone(16_000, 0.5, (440.0, 880.0))
    samples[100, 1] = bad
    data = wav_bytes(samples, 16_000, "FLOAT")
    with pytest.raises(InvalidAudio, match="NaN or infinite"):
        probe_audio(data)  # the header is fine: the probe reads a float WAV's samples to find them
    with pytest.raises(InvalidAudio, match="NaN or infinite"):
        decode_audio(data)
    with pytest.raises(InvalidAudio, match="NaN or infinite"):
        list(iter_decoded_blocks(data))


def test_empty_wav() -> None:
    data = wav_bytes(np.zeros((0, 1), dtype=np.float32), 16_000)
    assert len(data) == 44
    with pytest.raises(InvalidAudio, match="no audio frames"):
        probe_audio(data)
    with pytest.raises(InvalidAudio, match="no audio frames"):
        decode_audio(data)


def test_absurd_sample_rate_and_too_many_channels() -> None:
    with pytest.raises(InvalidAudio, match="sample rate"):
        probe_audio(wav_bytes(np.zeros((100, 1), dtype=np.float32), 500))
    with pytest.raises(InvalidAudio, match="65 channels"):
        probe_audio(wav_bytes(np.zeros((100, 65), dtype=np.float32), 16_000))


def test_truncated_flac_fails_when_decoded() -> None:
    """A FLAC cut in half still has an intact STREAMINFO: the probe's seek to its end finds the cut, and so does
    decoding. Frames damaged mid-stream are dropped by FFmpeg's FLAC parser: decoding then ends early."""
    data = write(tone(16_000, 2.0, (440.0,)), 16_000, "flac")
    cut = data[: len(data) // 2]
    with pytest.raises(InvalidAudio, match="truncated or corrupt"):
        probe_audio(cut)
    with pytest.raises(InvalidAudio, match="corrupt or truncated"):
        decode_audio(cut)
    with pytest.raises(InvalidAudio, match="corrupt or truncated"):
        list(iter_decoded_blocks(cut, block_s=0.1))
    damaged = bytearray(data)
    damaged[len(data) // 3 : len(data) // 3 + 64] = bytes(
        b ^ 0xFF for b in damaged[len(data) // 3 : len(data) // 3 + 64]
    )
    with pytest.raises(InvalidAudio, match="truncated or corrupt"):
        decode_audio(bytes(damaged))


def test_truncated_vorbis() -> None:
    data = write(tone(16_000, 2.0, (440.0,)), 16_000, "ogg_vorbis")
    for cut in (data[: len(data) // 2], data[:-100]):
        with pytest.raises(InvalidAudio):
            probe_audio(cut)
        with pytest.raises(InvalidAudio):
            decode_audio(cut)


def test_flac_corrupt_mid_file() -> None:
    data = bytearray(write(tone(16_000, 2.0, (440.0,)), 16_000, "flac"))
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(200)
    with pytest.raises(InvalidAudio, match="corrupt"):
        decode_audio(bytes(data))


def test_opus_losing_pages_mid_file_ended_early() -> None:
    data = bytearray(write(tone(16_000, 4.0, (440.0,)), 16_000, "ogg_opus"))
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(2000)
    with pytest.raises(InvalidAudio, match="ended early") as excinfo:
        decode_audio(bytes(data))
    assert excinfo.value.details["stated_s"] == pytest.approx(4.0, abs=0.01)
    assert excinfo.value.details["decoded_s"] < 0.99 * 4.0


def test_truncated_mp3_is_decoded_leniently() -> None:
    """MP3 frame counts may be estimates, so a damaged MP3 yields what survives instead of an error."""
    data = write(tone(16_000, 4.0, (440.0,)), 16_000, "mp3")
    decoded = decode_audio(data[: len(data) // 2])
    assert 0.3 * 64_000 < len(decoded) < 0.7 * 64_000


def test_flac_of_unknown_length_is_counted_and_decoded() -> None:
    """A streaming encoder leaves STREAMINFO's total samples at 0 ("unknown"): libsndfile says 2**63 - 1."""
    data = bytearray(write(tone(16_000, 1.0, (440.0, 880.0)), 16_000, "flac"))
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = (packed & ~((1 << 36) - 1)).to_bytes(8, "big")
    assert sf.info(io.BytesIO(bytes(data))).frames == 2**63 - 1
    info = probe_audio(bytes(data))
    assert (info.format, info.channels, info.frames) == ("flac", 2, 16_000)
    decoded = decode_audio(bytes(data))
    assert len(decoded) == 16_000
    assert amplitude_at(decoded, 16_000, 880.0) == pytest.approx(AMPLITUDE / 2, rel=0.05)


# ------------------------------------------------------------------------------------------ one-sample audio


@pytest.mark.parametrize(("rate", "expected_len"), [(8_000, 2), (16_000, 1), (44_100, 1), (48_000, 1)])
def test_one_sample_audio_is_valid_and_tiny(rate: int, expected_len: int) -> None:
    """Decision: one frame is valid audio. It decodes to round(target/rate) samples, at least one; when that
    rounds to 0 (the frame is shorter than half an output sample) the one sample is the input's value."""
    data = wav_bytes(np.full((1, 1), 0.25, dtype=np.float32), rate)
    info = probe_audio(data)
    assert (info.frames, info.sample_rate) == (1, rate)
    decoded = decode_audio(data)
    assert len(decoded) == expected_len
    assert np.isfinite(decoded).all()
    if rate != 8_000:
        assert decoded.tolist() == [0.25]
    assert [len(b) for b in iter_decoded_blocks(data)] == [expected_len]

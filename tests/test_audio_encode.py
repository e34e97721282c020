"""Tests of shared/audio_encode.py: every output format decodes, with a decoder other than the encoder's, to the
signal that went in, at the rate and channel count it should have; the empty and 1-sample cases; rates; errors.

The independent decoders: libsndfile (``soundfile``) for what PyAV encodes (wav, flac, mp3, Ogg Opus), PyAV for
what libsndfile encodes (Ogg Vorbis) and for AAC (libsndfile reads no MP4 or ADTS; FFmpeg's decoders are another
code path than its encoders), numpy for raw PCM.
"""

from __future__ import annotations

import io
import re
from typing import Any, get_args

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from client._base import OUTPUT_FORMATS as CLIENT_FORMATS
from client._base import audio_extension, format_for_suffix
from gateway.schemas import OutputFormat
from shared.audio_encode import (
    CONTENT_TYPES,
    ENCODINGS,
    EXTENSIONS,
    OUTPUT_FORMATS,
    change_tempo,
    encode_audio,
    output_rate,
)
from shared.errors import InvalidAudio, InvalidRequest

Array = npt.NDArray[np.float32]
RATE = 16_000
CHANNEL_TONES = (440.0, 620.0)
# Where the decoded signal starts, in output samples: ADTS has no field for AAC's 1024 priming samples (an MP4
# edit list, Opus pre-skip and MP3's LAME header do say it, and the decoders here trim it).
LAG = {"aac_adts": 1024}
# How many more (+) or fewer samples than went in a decoder may give: AAC and Vorbis decode whole frames.
LENGTH_SLACK = {"ogg": 512, "aac": 1024, "aac_adts": 2048}


def signal(rate: int, frames: int, tone: float = 440.0) -> Array:
    """A tone with 0.2 s fades and a second, swelling tone at 1250 Hz: not periodic, so a shift shows."""
    t = np.arange(frames) / rate
    fades = np.clip(np.minimum(t, t[-1] - t) / 0.2, 0.0, 1.0) if frames else t
    swell = np.sin(np.pi * t / t[-1]) if frames > 1 else t
    return (0.4 * np.sin(2 * np.pi * tone * t) * fades + 0.2 * np.sin(2 * np.pi * 1250 * t) * swell).astype(np.float32)


def stereo(rate: int, frames: int) -> Array:
    return np.stack([signal(rate, frames, tone) for tone in CHANNEL_TONES], axis=1)


def decode(data: bytes, fmt: str, *, channels: int = 1, rate: int = RATE) -> tuple[Array, int]:
    """Frames x channels float32 and the rate, read by a decoder that is not the one ``fmt`` was encoded with."""
    if fmt.startswith("pcm"):
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768
        return samples, rate
    if fmt in ("ogg", "aac", "aac_adts"):
        # ADTS is named: FFmpeg's probe cannot tell a stream of one or two AAC frames by its content.
        with av.open(io.BytesIO(data), format="aac" if fmt == "aac_adts" else None) as container:
            stream = container.streams.audio[0]
            planes = [frame.to_ndarray() for frame in container.decode(stream)]  # channels x samples (planar)
            assert stream.codec_context.channels == channels
            out = np.concatenate(planes, axis=1).T if planes else np.zeros((0, channels))
            return np.ascontiguousarray(out, dtype=np.float32), stream.codec_context.sample_rate
    samples, found_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples, found_rate


def best_lag(decoded: Array, reference: Array) -> tuple[int, float]:
    """The shift of ``reference`` in ``decoded`` and the normalised correlation there."""
    size = len(decoded) + len(reference)
    cross = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(cross))
    lag = lag if lag < size // 2 else lag - size
    piece = decoded[max(lag, 0) : max(lag, 0) + len(reference)]
    ref = reference[: len(piece)]
    return lag, float(np.dot(piece, ref) / (np.linalg.norm(piece) * np.linalg.norm(ref)))


def peak_hz(samples: Array, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def _round_trip_cases() -> list[Any]:
    return [
        pytest.param(fmt, channels, id=f"{fmt}-{channels}ch")
        for fmt, encoding in ENCODINGS.items()
        for channels in (1, 2)
        if channels <= encoding.max_channels
    ]


# ------------------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize(("fmt", "channels"), _round_trip_cases())
def test_every_format_decodes_to_the_signal_that_went_in(fmt: str, channels: int) -> None:
    waveform = stereo(RATE, RATE)[:, :channels]
    out_rate = output_rate(fmt, RATE)
    decoded, rate = decode(encode_audio(waveform[:, 0] if channels == 1 else waveform, fmt), fmt, channels=channels,
                           rate=out_rate)  # fmt: skip
    assert rate == out_rate == ENCODINGS[fmt].rate_for(RATE)
    assert decoded.shape[1] == channels
    expected = round(RATE * out_rate / RATE)
    extra = len(decoded) - expected - LAG.get(fmt, 0)
    assert -LENGTH_SLACK.get(fmt, 0) <= extra <= LENGTH_SLACK.get(fmt, 0)
    reference = stereo(out_rate, expected)
    for channel, tone in enumerate(CHANNEL_TONES[:channels]):  # the channels keep their order
        lag, correlation = best_lag(decoded[:, channel], reference[:, channel])
        assert lag == LAG.get(fmt, 0)
        assert correlation > 0.99
        assert peak_hz(decoded[:, channel], rate) == pytest.approx(tone, abs=3)


def test_lossless_formats_keep_the_16_bit_samples() -> None:
    waveform = signal(RATE, 4_000)
    expected = np.round(waveform * 32768) / 32768
    for fmt in ("wav", "flac", "pcm"):
        decoded, _ = decode(encode_audio(waveform, fmt), fmt)
        assert np.abs(decoded[:, 0] - expected).max() <= 1 / 32768, fmt


def test_samples_are_clipped_to_the_unit_range() -> None:
    loud = signal(RATE, 3_200) * 5
    for fmt in ("wav", "pcm"):
        decoded, _ = decode(encode_audio(loud, fmt), fmt)
        assert 0.99 < decoded.max() <= 1.0
        assert -1.0 <= decoded.min() < -0.99


def test_aac_in_m4a_says_its_exact_duration_and_puts_its_index_first() -> None:
    """The MP4 edit list holds the length (the decoder pads to whole 1024-sample frames); ``moov`` before
    ``mdat`` lets a player start before the download ends."""
    data = encode_audio(signal(RATE, 12_345), "aac")
    assert data.index(b"moov") < data.index(b"mdat")
    assert data[4:12] == b"ftypM4A "
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        assert float(stream.duration * stream.time_base) == pytest.approx(12_345 / RATE, abs=1e-3)


def test_opus_and_vorbis_are_what_their_content_types_say() -> None:
    with sf.SoundFile(io.BytesIO(encode_audio(signal(RATE, 1_600), "opus"))) as snd:
        assert (snd.format, snd.subtype) == ("OGG", "OPUS")
    with av.open(io.BytesIO(encode_audio(signal(RATE, 1_600), "ogg"))) as container:
        assert container.streams.audio[0].codec_context.name == "vorbis"
    with av.open(io.BytesIO(encode_audio(signal(RATE, 1_600), "aac_adts")), format="aac") as container:
        assert container.streams.audio[0].codec_context.name == "aac"


@pytest.mark.parametrize("fmt", list(ENCODINGS))
def test_no_output_tells_which_ffmpeg_made_it(fmt: str) -> None:
    assert re.search(rb"Lav[fc]\d", encode_audio(signal(RATE, 1_600), fmt)) is None


# ------------------------------------------------------------------------------------------ empty and short


def _flac_frames_follow_metadata(data: bytes) -> bool:
    """Whether anything (audio frames) follows the last FLAC metadata block."""
    assert data[:4] == b"fLaC"
    pos = 4
    while True:
        header = data[pos : pos + 4]
        pos += 4 + int.from_bytes(header[1:4], "big")
        if header[0] & 0x80:
            return pos < len(data)


@pytest.mark.parametrize("fmt", list(ENCODINGS))
def test_an_empty_waveform_gives_a_valid_file(fmt: str) -> None:
    data = encode_audio(np.zeros(0, dtype=np.float32), fmt)
    rate = output_rate(fmt, RATE)
    if fmt.startswith("pcm"):
        assert data == b""  # raw PCM of no samples: nothing, which reads back as no samples
        return
    if fmt == "flac":
        # libsndfile reads the header (a length of 0 means "unknown" in STREAMINFO, so it cannot say 0 frames)
        with sf.SoundFile(io.BytesIO(data)) as snd:
            assert (snd.format, snd.samplerate, snd.channels) == ("FLAC", rate, 1)
        assert not _flac_frames_follow_metadata(data)
        return
    decoded, found_rate = decode(data, fmt, rate=rate)
    assert found_rate == rate
    if fmt in ("wav", "ogg"):
        assert len(decoded) == 0
    else:  # mp3, Opus and AAC cannot hold nothing: one sample of silence, padded by the codec
        assert len(decoded) >= 1
        assert np.abs(decoded).max() < 1e-3


@pytest.mark.parametrize("fmt", list(ENCODINGS))
def test_a_one_sample_waveform_gives_a_valid_file(fmt: str) -> None:
    rate = output_rate(fmt, RATE)
    decoded, found_rate = decode(encode_audio(np.array([0.25], dtype=np.float32), fmt), fmt, rate=rate)
    assert found_rate == rate
    assert len(decoded) >= 1
    if fmt in ("wav", "flac", "pcm"):
        assert decoded[:, 0].tolist() == [0.25]
    if fmt == "opus":
        assert len(decoded) == 1  # Ogg Opus says its exact length (end trimming)


def test_an_empty_stereo_flac_keeps_its_rate_and_channels() -> None:
    data = encode_audio(np.zeros((0, 2), dtype=np.float32), "flac", sample_rate=48_000)
    with sf.SoundFile(io.BytesIO(data)) as snd:
        assert (snd.samplerate, snd.channels) == (48_000, 2)


def test_long_vorbis_encode_does_not_crash() -> None:
    """libsndfile 1.2.2 segfaults on one Vorbis write of more than ~2 M samples; encode_audio writes in blocks."""
    data = encode_audio(np.tile(signal(RATE, RATE), 200), "ogg")  # 3.2 M samples
    with sf.SoundFile(io.BytesIO(data)) as snd:
        assert (snd.subtype, snd.frames) == ("VORBIS", 3_200_000)


# ------------------------------------------------------------------------------------------------------ rates


@pytest.mark.parametrize(
    ("fmt", "in_rate", "written"),
    [
        ("opus", 44_100, 48_000),  # Opus takes 8/12/16/24/48 kHz only
        ("opus", 22_050, 24_000),
        ("mp3", 96_000, 48_000),  # MPEG rates stop at 48 kHz
        ("ogg", 384_000, 192_000),  # libvorbis segfaults above ~200 kHz
        ("aac", 16_000, 16_000),
        ("aac_adts", 16_000, 24_000),  # the OpenAI variants' rate
        ("pcm", 22_050, 16_000),
        ("pcm_24k", 16_000, 24_000),
        ("wav", 44_100, 44_100),
    ],
)
def test_a_rate_the_codec_does_not_take_is_resampled(fmt: str, in_rate: int, written: int) -> None:
    frames = in_rate // 2
    data = encode_audio(signal(in_rate, frames), fmt, sample_rate=in_rate)
    decoded, rate = decode(data, fmt, rate=written)
    assert rate == written == output_rate(fmt, in_rate)
    expected = round(frames * written / in_rate)
    extra = len(decoded) - expected - LAG.get(fmt, 0)
    assert -LENGTH_SLACK.get(fmt, 0) <= extra <= LENGTH_SLACK.get(fmt, 0)
    assert peak_hz(decoded[:, 0], rate) == pytest.approx(440.0, abs=3)


def test_out_rate_picks_the_rate() -> None:
    decoded, rate = decode(encode_audio(signal(RATE, RATE), "opus", out_rate=48_000), "opus")
    assert (rate, len(decoded)) == (48_000, 48_000)
    decoded, rate = decode(encode_audio(signal(RATE, 1_001), "flac", out_rate=8_000), "flac")
    assert (rate, len(decoded)) == (8_000, 501)  # round(1001 / 2), halves up
    decoded, _ = decode(
        encode_audio(np.array([0.5], dtype=np.float32), "wav", sample_rate=48_000, out_rate=8_000), "wav"
    )
    assert len(decoded) == 1  # less than half an output sample still gives one
    assert output_rate("pcm", RATE, 8_000) == 8_000


def test_a_rate_the_format_cannot_hold_is_refused() -> None:
    ok = np.zeros(160, dtype=np.float32)
    with pytest.raises(InvalidRequest, match=r"opus output supports \[8000, 12000, 16000, 24000, 48000\] Hz"):
        encode_audio(ok, "opus", out_rate=44_100)
    with pytest.raises(InvalidRequest, match="mp3 output supports"):
        encode_audio(ok, "mp3", out_rate=96_000)
    with pytest.raises(InvalidRequest, match=r"ogg output supports 1000\.\.192000 Hz"):
        encode_audio(ok, "ogg", out_rate=384_000)
    with pytest.raises(InvalidRequest, match="input sample rate"):
        encode_audio(ok, "wav", sample_rate=500)
    with pytest.raises(InvalidRequest, match="integer"):
        encode_audio(ok, "wav", sample_rate=16_000.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------- errors


def test_encode_errors() -> None:
    ok = np.zeros(160, dtype=np.float32)
    with pytest.raises(InvalidRequest, match="Unknown audio output format 'aiff'") as excinfo:
        encode_audio(ok, "aiff")
    assert (excinfo.value.code, excinfo.value.status_code) == ("invalid_request", 422)
    with pytest.raises(InvalidRequest, match="at most 8 channels"):
        encode_audio(np.zeros((10, 9), dtype=np.float32), "flac")
    with pytest.raises(InvalidRequest, match="at most 2 channels"):
        encode_audio(np.zeros((10, 3), dtype=np.float32), "mp3")
    with pytest.raises(InvalidAudio, match="NaN"):
        encode_audio(np.array([0.0, np.nan], dtype=np.float32), "wav")
    with pytest.raises(InvalidAudio, match="NaN"):
        encode_audio(np.array([0.0, np.inf], dtype=np.float32), "opus")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        encode_audio(np.zeros((2, 2, 2), dtype=np.float32), "wav")


def test_format_names_are_case_insensitive_and_many_channels_fit_in_wav() -> None:
    decoded, _ = decode(encode_audio(signal(RATE, 800), "FLAC"), "flac")
    assert len(decoded) == 800
    many = np.tile(signal(RATE, 800)[:, None], (1, 12))
    decoded, _ = decode(encode_audio(many, "wav"), "wav", channels=12)
    assert decoded.shape == (800, 12)


# ------------------------------------------------------------------------------------ names, types, the API


def test_content_types_and_file_extensions() -> None:
    assert CONTENT_TYPES == {
        "wav": "audio/wav",
        "flac": "audio/flac",
        "ogg": "audio/ogg",
        "mp3": "audio/mpeg",
        "opus": "audio/ogg; codecs=opus",
        "aac": "audio/mp4",
        "pcm": "application/octet-stream",
        "aac_adts": "audio/aac",
        "pcm_24k": "application/octet-stream",
    }
    assert EXTENSIONS == {
        "wav": "wav",
        "flac": "flac",
        "ogg": "ogg",
        "mp3": "mp3",
        "opus": "opus",
        "aac": "m4a",
        "pcm": "pcm",
        "aac_adts": "aac",
        "pcm_24k": "pcm",
    }


def test_the_api_the_client_and_the_encoder_offer_the_same_formats() -> None:
    assert get_args(OutputFormat) == OUTPUT_FORMATS == CLIENT_FORMATS
    for fmt in OUTPUT_FORMATS:
        assert audio_extension(fmt) == EXTENSIONS[fmt]
        assert format_for_suffix(f".{EXTENSIONS[fmt].upper()}") == fmt
    assert format_for_suffix(".txt") is None


def dominant_hz(wave: Array, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum)) * rate / len(wave)


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_change_tempo_changes_the_duration_and_keeps_the_pitch(speed: float) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)  # 1 s
    out = change_tempo(tone, speed, sample_rate=RATE)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) / RATE == pytest.approx(1 / speed, rel=0.02)
    assert dominant_hz(out) == pytest.approx(440, abs=2)
    # atempo holds back its last window (~60 ms at 16 kHz): change_tempo pushes it out with silence and cuts the
    # output to round(len / speed), so the length is exact and the tone lasts to its end.
    assert len(out) == round(RATE / speed)
    assert float(np.abs(out[-len(out) // 10 :]).max()) > 0.4


def test_change_tempo_at_normal_speed_is_the_input_and_out_of_range_is_refused() -> None:
    tone = signal(RATE, RATE)
    assert change_tempo(tone, 1.0, sample_rate=RATE) is tone
    for speed in (0.2, 4.5, 0.0, -1.0, float("nan")):
        with pytest.raises(InvalidRequest) as excinfo:
            change_tempo(tone, speed, sample_rate=RATE)
        assert excinfo.value.details == {"field": "speed"}

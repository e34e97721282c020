"""Tests of shared/audio_container.py (opening uploads with FFmpeg safely) and of every container we now read,
with the committed files of tests/data (made by tests/data/make_containers.py).

Hostile inputs are checked against a control: each one is first shown to make plain FFmpeg (``av.open`` as anyone
would call it) open a local FIFO or send a request to a loopback HTTP server that the test runs, so that the
refusal tested next is a refusal of something that really happens otherwise.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
from watchers import FifoWatch, RecordingServer, hls_playlist

from shared import audio_decode
from shared.audio import AudioInfo, decode_audio, iter_decoded_blocks, probe_audio
from shared.audio_container import DEMUXERS
from shared.errors import InvalidAudio, UnsupportedMediaType

DATA = Path(__file__).parent / "data"


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoWatch]:
    watch = FifoWatch(tmp_path)
    yield watch
    watch.close()


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


class NamedBytes(io.BytesIO):
    """A file object with a name, as uploads spooled to named temporary files have."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def plain_ffmpeg_open(source: Any) -> None:
    """What FFmpeg does with the input when nobody restricts it (the control)."""
    with contextlib.suppress(av.error.FFmpegError, OSError):
        av.open(source).close()


def assert_refused_everywhere(source_factory: Any) -> None:
    for call in (probe_audio, decode_audio, lambda s: list(iter_decoded_blocks(s))):
        with pytest.raises(UnsupportedMediaType) as excinfo:
            call(source_factory())
        assert excinfo.value.status_code == 415


# --- hostile inputs ---------------------------------------------------------------------------------------------

pytestmark = pytest.mark.timeout(60)


def test_hls_playlist_naming_a_local_file_opens_nothing(tmp_path: Path, fifo: FifoWatch) -> None:
    playlist = hls_playlist(str(fifo.path))
    name = str(tmp_path / "upload.m3u8")
    plain_ffmpeg_open(NamedBytes(playlist, name))
    assert fifo.opened.wait(5), "control: plain FFmpeg follows the playlist to the local file"
    fifo.close()

    watch = FifoWatch(tmp_path, "other.ts")
    try:
        hostile = hls_playlist(str(watch.path))
        assert_refused_everywhere(lambda: NamedBytes(hostile, name))  # a named file object
        path = tmp_path / "list.m3u8"
        path.write_bytes(hostile)
        assert_refused_everywhere(lambda: path)  # a path, as the worker decodes its download
        assert_refused_everywhere(lambda: str(path))
        assert not watch.opened.wait(0.5)
    finally:
        watch.close()


def test_hls_playlist_naming_a_url_sends_no_request(tmp_path: Path, http_server: RecordingServer) -> None:
    playlist = hls_playlist(http_server.url)
    name = str(tmp_path / "upload.m3u8")
    plain_ffmpeg_open(NamedBytes(playlist, name))
    assert http_server.requests == ["/segment.ts"], "control: plain FFmpeg fetches the segment"
    http_server.requests.clear()

    assert_refused_everywhere(lambda: NamedBytes(playlist, name))
    path = tmp_path / "list.m3u8"
    path.write_bytes(playlist)
    assert_refused_everywhere(lambda: path)
    assert http_server.requests == []


def test_ffconcat_list_opens_nothing(tmp_path: Path, fifo: FifoWatch) -> None:
    """The concat demuxer needs no extension: its first line is enough for FFmpeg to pick it."""
    listing = f"ffconcat version 1.0\nfile '{fifo.path.name}'\n".encode()
    plain_ffmpeg_open(NamedBytes(listing, str(tmp_path / "list.txt")))
    assert fifo.opened.wait(5), "control: plain FFmpeg opens the file the list names"
    fifo.close()

    watch = FifoWatch(tmp_path, "other.ts")
    try:
        hostile = f"ffconcat version 1.0\nfile '{watch.path.name}'\n".encode()
        assert_refused_everywhere(lambda: NamedBytes(hostile, str(tmp_path / "list.txt")))
        assert not watch.opened.wait(0.5)
    finally:
        watch.close()


def test_the_committed_hostile_playlist_is_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        probe_audio(DATA / "hostile.m3u8")


def test_only_audio_demuxers_are_allowed() -> None:
    names = {part for demuxer in DEMUXERS for part in demuxer.split(",")}
    assert not names & {"hls", "concat", "image2", "image2pipe", "lavfi", "dash", "rtsp", "sdp", "http", "tee"}
    assert all(name in av.formats_available for name in DEMUXERS)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8),
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(2000)),
        ("text", b"This is not audio.\n" * 100),
        ("html", b"<!doctype html><title>x</title>" * 40),
    ],
)
def test_what_is_not_audio_is_415(label: str, data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as excinfo:
        probe_audio(data)
    assert "ffmpeg" not in excinfo.value.message.lower() and "avformat" not in excinfo.value.message.lower()
    with pytest.raises(UnsupportedMediaType):
        decode_audio(data)


# --- every container we read -----------------------------------------------------------------------------------

# file -> (format, codec, sample rate, channels, seconds it holds, lossless copy of the source)
CONTAINERS: dict[str, tuple[str, str, int, int, float, bool]] = {
    "speech_en.m4a": ("m4a", "aac", 16_000, 1, 1.881, False),
    "speech_fr_alac.m4a": ("m4a", "alac", 16_000, 1, 1.0, True),
    "speech_en.mov": ("mov", "aac", 44_100, 2, 1.881, False),
    "speech_en_video.mp4": ("mp4", "aac", 24_000, 1, 1.881, False),
    "speech_en.webm": ("webm", "opus", 48_000, 1, 1.881, False),
    "speech_fr.mkv": ("webm", "vorbis", 22_050, 2, 2.937, False),  # Matroska holding only WebM codecs
    "speech_en.aiff": ("aiff", "pcm_s16be", 8_000, 1, 1.881, False),
    "speech_fr.caf": ("caf", "alac", 16_000, 1, 1.0, True),
    "speech_en.wma": ("wma", "wmav2", 16_000, 1, 1.881, False),
    "speech_en.amr": ("amr", "amr_nb", 8_000, 1, 1.881, False),
}


def source_clip(name: str) -> np.ndarray:
    wave, rate = sf.read(DATA / ("speech_fr.wav" if "_fr" in name else "speech_en.wav"), dtype="float32")
    assert rate == 16_000
    return np.asarray(wave, dtype=np.float32)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2_500) -> float:
    """Largest normalised correlation of ``a`` and ``b`` over lags up to ``max_lag`` samples (codec delays)."""
    n = min(len(a), len(b)) - max_lag
    best = 0.0
    for lag in range(-max_lag, max_lag + 1, 1):
        x = a[max_lag : max_lag + n]
        y = b[max_lag + lag : max_lag + lag + n]
        if len(y) < n:
            continue
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
    return best


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_every_container_probes_and_decodes_to_its_speech(name: str) -> None:
    fmt, codec, rate, channels, seconds, lossless = CONTAINERS[name]
    data = (DATA / name).read_bytes()
    info = probe_audio(data)
    assert (info.format, info.subtype, info.sample_rate, info.channels) == (fmt, codec, rate, channels)
    assert info.duration_s == pytest.approx(seconds, abs=0.11)  # containers state lengths to a codec frame or so
    decoded = decode_audio(data)
    assert decoded.dtype == np.float32 and decoded.ndim == 1 and np.isfinite(decoded).all()
    assert len(decoded) / 16_000 == pytest.approx(seconds, abs=0.06)
    source = source_clip(name)[: round(seconds * 16_000)]
    if lossless:
        common = min(len(source), len(decoded))
        np.testing.assert_allclose(decoded[:common], source[:common], atol=1e-6)
    else:
        assert best_correlation(source, decoded) > 0.8  # the same speech, after a lossy codec and resampling
    blocks = list(iter_decoded_blocks(data, block_s=0.5))
    np.testing.assert_array_equal(np.concatenate(blocks), decoded)


def test_the_first_audio_stream_of_a_video_is_decoded() -> None:
    with av.open(str(DATA / "speech_en_video.mp4")) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    info = probe_audio(DATA / "speech_en_video.mp4")
    assert (info.format, info.subtype) == ("mp4", "aac")


def test_a_video_without_audio_is_invalid_audio() -> None:
    for call in (probe_audio, decode_audio):
        with pytest.raises(InvalidAudio, match="no audio stream") as excinfo:
            call(DATA / "video_only.mp4")
        assert excinfo.value.status_code == 422


@pytest.mark.parametrize("name", ["speech_en.m4a", "speech_en.webm", "speech_en.wma", "speech_fr_alac.m4a"])
def test_truncated_containers_are_invalid_audio(name: str) -> None:
    data = (DATA / name).read_bytes()
    for keep in (0.3, 0.6, 0.9):
        cut = data[: int(len(data) * keep)]
        with pytest.raises(InvalidAudio):
            probe_audio(cut)  # the gateway refuses it...
        with pytest.raises(InvalidAudio):
            decode_audio(cut)  # ...and so would the worker


def test_an_undecodable_codec_is_415_and_a_codec_fed_garbage_is_422() -> None:
    """A WAV whose format tag names a codec FFmpeg has no decoder for (0x1234) is not audio we can read; one that
    names MP3 (0x0055) while holding PCM is audio that does not decode."""
    data = (DATA / "speech_en.wav").read_bytes()
    fmt = data.index(b"fmt ") + 8
    unknown = data[:fmt] + (0x1234).to_bytes(2, "little") + data[fmt + 2 :]
    for call in (probe_audio, decode_audio):
        with pytest.raises(UnsupportedMediaType, match="codec we cannot decode"):
            call(unknown)
    mislabelled = data[:fmt] + (0x0055).to_bytes(2, "little") + data[fmt + 2 :]
    for call in (probe_audio, decode_audio):
        with pytest.raises(InvalidAudio):
            call(mislabelled)


def test_audio_info_is_what_callers_know() -> None:
    info = probe_audio(DATA / "speech_en.wav")
    assert info == AudioInfo("wav", "pcm_s16le", 16_000, 1, 30_097)
    assert info.duration_s == pytest.approx(1.881, abs=1e-3)


class SlowUpload(io.BytesIO):
    """An upload that trickles in: 512 bytes per read, 20 ms each (a stalled disk or a file built to be slow)."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.02)
        return super().read(min(512, size) if size is not None and size >= 0 else 512)


def test_a_probe_that_runs_past_its_time_limit_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg cannot be interrupted, but every byte it reads comes through our reader, which ends the file once the
    time limit has passed: the probe stops there instead of running on."""
    monkeypatch.setattr(audio_decode, "PROBE_TIME_LIMIT_S", 0.3)
    started = time.monotonic()
    with pytest.raises(InvalidAudio, match="took too long"):
        probe_audio(SlowUpload((DATA / "speech_fr.mkv").read_bytes()))
    assert time.monotonic() - started < 3
    assert probe_audio(io.BytesIO((DATA / "speech_fr.mkv").read_bytes())).format == "webm"  # not slow: fine

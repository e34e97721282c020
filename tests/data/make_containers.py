"""Regenerates the small container files of tests/data (``python tests/data/make_containers.py``) from the committed
speech clips, with PyAV itself: no FFmpeg install is needed, neither to run this nor to run the tests (the files
are committed). Every file holds the English sentence of ``speech_en.wav`` (1.88 s) or the French one of
``speech_fr.wav`` (2.94 s), so that the tests can compare what each decodes to with the WAV it came from.

| file | container | codec | rate, channels |
|---|---|---|---|
| speech_en.m4a | MP4 (M4A brand) | AAC-LC 32 kb/s | 16 kHz mono |
| speech_fr_alac.m4a | MP4 (M4A brand) | ALAC (lossless) | 16 kHz mono, first second |
| speech_en.mov | QuickTime | AAC-LC 48 kb/s | 44.1 kHz stereo |
| speech_en_video.mp4 | MP4 | MPEG-4 part 2 video (64x48, 5 fps) + AAC | 24 kHz mono |
| speech_en.webm | WebM | Opus 24 kb/s | 48 kHz mono |
| speech_fr.mkv | Matroska | Vorbis (FFmpeg's own encoder) | 22.05 kHz stereo |
| speech_en.aiff | AIFF | PCM 16-bit big-endian | 8 kHz mono |
| speech_fr.caf | CAF | ALAC | 16 kHz mono, first second |
| speech_en.wma | ASF | WMA v2 32 kb/s | 16 kHz mono |
| speech_en.amr | AMR | AMR-NB 12.2 kb/s (OpenCORE) | 8 kHz mono |
| video_only.mp4 | MP4 | MPEG-4 part 2 video only: no audio stream | |

Muxers run with ``+bitexact`` (no encoder version strings, no random Matroska UIDs), so reruns with the same PyAV
give the same bytes. The hostile playlist ``hostile.m3u8`` is plain text and is not generated here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

DATA = Path(__file__).parent


def read_clip(name: str) -> np.ndarray:
    """The clip's 16-bit samples, mono at 16 kHz (what the committed WAVs hold)."""
    with av.open(str(DATA / name)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == 16_000
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)])


def write(
    name: str,
    wave: np.ndarray,
    *,
    codec: str,
    rate: int,
    layout: str = "mono",
    fmt: str | None = None,
    bit_rate: int | None = None,
    video: bool = False,
    options: dict[str, str] | None = None,
) -> None:
    """Encode ``wave`` (16-bit samples, 16 kHz mono) into ``name``, converted to ``rate`` and ``layout`` by
    FFmpeg's resampler (the lossless files stay at 16 kHz mono: they hold the very samples of the WAV)."""
    path = DATA / name
    with av.open(str(path), "w", format=fmt, container_options={"fflags": "+bitexact"}) as out:
        video_stream = None
        if video:
            video_stream = out.add_stream("mpeg4", rate=5)
            video_stream.width, video_stream.height, video_stream.pix_fmt = 64, 48, "yuv420p"
            video_stream.codec_context.flags |= av.codec.context.Flags.bitexact
        if codec is None:
            audio_stream = None
        else:
            audio_stream = out.add_stream(codec, rate=rate, layout=layout, options=options or {})
            if bit_rate:
                audio_stream.bit_rate = bit_rate
            audio_stream.codec_context.flags |= av.codec.context.Flags.bitexact
        if audio_stream is not None:
            context = audio_stream.codec_context
            resampler = av.AudioResampler(
                format=context.format.name, layout=layout, rate=rate, frame_size=context.frame_size or None
            )
            source = av.AudioFrame.from_ndarray(wave.astype(np.int16)[None, :], format="s16", layout="mono")
            source.sample_rate, source.pts, source.time_base = 16_000, 0, Fraction(1, 16_000)
            for frame in [*resampler.resample(source), *resampler.resample(None)]:
                out.mux(audio_stream.encode(frame))
            out.mux(audio_stream.encode(None))
        if video_stream is not None:
            seconds = len(wave) / 16_000
            for index in range(max(1, round(seconds * 5))):
                picture = np.full((48, 64, 3), (index * 40) % 256, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = index
                out.mux(video_stream.encode(frame))
            out.mux(video_stream.encode(None))
    print(f"{name}: {path.stat().st_size} bytes")


def main() -> None:
    en = read_clip("speech_en.wav")
    fr = read_clip("speech_fr.wav")
    write("speech_en.m4a", en, codec="aac", rate=16_000, fmt="ipod", bit_rate=32_000)
    write("speech_fr_alac.m4a", fr[:16_000], codec="alac", rate=16_000, fmt="ipod")
    write("speech_en.mov", en, codec="aac", rate=44_100, layout="stereo", fmt="mov", bit_rate=48_000)
    write("speech_en_video.mp4", en, codec="aac", rate=24_000, fmt="mp4", bit_rate=24_000, video=True)
    write("speech_en.webm", en, codec="libopus", rate=48_000, fmt="webm", bit_rate=24_000)
    write(
        "speech_fr.mkv",
        fr,
        codec="vorbis",
        rate=22_050,
        layout="stereo",
        fmt="matroska",
        options={"strict": "experimental"},  # FFmpeg's own Vorbis encoder (the wheel has no libvorbis)
    )
    write("speech_en.aiff", en, codec="pcm_s16be", rate=8_000, fmt="aiff")
    write("speech_fr.caf", fr[:16_000], codec="alac", rate=16_000, fmt="caf")
    write("speech_en.wma", en, codec="wmav2", rate=16_000, fmt="asf", bit_rate=32_000)
    write("speech_en.amr", en, codec="libopencore_amrnb", rate=8_000, fmt="amr", bit_rate=12_200)
    write("video_only.mp4", en, codec=None, rate=0, fmt="mp4", video=True)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

"""Audio in and out of the API: probe an upload, decode it to 16 kHz mono float32, encode model output.

No torch here: the gateway imports this module. Reading (probing and decoding) lives in
:mod:`shared.audio_decode`, on FFmpeg through PyAV, opened safely by :mod:`shared.audio_container`; its names are
re-exported here, so callers import them from ``shared.audio`` as before. Encoding goes through libsndfile
(``soundfile``); of the libsndfile traps listed below, those about *reading* (MP3 frame counts, FLAC of unknown
length, file objects, 0-frame WAV) no longer concern this service, which reads nothing through libsndfile.

Encoding
    wav: PCM_16 WAV. flac: PCM_16 FLAC (at most 8 channels). ogg: **Vorbis** (any rate up to 192 kHz); Opus
    only as a fallback if libvorbis refuses the parameters, and only at Opus rates (8/12/16/24/48 kHz).
    mp3: MPEG-1/2 Layer III via LAME (MPEG rates 8 000..48 000 Hz, at most 2 channels). Samples are clipped to
    [-1, 1] first. Empty input: wav and ogg are written normally (a header, 0 frames); flac gets a hand-built
    42-byte stream (``fLaC`` + STREAMINFO with 0 samples) because libsndfile writes *nothing at all* for a
    0-frame FLAC; mp3 gets one sample of silence (1/rate s) because libsndfile/LAME also writes nothing.

Traps found in soundfile 0.14 / libsndfile 1.2.2 (checked with BytesIO for every format; reading and writing
WAV, FLAC, OGG Vorbis, OGG Opus and MP3 through file-like objects all work):
    * Writing OGG **Vorbis** in one large call (more than ~2 M samples) segfaults, so we write in blocks of
      ``_WRITE_BLOCK_FRAMES`` frames. Vorbis at rates above ~200 kHz segfaults too (on close), so we refuse
      them before libsndfile sees them. A segfault cannot be caught: these checks must stay.
    * FLAC with 0 frames is written as 0 bytes (see above); 0-frame MP3 likewise. A FLAC with "total samples
      unknown" (including the empty one) reports ``frames == 2**63 - 1``; ``SoundFile.read()`` without a frame
      count then tries to allocate that, and *any* ``SoundFile.read(n)`` fails with "psf_fseek() failed"
      because soundfile seeks after every read to track its position. We read such files with libsndfile's
      ``sf_readf_float`` directly (``_read_raw``), never through ``SoundFile.read``.
    * A file-like object is read from wherever it is positioned, while libsndfile is told the length of the
      whole stream. We therefore always rewind (``seek(0)``) before handing it over, and restore the caller's
      position afterwards. Non-seekable streams make soundfile print "Exception ignored from cffi callback"
      and fail: the decoders spool them to a temporary file first (16 MiB in memory, the rest on disk);
      ``probe_audio`` refuses them with ``ValueError`` since it would have to consume the stream.
    * ``soundfile`` does not close file objects it was given (good: the caller owns them).
    * Opus can only be *written* at 8/12/16/24/48 kHz; reading reports the rate stored in the header.
    * MP3: libsndfile's frame count is exact only when a Xing/Info (LAME) header is present. Without one it
      estimates from the first frame's bitrate, and libsndfile stops decoding at that estimate: a VBR MP3
      without a Xing header can come back shorter than it is (nothing we can fix without another decoder),
      and a CBR/VBR estimate can also be too long. Hence no "truncated" check for MP3: a damaged MP3 decodes
      to what survives, as players do. libmpg123 also prints warnings about damaged frames to stderr.
    * A 1-frame file is fine everywhere; WAV/OGG with 0 frames are written and read as 0 frames. A WAV whose
      ``data`` size is 0 reads as 0 frames even when samples follow, so it is refused as empty.
    * Multichannel Vorbis/Opus use the Vorbis channel order, where channel 8 of 7.1 is the LFE: Opus
      low-passes it (a 1.7 kHz tone there is lost, a 110 Hz one survives): that is the encoder, not our downmix.
"""

from __future__ import annotations

import io
import struct
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import soundfile as sf

from shared.audio_container import AudioSource
from shared.audio_decode import TARGET_SAMPLE_RATE, AudioInfo, decode_audio, iter_decoded_blocks, probe_audio
from shared.errors import InvalidAudio, InvalidRequest

__all__ = [
    "CONTENT_TYPES",
    "OUTPUT_FORMATS",
    "TARGET_SAMPLE_RATE",
    "AudioInfo",
    "AudioSource",
    "decode_audio",
    "duration_s",
    "encode_audio",
    "iter_decoded_blocks",
    "probe_audio",
]

OUTPUT_FORMATS: Final = ("wav", "flac", "ogg", "mp3")
CONTENT_TYPES: Final[dict[str, str]] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
}

MIN_SAMPLE_RATE: Final = 1_000
MAX_SAMPLE_RATE: Final = 384_000
MAX_CHANNELS: Final = 64

Waveform: TypeAlias = npt.NDArray[np.float32]

_WRITE_BLOCK_FRAMES: Final = 16_384

_MP3_RATES: Final = frozenset({8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000})
_OPUS_RATES: Final = frozenset({8_000, 12_000, 16_000, 24_000, 48_000})
_VORBIS_MAX_RATE: Final = 192_000  # libvorbis via libsndfile 1.2.2 segfaults above ~200 kHz
_MAX_ENCODE_CHANNELS: Final = {"wav": MAX_CHANNELS, "flac": 8, "ogg": MAX_CHANNELS, "mp3": 2}


def _empty_flac(sample_rate: int, channels: int) -> bytes:
    """A FLAC stream with STREAMINFO only: 0 samples (libsndfile writes 0 bytes for a 0-frame FLAC)."""
    packed = (sample_rate << 44) | ((channels - 1) << 41) | ((16 - 1) << 36)  # total samples: 0
    streaminfo = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes((0x80, 0, 0, len(streaminfo))) + streaminfo  # last metadata block, type 0


def _write(data: Waveform, sample_rate: int, container: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sample_rate, data.shape[1], subtype=subtype, format=container) as snd:
        for start in range(0, data.shape[0], _WRITE_BLOCK_FRAMES):  # never one big write: Vorbis segfaults
            snd.write(data[start : start + _WRITE_BLOCK_FRAMES])
    return buffer.getvalue()


def encode_audio(waveform: npt.ArrayLike, fmt: str = "wav", *, sample_rate: int = TARGET_SAMPLE_RATE) -> bytes:
    """Encode float samples (1-D mono, or 2-D frames x channels) as a complete file in memory.

    ``fmt`` is one of :data:`OUTPUT_FORMATS` (case-insensitive): wav/flac are PCM_16, ogg is Vorbis, mp3 is
    LAME Layer III (see the module docstring for limits and the empty-input cases). Samples are clipped to
    [-1, 1]. Raises :class:`InvalidRequest` for an unknown format or a rate/channel count the format cannot
    hold, :class:`InvalidAudio` for NaN/Inf samples, ``ValueError`` for an array that is not 1-D/2-D.
    """
    key = fmt.lower() if isinstance(fmt, str) else ""
    if key not in OUTPUT_FORMATS:
        raise InvalidRequest(f"Unknown audio output format {fmt!r}; expected one of {', '.join(OUTPUT_FORMATS)}.")
    data = np.asarray(waveform, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, np.newaxis]
    if data.ndim != 2 or data.shape[1] < 1:
        raise ValueError(f"waveform must be 1-D or 2-D (frames x channels), not of shape {data.shape}")
    channels = data.shape[1]
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise InvalidRequest("The output sample rate must be an integer number of Hz.")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidRequest(f"The output sample rate must be within {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz.")
    if channels > _MAX_ENCODE_CHANNELS[key]:
        raise InvalidRequest(f"{key} output holds at most {_MAX_ENCODE_CHANNELS[key]} channels, not {channels}.")
    if key == "mp3" and sample_rate not in _MP3_RATES:
        raise InvalidRequest(f"mp3 output supports {sorted(_MP3_RATES)} Hz, not {sample_rate} Hz.")
    if key == "ogg" and sample_rate > _VORBIS_MAX_RATE:
        raise InvalidRequest(f"ogg output supports at most {_VORBIS_MAX_RATE} Hz, not {sample_rate} Hz.")
    if not np.isfinite(data).all():
        raise InvalidAudio("The waveform to encode contains NaN or infinite sample values.")
    data = np.ascontiguousarray(np.clip(data, -1.0, 1.0), dtype=np.float32)

    if data.shape[0] == 0:
        if key == "flac":
            return _empty_flac(sample_rate, channels)
        if key == "mp3":
            data = np.zeros((1, channels), dtype=np.float32)
    try:
        if key == "wav":
            return _write(data, sample_rate, "WAV", "PCM_16")
        if key == "flac":
            return _write(data, sample_rate, "FLAC", "PCM_16")
        if key == "mp3":
            return _write(data, sample_rate, "MP3", "MPEG_LAYER_III")
        try:
            return _write(data, sample_rate, "OGG", "VORBIS")
        except sf.LibsndfileError:
            if sample_rate not in _OPUS_RATES:
                raise
            return _write(data, sample_rate, "OGG", "OPUS")
    except sf.LibsndfileError as exc:
        raise InvalidRequest(
            f"Cannot encode {channels}-channel audio at {sample_rate} Hz as {key}.",
        ) from exc


def duration_s(waveform: npt.ArrayLike, sample_rate: int = TARGET_SAMPLE_RATE) -> float:
    """Seconds of audio in ``waveform`` (1-D, or 2-D frames x channels) at ``sample_rate``."""
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    shape = np.shape(waveform)
    return (shape[0] if shape else 0) / sample_rate

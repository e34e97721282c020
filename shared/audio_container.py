"""Opening uploaded audio with FFmpeg (PyAV) safely: from its bytes only, through an allow-list of demuxers.

FFmpeg is also a network client and a playlist reader. Given a path or a URL, or left free to pick any demuxer, an
uploaded HLS playlist (``.m3u8``), ``ffconcat`` list or image-sequence pattern makes it open other files or URLs:
a local file read, or a request from the server to wherever the upload points (SSRF). Hence, all four of these:

* FFmpeg never sees a path or a URL. It reads a Python file object (:class:`_Upload`) that has no ``name``: PyAV
  would pass a name on to FFmpeg as the URL, and demuxers both probe by extension (HLS is only detected for a
  ``.m3u8`` name) and resolve relative references against it. Paths are opened here, in Python.
* ``format_whitelist``: FFmpeg refuses a probed demuxer that is not on :data:`DEMUXERS` *before* that demuxer's
  ``read_header`` runs (and ``container.format.name`` is checked again after the open). No playlist, concat,
  image, network, device or ``lavfi`` demuxer is on the list, and none on it opens anything else (``mov`` would
  follow external data references only with ``enable_drefs``, off by default). ``format=`` is never passed:
  every demuxer on the list recognises its own files.
* Nested opens are refused twice over: ``io_open`` (FFmpeg's hook for every further file or URL a demuxer opens)
  raises, and ``protocol_whitelist`` names no protocol at all.
* Probing is bounded: ``probesize`` (bytes read to find the format and the stream parameters),
  ``analyzeduration`` (stream time analysed) and ``max_streams``. FFmpeg's C code cannot be interrupted from
  another thread, but everything it reads comes through :meth:`_Upload.read`, which raises once the caller's
  deadline has passed (a stalled or pathological read ends there, as :class:`InvalidAudio`).

Errors: a format that is recognised but not on the list (an image, a playlist) and anything nothing recognises
(text, random bytes) are :class:`UnsupportedMediaType`; a recognised audio container that fails to open
(truncated, corrupt) is :class:`InvalidAudio`. FFmpeg returns "invalid data" for both of the latter cases, so
when an open fails that way the bytes are probed once more with an empty allow-list: FFmpeg then stops right
after probing, and says whether any demuxer recognised them. No FFmpeg message ever reaches a client.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, TypeAlias

import av
import av.container
import av.error
from av.audio.stream import AudioStream
from av.stream import Discard

from shared.errors import InvalidAudio, UnsupportedMediaType

__all__ = [
    "DEMUXERS",
    "AudioSource",
    "OpenedAudio",
    "open_audio",
    "readable_source",
]

AudioSource: TypeAlias = str | os.PathLike[str] | BinaryIO | bytes

DEMUXERS: Final = (
    "wav",  # also RF64 and BW64
    "w64",
    "aiff",
    "caf",
    "au",
    "flac",
    "ogg",  # Vorbis, Opus, FLAC, Speex
    "mp3",
    "aac",  # ADTS
    "amr",  # AMR-NB and AMR-WB with the "#!AMR" magic
    "mov,mp4,m4a,3gp,3g2,mj2",  # AAC, ALAC, MP3, PCM...; also the audio of MP4/MOV videos
    "matroska,webm",  # Opus, Vorbis, AAC, FLAC...; also the audio of MKV/WebM videos
    "asf",  # WMA; also the audio of WMV videos
    "avi",
)
"""FFmpeg demuxers (``AVInputFormat.name``) that may read an upload. Nothing else is ever selected."""

MIN_SAMPLE_RATE: Final = 1_000
MAX_SAMPLE_RATE: Final = 384_000
MAX_CHANNELS: Final = 64

PROBE_SIZE_BYTES: Final = 4 * 2**20  # room for a large ID3 tag or cover art in front of the audio
ANALYZE_DURATION_US: Final = 5_000_000
MAX_STREAMS: Final = 64
_NO_PROTOCOL: Final = "none"  # no protocol has this name: the whitelist allows none

_SPOOL_MEMORY_BYTES: Final = 16 * 2**20
_SUPPORTED_HINT: Final = (
    "send WAV, FLAC, MP3, OGG (Vorbis, Opus), M4A/MP4/MOV (AAC, ALAC), WebM/MKV (Opus, Vorbis), AIFF, CAF, WMA "
    "or AMR, or a video with an audio track"
)
_CORRUPT: Final = "The audio file is corrupt or truncated and cannot be decoded."
_TOO_SLOW: Final = "The audio file took too long to read; it is damaged or built to be slow."
_WEBM_CODECS: Final = frozenset({"opus", "vorbis", "vp8", "vp9", "av1"})
_CHECKSUMMED: Final = frozenset({"flac"})  # lossless codecs whose frames carry a CRC


class _NestedOpenRefused(Exception):
    """A demuxer asked to open another file or URL."""


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> None:
    raise _NestedOpenRefused()


class _Upload:
    """What FFmpeg reads: the caller's bytes, no name, and a deadline checked on every read.

    Past the deadline every read is an end of file (FFmpeg then winds down at once) and ``expired`` is set; an
    exception raised here would only be reported once by PyAV, and printed to stderr for every later read.
    """

    def __init__(self, fileobj: BinaryIO, deadline: float | None) -> None:
        self._file = fileobj
        self._deadline = deadline
        self.expired = False

    def clear_deadline(self) -> None:
        self._deadline = None

    def read(self, size: int = -1) -> bytes:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.expired = True
        if self.expired:
            return b""
        return self._file.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def readable_source(source: AudioSource, *, spool: bool) -> Iterator[tuple[BinaryIO, int]]:
    """A rewound, seekable binary file object over ``source``, and its size in bytes.

    A path is opened here (never handed to FFmpeg); bytes are wrapped; a seekable file object is rewound and its
    position restored afterwards; a non-seekable stream is copied to a temporary file (16 MiB in memory, the rest
    on disk) when ``spool`` is true, else refused with ``ValueError``. A missing path raises the ``OSError`` of
    ``open``: that is a server-side fault, not the client's audio.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
        return
    if isinstance(source, str | os.PathLike):
        with open(os.fspath(source), "rb") as opened:
            yield opened, os.fstat(opened.fileno()).st_size
        return
    fileobj: BinaryIO = source
    if _is_seekable(fileobj):
        start = fileobj.tell()
        try:
            size = fileobj.seek(0, io.SEEK_END)
            fileobj.seek(0)
            yield fileobj, size
        finally:
            with suppress(OSError, ValueError):
                fileobj.seek(start)
        return
    if not spool:
        raise ValueError("probe_audio needs a path, bytes or a seekable file object; this stream is not seekable")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES) as tmp:
        shutil.copyfileobj(fileobj, tmp, 2**20)
        size = tmp.tell()
        tmp.seek(0)
        yield tmp, size  # type: ignore[misc]  # SpooledTemporaryFile is a file object, not a BinaryIO subclass


@dataclass(frozen=True)
class OpenedAudio:
    """An open container and the audio stream we decode (the first one), checked for sane parameters."""

    container: av.container.InputContainer
    stream: AudioStream
    upload: _Upload
    format: str
    """Our name for the container: wav, w64, aiff, caf, au, flac, ogg, mp3, aac, amr, m4a, mp4, mov, 3gp, webm,
    mkv, wma, avi."""
    codec: str
    """FFmpeg's name for the codec: pcm_s16le, flac, vorbis, opus, mp3, aac, alac, wmav2, amr_nb..."""
    sample_rate: int
    channels: int

    def check_deadline(self) -> None:
        """Raise :class:`InvalidAudio` if the deadline passed (FFmpeg has seen an end of file since then)."""
        if self.upload.expired:
            raise InvalidAudio(_TOO_SLOW)


def _options(whitelist: str) -> dict[str, str]:
    return {
        "format_whitelist": whitelist,
        "protocol_whitelist": _NO_PROTOCOL,
        "probesize": str(PROBE_SIZE_BYTES),
        "analyzeduration": str(ANALYZE_DURATION_US),
        "max_streams": str(MAX_STREAMS),
    }


def _open(upload: _Upload, fileobj: BinaryIO, whitelist: str) -> av.container.InputContainer:
    fileobj.seek(0)
    return av.open(
        upload,
        mode="r",
        container_options=_options(whitelist),
        io_open=_refuse_nested_open,
        metadata_errors="replace",  # tags are never used, and must not fail the open when they are not UTF-8
    )


def _recognised(fileobj: BinaryIO, deadline: float | None) -> bool:
    """Whether any FFmpeg demuxer recognises the bytes: with an empty allow-list, FFmpeg probes and then refuses
    whatever it found before reading any further (``EINVAL``); it answers "invalid data" when nothing matched."""
    try:
        container = _open(_Upload(fileobj, deadline), fileobj, _NO_PROTOCOL)
    except av.error.ArgumentError:
        return True
    except av.error.FFmpegError:
        return False
    container.close()  # unreachable in practice: no demuxer is called "none"
    return True


def _open_error(
    exc: BaseException, upload: _Upload, fileobj: BinaryIO, deadline: float | None
) -> InvalidAudio | UnsupportedMediaType:
    if upload.expired:
        return InvalidAudio(_TOO_SLOW)
    if isinstance(exc, _NestedOpenRefused):
        return UnsupportedMediaType(f"The file refers to other files or URLs, which we never open; {_SUPPORTED_HINT}.")
    if isinstance(exc, av.error.ArgumentError):  # probed as a format that is not on the allow-list
        return UnsupportedMediaType(f"The file is not audio in a format we read; {_SUPPORTED_HINT}.")
    if isinstance(exc, av.error.EOFError):
        return InvalidAudio(_CORRUPT)
    if _recognised(fileobj, deadline):
        return InvalidAudio(_CORRUPT)
    return UnsupportedMediaType(f"The file is not audio in a format we read; {_SUPPORTED_HINT}.")


def _format_name(container: av.container.InputContainer, stream: AudioStream) -> str:
    name = container.format.name
    if name.startswith("mov,"):
        brand = str(container.metadata.get("major_brand", "")).strip().lower()
        if brand == "qt":
            return "mov"
        if brand.startswith(("m4a", "m4b")):
            return "m4a"
        if brand.startswith("3g"):
            return "3gp"
        return "mp4"
    if name.startswith("matroska"):
        codecs = {s.codec_context.codec.canonical_name for s in container.streams if s.codec_context is not None}
        return "webm" if codecs <= _WEBM_CODECS else "mkv"
    return {"asf": "wma"}.get(name, name)


def _checked(container: av.container.InputContainer, upload: _Upload) -> OpenedAudio:
    if upload.expired:
        raise InvalidAudio(_TOO_SLOW)
    if container.format.name not in DEMUXERS:  # the whitelist already refused it; checked again all the same
        raise UnsupportedMediaType(f"The file is not audio in a format we read; {_SUPPORTED_HINT}.")
    if not container.streams.audio:
        raise InvalidAudio("The file holds no audio stream (a video without sound, or not audio at all).")
    stream = container.streams.audio[0]
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all  # the demuxer skips video (and other) packets without reading them
    context = stream.codec_context
    if context is None:
        raise UnsupportedMediaType(f"The audio uses a codec we cannot decode; {_SUPPORTED_HINT}.")
    codec = context.codec.canonical_name
    if codec in _CHECKSUMMED:
        # A FLAC frame whose CRC fails is otherwise decoded as it is (garbage at full scale, measured): make it a
        # decoding error, which refuses the file, as libFLAC did.
        context.options = {**context.options, "err_detect": "crccheck+explode"}
    channels = context.layout.nb_channels or context.channels
    rate = context.sample_rate
    if channels < 1:
        raise InvalidAudio("The audio has no channels.")
    check_channels_and_rate(channels, rate)
    return OpenedAudio(container, stream, upload, _format_name(container, stream), codec, rate, channels)


def check_channels_and_rate(channels: int, rate: int) -> None:
    """:class:`InvalidAudio` for more than ``MAX_CHANNELS`` channels or a rate outside the accepted range: checked
    on the stream's parameters when it opens, and again on every change of them while it is decoded."""
    if channels > MAX_CHANNELS:
        raise InvalidAudio(f"The audio has {channels} channels; at most {MAX_CHANNELS} are accepted.")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidAudio(f"The audio's sample rate ({rate} Hz) is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz.")


@contextmanager
def open_audio(fileobj: BinaryIO, *, deadline: float | None = None) -> Iterator[OpenedAudio]:
    """Open ``fileobj`` (rewound, seekable: see :func:`readable_source`) and pick its first audio stream.

    Raises :class:`UnsupportedMediaType` (not a format on the list, a codec FFmpeg cannot decode) or
    :class:`InvalidAudio` (truncated or corrupt container, no audio stream, no channels, more than 64 channels,
    a sample rate outside 1 000..384 000 Hz, past ``deadline``: a ``time.monotonic()`` value).
    """
    fileobj.seek(0)
    big_endian_wav = fileobj.read(4) == b"RIFX"
    upload = _Upload(fileobj, deadline)
    try:
        container = _open(upload, fileobj, ",".join(DEMUXERS))
    except (av.error.FFmpegError, _NestedOpenRefused) as exc:
        raise _open_error(exc, upload, fileobj, deadline) from None
    with container:
        if big_endian_wav and container.format.name == "wav":
            # FFmpeg 8.1 (PyAV 18.1) reads RIFX's PCM as little-endian: noise at full scale (measured: every
            # sample wrong, errors up to 1.1). Refused rather than decoded wrong; RIFX is rare (libsndfile writes it).
            raise UnsupportedMediaType(
                "Big-endian WAV (RIFX) is not read; convert it to an ordinary (RIFF) WAV, or to FLAC."
            )
        yield _checked(container, upload)

"""Audio into the API: probe an upload, decode it to 16 kHz mono float32 (encoding: ``shared.audio_encode``).

No torch here: the gateway imports this module. Everything goes through libsndfile (``soundfile``) and
libsoxr (``soxr``).

What we read
    WAV (RIFF/RIFX, WAVEX, RF64; PCM, float, and whatever codec libsndfile decodes inside WAV), FLAC,
    OGG Vorbis, OGG Opus and MP3. Everything else libsndfile recognises (AIFF, AU, W64, CAF...) is refused
    with :class:`UnsupportedMediaType`, as is anything it does not recognise. Audio that is empty, corrupt,
    truncated, or holds NaN/Inf samples is :class:`InvalidAudio`. No libsndfile message ever reaches a client:
    every error raised here carries one of our own messages.

Decoding
    Blocks of at most ``_READ_BLOCK_SAMPLES`` samples (all channels together: 1 Mi frames of mono, 512 Ki of
    stereo, 16 Ki of 64-channel audio, so at most 4 MiB of float32) are read as float32, downmixed by averaging
    *all* channels, checked for NaN/Inf and pushed through one streaming ``soxr.ResampleStream`` (quality "HQ":
    soxr's default, a steep linear-phase low-pass, transparent for speech; "VHQ" costs more for nothing the
    model hears). Memory is therefore bounded by the output, never by input size x channels x float64.
    The output length is ``round(frames * target / rate)`` (halves up) and at least one sample: a non-empty
    file never decodes to nothing, and audio shorter than half an output sample (a 1-frame 44.1 kHz file)
    decodes to one sample, the mean of its input. A 1-frame file is valid audio; whether it is *long
    enough* is the caller's business.

Header sanity (``probe_audio``, also run first by the decoders)
    * Zero frames or channels, more than 64 channels, a rate outside 1 000..384 000 Hz: ``InvalidAudio``.
    * WAV: libsndfile itself never believes a header: when the ``data`` chunk claims more bytes than the file
      holds it silently reports (and decodes) only what is there, so a WAV cut in half would pass as a shorter
      file. We walk the RIFF chunks ourselves and raise ``InvalidAudio`` (truncated) when the declared data
      exceeds what the file holds by more than ``max(2 frames, 256 bytes)``. Sizes used as "unknown length"
      by streaming writers (0, 0xFFFFFFFF, and anything >= 0x7FFF0000, e.g. arecord's 0x7FFFFFFF) are not
      treated as claims; RF64's 64-bit size comes from its ``ds64`` chunk.
    * FLAC, OGG, MP3 (compressed): no exact byte count exists, so the claimed frame count is only checked
      against a generous ceiling of frames per byte of file (``_MAX_FRAMES_PER_BYTE``: 8192 for FLAC and OGG,
      64 for MP3, several times what the codecs can reach). After decoding, a FLAC, OGG or WAV file that
      yields fewer than 99 % of its claimed frames is ``InvalidAudio`` (truncated). A truncated FLAC keeps an
      intact STREAMINFO, so ``probe_audio`` seeks to 99 % of its claimed length and decodes one frame there:
      a FLAC cut anywhere before that point fails the seek and is ``InvalidAudio`` at the probe. A FLAC cut in
      its last 1 %, or damaged mid-stream, may pass it (only decoding finds that): libsndfile then fails
      at the missing or damaged frame and the decoders raise ``InvalidAudio``. A Vorbis file cut
      mid-page is reported as malformed or as 0 frames: ``InvalidAudio`` from the probe already; cut at a
      page boundary it is a valid shorter file. MP3 is lenient (see the traps).
    * Probing reads headers only (well under a millisecond), with these exceptions: a FLAC whose STREAMINFO
      says "total samples unknown" (written by a streaming encoder) is counted by decoding it, since its
      duration cannot be known otherwise; a FLAC of known length gets the seek above (under 5 ms; when the
      seek fails, as it does for a truncated file or wrong block sizes in STREAMINFO, the file is decoded up
      to where it fails, as the decoders would: at worst about 15 ms per MiB); a float WAV
      (``FLOAT``/``DOUBLE``) is read once to refuse NaN/Inf samples, the only samples no integer or
      compressed format can hold (about 2 ms per MiB).

Traps found in soundfile 0.14 / libsndfile 1.2.2 (checked with BytesIO for every format; reading WAV, FLAC,
OGG Vorbis, OGG Opus and MP3 through file-like objects works):
    * A FLAC with "total samples unknown" (including an empty one) reports ``frames == 2**63 - 1``;
      ``SoundFile.read()`` without a frame count then tries to allocate that, and *any* ``SoundFile.read(n)``
      fails with "psf_fseek() failed" because soundfile seeks after every read to track its position. We read
      such files with libsndfile's ``sf_readf_float`` directly (``_read_raw``), never through ``SoundFile.read``.
    * A file-like object is read from wherever it is positioned, while libsndfile is told the length of the
      whole stream. We therefore always rewind (``seek(0)``) before handing it over, and restore the caller's
      position afterwards. Non-seekable streams make soundfile print "Exception ignored from cffi callback"
      and fail: the decoders spool them to a temporary file first (16 MiB in memory, the rest on disk);
      ``probe_audio`` refuses them with ``ValueError`` since it would have to consume the stream.
    * ``soundfile`` does not close file objects it was given (good: the caller owns them).
    * Reading Opus reports the rate stored in the header.
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
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from shared.errors import InvalidAudio, UnsupportedMediaType

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioInfo",
    "AudioSource",
    "decode_audio",
    "duration_s",
    "iter_decoded_blocks",
    "probe_audio",
]

TARGET_SAMPLE_RATE: Final = 16_000

MIN_SAMPLE_RATE: Final = 1_000
MAX_SAMPLE_RATE: Final = 384_000
MAX_CHANNELS: Final = 64
RESAMPLE_QUALITY: Final = "HQ"

AudioSource: TypeAlias = str | os.PathLike[str] | BinaryIO | bytes
Waveform: TypeAlias = npt.NDArray[np.float32]

# libsndfile container name -> our format name. Anything else is UnsupportedMediaType.
_FORMATS: Final = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}
# Formats whose frame count is exact, so that decoding fewer frames means truncation or corruption.
_EXACT_LENGTH: Final = frozenset({"wav", "flac", "ogg"})
# Ceiling on claimed frames per byte of file for compressed formats (see module docstring).
_MAX_FRAMES_PER_BYTE: Final = {"flac": 8192, "ogg": 8192, "mp3": 64}
_UNKNOWN_FRAMES: Final = 2**62  # libsndfile says SF_COUNT_MAX (2**63 - 1) when the length is unknown
_READ_BLOCK_SAMPLES = 2**20  # per read, all channels together (module-level so tests can shrink it)
_MAX_READ_FRAMES: Final = 2**20
_SPOOL_MEMORY_BYTES: Final = 16 * 2**20
_HOLDBACK: Final = 64  # output samples kept back until the end, so that the final length can be trimmed
_DECODE_BLOCK_SAMPLES: Final = 2**16
_INITIAL_CAPACITY_CAP: Final = 2**26  # decode_audio pre-allocates at most this many samples up front

_FLOAT_SUBTYPES: Final = frozenset({"FLOAT", "DOUBLE"})  # the only ones that can hold NaN/Inf
_WAV_TRUNCATION_SLACK_BYTES: Final = 256
_MIN_DECODED_FRACTION: Final = 0.99

_SUPPORTED_HINT: Final = "send WAV, FLAC, OGG (Vorbis or Opus) or MP3"
_NO_FRAMES: Final = "The audio file contains no audio frames: it is empty, truncated or corrupt."


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says (validated; see the module docstring)."""

    format: str  # "wav" | "flac" | "ogg" | "mp3"
    subtype: str  # libsndfile's name: "PCM_16", "FLOAT", "VORBIS", "OPUS", "MPEG_LAYER_III"...
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


# --------------------------------------------------------------------------------------------------- sources


def _is_seekable(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def _opened_source(source: AudioSource, *, spool: bool) -> Iterator[tuple[str | BinaryIO, int]]:
    """Yield what to hand to soundfile (a path or a rewound, seekable file object) and its size in bytes.

    A missing path raises the OSError of ``os.stat``: that is a server-side fault, not the client's audio.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
        return
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        yield path, os.stat(path).st_size
        return
    fileobj: BinaryIO = source
    if _is_seekable(fileobj):
        start = fileobj.tell()
        try:
            fileobj.seek(0, io.SEEK_END)
            size = fileobj.tell()
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


def _open_error(exc: sf.LibsndfileError) -> InvalidAudio | UnsupportedMediaType:
    code = getattr(exc, "code", None)
    if code == 1:  # SF_ERR_UNRECOGNISED_FORMAT
        return UnsupportedMediaType(f"The file is not audio in a format we read; {_SUPPORTED_HINT}.")
    if code == 4:  # SF_ERR_UNSUPPORTED_ENCODING
        return UnsupportedMediaType(f"The audio uses an encoding we cannot decode; {_SUPPORTED_HINT}.")
    return InvalidAudio("The audio file is corrupt or truncated and cannot be decoded.")


def _open_soundfile(handle: str | BinaryIO) -> Any:
    if not isinstance(handle, str):
        handle.seek(0)
    try:
        return sf.SoundFile(handle)
    except sf.LibsndfileError as exc:
        raise _open_error(exc) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidAudio("The audio file is corrupt or truncated and cannot be decoded.") from exc


# ---------------------------------------------------------------------------------------------- validation


def _riff_data_claim(fileobj: BinaryIO, size: int) -> tuple[int, int, int] | None:
    """``(declared data bytes, bytes present after the data chunk header, block align)`` of a RIFF WAVE.

    None when the file is not RIFF-like, has no readable ``data`` chunk, or declares a placeholder size.
    """
    fileobj.seek(0)
    head = fileobj.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return None
    rf64 = head[:4] in (b"RF64", b"BW64")
    endian = ">" if head[:4] == b"RIFX" else "<"
    ds64_data: int | None = None
    block_align = 1
    pos = 12
    for _ in range(4096):
        if pos + 8 > size:
            return None
        fileobj.seek(pos)
        header = fileobj.read(8)
        if len(header) < 8:
            return None
        chunk_id = header[:4]
        (chunk_size,) = struct.unpack(endian + "I", header[4:])
        if chunk_id == b"ds64" and rf64:
            body = fileobj.read(16)
            if len(body) == 16:
                ds64_data = struct.unpack("<Q", body[8:16])[0]
        elif chunk_id == b"fmt ":
            body = fileobj.read(16)
            if len(body) == 16:
                block_align = max(1, struct.unpack(endian + "H", body[12:14])[0])
        elif chunk_id == b"data":
            declared = chunk_size
            if rf64 and chunk_size == 0xFFFFFFFF:
                if ds64_data is None:
                    return None
                declared = ds64_data
            elif declared == 0 or declared >= 0x7FFF0000:  # "unknown length" placeholders of streaming writers
                return None
            return declared, size - (pos + 8), block_align
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _check_wav_data(handle: str | BinaryIO, size: int) -> None:
    if isinstance(handle, str):
        with open(handle, "rb") as fileobj:
            claim = _riff_data_claim(fileobj, size)
    else:
        try:
            claim = _riff_data_claim(handle, size)
        finally:
            handle.seek(0)
    if claim is None:
        return
    declared, present, block_align = claim
    if declared - present > max(2 * block_align, _WAV_TRUNCATION_SLACK_BYTES):
        raise InvalidAudio(
            "The WAV file is truncated: its header declares more audio data than the file contains.",
            details={"declared_bytes": declared, "present_bytes": max(present, 0)},
        )


@dataclass(frozen=True)
class _Header:
    info: AudioInfo
    unknown_length: bool  # libsndfile does not know the length (FLAC "total samples: 0")


def _read_header(handle: str | BinaryIO, size: int) -> _Header:
    """Open, read the header, close; then validate. Raises the typed errors."""
    if size == 0:
        raise InvalidAudio("The audio file is empty.")
    with _open_soundfile(handle) as snd:
        container = str(snd.format)
        subtype = str(snd.subtype)
        sample_rate = int(snd.samplerate)
        channels = int(snd.channels)
        frames = int(snd.frames)
    fmt = _FORMATS.get(container)
    if fmt is None:
        raise UnsupportedMediaType(f"{container} audio is not accepted; {_SUPPORTED_HINT}.")
    if channels < 1:
        raise InvalidAudio("The audio has no channels.")
    if channels > MAX_CHANNELS:
        raise InvalidAudio(f"The audio has {channels} channels; at most {MAX_CHANNELS} are accepted.")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudio(
            f"The audio's sample rate ({sample_rate} Hz) is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz."
        )
    unknown_length = frames >= _UNKNOWN_FRAMES
    if frames <= 0:
        raise InvalidAudio(_NO_FRAMES)
    if fmt == "wav":
        _check_wav_data(handle, size)
    elif not unknown_length and frames > _MAX_FRAMES_PER_BYTE[fmt] * size:
        raise InvalidAudio(
            "The audio header claims far more audio than the file can hold; the file is truncated or corrupt."
        )
    info = AudioInfo(fmt, subtype, sample_rate, channels, 0 if unknown_length else frames)
    return _Header(info, unknown_length)


# ------------------------------------------------------------------------------------------------- reading


def _read_frames_per_block(channels: int) -> int:
    return max(1, min(_MAX_READ_FRAMES, _READ_BLOCK_SAMPLES // channels))


def _read_raw(snd: Any, out: npt.NDArray[np.float32]) -> int:
    """libsndfile's own ``sf_readf_float``: no frame clamping, no seek afterwards (see the traps)."""
    pointer = sf._ffi.cast("float *", out.ctypes.data)
    count = int(sf._snd.sf_readf_float(snd._file, pointer, out.shape[0]))
    if count == 0 and int(sf._snd.sf_error(snd._file)) != 0:
        raise sf.LibsndfileError(int(sf._snd.sf_error(snd._file)))
    return count


def _check_flac_end(handle: str | BinaryIO, info: AudioInfo) -> None:
    """A FLAC cut short keeps its STREAMINFO: seek to 99 % of the claimed length and decode one frame there.

    libFLAC's seek also trusts STREAMINFO's block and frame sizes, so a file whose sizes are wrong fails it
    although its frames decode: when the seek fails, count what decodes, exactly as the decoders would.
    """
    target = max(0, math.ceil(_MIN_DECODED_FRACTION * info.frames) - 1)
    with _open_soundfile(handle) as snd:
        try:
            snd.seek(target)
            reached = len(snd.read(1, dtype="float32", always_2d=True)) == 1
        except (sf.LibsndfileError, RuntimeError, ValueError):
            reached = False
    if not reached and _count_frames(handle, info.channels) < _MIN_DECODED_FRACTION * info.frames:
        raise InvalidAudio("The FLAC file is truncated or corrupt: its audio ends before the length it declares.")


def _check_finite(handle: str | BinaryIO, info: AudioInfo) -> None:
    """Refuse NaN/Inf samples in float audio, downmixed exactly as the decoders do."""
    weights = np.full(info.channels, 1.0 / info.channels, dtype=np.float32)
    with _open_soundfile(handle) as snd:
        buffer = np.empty((_read_frames_per_block(info.channels), info.channels), dtype=np.float32)
        while count := _read_block(snd, buffer, raw=False):
            block = buffer[:count]
            mono = block[:, 0] if info.channels == 1 else block @ weights
            if not np.isfinite(mono).all():
                raise InvalidAudio("The audio contains NaN or infinite sample values.")


def _read_block(snd: Any, out: npt.NDArray[np.float32], raw: bool) -> int:
    try:
        if raw:
            return _read_raw(snd, out)
        return len(snd.read(out.shape[0], dtype="float32", always_2d=True, out=out))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InvalidAudio("The audio could not be decoded: the file is corrupt or truncated.") from exc


def _count_frames(handle: str | BinaryIO, channels: int) -> int:
    """Decode a file of unknown length to count its frames (only streamed FLAC needs this)."""
    with _open_soundfile(handle) as snd:
        out = np.empty((_read_frames_per_block(channels), channels), dtype=np.float32)
        total = 0
        while count := _read_block(snd, out, raw=True):
            total += count
        return total


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

    def trim_to(self, count: int) -> None:
        """Keep the first ``count`` samples (``count <= size``)."""
        if count < self.size:
            kept = self.take(count) if count else np.zeros(0, dtype=np.float32)
            self._parts, self.size = [], 0
            self.push(kept)


class _Decoder:
    """An opened, validated source plus the streaming decode loop; a context manager owning the source."""

    def __init__(self, source: AudioSource, target_sample_rate: int) -> None:
        _check_rate_argument(target_sample_rate)
        self.target = target_sample_rate
        self._stack = ExitStack()
        try:
            self._handle, size = self._stack.enter_context(_opened_source(source, spool=True))
            self.header = _read_header(self._handle, size)
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
        info = self.header.info
        if self.header.unknown_length:
            return None
        return _output_length(info.frames, info.sample_rate, self.target)

    def blocks(self, block_len: int) -> Iterator[Waveform]:
        info, raw = self.header.info, self.header.unknown_length
        channels, rate = info.channels, info.sample_rate
        weights = np.full(channels, 1.0 / channels, dtype=np.float32)
        resampler = None
        if rate != self.target:
            resampler = soxr.ResampleStream(rate, self.target, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        pending = _Pending()
        frames_in = 0
        input_sum = 0.0
        emitted = 0
        with _open_soundfile(self._handle) as snd:
            buffer = np.empty((_read_frames_per_block(channels), channels), dtype=np.float32)
            while count := _read_block(snd, buffer, raw):
                block = buffer[:count]
                mono = block[:, 0].copy() if channels == 1 else block @ weights
                if not np.isfinite(mono).all():
                    raise InvalidAudio("The audio contains NaN or infinite sample values.")
                frames_in += count
                input_sum += float(mono.sum(dtype=np.float64))
                pending.push(resampler.resample_chunk(mono, last=False) if resampler is not None else mono)
                while pending.size >= block_len + _HOLDBACK:
                    emitted += block_len
                    yield pending.take(block_len)
        if resampler is not None:
            pending.push(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if frames_in == 0:
            raise InvalidAudio(_NO_FRAMES)
        if info.format in _EXACT_LENGTH and not raw and frames_in < _MIN_DECODED_FRACTION * info.frames:
            raise InvalidAudio(
                "The audio ended early: the file is truncated or corrupt.",
                details={"claimed_frames": info.frames, "decoded_frames": frames_in},
            )
        remaining = _output_length(frames_in, rate, self.target) - emitted
        if pending.size > remaining:
            pending.trim_to(max(remaining, 0))
        elif pending.size < remaining:
            # Only for inputs shorter than half an output sample (soxr gives 0 samples there) or a rounding
            # difference of a sample: pad with the input's mean (or silence).
            fill = input_sum / frames_in if emitted + pending.size == 0 else 0.0
            pending.push(np.full(remaining - pending.size, fill, dtype=np.float32))
        while pending.size:
            yield pending.take(block_len)


def _check_rate_argument(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"target_sample_rate must be an int in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")


# ---------------------------------------------------------------------------------------------- public API


def probe_audio(source: AudioSource) -> AudioInfo:
    """Read and validate a file's header without decoding it (see the module docstring).

    ``source`` is a path, ``bytes`` or a seekable binary file object (read from its start; its position is
    restored). Raises :class:`UnsupportedMediaType` for what is not WAV/FLAC/OGG/MP3 and :class:`InvalidAudio`
    for empty, truncated or implausible files. Only a FLAC of unknown length is decoded (to count it).
    """
    with _opened_source(source, spool=False) as (handle, size):
        header = _read_header(handle, size)
        if not header.unknown_length:
            if header.info.format == "flac":
                _check_flac_end(handle, header.info)
            elif header.info.subtype in _FLOAT_SUBTYPES:
                _check_finite(handle, header.info)
            return header.info
        frames = _count_frames(handle, header.info.channels)
        if frames == 0:
            raise InvalidAudio(_NO_FRAMES)
        info = header.info
        return AudioInfo(info.format, info.subtype, info.sample_rate, info.channels, frames)


def iter_decoded_blocks(
    source: AudioSource, *, block_s: float = 30.0, target_sample_rate: int = TARGET_SAMPLE_RATE
) -> Iterator[Waveform]:
    """Decode ``source`` to mono float32 at ``target_sample_rate``, as consecutive blocks.

    Every block has ``round(block_s * target_sample_rate)`` samples except the last, which is shorter (and
    never empty). Concatenated they equal :func:`decode_audio`. Memory stays at a few blocks whatever the
    file's length. Arguments are checked at once (``ValueError``); errors about the audio itself
    (:class:`InvalidAudio`, :class:`UnsupportedMediaType`) come from the first ``next()``, or later for a
    file that turns out corrupt, truncated or to contain NaN/Inf mid-way. Closing the iterator early
    releases the source.
    """
    if not math.isfinite(block_s) or block_s <= 0:
        raise ValueError("block_s must be a positive number of seconds")
    _check_rate_argument(target_sample_rate)
    block_len = max(1, round(block_s * target_sample_rate))
    return _iter_blocks(source, block_len, target_sample_rate)


def _iter_blocks(source: AudioSource, block_len: int, target_sample_rate: int) -> Iterator[Waveform]:
    with _Decoder(source, target_sample_rate) as decoder:
        yield from decoder.blocks(block_len)


def decode_audio(source: AudioSource, *, target_sample_rate: int = TARGET_SAMPLE_RATE) -> Waveform:
    """Decode a whole file to a 1-D mono float32 array at ``target_sample_rate`` (16 kHz by default).

    Channels are averaged (all of them), the rate converted with soxr "HQ". Raises :class:`InvalidAudio`
    (empty, corrupt, truncated, NaN/Inf) or :class:`UnsupportedMediaType`. Peak memory is about the output
    plus ~10 MiB of working buffers; for hours of audio prefer :func:`iter_decoded_blocks`.
    """
    with _Decoder(source, target_sample_rate) as decoder:
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


def duration_s(waveform: npt.ArrayLike, sample_rate: int = TARGET_SAMPLE_RATE) -> float:
    """Seconds of audio in ``waveform`` (1-D, or 2-D frames x channels) at ``sample_rate``."""
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    shape = np.shape(waveform)
    return (shape[0] if shape else 0) / sample_rate

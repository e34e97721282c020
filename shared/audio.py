"""Audio through the API, in one place to import from: reading uploads and the length of a waveform.

No torch here: the gateway imports this module. Reading (probing and decoding to 16 kHz mono float32) lives in
:mod:`shared.audio_decode`, on FFmpeg through PyAV, opened safely by :mod:`shared.audio_container`; encoding model
output lives in :mod:`shared.audio_encode`. The reading names are re-exported here, so callers import them from
``shared.audio`` as before.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.audio_container import AudioSource
from shared.audio_decode import TARGET_SAMPLE_RATE, AudioInfo, decode_audio, iter_decoded_blocks, probe_audio

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioInfo",
    "AudioSource",
    "decode_audio",
    "duration_s",
    "iter_decoded_blocks",
    "probe_audio",
]


def duration_s(waveform: npt.ArrayLike, sample_rate: int = TARGET_SAMPLE_RATE) -> float:
    """Seconds of audio in ``waveform`` (1-D, or 2-D frames x channels) at ``sample_rate``."""
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    shape = np.shape(waveform)
    return (shape[0] if shape else 0) / sample_rate

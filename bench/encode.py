"""Encode speed of every output format: ``shared.audio_encode.encode_audio`` (PyAV, libsndfile for Vorbis) against
libsndfile for the formats it can also write (wav, flac, mp3, Ogg Opus), on a 16 kHz mono speech-like signal.

    .venv/bin/python bench/encode.py [--seconds 1 60] [--json bench/results/encode.json]

Reports the CPU time of one encode (this process's, the fastest of several runs: on shared cores wall time measures
the neighbours too; every encoder here runs on one thread), times faster than real time by that, the wall time, and
the output bytes.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, progress, write_report  # noqa: E402
from shared.audio_encode import ENCODINGS, MODEL_SAMPLE_RATE, encode_audio  # noqa: E402

RATE = MODEL_SAMPLE_RATE
# Formats libsndfile writes as well, and how (container, subtype).
LIBSNDFILE = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}


def speech_like(seconds: float) -> np.ndarray:
    """A 220 Hz tone with its harmonics, amplitude-modulated at syllable rate, plus a little noise."""
    t = np.arange(round(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(0).standard_normal(len(t)) * 0.01
    return (0.2 * voice * envelope + noise).astype(np.float32)


def libsndfile_encoder(container: str, subtype: str) -> Callable[[np.ndarray], bytes]:
    def encode(wave: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", RATE, 1, subtype=subtype, format=container) as snd:
            for start in range(0, len(wave), 16_384):
                snd.write(wave[start : start + 16_384])
        return buffer.getvalue()

    return encode


def timed(encode: Callable[[np.ndarray], bytes], wave: np.ndarray, budget_s: float) -> dict[str, Any]:
    out = encode(wave)  # warm up
    cpu: list[float] = []
    wall: list[float] = []
    while len(wall) < 3 or (sum(wall) < budget_s and len(wall) < 50):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = encode(wave)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    best = max(min(cpu), 1e-6)
    seconds = len(wave) / RATE
    return {
        "cpu_ms": round(best * 1000, 2),
        "x_realtime": round(seconds / best),
        "wall_ms_min": round(min(wall) * 1000, 2),
        "wall_ms_median": round(statistics.median(wall) * 1000, 2),
        "bytes": len(out),
        "runs": len(wall),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 60.0], help="signal lengths")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case (at least 3 runs)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here ('-': stdout)")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for seconds in args.seconds:
        wave = speech_like(seconds)
        for name in ENCODINGS:
            row: dict[str, Any] = {"format": name, "seconds": seconds}
            row["encode_audio"] = timed(lambda w, n=name: encode_audio(w, n), wave, args.budget)
            if name in LIBSNDFILE:
                row["libsndfile"] = timed(libsndfile_encoder(*LIBSNDFILE[name]), wave, args.budget)
            progress(
                f"{seconds:>5.0f} s {name:9s} encode_audio {row['encode_audio']['cpu_ms']:8.1f} ms "
                f"({row['encode_audio']['x_realtime']:>6}x)"
                + (
                    f"   libsndfile {row['libsndfile']['cpu_ms']:8.1f} ms ({row['libsndfile']['x_realtime']:>6}x)"
                    if "libsndfile" in row
                    else ""
                )
            )
            results.append(row)
    report = {
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "pyav": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "libsndfile": sf.__libsndfile_version__,
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
    }
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark reading uploads: ``probe_audio`` time per container, ``decode_audio`` speed, and the resampler choice.

Inputs are built once into ``--work`` from the committed speech clips (``tests/data/utt_*.ogg``, tiled to
``--minutes`` of audio at 44.1 kHz stereo; Opus at 48 kHz): WAV, FLAC, OGG Vorbis and MP3 written by libsndfile,
M4A (AAC), WebM (Opus) and WMA written by PyAV. Each file is probed ``--probe-repeats`` times (median) and decoded
``--decode-repeats`` times (best), through the ``shared.audio`` of ``--reader-root`` (default: this checkout).
``--compare-root OLD`` also loads ``OLD/shared/audio.py`` (libsndfile's reader, before FFmpeg) and decodes the files
both can read with the two readers in turn, ``--decode-repeats`` times each, interleaved so that the load of a
shared machine falls on both alike.

``--resampler`` instead compares soxr ("HQ", "VHQ") with FFmpeg's swresample (``av.AudioResampler``, defaults),
44.1 and 48 kHz to 16 kHz: speed (a 10-minute speech signal, fed in 4096-sample chunks as the decoder does), the
level of tones in the passband (3.4 and 7 kHz), and how much of a tone just above the new Nyquist frequency
(8.4 kHz) and at 10 kHz leaks back as an alias. The speech is ``tests/data/speech_fr.wav`` upsampled with soxr VHQ.

Examples (from the repository root; ``nice``: the machine is shared)::

    nice -n 19 .venv/bin/python bench/audio_read.py --json bench/results/audio-read-pyav.json
    git archive 3c342de shared | tar -x -C /tmp/old-reader   # the libsndfile reader
    nice -n 19 .venv/bin/python bench/audio_read.py --compare-root /tmp/old-reader --decode-repeats 3 \
        --json bench/results/audio-read.json
    nice -n 19 .venv/bin/python bench/audio_read.py --resampler --json bench/results/resampler.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CLIPS = ["utt_en.ogg", "utt_fr.ogg", "utt_de.ogg", "utt_es.ogg"]


def speech(rate: int, seconds: float) -> np.ndarray:
    """The clips one after another with 0.5 s pauses, tiled to ``seconds``, at ``rate``, stereo (right quieter)."""
    parts = []
    for name in CLIPS:
        wave, clip_rate = sf.read(DATA / name, dtype="float32")
        parts += [wave, np.zeros(clip_rate // 2, dtype=np.float32)]
    one = soxr.resample(np.concatenate(parts), 16_000, rate, quality="VHQ").astype(np.float32)
    mono = np.tile(one, int(np.ceil(seconds * rate / len(one))))[: int(seconds * rate)]
    return np.stack([mono, 0.7 * mono], axis=1)


def write_pyav(path: Path, wave: np.ndarray, rate: int, fmt: str, codec: str, bit_rate: int) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stream.bit_rate = bit_rate
        context = stream.codec_context
        resampler = av.AudioResampler(
            format=context.format.name, layout="stereo", rate=rate, frame_size=context.frame_size or None
        )
        for start in range(0, len(wave), rate):
            chunk = np.ascontiguousarray(wave[start : start + rate].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for piece in resampler.resample(frame):
                out.mux(stream.encode(piece))
        for piece in resampler.resample(None):
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))


def build_inputs(work: Path, minutes: float) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60
    files: dict[str, Path] = {}
    wave = None
    for name, fmt, subtype in [
        ("wav", "WAV", "PCM_16"),
        ("flac", "FLAC", "PCM_16"),
        ("ogg", "OGG", "VORBIS"),
        ("mp3", "MP3", "MPEG_LAYER_III"),
    ]:
        path = work / f"speech-{minutes:g}min.{name}"
        if not path.exists():
            wave = speech(44_100, seconds) if wave is None else wave
            with sf.SoundFile(path, "w", 44_100, 2, format=fmt, subtype=subtype) as out:
                for start in range(0, len(wave), 16_384):
                    out.write(wave[start : start + 16_384])
        files[name] = path
    for name, fmt, codec, rate, bit_rate in [
        ("m4a", "ipod", "aac", 44_100, 96_000),
        ("webm", "webm", "libopus", 48_000, 48_000),
        ("wma", "asf", "wmav2", 44_100, 96_000),
    ]:
        path = work / f"speech-{minutes:g}min.{name}"
        if not path.exists():
            write_pyav(path, speech(rate, seconds), rate, fmt, codec, bit_rate)
        files[name] = path
    return files


def bench_reader(files: dict[str, Path], minutes: float, probe_repeats: int, decode_repeats: int) -> dict[str, Any]:
    from shared import audio

    rows = {}
    for name, path in files.items():
        data = path.read_bytes()
        row: dict[str, Any] = {"bytes": len(data)}
        try:
            audio.probe_audio(data)
        except Exception as exc:  # noqa: BLE001 - an older reader refuses formats it does not know: report it
            rows[name] = {**row, "refused": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"}
            print(f"{name:5s} refused: {rows[name]['refused']}", flush=True)
            continue
        probes = []
        for _ in range(probe_repeats):
            started = time.perf_counter()
            info = audio.probe_audio(data)
            probes.append(time.perf_counter() - started)
        decodes = []
        for _ in range(decode_repeats):
            started = time.perf_counter()
            decoded = audio.decode_audio(data)
            decodes.append(time.perf_counter() - started)
        seconds = len(decoded) / 16_000
        row.update(
            probe_ms=round(statistics.median(probes) * 1000, 3),
            probe_ms_per_mib=round(statistics.median(probes) * 1000 / (len(data) / 2**20), 3),
            probed_s=round(info.duration_s, 3),
            decoded_s=round(seconds, 3),
            decode_s=round(min(decodes), 3),
            decode_x_realtime=round(seconds / min(decodes), 1),
        )
        rows[name] = row
        print(
            f"{name:5s} {len(data) / 2**20:7.2f} MiB  probe {row['probe_ms']:9.2f} ms"
            f" ({row['probe_ms_per_mib']:.2f} ms/MiB)"
            f"  decode {row['decode_s']:6.2f} s = {row['decode_x_realtime']:6.1f}x real time",
            flush=True,
        )
    return {"reader": audio.__file__, "minutes": minutes, "files": rows}


def load_reader(root: Path) -> Any:
    """``root/shared/audio.py`` as a module of its own (its imports of ``shared.errors`` resolve to ours)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compared_audio", root / "shared" / "audio.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bench_compare(files: dict[str, Path], old_root: Path, repeats: int) -> dict[str, Any]:
    from shared import audio

    old = load_reader(old_root)
    rows = {}
    for name, path in files.items():
        data = path.read_bytes()
        try:
            old.probe_audio(data)
        except Exception:  # noqa: BLE001 - formats the old reader refuses
            continue
        times: dict[str, list[float]] = {"libsndfile": [], "pyav": []}
        seconds = 0.0
        for _ in range(repeats):
            for label, reader in (("libsndfile", old), ("pyav", audio)):
                started = time.perf_counter()
                decoded = reader.decode_audio(data)
                times[label].append(time.perf_counter() - started)
                seconds = len(decoded) / 16_000
        row = {label: round(seconds / min(values), 1) for label, values in times.items()}
        row["pyav_over_libsndfile"] = round(row["pyav"] / row["libsndfile"], 2)
        rows[name] = row
        print(f"{name:5s} decode x real time: libsndfile {row['libsndfile']:7.1f}  pyav {row['pyav']:7.1f}", flush=True)
    return rows


def bench_committed_probes(repeats: int) -> dict[str, float]:
    """Probe time of the small committed container files (the containers the tests use)."""
    from shared import audio

    out = {}
    for path in sorted(DATA.iterdir()):
        if path.suffix in (".py", ".sh", ".m3u8") or path.name == "video_only.mp4":
            continue
        data = path.read_bytes()
        try:
            audio.probe_audio(data)
        except Exception:  # noqa: BLE001 - an older reader refuses formats it does not know
            continue
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            audio.probe_audio(data)
            times.append(time.perf_counter() - started)
        out[path.name] = round(statistics.median(times) * 1000, 3)
        print(f"{path.name:22s} {len(data):7d} B  probe {out[path.name]:7.3f} ms", flush=True)
    return out


# --- the resampler -----------------------------------------------------------------------------------------------


def swr(x: np.ndarray, rate: int, target: int = 16_000, chunk: int = 4096) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    out = []
    for i in range(0, len(x), chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + chunk]), format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        out += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    out += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(out)


def sox(x: np.ndarray, rate: int, quality: str, target: int = 16_000, chunk: int = 4096) -> np.ndarray:
    stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality=quality)
    out = [stream.resample_chunk(x[i : i + chunk], last=False) for i in range(0, len(x), chunk)]
    out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(out)


def level_db(y: np.ndarray, freq: float, rate: int = 16_000) -> float:
    """Level of the tone at ``freq`` in ``y`` relative to the 0.5 amplitude of the input tone (Hann window)."""
    y = y[1000:-1000]
    window = np.hanning(len(y))
    spectrum = np.abs(np.fft.rfft(y * window)) * 2 / window.sum()
    k = round(freq * len(y) / rate)
    return float(20 * np.log10(max(spectrum[k - 3 : k + 4].max(), 1e-12) / 0.5))


def tone(freq: float, rate: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def bench_resampler() -> dict[str, Any]:
    original, _ = sf.read(DATA / "speech_fr.wav", dtype="float32")
    methods = {
        "soxr HQ": lambda x, r: sox(x, r, "HQ"),
        "soxr VHQ": lambda x, r: sox(x, r, "VHQ"),
        "swresample (av.AudioResampler)": swr,
    }
    results: dict[str, Any] = {}
    for rate in (44_100, 48_000):
        speech_at_rate = soxr.resample(original, 16_000, rate, quality="VHQ").astype(np.float32)
        long = np.tile(speech_at_rate, 200)
        for name, method in methods.items():
            method(speech_at_rate, rate)  # warm up
            started = time.perf_counter()
            method(long, rate)
            elapsed = time.perf_counter() - started
            row = {
                "x_realtime": round(len(long) / rate / elapsed),
                "passband_3k4_db": round(level_db(method(tone(3_400, rate), rate), 3_400), 2),
                "passband_7k_db": round(level_db(method(tone(7_000, rate), rate), 7_000), 2),
                "alias_8k4_to_7k6_db": round(level_db(method(tone(8_400, rate), rate), 7_600), 1),
                "alias_10k_to_6k_db": round(level_db(method(tone(10_000, rate), rate), 6_000), 1),
            }
            results[f"{rate} Hz: {name}"] = row
            print(f"{rate} Hz  {name:31s} {row}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench-audio")
    parser.add_argument("--probe-repeats", type=int, default=5)
    parser.add_argument("--decode-repeats", type=int, default=2)
    parser.add_argument("--reader-root", type=Path, default=ROOT, help="checkout whose shared.audio is measured")
    parser.add_argument("--compare-root", type=Path, help="an older checkout whose reader is compared with this one")
    parser.add_argument("--resampler", action="store_true", help="compare the resamplers instead")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.reader_root.resolve()))
    machine = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "niceness": os.nice(0),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    if args.resampler:
        report: dict[str, Any] = {"machine": machine, "resampler": bench_resampler()}
    else:
        files = build_inputs(args.work, args.minutes)
        report = {"machine": machine, "committed_probe_ms": bench_committed_probes(args.probe_repeats)}
        report.update(bench_reader(files, args.minutes, args.probe_repeats, args.decode_repeats))
        if args.compare_root:
            report["decode_compared"] = bench_compare(files, args.compare_root.resolve(), args.decode_repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

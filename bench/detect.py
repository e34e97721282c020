"""Language detection benchmark (``src_lang: "auto"``): what the gateway's detector costs and how well it decides.

For lingua's low- and high-accuracy modes, with its models preloaded at start-up or loaded lazily on first use,
each in a fresh process: resident memory before and after building the detector and after text in every script,
the build time, the first call, and the time per call for a short sentence and for a 3000-character text (the
prefix the gateway reads). Then, per mode, the decisions at several ``M4T_DETECT_MIN_CONFIDENCE`` bars: clear
sentences right, wrong or refused; random letters and digits and single shared words wrongly accepted; pairs the
detector must refuse (Malay/Indonesian, Bokmål/Nynorsk, Bosnian/Croatian); random letters and digits, and random
letters alone ("letters"), wrongly accepted.

    .venv/bin/python bench/detect.py [--json bench/results/detect.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, progress, write_report  # noqa: E402
from bench.detect_samples import AMBIGUOUS_WORDS, CLEAR, CONFUSED, long_text, random_strings  # noqa: E402

CONFIGS = [("low", True), ("low", False), ("high", True), ("high", False)]
THRESHOLDS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
SHORT = CLEAR["eng"][0]
LONG_CHARS = 3000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _median_ms(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def _decide(detector: Any, text: str, readable: frozenset[str]) -> str | None:
    from shared.errors import LanguageNotDetected

    try:
        return str(detector.detect(text, readable).code)
    except LanguageNotDetected:
        return None


def decisions(detector: Any, readable: frozenset[str]) -> list[dict[str, Any]]:
    """What the detector decides on every sample at each bar."""
    noise = random_strings(200)
    letters = random_strings(200, digits=False)
    long_clear = {code: [" ".join(texts * 3)] for code, texts in CLEAR.items()}  # 120+ characters each
    rows = []
    for bar in THRESHOLDS:
        detector.min_confidence = bar
        row: dict[str, Any] = {"min_confidence": bar}
        for name, samples in (("short", CLEAR), ("long", long_clear)):
            outcomes = [(_decide(detector, text, readable), code) for code, texts in samples.items() for text in texts]
            row[f"{name}_right"] = sum(1 for got, want in outcomes if got == want)
            row[f"{name}_wrong"] = [f"{want}->{got}" for got, want in outcomes if got is not None and got != want]
            row[f"{name}_refused"] = [want for got, want in outcomes if got is None]
            row[f"{name}_total"] = len(outcomes)
        row["noise_accepted"] = sum(1 for text in noise if _decide(detector, text, readable) is not None)
        row["noise_total"] = len(noise)
        row["letters_accepted"] = sum(1 for text in letters if _decide(detector, text, readable) is not None)
        row["letters_total"] = len(letters)
        row["words_accepted"] = [w for w in AMBIGUOUS_WORDS if _decide(detector, w, readable) is not None]
        confused = [(_decide(detector, text, readable), code) for code, texts in CONFUSED.items() for text in texts]
        row["pairs_accepted"] = [f"{want}->{got}" for got, want in confused if got is not None]
        rows.append(row)
    return rows


def one(accuracy: str, preload: bool) -> dict[str, Any]:
    """Measured in this process (run by the main process in a fresh one per configuration)."""
    from gateway.language_detection import TextLanguageDetector
    from shared.languages import LanguageSupport

    readable = LanguageSupport.published_checkpoint().text
    before = rss_mib()
    start = time.perf_counter()
    detector = TextLanguageDetector(min_confidence=0.0, accuracy=accuracy, preload=preload)  # type: ignore[arg-type]
    build_s = time.perf_counter() - start
    built = rss_mib()
    start = time.perf_counter()
    detector.detect(SHORT, readable)
    first_ms = (time.perf_counter() - start) * 1000
    for texts in CLEAR.values():  # every script once: lazy models are all loaded after this
        detector.detect(texts[0], readable)
    loaded = rss_mib()
    long = long_text(LONG_CHARS)
    result: dict[str, Any] = {
        "accuracy": accuracy,
        "models": "preloaded" if preload else "lazy",
        "build_s": round(build_s, 2),
        "rss_before_mib": round(before),
        "rss_after_build_mib": round(built),
        "rss_after_every_script_mib": round(loaded),
        "first_call_ms": round(first_ms, 1),
        "short_ms": _median_ms(lambda: detector.detect(SHORT, readable), 200),
        "long_3000_ms": _median_ms(lambda: detector.detect(long, readable), 20),
    }
    if preload:
        result["decisions"] = decisions(detector, readable)
    return result


def _run_one(accuracy: str, preload: bool) -> dict[str, Any]:
    progress(f"{accuracy} accuracy, {'preloaded' if preload else 'lazy'} models ...")
    argv = [sys.executable, __file__, "--one", accuracy, "preload" if preload else "lazy"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_tables(runs: list[dict[str, Any]], processes: list[int]) -> None:
    print("\nCost per gateway process (RSS in MiB; times median)")
    head = f"{'mode':<6}{'models':<11}{'build s':>8}{'RSS before':>11}{'after build':>12}{'all scripts':>12}"
    print(
        head + f"{'1st call ms':>12}{'short ms':>10}{'3000 ch ms':>11}  " + "  ".join(f"x{n} procs" for n in processes)
    )
    for r in runs:
        added = r["rss_after_every_script_mib"] - r["rss_before_mib"]
        times = "  ".join(f"{added * n / 1024:>6.2f} GiB" for n in processes)
        print(
            f"{r['accuracy']:<6}{r['models']:<11}{r['build_s']:>8}{r['rss_before_mib']:>11}{r['rss_after_build_mib']:>12}"
            f"{r['rss_after_every_script_mib']:>12}{r['first_call_ms']:>12}{r['short_ms']:>10}{r['long_3000_ms']:>11}  "
            f"{times}"
        )
    for r in runs:
        if "decisions" not in r:
            continue
        print(f"\nDecisions, {r['accuracy']} accuracy (short: one sentence; long: three sentences, 120+ chars)")
        print(
            f"{'bar':>5}{'short right':>13}{'wrong':>7}{'refused':>9}{'long right':>12}{'wrong':>7}"
            f"{'noise ok':>10}{'letters ok':>11}{'words ok':>10}{'pairs ok':>10}"
        )
        for d in r["decisions"]:
            print(
                f"{d['min_confidence']:>5}{d['short_right']:>8}/{d['short_total']:<4}{len(d['short_wrong']):>7}"
                f"{len(d['short_refused']):>9}{d['long_right']:>7}/{d['long_total']:<4}{len(d['long_wrong']):>7}"
                f"{d['noise_accepted']:>6}/{d['noise_total']:<3}{d['letters_accepted']:>7}/{d['letters_total']:<3}"
                f"{len(d['words_accepted']):>7}/{len(AMBIGUOUS_WORDS):<2}"
                f"{len(d['pairs_accepted']):>10}"
            )
            for what in ("short_wrong", "short_refused", "long_wrong", "words_accepted", "pairs_accepted"):
                if d[what]:
                    print(f"      {what}: {' '.join(d[what])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("-"), help="write the report here (default -: stdout)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="M4T_API_PROCESSES to total")
    parser.add_argument("--one", nargs=2, metavar=("ACCURACY", "MODELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1] == "preload")))
        return 0
    from importlib.metadata import version

    import lingua  # noqa: F401 - fail here, before the subprocesses, if it is missing

    runs = [_run_one(accuracy, preload) for accuracy, preload in CONFIGS]
    print_tables(runs, args.processes)
    report = {
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())},
        "lingua": version("lingua-language-detector"),
        "runs": runs,
    }
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

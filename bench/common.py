"""What the benchmark scripts share: the machine they ran on, progress lines, and writing their JSON report."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

GIB = 1024**3


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch_threads: int) -> dict[str, Any]:
    """CPU, memory, library versions, niceness and load average at the start of a torch benchmark."""
    import torch
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib: float | None = round(pages / GIB, 1)
    except (OSError, ValueError):
        memory_gib = None
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch_threads,
        "memory_gib": memory_gib,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "niceness": os.nice(0),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_report(report: dict[str, Any], path: Path | None) -> None:
    """The report as JSON to ``path`` (its folder made), to stdout for ``-``, nowhere for None."""
    if path is None:
        return
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if str(path) == "-":
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    progress(f"wrote {path}")

"""A worker's scratch folder: decoded audio and speech output of the jobs in flight live here while they run.

Each worker process has its own folder, ``<root>/<host>-<pid>``. A worker killed with ``kill -9`` (or by the OOM
killer) leaves its folder behind; the next worker to start on the same host removes every folder whose process is
gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

log = logging.getLogger(__name__)


class ScratchSpace:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_worker(cls, root: Path) -> ScratchSpace:
        """This process's folder under ``root``, after removing those left by dead workers of this host."""
        root.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for folder in root.iterdir():
            name, _, pid = folder.name.rpartition("-")
            if name == host and pid.isdigit() and not _alive(int(pid)) and folder.is_dir():
                log.info("removing the scratch folder of a dead worker: %s", folder)
                shutil.rmtree(folder, ignore_errors=True)
        path = root / f"{host}-{os.getpid()}"
        path.mkdir(exist_ok=True)
        return cls(path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True

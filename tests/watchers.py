"""Watchers for what must never happen: a FIFO that tells whether anything opened it, and a loopback HTTP server
that records every request. Used to show that hostile uploads (playlists, concat lists) make FFmpeg open nothing."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from pathlib import Path
from typing import Any


class FifoWatch:
    """A FIFO under ``folder``; ``opened`` is set if anyone opens it for reading (a writer thread waits for that,
    and serves every reader, so that a reader that got in never blocks)."""

    def __init__(self, folder: Path, name: str = "secret.ts") -> None:
        self.path = folder / name
        os.mkfifo(self.path)
        self.opened = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._wait_for_a_reader, daemon=True)
        self._thread.start()

    def _wait_for_a_reader(self) -> None:
        while True:
            fd = os.open(self.path, os.O_WRONLY)  # blocks until someone opens the FIFO for reading
            if self._closing:
                os.close(fd)
                return
            self.opened.set()
            with contextlib.suppress(OSError):
                os.write(fd, b"\x47" * 188)  # an MPEG-TS sync byte pattern: something for a demuxer to chew on
            os.close(fd)

    def close(self) -> None:
        self._closing = True
        if self._thread.is_alive():  # unblock the writer by opening the FIFO ourselves
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        self._thread.join(5)


class RecordingServer:
    """A loopback HTTP server that answers 404 and records every request path."""

    def __init__(self) -> None:
        requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.requests = requests
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/segment.ts"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def hls_playlist(target: str) -> bytes:
    """An HLS playlist whose one segment is ``target`` (a path or a URL)."""
    return (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n".encode()
    )

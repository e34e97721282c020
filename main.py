"""The seed's launcher, kept so its habits keep working: ``python main.py [--api | --gradio | --both] [--debug]``.

``m4t`` is the real command (``m4t --help``); this thin, seed-compatible entry maps the seed's flags onto it:

    python main.py            m4t serve           API, workers, webhook worker, Flower and the web UI (as --both)
    python main.py --both     m4t serve
    python main.py --api      m4t serve --no-ui   the same stack without the web UI (the seed's systemd unit runs it)
    python main.py --gradio   m4t ui              the web UI alone, against M4T_API_URL (default: the local API,
                                                  http://127.0.0.1:<M4T_API_PORT or 8000>)
    --debug                   m4t --log-level DEBUG ...   debug logging, with any of the above

Everything else is configured as for ``m4t``: ``M4T_*`` environment variables (``m4t settings`` lists them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def m4t_argv(argv: Sequence[str] | None = None) -> list[str]:
    """The ``m4t`` command line the seed's flags stand for."""
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="SeamlessM4T v2 API, seed-compatible launcher (the real command is `m4t`; see `m4t --help`)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--api", action="store_true", help="the API with its workers, no web UI (m4t serve --no-ui)")
    mode.add_argument("--gradio", action="store_true", help="the web UI alone, against M4T_API_URL (m4t ui)")
    mode.add_argument("--both", action="store_true", help="the API, its workers and the web UI (default; m4t serve)")
    parser.add_argument("--debug", action="store_true", help="debug logging (m4t --log-level DEBUG)")
    args = parser.parse_args(argv)
    command = ["ui"] if args.gradio else ["serve", "--no-ui"] if args.api else ["serve"]
    return (["--log-level", "DEBUG"] if args.debug else []) + command


def main(argv: Sequence[str] | None = None) -> int:
    from m4t.cli import main as m4t_main

    return m4t_main(m4t_argv(argv))


if __name__ == "__main__":
    sys.exit(main())

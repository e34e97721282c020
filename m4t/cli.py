"""The ``m4t`` command line. Each subcommand family has its module in ``m4t/`` and imports only what it needs when
it runs: building the parser loads neither the gateway nor the worker, and the gateway side never loads torch.

- ``m4t worker`` (``--role inference|webhooks``): ``m4t/workers.py``
- ``m4t gateway``: ``m4t/api.py`` (the API, and the web UI under ``/ui`` with ``M4T_UI_MOUNT``)
- ``m4t serve``: ``m4t/serve.py`` (the whole stack on one machine)
- ``m4t keys create|update|list|revoke``: ``m4t/keys.py``
- ``m4t translate``, ``m4t batch``, ``m4t ui``: the client's own commands (``client/cli.py``, ``client/ui.py``)
- ``m4t tiny-model``, ``m4t settings``: ``m4t/tools.py``
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from m4t.api import add_gateway_command
from m4t.keys import add_keys_command
from m4t.serve import add_serve_command
from m4t.tools import add_tool_commands
from m4t.workers import add_worker_command
from shared.errors import M4TError


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m4t", description="SeamlessM4T v2 translation service")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    add_worker_command(sub)
    add_gateway_command(sub)
    add_serve_command(sub)
    add_keys_command(sub)

    from client.cli import add_client_commands

    add_client_commands(sub)

    from client.ui import add_ui_command

    add_ui_command(sub)

    add_tool_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except M4TError as exc:
        print(f"m4t {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())

"""Operator tools: ``m4t tiny-model`` (the tiny random checkpoint of the tests and demos) and ``m4t settings`` (the
README's settings table)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from worker.tiny_model import build_tiny_model

    folder = build_tiny_model(Path(args.dir), seed=args.seed)
    print(f"built a tiny RANDOM SeamlessM4T v2 checkpoint in {folder} (its outputs are noise; for tests/demos)")
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    from shared.settings_doc import settings_markdown, update_readme

    if args.update:
        changed = update_readme(Path(args.update))
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
        return 0
    print(settings_markdown())
    return 0


def add_tool_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tiny = sub.add_parser("tiny-model", help="build the tiny random checkpoint used by tests and demos")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_cmd_tiny_model)

    settings = sub.add_parser("settings", help="print every M4T_* setting as a Markdown table")
    settings.add_argument("--update", metavar="README", help="rewrite the table between the settings markers")
    settings.set_defaults(func=_cmd_settings)

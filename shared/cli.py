"""The ``m4t`` command line. Each subcommand imports only what it needs: the gateway side never loads torch."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import M4TError


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_worker(args: argparse.Namespace) -> int:
    if args.role == "webhooks":
        import socket

        from shared.settings import CommonSettings
        from worker.webhooks import run_webhook_worker

        run_webhook_worker(CommonSettings(), name=args.name or f"webhooks@{socket.gethostname()}")
        return 0
    from shared.settings import WorkerSettings

    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.name:
        overrides["worker_name"] = args.name
    if args.model:
        overrides["model"] = args.model
    settings = WorkerSettings(**overrides)
    queues = [q for q in (args.queues or "").split(",") if q] or None
    from worker.main import run_inference_worker

    run_inference_worker(settings, queues=queues)
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from shared.settings import GatewaySettings

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["api_host"] = args.host
    if args.port:
        overrides["api_port"] = args.port
    settings = GatewaySettings(**overrides)
    serving: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
    }
    if settings.api_processes == 1:
        uvicorn.run(create_app(settings), **serving)
        return 0
    if settings.ui_mount:
        # The web UI keeps each visitor's session in the process that served it; several processes would split it.
        print("error: M4T_UI_MOUNT needs M4T_API_PROCESSES=1; run the UI on its own with `m4t ui`", file=sys.stderr)
        return 2
    # Several processes: uvicorn imports the app in each one, which reads its settings from the environment.
    os.environ.update(M4T_API_HOST=settings.api_host, M4T_API_PORT=str(settings.api_port))
    uvicorn.run("gateway.app:app_from_env", factory=True, workers=settings.api_processes, **serving)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from shared.local_stack import LocalStack, ServeOptions
    from shared.settings import ServeSettings

    options = ServeOptions(
        workers=args.workers,
        devices=[d for d in (args.devices or "").split(",") if d],
        run_worker=not args.no_worker,
        run_flower=not args.no_flower,
        run_ui=not args.no_ui,
        port=args.port,
    )
    return LocalStack(ServeSettings(), options).run()


def _redis_url_for_cli() -> str:
    """M4T_REDIS_URL, else the private Redis of a running `m4t serve` (it writes its URL into the data dir)."""
    import os

    from shared.settings import CommonSettings

    settings = CommonSettings()
    if "M4T_REDIS_URL" in os.environ:
        return settings.redis_url
    written = settings.data_dir / "redis.url"
    return written.read_text().strip() if written.exists() else settings.redis_url


def _parse_rate(value: str) -> int:
    number = value.strip().lower().removesuffix("/min").removesuffix("/m")
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError("rate limit is N or N/min, N >= 1")
    return int(number)


def _cmd_keys(args: argparse.Namespace) -> int:
    from shared.api_keys import ApiKeyStore
    from shared.priority import Priority
    from shared.redis_client import sync_redis

    store = ApiKeyStore(sync_redis(_redis_url_for_cli()))
    if args.keys_command == "create":
        key, record = store.create(
            args.name,
            admin=args.admin,
            rate_limit_per_min=args.rate_limit,
            max_concurrent=args.max_concurrent,
            audio_seconds_per_day=args.audio_seconds_per_day,
            max_priority=Priority(args.max_priority) if args.max_priority else None,
        )
        print(key)
        print(
            f"created key {record.id} ({record.name}{', admin' if record.admin else ''}); "
            "it is shown only now: store it safely",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "list":
        print(f"{'id':14} {'name':20} {'admin':5} {'rate/min':8} {'concurrent':10} {'audio s/day':11} status")
        for record in store.all():
            limits = [record.rate_limit_per_min, record.max_concurrent, record.audio_seconds_per_day]
            rate, concurrent, audio = ("-" if v is None else f"{v:g}" for v in limits)
            status = "active" if record.active else "revoked"
            admin = "yes" if record.admin else "no"
            print(f"{record.id:14} {record.name:20} {admin:5} {rate:8} {concurrent:10} {audio:11} {status}")
        return 0
    if args.keys_command == "update":
        changed = store.update(args.id_or_name, max_priority=Priority(args.max_priority))
        if not changed:
            print(f"no active key with id or name '{args.id_or_name}'", file=sys.stderr)
            return 1
        for record in changed:
            print(f"updated {record.id} ({record.name}): max priority {record.priority_ceiling.value}")
        return 0
    revoked = store.revoke(args.id_or_name)
    if not revoked:
        print(f"no active key with id or name '{args.id_or_name}'", file=sys.stderr)
        return 1
    for record in revoked:
        print(f"revoked {record.id} ({record.name})")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m4t", description="SeamlessM4T v2 translation service")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run an inference worker (loads the model, then serves jobs)")
    worker.add_argument(
        "--role",
        choices=["inference", "webhooks"],
        default="inference",
        help="inference (loads the model) or webhooks (delivers webhook events, sweeps expired files; light)",
    )
    worker.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides M4T_DEVICE)")
    worker.add_argument("--queues", help="comma-separated queues (default: M4T_INFERENCE_QUEUE)")
    worker.add_argument("--name", help="worker name (overrides M4T_WORKER_NAME)")
    worker.add_argument("--model", help="model to load (overrides M4T_MODEL)")
    worker.set_defaults(func=_cmd_worker)

    gateway = sub.add_parser("gateway", help="run the HTTP API only")
    gateway.add_argument("--host", help="bind address (overrides M4T_API_HOST)")
    gateway.add_argument("--port", type=int, help="port (overrides M4T_API_PORT)")
    gateway.set_defaults(func=_cmd_gateway)

    serve = sub.add_parser("serve", help="run the whole stack on this machine (Redis, worker, API, Flower)")
    serve.add_argument("--workers", type=int, default=1, help="inference workers to run (default 1)")
    serve.add_argument("--devices", help="comma-separated devices, one per worker in turn (e.g. cuda:0,cuda:1)")
    serve.add_argument("--no-worker", action="store_true", help="no inference worker (they run elsewhere)")
    serve.add_argument("--no-flower", action="store_true", help="do not start Flower")
    serve.add_argument("--no-ui", action="store_true", help="do not start the web UI")
    serve.add_argument("--port", type=int, help="API port (overrides M4T_API_PORT)")
    serve.set_defaults(func=_cmd_serve)

    keys = sub.add_parser("keys", help="create, update, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="sees and manages every job")
    create.add_argument("--rate-limit", type=_parse_rate, metavar="N/min", help="requests per minute")
    create.add_argument("--max-concurrent", type=int, metavar="N", help="unfinished jobs at once")
    create.add_argument("--audio-seconds-per-day", type=float, metavar="N", help="seconds of audio submitted per day")
    priorities = ["high", "normal", "low"]
    create.add_argument(
        "--max-priority",
        choices=priorities,
        help="highest priority it may submit at (default: high for admin keys, else normal)",
    )
    update = keys_sub.add_parser("update", help="change a key (by id, or every key with a name)")
    update.add_argument("id_or_name")
    update.add_argument("--max-priority", choices=priorities, required=True, help="highest priority it may submit at")
    keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id, or every key with a name")
    revoke.add_argument("id_or_name")
    keys.set_defaults(func=_cmd_keys)

    from client.cli import add_client_commands

    add_client_commands(sub)

    from client.ui import add_ui_command

    add_ui_command(sub)

    tiny = sub.add_parser("tiny-model", help="build the tiny random checkpoint used by tests and demos")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_cmd_tiny_model)

    settings = sub.add_parser("settings", help="print every M4T_* setting as a Markdown table")
    settings.add_argument("--update", metavar="README", help="rewrite the table between the settings markers")
    settings.set_defaults(func=_cmd_settings)
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

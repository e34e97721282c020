"""``m4t worker``: an inference worker (loads the model, then serves the queue) or, with ``--role webhooks``, the
webhook worker (delivers webhook events, sweeps expired files; light, no model)."""

from __future__ import annotations

import argparse
from typing import Any


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


def add_worker_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

"""``m4t keys``: create, update, list and revoke API keys, in the Redis of the deployment (``M4T_REDIS_URL``) or of
a running ``m4t serve``."""

from __future__ import annotations

import argparse
import sys


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
        header = f"{'id':14} {'name':20} {'admin':5} {'rate/min':8} {'concurrent':10} {'audio s/day':11}"
        print(f"{header} {'priority':8} status")
        for record in store.all():
            limits = [record.rate_limit_per_min, record.max_concurrent, record.audio_seconds_per_day]
            rate, concurrent, audio = ("-" if v is None else f"{v:g}" for v in limits)
            status = "active" if record.active else "revoked"
            admin = "yes" if record.admin else "no"
            ceiling = record.priority_ceiling.value
            print(f"{record.id:14} {record.name:20} {admin:5} {rate:8} {concurrent:10} {audio:11} {ceiling:8} {status}")
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


def add_keys_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, update, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="sees and manages every job")
    create.add_argument("--rate-limit", type=_parse_rate, metavar="N/min", help="requests per minute")
    create.add_argument("--max-concurrent", type=int, metavar="N", help="unfinished jobs at once")
    create.add_argument("--audio-seconds-per-day", type=float, metavar="N", help="seconds of audio submitted per day")
    from shared.priority import Priority

    priorities = [p.value for p in Priority]
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

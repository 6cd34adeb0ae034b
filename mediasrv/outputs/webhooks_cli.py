"""``mediasrv webhooks ...``: manage a business's webhook and email endpoints and their
deliveries from the command line, on the store the server uses (until the REST API of the
integrator issue covers the same)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime

from mediasrv.outputs.outbox import OutboxStore
from mediasrv.outputs.webhooks import TargetRefused

__all__ = ["add_webhooks_parser", "webhooks_main"]


def add_webhooks_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = sub.add_parser("webhooks", help="webhook and email endpoints, deliveries, replay")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)

    def command(name: str, help_: str, endpoint: bool = False) -> argparse.ArgumentParser:
        p = hooks_sub.add_parser(name, help=help_)
        p.add_argument("-c", "--config", help="TOML config file (for [server] data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")
        p.add_argument("--business", required=True, help="the business the endpoint belongs to")
        if endpoint:
            p.add_argument("endpoint", help="endpoint id (ep_...)")
        return p

    add = command("add", "add an endpoint: an http(s) URL or mailto:addr?lang=ja|en")
    add.add_argument("--url", required=True)
    add.add_argument(
        "--events", default="*", help="comma-separated event types (default: every type)"
    )
    add.add_argument("--description", default="")
    command("list", "list the business's endpoints (secrets masked)")
    rotate = command("rotate", "new signing secret; the old one signs too for --overlap s", True)
    rotate.add_argument("--overlap", type=float, default=86400.0)
    command("test", "send a webhook.test event to one endpoint", True)
    command("enable", "enable an endpoint (its waiting deliveries go out)", True)
    command("disable", "disable an endpoint (deliveries wait)", True)
    deliveries = command("deliveries", "the delivery log")
    deliveries.add_argument("--state", choices=["pending", "delivered", "dead"])
    replay = command("replay", "send one delivery again")
    replay.add_argument("delivery", type=int)
    recover = command("recover", "re-send every dead delivery of an endpoint since a time", True)
    recover.add_argument("--since", required=True, help="ISO time, e.g. 2026-12-01T09:00+09:00")


def _mask(secret: str) -> str:
    return secret[:10] + "..." if len(secret) > 10 else "..."


async def _run(args: argparse.Namespace, store: OutboxStore) -> int:
    b, cmd = args.business, args.webhooks_command
    if cmd == "add":
        events = [e.strip() for e in args.events.split(",") if e.strip()] or ["*"]
        try:
            ep = await store.add_endpoint(b, args.url, events, description=args.description)
        except (TargetRefused, ValueError) as exc:
            print(f"mediasrv: {exc}", file=sys.stderr)
            return 2
        print(f"endpoint: {ep.endpoint_id}\nsecret:   {ep.secrets[0]}")
        print("mediasrv: keep the secret: receivers verify signatures with it", file=sys.stderr)
        return 0
    if cmd == "list":
        for ep in await store.endpoints(b):
            state = "enabled" if ep.enabled else f"disabled ({ep.disabled_reason})"
            secrets = ", ".join(_mask(s) for s in ep.secrets)
            print(f"{ep.endpoint_id}  {ep.url}  {' '.join(ep.event_types)}  {state}  {secrets}")
        return 0
    if cmd == "deliveries":
        for row in await store.deliveries(b, state=args.state):
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if cmd == "replay":
        if not await store.replay(b, args.delivery):
            print(f"mediasrv: no delivery {args.delivery} for {b}", file=sys.stderr)
            return 1
        return 0
    if await store.endpoint(b, args.endpoint) is None:
        print(f"mediasrv: no endpoint {args.endpoint} for {b}", file=sys.stderr)
        return 1
    if cmd == "rotate":
        print(await store.rotate_secret(b, args.endpoint, args.overlap))
    elif cmd == "test":
        print(await store.send_test(b, args.endpoint))
    elif cmd in ("enable", "disable"):
        await store.set_enabled(b, args.endpoint, cmd == "enable", "disabled by an operator")
    elif cmd == "recover":
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(f"mediasrv: --since: not an ISO time: {args.since!r}", file=sys.stderr)
            return 2
        if since.tzinfo is None:
            print("mediasrv: --since needs a time zone, e.g. +09:00", file=sys.stderr)
            return 2
        print(await store.recover(b, args.endpoint, since.timestamp()))
    return 0


def webhooks_main(args: argparse.Namespace) -> int:
    from mediasrv.config import ConfigError, load_config

    overrides = {"server.data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        store = OutboxStore(config.server.db_path)
        await store.open()
        try:
            return await _run(args, store)
        finally:
            await store.close()

    return asyncio.run(main())

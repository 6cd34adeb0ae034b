"""``mediasrv token create|list|revoke``: business API tokens (issue 12 §4) in the store
the server uses. The token is printed once, by ``create``; the store keeps its sha256."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

from mediasrv.api.v1.store import ApiStore


class _Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=_Store)

__all__ = ["TOKEN_STORE_COMMANDS", "add_token_store_commands", "token_store_main"]

TOKEN_STORE_COMMANDS = ("create", "list", "revoke")


def add_token_store_commands(token_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = token_sub.add_parser(name, help=help_)
        p.add_argument("-c", "--config", help="TOML config file (for [server] data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")
        return p

    create = command("create", "a new API token for one business (printed once)")
    create.add_argument("--business", required=True, help="the business's slug")
    create.add_argument("--name", default="", help="what the token is for")
    lst = command("list", "list business tokens (no secrets)")
    lst.add_argument("--business", help="only this business's")
    revoke = command("revoke", "revoke a token by its id (tok_...)")
    revoke.add_argument("token_id")


async def _run(args: argparse.Namespace, store: ApiStore, businesses: set[str]) -> int:
    cmd = args.token_command
    if cmd == "create":
        if args.business not in businesses:
            known = ", ".join(sorted(businesses)) or "none"
            print(f"mediasrv: no business {args.business!r} (businesses: {known})", file=sys.stderr)
            return 2
        info, token = await store.create_token(args.business, args.name)
        print(token)
        print(f"mediasrv: token {info.token_id} for {info.business}: shown once, stored hashed",
              file=sys.stderr)
        return 0
    if cmd == "list":
        for t in await store.tokens(args.business):
            state = "revoked" if t.revoked_at else "active"
            print(f"{t.token_id}  {t.business}  {t.hint}  {state}  {t.name}")
        return 0
    if not await store.revoke_token(args.token_id):
        print(f"mediasrv: no active token {args.token_id!r}", file=sys.stderr)
        return 1
    return 0


def token_store_main(args: argparse.Namespace) -> int:
    return run_with_store(args, ApiStore, _run)


def run_with_store(
    args: argparse.Namespace,
    make_store: Callable[[Path], S],
    run: Callable[[argparse.Namespace, S, set[str]], Awaitable[int]],
) -> int:
    """A CLI command on one of the server's stores (``--config``/``--data-dir``), given the
    businesses that exist: config errors exit 2, the store is closed whatever happens."""
    from mediasrv.config import ConfigError, load_config
    from mediasrv.outputs.business_store import SqliteBusinessStore

    overrides = {"server.data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        business = SqliteBusinessStore(config.server.db_path)
        await business.open()
        try:
            slugs = {b.slug for b in await business.businesses()}
        finally:
            await business.close()
        store = make_store(config.server.db_path)
        await store.open()
        try:
            return await run(args, store, slugs)
        finally:
            await store.close()

    return asyncio.run(main())

"""``mediasrv business apply | export | list | blocklist`` (issue 10 §2): the business store
from a shell.

The store is the server's SQLite file (``[server] data_dir``, from ``-c`` or ``--data-dir``);
a running server sees an applied change within its refresh interval, without a restart.
Exit codes: 0 done, 1 the store failed, 2 a bad file or arguments (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mediasrv.business_file import (
    check_trunks,
    dump_blocklist,
    load_blocklist_file,
    load_business_file,
)
from mediasrv.calls.business import Blocklist, Business
from mediasrv.config import Config, ConfigError, load_config
from mediasrv.outputs.business_store import BusinessConflict, SqliteBusinessStore

__all__ = ["add_business_parser", "business_main"]


def add_business_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    business = sub.add_parser("business", help="business configuration: apply, export, list")
    verbs = business.add_subparsers(dest="business_command", required=True)
    apply = verbs.add_parser("apply", help="validate a business file and store it as a new version")
    apply.add_argument("file", help="a business file (TOML), e.g. conf/business.example.toml")
    apply.add_argument("--check", action="store_true", help="validate only, store nothing")
    export = verbs.add_parser("export", help="write a business back as a business file")
    export.add_argument("name", help="the business's slug")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.add_argument("--version", type=int, default=None, help="an older version")
    verbs.add_parser("list", help="the stored businesses, their versions and numbers")
    block = verbs.add_parser(
        "blocklist", help="the server's global blocklist (all businesses): set from a file, or show"
    )
    block.add_argument("file", nargs="?", help="a TOML file with a [blocklist] table; none: show")
    for p in (apply, export, verbs.choices["list"], block):
        p.add_argument("-c", "--config", help="server config (for [server] data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")


def _config(args: argparse.Namespace) -> Config:
    overrides = {"server.data_dir": args.data_dir} if args.data_dir else {}
    return load_config(args.config, overrides)


def business_main(args: argparse.Namespace) -> int:
    blocklist = None
    try:
        config = _config(args)
        if args.business_command == "blocklist" and args.file:
            blocklist = load_blocklist_file(args.file)
        if args.business_command == "apply":
            business = load_business_file(args.file)
            if config.trunks:
                check_trunks(args.file, business, (t.name for t in config.trunks))
            if args.check:
                print(
                    f"{args.file}: business {business.slug!r} is valid ({len(business.numbers)} numbers)"
                )
                return 0
        else:
            business = None
    except ConfigError as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 2
    try:
        if args.business_command == "blocklist":
            return asyncio.run(_blocklist(config, blocklist))
        return asyncio.run(_run(args, config, business))
    except BusinessConflict as exc:
        print(f"mediasrv: {args.file}: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"mediasrv: business store: {exc}", file=sys.stderr)
        return 1


async def _blocklist(config: Config, blocklist: Blocklist | None) -> int:
    store = SqliteBusinessStore(config.server.db_path)
    await store.open()
    try:
        if blocklist is not None:
            await store.set_global_blocklist(blocklist)
            print(f"global blocklist: {len(blocklist.rules)} rules", file=sys.stderr)
        sys.stdout.write(dump_blocklist(store.global_blocklist()))
        return 0
    finally:
        await store.close()


async def _run(args: argparse.Namespace, config: Config, business: Business | None) -> int:
    store = SqliteBusinessStore(config.server.db_path)
    await store.open()
    try:
        if business is not None:  # apply
            result = await store.apply(business, str(Path(args.file)))
            state = "new version" if result.created else "unchanged, same as version"
            print(f"{business.slug}: {state} {result.version}")
            return 0
        if args.business_command == "export":
            text = await store.export(args.name, args.version)
            if text is None:
                what = f"version {args.version} of " if args.version is not None else ""
                print(f"mediasrv: no {what}business {args.name!r} in the store", file=sys.stderr)
                return 2
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(f"{args.name}: written to {args.output}", file=sys.stderr)
            else:
                sys.stdout.write(text)
            return 0
        infos = await store.businesses()
        if not infos:
            print("no businesses (mediasrv business apply FILE adds one)", file=sys.stderr)
        for info in infos:
            numbers = ", ".join(n.number for n in await store.numbers(info.slug))
            print(f"{info.slug}\tversion {info.version}\t{info.name}\t{numbers}")
        return 0
    finally:
        await store.close()

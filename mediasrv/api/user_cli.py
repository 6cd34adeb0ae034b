"""``mediasrv user add|list|remove|passwd``: console accounts (issue 13 §5) in the store the
server uses. A password is read from the terminal (asked twice) or, with
``--password-stdin``, from the first line of stdin (for scripts); it never appears in
arguments. The store keeps only its scrypt hash (:mod:`mediasrv.api.accounts`).

Exit codes: 0 done, 1 no such user, 2 a bad argument (a taken name, an unknown business, a
password too short), each with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable

from mediasrv.api.accounts import AccountStore, check_password_policy, hash_password
from mediasrv.api.token_cli import run_with_store

__all__ = ["add_user_parser", "user_main"]


class UserCliError(Exception):
    """A problem the user can fix: exit 2."""


def add_user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="console user accounts: add, list, remove, passwd")
    usub = user.add_subparsers(dest="user_command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = usub.add_parser(name, help=help_)
        p.add_argument("-c", "--config", help="TOML config file (for [server] data_dir)")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")
        return p

    add = command("add", "a new user, mapped to one business or admin")
    add.add_argument("name", help="the login name (lower-case letters, digits, ._@-)")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--business", help="the one business the user acts for (its slug)")
    who.add_argument("--admin", action="store_true", help="every business (the server's role)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin")
    command("list", "list users (no secrets)")
    rm = command("remove", "remove a user (their sessions end at once)")
    rm.add_argument("name")
    pw = command("passwd", "set a user's password (their sessions end at once)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin")


def read_password(from_stdin: bool, ask: Callable[[str], str] = getpass.getpass) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = ask("password: ")
        if ask("again: ") != password:
            raise UserCliError("the two passwords differ")
    why = check_password_policy(password)
    if why is not None:
        raise UserCliError(why)
    return password


async def _run(args: argparse.Namespace, store: AccountStore, businesses: set[str]) -> int:
    cmd = args.user_command
    if cmd == "list":
        for u in await store.users():
            print(f"{u.name}  {'admin' if u.is_admin else 'business ' + str(u.business)}")
        return 0
    if cmd == "remove":
        if not await store.remove_user(args.name):
            print(f"mediasrv: no user {args.name!r}", file=sys.stderr)
            return 1
        return 0
    if cmd == "passwd":
        if await store.user(args.name) is None:
            print(f"mediasrv: no user {args.name!r}", file=sys.stderr)
            return 1
        digest = await asyncio.to_thread(hash_password, read_password(args.password_stdin))
        await store.set_password(args.name, digest)
        print(f"mediasrv: password of {args.name} changed; their sessions ended", file=sys.stderr)
        return 0
    if args.business is not None and args.business not in businesses:
        known = ", ".join(sorted(businesses)) or "none"
        raise UserCliError(f"no business {args.business!r} (businesses: {known})")
    digest = await asyncio.to_thread(hash_password, read_password(args.password_stdin))
    try:
        await store.add_user(args.name, digest, args.business, bool(args.admin))
    except ValueError as exc:
        raise UserCliError(str(exc)) from None
    print(f"mediasrv: user {args.name} added "
          f"({'admin' if args.admin else 'business ' + args.business})", file=sys.stderr)
    return 0


def user_main(args: argparse.Namespace) -> int:
    try:
        return run_with_store(args, AccountStore, _run)
    except UserCliError as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 2

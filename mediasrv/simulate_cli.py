"""``mediasrv simulate --number N --caller C --at "2026-12-29 19:00" [--json]`` (issue 10 §5).

A dry run from the stored configuration (the business store in ``[server] data_dir``): the
number's current flow version is compiled as the server would (:mod:`mediasrv.calls.compile`)
and explained by :func:`mediasrv.calls.simulate.simulate` - which rule fired, which targets in
which order (the stored round-robin pointer is peeked, not advanced), which prompts - without
placing a call. Exit codes: 0 explained, 1 the store failed, 2 bad arguments or an unknown
number / a flow that does not compile (one line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mediasrv.calls.compile import CompileError, compile_number
from mediasrv.calls.schedule import hours_evaluator
from mediasrv.calls.simulate import (
    Simulation,
    blocked_text,
    format_simulation,
    parse_at,
    simulate,
)
from mediasrv.config import ConfigError, load_config, to_e164
from mediasrv.outputs.business_store import SqliteBusinessStore

__all__ = ["add_simulate_parser", "blocked_text", "simulate_main", "simulation_json",
           "simulation_moment"]


class SimulateError(Exception):
    """A problem the user can fix (unknown number, bad --at): exit 2."""


def add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate", help="explain the path a call would take (dry run, no call placed)"
    )
    p.add_argument("--number", required=True, help="the tracking number called")
    p.add_argument("--caller", default="", help="the caller's number (empty: withheld)")
    p.add_argument(
        "--withheld",
        default="",
        help="the caller's withheld category: anonymous, payphone, unavailable",
    )
    p.add_argument(
        "--at", default="", help='"YYYY-MM-DD HH:MM" on the business\'s clock (default: now)'
    )
    p.add_argument("--digits", default="", help="keys the caller would press in menus")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.add_argument("-c", "--config", help="server config (for [server] data_dir)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")


def simulation_json(sim: Simulation) -> str:
    d = asdict(sim)
    d["at"] = sim.at.isoformat()
    return json.dumps(d, ensure_ascii=False, indent=2)


def simulation_moment(text: str, zone: str) -> datetime:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SimulateError(f"the business's time zone {zone!r} is unknown") from exc
    if not text:
        return datetime.now(tz)
    try:
        return parse_at(text, zone)
    except ValueError as exc:
        raise SimulateError(str(exc)) from None


async def _simulate(args: argparse.Namespace, store: SqliteBusinessStore) -> Simulation:
    nv = store.version_for(args.number)
    if nv is None:
        raise SimulateError(
            f"--number {args.number!r}: no business in the store has this tracking number "
            "(mediasrv business list shows them)"
        )
    try:
        plan = compile_number(nv)
    except CompileError as exc:
        raise SimulateError(f"the stored flow does not compile: {exc}") from exc
    at = simulation_moment(args.at, nv.business.time_zone)
    return simulate(
        plan,
        caller=to_e164(args.caller) or args.caller,  # as the server sees it (flow_legs.py)
        withheld=args.withheld,
        at=at,
        digits=args.digits,
        hours=hours_evaluator,
        blocked=blocked_text,
        peek_rotation=store.peek_rotation,
    )


async def _run(args: argparse.Namespace, db_path: Path) -> Simulation:
    store = SqliteBusinessStore(db_path)
    await store.open()
    try:
        return await _simulate(args, store)
    finally:
        await store.close()


def simulate_main(args: argparse.Namespace) -> int:
    overrides = {"server.data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, overrides)
        sim = asyncio.run(_run(args, config.server.db_path))
    except (ConfigError, SimulateError) as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"mediasrv: business store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(simulation_json(sim) + "\n" if args.json else format_simulation(sim))
    return 0

"""``mediasrv number-info NUMBER [--json]`` and ``mediasrv calls recompute`` (issue 11)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

__all__ = ["add_parsers", "number_info_main", "recompute_main"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    info = sub.add_parser("number-info", help="what a phone number is: E.164, kind, prefecture")
    info.add_argument("number", help="a number, tel:/sip: URI, or a withheld word (anonymous)")
    info.add_argument("--json", action="store_true", help="print JSON")
    calls = sub.add_parser("calls", help="call log maintenance")
    calls_sub = calls.add_subparsers(dest="calls_command", required=True)
    rec = calls_sub.add_parser(
        "recompute", help="recompute valid / duplicate / first-time for a period (after a change)"
    )
    rec.add_argument("--since", required=True, help="ISO 8601 or unix seconds (naive = UTC)")
    rec.add_argument("--until", required=True, help="ISO 8601 or unix seconds (exclusive)")
    rec.add_argument("--business", help="only this business")
    rec.add_argument("-c", "--config", help="TOML config file ([server] data_dir, [call_attributes])")
    rec.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")


def number_info_main(args: argparse.Namespace) -> int:
    from mediasrv.calls.caller_id import number_info

    info = number_info(args.number).to_dict()
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    for key in ("input", "e164", "kind", "area", "prefecture_code", "prefecture", "source"):
        print(f"{key:16} {info[key] if info[key] is not None else '-'}")
    if info["also_prefectures"]:
        print(f"{'also':16} {', '.join(info['also_prefectures'])}")  # type: ignore[arg-type]
    return 0


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def recompute_main(args: argparse.Namespace) -> int:
    from mediasrv.app import attribute_policy
    from mediasrv.config import ConfigError, load_config
    from mediasrv.outputs.attributes import recompute
    from mediasrv.outputs.calllog import CallLogStore

    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["server.data_dir"] = args.data_dir
    try:
        config = load_config(args.config, overrides)
        since, until = _when(args.since), _when(args.until)
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mediasrv: --since/--until: {exc}", file=sys.stderr)
        return 2
    if not since < until:
        print("mediasrv: --since must be before --until", file=sys.stderr)
        return 2
    if not config.server.db_path.exists():
        print(f"mediasrv: no call log at {config.server.db_path}", file=sys.stderr)
        return 1

    async def run() -> str:
        store = CallLogStore(config.server.db_path)
        await store.open()
        try:
            policy = attribute_policy(config.call_attributes)
            report = await recompute(store, policy, since, until, args.business)
        finally:
            await store.close()
        return (
            f"recomputed: {report.repeats} rows (duplicate/first-time), {report.valid} rows "
            f"(valid), {report.classified} callers classified"
        )

    print(asyncio.run(run()))
    return 0

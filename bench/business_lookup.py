"""Per-call cost of the business rules' lookups (issue 10): what routing does synchronously
for every INVITE before a flow runs, on the example business (``conf/business.example.toml``).

* ``version_for``: the dialled number (national form) -> its configuration version;
* ``is_open``: the schedule at a moment (zone conversion, override / holiday / week);
* ``caller_blocked``: the caller against the number's, business's and global blocklists.

CPU time of this thread (``time.thread_time``), best of 3 bounded runs each. Last line::

    RESULT business_lookup version_for_us=<n> is_open_us=<n> caller_blocked_us=<n> total_us=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

from mediasrv.business_file import load_business_file
from mediasrv.calls.blocking import caller_blocked
from mediasrv.calls.business import Blocklist, BlockRule, MatchKind
from mediasrv.calls.schedule import is_open
from mediasrv.outputs.business_store import MemoryBusinessStore

EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "business.example.toml"


def cost_us(fn: Callable[[], object], count: int = 50_000) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for _ in range(count):
            fn()
        best = min(best, (time.thread_time() - start) / count * 1e6)
    return best


class _Lists:
    def __init__(self, number: Blocklist, business: Blocklist, global_: Blocklist) -> None:
        self.number, self.business, self.global_ = number, business, global_


async def main(count: int) -> int:
    business = load_business_file(EXAMPLE)
    store = MemoryBusinessStore()
    await store.open()
    await store.apply(business)
    await store.set_global_blocklist(Blocklist((BlockRule(MatchKind.PREFIX, "+8150"),)))
    found = store.version_for("0312345678")
    assert found is not None
    schedule = business.schedules[0]
    at = dt.datetime(2026, 12, 1, 1, 30, tzinfo=dt.UTC)  # a Tuesday, 10:30 in Tokyo
    lists = _Lists(found.number.blocklist, business.blocklist, found.global_blocklist)
    v = cost_us(lambda: store.version_for("0312345678"), count)
    h = cost_us(lambda: is_open(schedule, at), count)
    b = cost_us(lambda: caller_blocked(lists, "+81398765432", ""), count)
    print(f"version_for {v:.1f} us, is_open {h:.1f} us, caller_blocked {b:.1f} us")
    print(f"RESULT business_lookup version_for_us={v:.1f} is_open_us={h:.1f} "
          f"caller_blocked_us={b:.1f} total_us={v + h + b:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="calls per run (3 runs each)")
    sys.exit(asyncio.run(main(parser.parse_args().count)))

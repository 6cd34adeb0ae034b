"""Call-log write throughput: the group commit's writer, against its earlier form (issue 8).

Each simulated call writes what a real one does: its in-progress row at the start, its
answer columns at the answer, and its final row at the end (``record_live``,
``record_answer``, ``record_call``); a checkpoint stamps the live calls between waves. Waves of ``--wave`` calls
are written concurrently, as a burst of call tasks would. Two writers in the same run, on
fresh databases in the same directory (``synchronous = FULL``):

* **batch**: the store as shipped: a whole batch is ONE hop to the writer thread;
* **per-statement**: the earlier writer, one aiosqlite round trip per statement (kept here
  as the baseline, not in the product).

Last line::

    RESULT calllog_writes batch_per_s=<n> per_statement_per_s=<n> ratio=<r>

Pin it to one core (``taskset -c 1``) to see what the writer costs next to a busy event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition, _Write
from mediasrv.outputs.sqlite import connect


class PerStatementStore(CallLogStore):
    """The earlier writer: BEGIN, each statement, COMMIT, each an aiosqlite round trip."""

    async def open(self) -> None:
        await super().open()
        self._old = await connect(self.path)

    async def close(self) -> None:
        await super().close()
        await self._old.close()

    async def _commit(self, batch: list[_Write]) -> list[int]:
        db = self._old
        await db.execute("BEGIN IMMEDIATE")
        try:
            counts = []
            for item in batch:
                async with db.execute(item.sql, item.params) as cur:
                    counts.append(cur.rowcount)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return counts


def calls(n: int) -> list[CallRecord]:
    now = time.time()
    return [
        CallRecord(uuid.uuid4().hex, f"{i}@192.0.2.1", "0312345678", "+819012345678",
                   start_time=now, disposition=Disposition.IN_PROGRESS)
        for i in range(n)
    ]


async def one_call(store: CallLogStore, rec: CallRecord) -> None:
    await store.record_live(rec)
    answered = replace(rec, answer_time=rec.start_time + 1, sip_code=200,
                       operator_uri="sip:op@127.0.0.1")
    await store.record_answer(answered)
    final = replace(answered, disposition=Disposition.ANSWERED, end_time=rec.start_time + 2,
                    talk_seconds=1.0, end_reason="caller-bye")
    await store.record_call(final)


async def run(store: CallLogStore, total: int, wave: int) -> float:
    """Writes per second over ``total`` calls (3 rows each, plus one checkpoint a wave)."""
    await store.open()
    try:
        writes = 0
        t0 = time.perf_counter()
        for _ in range(total // wave):
            batch = calls(wave)
            await asyncio.gather(
                *(one_call(store, r) for r in batch),
                store.checkpoint_live([r.call_id for r in batch], time.time()),
            )
            writes += 3 * wave + 1
        return writes / (time.perf_counter() - t0)
    finally:
        await store.close()


async def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="calllog-writes-", dir=args.dir))
    print(f"# calllog_writes {datetime.now(UTC):%Y-%m-%d %H:%M}Z: {args.calls} calls in waves "
          f"of {args.wave}, {args.rounds} rounds, alternating", flush=True)
    best = {"batch": 0.0, "per-statement": 0.0}
    try:
        for r in range(args.rounds):
            for name, cls in (("batch", CallLogStore), ("per-statement", PerStatementStore)):
                rate = await run(cls(work / f"{name}-{r}.db"), args.calls, args.wave)
                best[name] = max(best[name], rate)
                print(f"{name} round={r} writes_per_s={rate:.0f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = best["batch"] / best["per-statement"] if best["per-statement"] else 0.0
    print(f"RESULT calllog_writes batch_per_s={best['batch']:.0f} "
          f"per_statement_per_s={best['per-statement']:.0f} ratio={ratio:.2f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--wave", type=int, default=300, help="calls written concurrently")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; best one counts")
    p.add_argument("--dir", type=Path, default=None, help="where the databases go")
    return asyncio.run(bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

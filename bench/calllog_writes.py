"""Call-log write throughput: the group commit's writer, against its earlier form (issue 8).

Each simulated call writes what a real one does: its in-progress row at the start, its
answer columns at the answer, and its final row at the end (``record_live``,
``record_answer``, ``record_call``); a checkpoint stamps the live calls between waves. Waves of ``--wave`` calls
are written concurrently, as a burst of call tasks would. Two writers in the same run, on
fresh databases in the same directory (``synchronous = FULL``):

* **batch**: the store as shipped: a whole batch is ONE hop to the writer thread;
* **per-statement**: the earlier writer, one aiosqlite round trip per statement (kept here
  as the baseline, not in the product).

``--sqlalchemy`` (issue 10: SQLAlchemy Core 2 + Alembic, or our aiosqlite migrations?) adds,
when SQLAlchemy 2 is installed (``pip install 'sqlalchemy>=2,<2.2' greenlet``; not a project
dependency), the same statements through SQLAlchemy Core in the two ways it could be used:

* **sqla-batch**: a Core ``Connection`` (sync engine, pysqlite) on the store's writer thread,
  the whole batch in one ``engine.begin()``, each statement a cached ``text()`` construct with
  named binds: the best case for SQLAlchemy (same thread hop as ``batch``);
* **sqla-async**: ``create_async_engine("sqlite+aiosqlite://")``, one ``await conn.execute``
  per statement inside one transaction per batch (greenlet bridge + aiosqlite hop each).

Last lines::

    RESULT calllog_writes batch_per_s=<n> per_statement_per_s=<n> ratio=<r>
    RESULT calllog_writes_sqlalchemy batch_per_s=<n> sqla_batch_per_s=<n> sqla_async_per_s=<n> sqla_batch_ratio=<r>

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


def _named(sql: str) -> tuple[str, int]:
    """``?`` placeholders -> ``:p0, :p1, ...`` (SQLAlchemy ``text()`` binds by name)."""
    parts = sql.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += f":p{i}{part}"
    return out, len(parts) - 1


class SqlaBatchStore(CallLogStore):
    """SQLAlchemy Core on the writer thread: one ``engine.begin()`` per batch."""

    async def open(self) -> None:
        await super().open()
        from concurrent.futures import ThreadPoolExecutor

        from sqlalchemy import create_engine, event, text

        self._text = text
        self._stmts: dict[str, object] = {}
        engine = create_engine(f"sqlite:///{self.path}", isolation_level="AUTOCOMMIT")

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.execute("PRAGMA busy_timeout = 10000")
            dbapi_conn.execute("PRAGMA synchronous = FULL")

        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqla-writer")

    async def close(self) -> None:
        await super().close()
        self._pool.shutdown(wait=True)
        self._engine.dispose()

    def _stmt(self, sql: str) -> object:
        stmt = self._stmts.get(sql)
        if stmt is None:
            stmt = self._stmts[sql] = self._text(_named(sql)[0])
        return stmt

    def _commit_sync(self, batch: list[tuple[str, tuple[object, ...]]]) -> list[int]:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                counts = [
                    conn.execute(self._stmt(sql), {f"p{i}": v for i, v in enumerate(params)}).rowcount  # type: ignore[arg-type]
                    for sql, params in batch
                ]
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
        return counts

    async def _commit(self, batch: list[_Write]) -> list[int]:
        work = [(w.sql, w.params) for w in batch]
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._commit_sync, work)


class SqlaAsyncStore(SqlaBatchStore):
    """SQLAlchemy's asyncio extension over aiosqlite: one awaited execute per statement."""

    async def open(self) -> None:
        await CallLogStore.open(self)
        from sqlalchemy import event, text
        from sqlalchemy.ext.asyncio import create_async_engine

        self._text = text
        self._stmts = {}
        self._aengine = create_async_engine(
            f"sqlite+aiosqlite:///{self.path}", isolation_level="AUTOCOMMIT"
        )

        @event.listens_for(self._aengine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 10000")
            cur.execute("PRAGMA synchronous = FULL")
            cur.close()

        self._aconn = await self._aengine.connect()

    async def close(self) -> None:
        await CallLogStore.close(self)
        await self._aconn.close()
        await self._aengine.dispose()

    async def _commit(self, batch: list[_Write]) -> list[int]:
        conn = self._aconn
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            counts = []
            for w in batch:
                params = {f"p{i}": v for i, v in enumerate(w.params)}
                result = await conn.execute(self._stmt(w.sql), params)  # type: ignore[arg-type]
                counts.append(result.rowcount)
            await conn.exec_driver_sql("COMMIT")
        except BaseException:
            await conn.exec_driver_sql("ROLLBACK")
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


async def run(store: CallLogStore, total: int, wave: int) -> tuple[float, float]:
    """Writes per second over ``total`` calls (3 rows each, plus one checkpoint a wave), and
    the process CPU microseconds per write (all threads: robust to a loaded machine)."""
    await store.open()
    try:
        writes = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(total // wave):
            batch = calls(wave)
            await asyncio.gather(
                *(one_call(store, r) for r in batch),
                store.checkpoint_live([r.call_id for r in batch], time.time()),
            )
            writes += 3 * wave + 1
        cpu = time.process_time() - c0
        return writes / (time.perf_counter() - t0), cpu / writes * 1e6
    finally:
        await store.close()


async def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="calllog-writes-", dir=args.dir))
    print(f"# calllog_writes {datetime.now(UTC):%Y-%m-%d %H:%M}Z: {args.calls} calls in waves "
          f"of {args.wave}, {args.rounds} rounds, alternating", flush=True)
    writers: list[tuple[str, type[CallLogStore]]] = [
        ("batch", CallLogStore), ("per-statement", PerStatementStore)
    ]
    if args.sqlalchemy:
        writers += [("sqla-batch", SqlaBatchStore), ("sqla-async", SqlaAsyncStore)]
    best = {name: 0.0 for name, _ in writers}
    cpu_us = {name: float("inf") for name, _ in writers}
    try:
        for r in range(args.rounds):
            for name, cls in writers:
                rate, us = await run(cls(work / f"{name}-{r}.db"), args.calls, args.wave)
                best[name] = max(best[name], rate)
                cpu_us[name] = min(cpu_us[name], us)
                print(f"{name} round={r} writes_per_s={rate:.0f} cpu_us_per_write={us:.0f}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = best["batch"] / best["per-statement"] if best["per-statement"] else 0.0
    print(f"RESULT calllog_writes batch_per_s={best['batch']:.0f} "
          f"per_statement_per_s={best['per-statement']:.0f} ratio={ratio:.2f}", flush=True)
    if args.sqlalchemy:
        sqla_ratio = best["sqla-batch"] / best["batch"] if best["batch"] else 0.0
        print(f"RESULT calllog_writes_sqlalchemy batch_per_s={best['batch']:.0f} "
              f"sqla_batch_per_s={best['sqla-batch']:.0f} "
              f"sqla_async_per_s={best['sqla-async']:.0f} sqla_batch_ratio={sqla_ratio:.2f} "
              f"cpu_us_per_write batch={cpu_us['batch']:.0f} "
              f"sqla_batch={cpu_us['sqla-batch']:.0f} sqla_async={cpu_us['sqla-async']:.0f}",
              flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--wave", type=int, default=300, help="calls written concurrently")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; best one counts")
    p.add_argument("--dir", type=Path, default=None, help="where the databases go")
    p.add_argument("--sqlalchemy", action="store_true",
                   help="also the same writes through SQLAlchemy Core (issue 10 decision)")
    return asyncio.run(bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

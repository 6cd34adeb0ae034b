"""Refused requests, counted and aggregated instead of one call-log row each (issue 8, F7).

An INVITE to a number we do not serve, a request from a source in no trunk, a request dropped
by the rate limits: each is one :meth:`RejectionLog.note` (a dictionary update, no I/O). Every
``flush_interval`` seconds the counts are written, in one transaction, to their own table in
the same SQLite file, one row per (source, reason, number) with first/last time and count:

    rejected_requests(source, reason, number, first, last, count)

so the call log (and every report built on it) holds calls only, while a scan or a flood stays
visible. The buffer is bounded: past ``max_keys`` distinct keys per interval, new numbers fold
into ``number = "*"`` for their source, and new sources into ``source = "*"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated

__all__ = ["REJECTIONS_MIGRATIONS", "RejectionLog", "RejectionRow"]

log = logging.getLogger(__name__)

REJECTIONS_MIGRATIONS: list[Migration] = [
    # 1: issue 8 (enumeration and call-log pollution)
    [
        """
        CREATE TABLE rejected_requests (
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            number TEXT NOT NULL DEFAULT '',
            first  REAL NOT NULL,
            last   REAL NOT NULL,
            count  INTEGER NOT NULL,
            PRIMARY KEY (source, reason, number)
        )
        """,
        "CREATE INDEX rejected_requests_last ON rejected_requests (last)",
    ],
]

_UPSERT = (
    "INSERT INTO rejected_requests (source, reason, number, first, last, count) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, reason, number) DO UPDATE SET "
    "first = min(first, excluded.first), last = max(last, excluded.last), "
    "count = count + excluded.count"
)

Key = tuple[str, str, str]  # (source, reason, number)


@dataclass(slots=True)
class RejectionRow:
    source: str
    reason: str
    number: str
    first: float
    last: float
    count: int


class RejectionLog:
    """Aggregates refusals in memory and writes them periodically to ``rejected_requests``."""

    def __init__(
        self,
        path: Path,
        flush_interval: float = 5.0,
        max_keys: int = 2000,
        on_note: Callable[[str, int], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        synchronous: Synchronous = Synchronous.NORMAL,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.max_keys = max_keys
        self.on_note = on_note  # e.g. a metric per reason
        self.wall_clock = wall_clock
        self._synchronous = synchronous
        self._pending: dict[Key, list[float]] = {}  # key -> [first, last, count]
        self._sources: set[str] = set()
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        # Counted elsewhere and handed over at each flush (the pre-parse guard's drops).
        self.collectors: list[Callable[[], list[tuple[str, str, int]]]] = []

    async def open(self) -> None:
        if self._conn is not None:
            return
        conn = await connect_migrated(
            self.path, "rejections", REJECTIONS_MIGRATIONS, self._synchronous
        )
        self._conn = conn
        self._task = asyncio.get_running_loop().create_task(self._periodic(), name="rejections")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._conn is not None:
            await self.flush()
            await self._conn.close()
            self._conn = None

    def note(self, source: str, reason: str, number: str = "", count: int = 1) -> None:
        """Count ``count`` refused requests (a dictionary update, no I/O)."""
        if self.on_note is not None:
            self.on_note(reason, count)
        now = self.wall_clock()
        key = (source, reason, number)
        entry = self._pending.get(key)
        if entry is None:
            key = self._bounded(key)
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = [now, now, float(count)]
                return
        entry[1] = now
        entry[2] += count

    def collect(self) -> None:
        """Take over what the collectors counted since the last time."""
        for collector in self.collectors:
            for source, reason, count in collector():
                self.note(source, reason, "", count)

    def _bounded(self, key: Key) -> Key:
        if len(self._pending) < self.max_keys:
            self._sources.add(key[0])
            return key
        source, reason, _ = key
        if source in self._sources:
            return (source, reason, "*")
        return ("*", reason, "*")

    def pending(self) -> int:
        return len(self._pending)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write refused-request counts (kept for the next try)")

    async def flush(self) -> int:
        """Write what was counted since the last flush; returns the rows touched."""
        self.collect()
        if not self._pending or self._conn is None:
            return 0
        batch, self._pending, self._sources = self._pending, {}, set()
        rows = [(s, r, n, e[0], e[1], int(e[2])) for (s, r, n), e in batch.items()]
        db = self._conn
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_UPSERT, rows)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except Exception:
            for key, entry in batch.items():  # put back, merged with what came meanwhile
                cur = self._pending.setdefault(key, [entry[0], entry[1], 0.0])
                cur[0] = min(cur[0], entry[0])
                cur[1] = max(cur[1], entry[1])
                cur[2] += entry[2]
            raise
        return len(rows)

    async def rows(self, limit: int = 1000) -> list[RejectionRow]:
        """The stored aggregates, most recent first (for tests and a later API)."""
        if self._conn is None:
            return []
        sql = (
            "SELECT source, reason, number, first, last, count FROM rejected_requests "
            "ORDER BY last DESC LIMIT ?"
        )
        async with self._conn.execute(sql, (limit,)) as cur:
            found = await cur.fetchall()
        return [
            RejectionRow(str(a), str(b), str(c), float(d), float(e), int(f))
            for a, b, c, d, e, f in found
        ]

"""Registrar bindings kept in SQLite, so that registered operators survive a restart.

A :class:`~mediasrv.sip.registrar.BindingStore`: reads come from memory (routing a call to
"the operator named alice" stays a synchronous lookup); every change marks its AOR dirty and
a writer task stores the dirty AORs in one transaction every ``flush_interval`` seconds, off
the event loop (aiosqlite's thread). What the last interval changed can be lost in a crash:
those phones re-register within their expiry (soft state, RFC 3261 §10.2.1), unlike call rows
which are committed before they are acknowledged. On open, bindings still valid by the wall
clock are loaded; expired ones are deleted.

    registrar_bindings(aor, uri, expires_at, call_id, cseq, q, source, user_agent)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiosqlite

from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated
from mediasrv.sip.registrar import Binding, MemoryBindingStore

__all__ = ["BINDINGS_MIGRATIONS", "SqliteBindingStore"]

log = logging.getLogger(__name__)

BINDINGS_MIGRATIONS: list[Migration] = [
    # 1: issue 10, the operators' registrar
    [
        """
        CREATE TABLE registrar_bindings (
            aor        TEXT NOT NULL,
            uri        TEXT NOT NULL,
            expires_at REAL NOT NULL,
            call_id    TEXT NOT NULL,
            cseq       INTEGER NOT NULL,
            q          REAL NOT NULL DEFAULT 1.0,
            source     TEXT NOT NULL DEFAULT '',
            user_agent TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (aor, uri)
        )
        """,
    ],
]

_COLUMNS = "aor, uri, expires_at, call_id, cseq, q, source, user_agent"


class SqliteBindingStore(MemoryBindingStore):
    """In-memory bindings written behind to the ``registrar_bindings`` table."""

    def __init__(
        self,
        path: Path,
        flush_interval: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
        synchronous: Synchronous = Synchronous.NORMAL,
    ) -> None:
        super().__init__()
        self.path = path
        self.flush_interval = flush_interval
        self._clock = wall_clock
        self._synchronous = synchronous
        self._conn: aiosqlite.Connection | None = None
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> int:
        """Load the bindings still valid; returns how many."""
        self._conn = await connect_migrated(
            self.path, "registrar_bindings", BINDINGS_MIGRATIONS, self._synchronous
        )
        now = self._clock()
        await self._conn.execute("DELETE FROM registrar_bindings WHERE expires_at <= ?", (now,))
        loaded = 0
        async with self._conn.execute(f"SELECT {_COLUMNS} FROM registrar_bindings") as cur:
            by_aor: dict[str, list[Binding]] = {}
            async for row in cur:
                binding = Binding(
                    aor=row[0],
                    uri=row[1],
                    expires_at=float(row[2]),
                    call_id=row[3],
                    cseq=int(row[4]),
                    q=float(row[5]),
                    source=row[6],
                    user_agent=row[7],
                )
                by_aor.setdefault(binding.aor, []).append(binding)
                loaded += 1
        for aor, bindings in by_aor.items():
            super().put(aor, bindings)
        self._task = asyncio.get_running_loop().create_task(self._write_forever())
        return loaded

    def put(self, aor: str, bindings: Sequence[Binding]) -> None:
        super().put(aor, bindings)
        self._dirty.add(aor)
        self._wake.set()

    async def flush(self) -> None:
        """Write every dirty AOR now (one transaction)."""
        if self._conn is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rows = [
            (b.aor, b.uri, b.expires_at, b.call_id, b.cseq, b.q, b.source, b.user_agent)
            for aor in sorted(dirty)
            for b in self.get(aor)
        ]
        conn = self._conn
        await conn.execute("BEGIN")
        try:
            await conn.executemany(
                "DELETE FROM registrar_bindings WHERE aor = ?", [(a,) for a in sorted(dirty)]
            )
            await conn.executemany(
                f"INSERT INTO registrar_bindings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            self._dirty |= dirty  # try again next time
            raise

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except aiosqlite.Error:
                log.exception("writing registrar bindings failed; retrying")
            await asyncio.sleep(self.flush_interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.flush()
        finally:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

"""Shared SQLite plumbing for the embedded stores: connection set-up and versioned migrations.

Several components keep tables in the same database file (the call log, the analysis job
queue, later the notify outbox). Each has its own ordered list of migration steps and its own
row in ``schema_version``, so they evolve independently:

    await migrate(conn, "calls", CALLS_MIGRATIONS, path)

A step is a list of SQL statements run in one transaction together with the version bump, so
a crash mid-migration leaves the previous version intact. A database whose recorded version is
newer than the code knows is refused with :class:`SchemaVersionError` (never "downgraded").
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

__all__ = ["Migration", "SchemaVersionError", "Synchronous", "connect", "migrate", "schema_version"]

Migration = Sequence[str]  # the SQL statements of one version step


class SchemaVersionError(Exception):
    """The database was written by a newer mediasrv (or is not ours)."""


class Synchronous(enum.StrEnum):
    """SQLite ``PRAGMA synchronous`` in WAL mode.

    FULL: a commit survives power loss (one fsync of the WAL per commit; the call log's group
    commit keeps that to one per batch). NORMAL: survives a crash of the process, may lose the
    last commits on power loss.
    """

    FULL = "FULL"
    NORMAL = "NORMAL"


_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    component  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    applied_at REAL NOT NULL
)
"""


async def connect(
    path: Path, synchronous: Synchronous = Synchronous.FULL, read_only: bool = False
) -> aiosqlite.Connection:
    """Open ``path`` in WAL mode, autocommit (transactions are explicit ``BEGIN``s)."""
    if read_only:
        conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        # Wait for the other connection's write lock instead of failing with "locked".
        await conn.execute("PRAGMA busy_timeout = 10000")
        if not read_only:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute(f"PRAGMA synchronous = {Synchronous(synchronous).value}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def schema_version(conn: aiosqlite.Connection, component: str) -> int:
    """The applied version of ``component`` (0 when none, or no schema table yet)."""
    async with conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ) as cur:
        if await cur.fetchone() is None:
            return 0
    async with conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (component,)
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(
    conn: aiosqlite.Connection, component: str, steps: Sequence[Migration], path: Path
) -> int:
    """Bring ``component`` up to ``len(steps)``; idempotent; returns the version reached."""
    known = len(steps)
    # BEGIN IMMEDIATE takes the write lock first, so two processes opening the same file
    # migrate one after the other instead of both applying step N.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(_SCHEMA_TABLE)
        current = await schema_version(conn, component)
        if current > known:
            raise SchemaVersionError(
                f"{path}: the {component!r} schema is at version {current}, newer than this "
                f"mediasrv knows ({known}); upgrade mediasrv or point data_dir elsewhere"
            )
        for version in range(current + 1, known + 1):
            for sql in steps[version - 1]:
                await conn.execute(sql)
        if known > current:
            await conn.execute(
                "INSERT INTO schema_version (component, version, applied_at) VALUES (?, ?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                "applied_at = excluded.applied_at",
                (component, known, time.time()),
            )
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return known


async def connect_migrated(
    path: Path, component: str, steps: Sequence[Migration], synchronous: Synchronous
) -> aiosqlite.Connection:
    """:func:`connect`, then :func:`migrate` ``component``; the connection is closed on failure."""
    conn = await connect(path, synchronous)
    try:
        await migrate(conn, component, steps, path)
    except BaseException:
        await conn.close()
        raise
    return conn

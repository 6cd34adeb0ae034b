"""The business configuration store (issue 10 §1, §2): one interface, several backends.

:class:`BusinessStore` is the interface; ``tests/business/test_business_store.py`` is the
conformance suite every backend passes (the PostgreSQL backend of the scale-out issue is one
more parameter of that suite). Backends here:

* :class:`SqliteBusinessStore`: the embedded default, tables in the server's SQLite file
  (WAL), migrated with :mod:`mediasrv.outputs.sqlite` like the call log;
* :class:`MemoryBusinessStore`: the same behaviour without I/O (unit tests of ``calls/``).

Every :meth:`~BusinessStore.apply` that changes a business stores a new immutable **version**
(the whole business as its business file text, so export is exact) and rewrites the business's
rows in the query tables (numbers, operators, prompts, schedules, block rules) in the same
transaction. Applying an equal business again creates nothing (idempotent: same digest).

Routing needs the configuration synchronously: :meth:`~BusinessStore.version_for` answers from
memory with a :class:`~mediasrv.calls.business.NumberVersion` the call keeps to its end; an
apply in this process refreshes the memory at once, an apply by another process (the CLI) is
seen by :meth:`~BusinessStore.refresh`, which the server calls periodically (one cheap query).
Round-robin pointers (:meth:`~BusinessStore.next_rotation`) are counted in memory and written
behind (one upsert task per burst; :meth:`~BusinessStore.close` writes what is left), so they
survive a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite

from mediasrv.business_file import dump_business, load_business_text
from mediasrv.calls.business import (
    Blocklist,
    BlockRule,
    Business,
    MatchKind,
    NumberVersion,
    OperatorKind,
)
from mediasrv.config import ConfigError, to_e164
from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated

__all__ = [
    "BUSINESS_MIGRATIONS",
    "ApplyResult",
    "BusinessConflict",
    "BusinessInfo",
    "BusinessStore",
    "MemoryBusinessStore",
    "NumberInfo",
    "SqliteBusinessStore",
    "VersionInfo",
    "business_document",
]

log = logging.getLogger(__name__)


ROTATION_FLUSH_DELAY = 0.25  # seconds: round-robin pointer advances written together


class BusinessConflict(ValueError):
    """The apply would take a tracking number away from another business."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    version: int  # the business's version after the apply
    created: bool  # False: the same configuration was already the current one


@dataclass(frozen=True, slots=True)
class BusinessInfo:
    slug: str
    name: str
    version: int
    numbers: int
    applied_at: float


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    slug: str
    digest: str
    applied_at: float
    source: str  # where it came from: a file path, "seed:<config file>", "api"


@dataclass(frozen=True, slots=True)
class NumberInfo:
    number: str
    business: str
    medium: str
    campaign: str
    version: int


class BusinessStore(Protocol):
    """What every backend provides (and the conformance suite checks)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def apply(self, business: Business, source: str = "") -> ApplyResult:
        """Store ``business`` as its new current version unless it equals the current one.
        Raises :class:`BusinessConflict` if one of its numbers belongs to another business."""
        ...

    async def get(self, slug: str, version: int | None = None) -> Business | None:
        """The current (or the given) version of a business."""
        ...

    async def export(self, slug: str, version: int | None = None) -> str | None:
        """The business file text of the current (or given) version."""
        ...

    async def businesses(self) -> list[BusinessInfo]: ...

    async def versions(self, slug: str) -> list[VersionInfo]: ...

    async def numbers(self, business: str | None = None) -> list[NumberInfo]: ...

    async def set_global_blocklist(self, blocklist: Blocklist) -> None: ...

    def global_blocklist(self) -> Blocklist: ...

    def version_for(self, number: str) -> NumberVersion | None:
        """Synchronous, from memory: the current version of a dialled number's config."""
        ...

    def next_rotation(self, number_id: str, n: int) -> int:
        """Round-robin start index in ``range(n)``; persisted behind."""
        ...

    def peek_rotation(self, number_id: str, n: int) -> int:
        """The index the next call would get, without advancing (dry runs)."""
        ...

    async def refresh(self) -> bool:
        """Reload the memory if another process applied a change; True when it did."""
        ...

    async def flush(self) -> None:
        """Write pending round-robin pointers now."""
        ...


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def business_document(business: Business) -> tuple[str, str]:
    """The business file text of ``business`` and its digest, validated as a file is: a
    business built in code (the seed, the API) meets the same rules as one read from a file.
    Raises :class:`~mediasrv.config.ConfigError` (or ValueError if it does not round-trip)."""
    text = dump_business(business)
    if load_business_text(text, f"<business {business.slug}>") != business:
        raise ValueError(f"business {business.slug!r} does not survive its own export")
    return text, digest_of(text)


def _number_keys(number: str) -> list[str]:
    """A dialled number as routing may see it: E.164 first, then as written."""
    e164 = to_e164(number)
    return [e164, number] if e164 and e164 != number else [number]


class _Core:
    """The in-memory part every backend shares: the number index and rotation counters."""

    def __init__(self) -> None:
        self._by_number: dict[str, NumberVersion] = {}
        self._current: dict[str, tuple[int, Business]] = {}
        self._global = Blocklist()
        self._rotations: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._flush_task: asyncio.Task[None] | None = None

    def _install(self, current: dict[str, tuple[int, Business]], global_: Blocklist) -> None:
        """Replace the memory in one assignment each: a lookup sees the old or the new."""
        index: dict[str, NumberVersion] = {}
        for version, business in current.values():
            for num in business.numbers:
                index[num.number] = NumberVersion(version, business, num, global_)
        self._current, self._global, self._by_number = dict(current), global_, index

    def version_for(self, number: str) -> NumberVersion | None:
        for key in _number_keys(number):
            found = self._by_number.get(key)
            if found is not None:
                return found
        return None

    def global_blocklist(self) -> Blocklist:
        return self._global

    def _owner_conflicts(self, business: Business) -> list[str]:
        clashes = []
        for num in business.numbers:
            owner = self._by_number.get(num.number)
            if owner is not None and owner.business.slug != business.slug:
                clashes.append(f"{num.number} belongs to business {owner.business.slug!r}")
        return clashes

    def next_rotation(self, number_id: str, n: int) -> int:
        if n <= 0:
            raise ValueError(f"next_rotation needs n >= 1, got {n}")
        counter = self._rotations.get(number_id, 0)
        self._rotations[number_id] = counter + 1
        self._dirty.add(number_id)
        self._schedule_flush()
        return counter % n

    def peek_rotation(self, number_id: str, n: int) -> int:
        if n <= 0:
            raise ValueError(f"peek_rotation needs n >= 1, got {n}")
        return self._rotations.get(number_id, 0) % n

    def _schedule_flush(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): close() or flush() writes it
        self._flush_task = loop.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        # Coalesce: one write per ROTATION_FLUSH_DELAY however many calls advanced a pointer
        # (a write per call was 8 % of the server's CPU at 200 calls/s, bench/RESULTS.md).
        await asyncio.sleep(ROTATION_FLUSH_DELAY)
        try:
            await self.flush()
        except Exception:  # the pointer stays dirty; the next call or close() retries
            log.exception("could not persist round-robin pointers")

    async def flush(self) -> None:
        while self._dirty:
            batch = {key: self._rotations[key] for key in self._dirty}
            self._dirty.clear()
            try:
                await self._write_rotations(batch)
            except BaseException:
                self._dirty.update(batch)
                raise

    async def _write_rotations(self, batch: dict[str, int]) -> None:
        raise NotImplementedError

    async def _drain_flush(self) -> None:
        task = self._flush_task
        if task is not None and not task.done():
            await asyncio.wait([task])
        await self.flush()


# --------------------------------------------------------------------------- in memory


class MemoryBusinessStore(_Core):
    """The interface without I/O: for unit tests of call flows and as the suite's reference."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._versions: dict[int, tuple[VersionInfo, str]] = {}
        self._saved_rotations: dict[str, int] = {}

    async def open(self) -> None:
        self._install(self._current, self._global)

    async def close(self) -> None:
        await self._drain_flush()

    async def apply(self, business: Business, source: str = "") -> ApplyResult:
        text, digest = business_document(business)
        current = self._current.get(business.slug)
        if current is not None and self._versions[current[0]][0].digest == digest:
            return ApplyResult(current[0], False)
        clashes = self._owner_conflicts(business)
        if clashes:
            raise BusinessConflict("; ".join(clashes))
        version = max(self._versions, default=0) + 1
        info = VersionInfo(version, business.slug, digest, self._clock(), source)
        self._versions[version] = (info, text)
        self._install({**self._current, business.slug: (version, business)}, self._global)
        return ApplyResult(version, True)

    async def get(self, slug: str, version: int | None = None) -> Business | None:
        text = await self.export(slug, version)
        return load_business_text(text, f"<version of {slug}>") if text is not None else None

    async def export(self, slug: str, version: int | None = None) -> str | None:
        if version is None:
            current = self._current.get(slug)
            if current is None:
                return None
            version = current[0]
        found = self._versions.get(version)
        return found[1] if found is not None and found[0].slug == slug else None

    async def businesses(self) -> list[BusinessInfo]:
        return sorted(
            (
                BusinessInfo(b.slug, b.name, v, len(b.numbers), self._versions[v][0].applied_at)
                for v, b in self._current.values()
            ),
            key=lambda i: i.slug,
        )

    async def versions(self, slug: str) -> list[VersionInfo]:
        return [info for info, _ in self._versions.values() if info.slug == slug]

    async def numbers(self, business: str | None = None) -> list[NumberInfo]:
        out = [
            NumberInfo(n.number, b.slug, n.medium, n.campaign, v)
            for v, b in self._current.values()
            for n in b.numbers
            if business is None or b.slug == business
        ]
        return sorted(out, key=lambda i: i.number)

    async def set_global_blocklist(self, blocklist: Blocklist) -> None:
        self._install(self._current, blocklist)

    async def refresh(self) -> bool:
        return False  # one process: every change is already in memory

    async def _write_rotations(self, batch: dict[str, int]) -> None:
        self._saved_rotations.update(batch)


# --------------------------------------------------------------------------- SQLite


BUSINESS_MIGRATIONS: list[Migration] = [
    # 1: issue 10 (business configuration as data)
    [
        """
        CREATE TABLE business_versions (
            version    INTEGER PRIMARY KEY AUTOINCREMENT,
            business   TEXT NOT NULL,
            digest     TEXT NOT NULL,
            document   TEXT NOT NULL,
            applied_at REAL NOT NULL,
            source     TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX business_versions_business ON business_versions (business, version)",
        """
        CREATE TABLE businesses (
            slug             TEXT PRIMARY KEY,
            name             TEXT NOT NULL,
            time_zone        TEXT NOT NULL,
            duplicate_window REAL NOT NULL,
            version          INTEGER NOT NULL REFERENCES business_versions (version)
        )
        """,
        """
        CREATE TABLE tracking_numbers (
            number             TEXT PRIMARY KEY,
            business           TEXT NOT NULL REFERENCES businesses (slug),
            medium             TEXT NOT NULL,
            campaign           TEXT NOT NULL,
            labels             TEXT NOT NULL,
            record             TEXT NOT NULL,
            valid_call_seconds REAL NOT NULL,
            version            INTEGER NOT NULL
        )
        """,
        "CREATE INDEX tracking_numbers_business ON tracking_numbers (business)",
        """
        CREATE TABLE operators (
            business TEXT NOT NULL REFERENCES businesses (slug),
            name     TEXT NOT NULL,
            kind     TEXT NOT NULL,
            target   TEXT NOT NULL,
            trunk    TEXT NOT NULL,
            groups   TEXT NOT NULL,
            wrap_up  REAL NOT NULL,
            PRIMARY KEY (business, name)
        )
        """,
        """
        CREATE TABLE prompts (
            business TEXT NOT NULL REFERENCES businesses (slug),
            name     TEXT NOT NULL,
            file     TEXT NOT NULL,
            text     TEXT NOT NULL,
            PRIMARY KEY (business, name)
        )
        """,
        """
        CREATE TABLE schedules (
            business  TEXT NOT NULL REFERENCES businesses (slug),
            name      TEXT NOT NULL,
            holidays  TEXT NOT NULL,
            time_zone TEXT NOT NULL,
            PRIMARY KEY (business, name)
        )
        """,
        """
        CREATE TABLE block_rules (
            scope    TEXT NOT NULL,
            business TEXT NOT NULL DEFAULT '',
            number   TEXT NOT NULL DEFAULT '',
            kind     TEXT NOT NULL,
            value    TEXT NOT NULL,
            position INTEGER NOT NULL
        )
        """,
        "CREATE INDEX block_rules_owner ON block_rules (scope, business, number)",
        """
        CREATE TABLE flows (
            number   TEXT PRIMARY KEY,
            business TEXT NOT NULL,
            version  INTEGER NOT NULL,
            start    TEXT NOT NULL,
            schedule TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE rotations (
            rotation TEXT PRIMARY KEY,
            counter  INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE business_store_state (
            key   TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        )
        """,
    ],
]

_GENERATION = "generation"  # bumped by every change: other processes' refresh() compares it


class SqliteBusinessStore(_Core):
    """The embedded backend: tables in the server's SQLite file (WAL)."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = Synchronous.FULL,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self._clock = clock
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._generation = -1
        self._lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("SqliteBusinessStore is not open")
        return self._db

    async def open(self) -> None:
        self._db = await connect_migrated(
            self.path, "business", BUSINESS_MIGRATIONS, self._synchronous
        )
        async with self.db.execute("SELECT rotation, counter FROM rotations") as cur:
            self._rotations = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
        await self._reload()

    async def close(self) -> None:
        if self._db is None:
            return
        try:
            await self._drain_flush()
        finally:
            await self._db.close()
            self._db = None

    async def _read_generation(self) -> int:
        async with self.db.execute(
            "SELECT value FROM business_store_state WHERE key = ?", (_GENERATION,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _reload(self) -> None:
        generation = await self._read_generation()
        current: dict[str, tuple[int, Business]] = {}
        async with self.db.execute(
            "SELECT b.slug, v.version, v.document FROM businesses b "
            "JOIN business_versions v ON v.version = b.version"
        ) as cur:
            rows = await cur.fetchall()
        for slug, version, document in rows:
            try:
                business = load_business_text(str(document), f"<{slug} v{version}>")
            except ConfigError as exc:  # stored by an older, laxer mediasrv: keep routing the rest
                log.error(
                    "stored business %r version %s no longer validates: %s; %s",
                    slug, version, exc,
                    "keeping the version loaded before" if slug in self._current else "not routed",
                )  # fmt: skip
                if slug in self._current:
                    current[str(slug)] = self._current[str(slug)]
                continue
            current[str(slug)] = (int(version), business)
        async with self.db.execute(
            "SELECT kind, value FROM block_rules WHERE scope = 'global' ORDER BY position"
        ) as cur:
            rules = tuple(BlockRule(MatchKind(str(k)), str(v)) for k, v in await cur.fetchall())
        self._install(current, Blocklist(rules))
        self._generation = generation

    async def refresh(self) -> bool:
        if await self._read_generation() == self._generation:
            return False
        async with self._lock:
            await self._reload()
        return True

    async def _bump(self) -> None:
        await self.db.execute(
            "INSERT INTO business_store_state (key, value) VALUES (?, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = value + 1",
            (_GENERATION,),
        )

    async def apply(self, business: Business, source: str = "") -> ApplyResult:
        text, digest = business_document(business)
        async with self._lock:
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await self._apply_locked(business, text, digest, source)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await self._reload()
        return result

    async def _apply_locked(
        self, business: Business, text: str, digest: str, source: str
    ) -> ApplyResult:
        db = self.db
        async with db.execute(
            "SELECT v.version, v.digest FROM businesses b "
            "JOIN business_versions v ON v.version = b.version WHERE b.slug = ?",
            (business.slug,),
        ) as cur:
            row = await cur.fetchone()
        if row is not None and row[1] == digest:
            return ApplyResult(int(row[0]), False)
        clashes = await self._conflicts(business)
        if clashes:
            raise BusinessConflict("; ".join(clashes))
        async with db.execute(
            "INSERT INTO business_versions (business, digest, document, applied_at, source) "
            "VALUES (?, ?, ?, ?, ?)",
            (business.slug, digest, text, self._clock(), source),
        ) as cur:
            version = int(cur.lastrowid or 0)
        await self._write_rows(business, version)
        await self._bump()
        return ApplyResult(version, True)

    async def _conflicts(self, business: Business) -> list[str]:
        numbers = [n.number for n in business.numbers]
        if not numbers:
            return []
        marks = ",".join("?" * len(numbers))
        async with self.db.execute(
            f"SELECT number, business FROM tracking_numbers WHERE number IN ({marks}) "
            "AND business != ?",
            (*numbers, business.slug),
        ) as cur:
            rows = await cur.fetchall()
        return [f"{n} belongs to business {b!r}" for n, b in rows]

    async def _write_rows(self, b: Business, version: int) -> None:
        db = self.db
        for table in ("tracking_numbers", "operators", "prompts", "schedules", "flows"):
            await db.execute(f"DELETE FROM {table} WHERE business = ?", (b.slug,))
        await db.execute("DELETE FROM block_rules WHERE business = ?", (b.slug,))
        await db.execute(
            "INSERT INTO businesses (slug, name, time_zone, duplicate_window, version) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (slug) DO UPDATE SET name = excluded.name, "
            "time_zone = excluded.time_zone, duplicate_window = excluded.duplicate_window, "
            "version = excluded.version",
            (b.slug, b.name, b.time_zone, b.duplicate_window, version),
        )
        await db.executemany(
            "INSERT INTO tracking_numbers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (n.number, b.slug, n.medium, n.campaign, json.dumps(list(n.labels)),
                 n.record.value, n.valid_call_seconds, version)
                for n in b.numbers
            ],
        )  # fmt: skip
        await db.executemany(
            "INSERT INTO flows VALUES (?, ?, ?, ?, ?)",
            [
                (n.number, b.slug, version, n.flow.start.kind.value, n.flow.hours.schedule)
                for n in b.numbers
            ],
        )
        await db.executemany(
            "INSERT INTO operators VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    b.slug,
                    o.name,
                    _kind(o.kind),
                    o.target,
                    o.trunk,
                    json.dumps(list(o.groups)),
                    o.wrap_up,
                )
                for o in b.operators
            ],
        )
        await db.executemany(
            "INSERT INTO prompts VALUES (?, ?, ?, ?)",
            [(b.slug, p.name, p.file, p.text) for p in b.prompts],
        )
        await db.executemany(
            "INSERT INTO schedules VALUES (?, ?, ?, ?)",
            [(b.slug, s.name, s.holidays.value, s.time_zone) for s in b.schedules],
        )
        rows = _rule_rows("business", b.slug, "", b.blocklist.rules)
        for n in b.numbers:
            rows += _rule_rows("number", b.slug, n.number, n.blocklist.rules)
        await db.executemany("INSERT INTO block_rules VALUES (?, ?, ?, ?, ?, ?)", rows)

    async def set_global_blocklist(self, blocklist: Blocklist) -> None:
        async with self._lock:
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute("DELETE FROM block_rules WHERE scope = 'global'")
                await db.executemany(
                    "INSERT INTO block_rules VALUES (?, ?, ?, ?, ?, ?)",
                    _rule_rows("global", "", "", blocklist.rules),
                )
                await self._bump()
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await self._reload()

    async def get(self, slug: str, version: int | None = None) -> Business | None:
        if version is None and slug in self._current:
            return self._current[slug][1]
        text = await self.export(slug, version)
        return load_business_text(text, f"<{slug} v{version}>") if text is not None else None

    async def export(self, slug: str, version: int | None = None) -> str | None:
        if version is None:
            sql = (
                "SELECT v.document FROM businesses b JOIN business_versions v "
                "ON v.version = b.version WHERE b.slug = ?"
            )
            params: tuple[object, ...] = (slug,)
        else:
            sql = "SELECT document FROM business_versions WHERE business = ? AND version = ?"
            params = (slug, version)
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def businesses(self) -> list[BusinessInfo]:
        async with self.db.execute(
            "SELECT b.slug, b.name, b.version, "
            "(SELECT count(*) FROM tracking_numbers n WHERE n.business = b.slug), v.applied_at "
            "FROM businesses b JOIN business_versions v ON v.version = b.version ORDER BY b.slug"
        ) as cur:
            rows = await cur.fetchall()
        return [BusinessInfo(str(s), str(n), int(v), int(c), float(a)) for s, n, v, c, a in rows]

    async def versions(self, slug: str) -> list[VersionInfo]:
        async with self.db.execute(
            "SELECT version, business, digest, applied_at, source FROM business_versions "
            "WHERE business = ? ORDER BY version",
            (slug,),
        ) as cur:
            rows = await cur.fetchall()
        return [VersionInfo(int(v), str(b), str(d), float(a), str(s)) for v, b, d, a, s in rows]

    async def numbers(self, business: str | None = None) -> list[NumberInfo]:
        sql = "SELECT number, business, medium, campaign, version FROM tracking_numbers"
        params: tuple[object, ...] = ()
        if business is not None:
            sql, params = sql + " WHERE business = ?", (business,)
        async with self.db.execute(sql + " ORDER BY number", params) as cur:
            rows = await cur.fetchall()
        return [NumberInfo(str(n), str(b), str(m), str(c), int(v)) for n, b, m, c, v in rows]

    async def _write_rotations(self, batch: dict[str, int]) -> None:
        if self._db is None:
            return
        async with self._lock:  # never inside an apply's transaction
            db = self.db
            await db.execute("BEGIN IMMEDIATE")  # one commit (one fsync) for the whole batch
            try:
                await db.executemany(
                    "INSERT INTO rotations (rotation, counter) VALUES (?, ?) "
                    "ON CONFLICT (rotation) DO UPDATE SET counter = max(counter, excluded.counter)",
                    list(batch.items()),
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise


def _kind(kind: OperatorKind) -> str:
    return kind.value


def _rule_rows(
    scope: str, business: str, number: str, rules: Iterable[BlockRule]
) -> list[tuple[str, str, str, str, str, int]]:
    return [(scope, business, number, r.kind.value, r.value, i) for i, r in enumerate(rules)]

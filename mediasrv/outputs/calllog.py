"""The call log (F13): one row per call, embedded SQLite (aiosqlite, WAL) by default.

:class:`CallLog` is the interface the rest of the server uses; :class:`CallLogStore` is the
SQLite implementation. A PostgreSQL backend for scale-out (F30) implements the same Protocol.

Durability: :meth:`CallLogStore.record_call` returns only after the row is committed. Writes
from many call tasks are group-committed: whatever arrived while the previous transaction was
being written goes into the next one, so a burst of hangups costs one fsync, not one each.
Reads use a second connection and never see a half-written batch (WAL snapshot).

Crashes (issue 8, finding 6): a call's row is written ``in-progress`` when it starts and again
when it is answered (:meth:`CallLogStore.record_live`, before the caller's 200), and the
periodic checkpoint stamps ``last_seen`` on every live row (:meth:`checkpoint_live`, one
statement). The next start closes the rows a crash left in progress at their last sign of
life (:meth:`mark_unfinished`): answered calls stay answered, with end and talk time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import aiosqlite

from mediasrv.calls.disposition import Disposition
from mediasrv.outputs.sqlite import Migration, Synchronous, connect, migrate

__all__ = [
    "CALLS_MIGRATIONS",
    "CALL_COLUMNS",
    "CALL_RECORD_FIELDS",
    "FLAG_FILTERS",
    "QUERY_FILTERS",
    "BadCursor",
    "CallLog",
    "CallLogStore",
    "CallQuery",
    "CallRecord",
    "CutOff",
    "Disposition",
    "StoreClosed",
]

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    call_id: str  # our id for the call (uuid4 hex); the primary key
    inbound_call_id: str  # SIP Call-ID of the caller leg
    tracking_number: str
    caller_number: str  # E.164; the withheld kind (anonymous, payphone, unavailable); else as received
    caller_display: str = ""
    business: str = ""
    medium: str = ""
    campaign: str = ""
    start_time: float = 0.0  # unix seconds (INVITE received)
    answer_time: float | None = None
    end_time: float | None = None
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    disposition: Disposition = Disposition.FAILED
    sip_code: int = 0  # final SIP code the caller got (200 if answered)
    end_reason: str = ""  # "caller-bye" | "operator-bye" | "cancel" | "no-rtp" | ...
    operator_uri: str = ""  # who answered
    attempts: list[dict[str, object]] = field(default_factory=list)  # uri, code, start, end
    dtmf: str = ""  # digits seen, in order
    recording_path: str | None = None
    media_stats: dict[str, object] = field(default_factory=dict)
    analysis: dict[str, object] | None = None
    flags: list[str] = field(default_factory=list)
    # Caller attributes (issue 11, F14-F16): see mediasrv/calls/caller_id.py and
    # mediasrv/outputs/attributes.py. None = not decided (withheld callers are never matched).
    caller_kind: str = ""  # NumberKind value: fixed, mobile, ip, ..., anonymous, payphone
    caller_area: str = ""  # numbering area (番号区域) of a fixed line, e.g. 札幌
    prefecture_code: str = ""  # JIS X 0401, "01".."47"; "" when unknown
    prefecture: str = ""  # 北海道 ... or "unknown"
    caller_source: str = ""  # "from" | "p-asserted-identity" | "privacy"
    valid: bool | None = None  # F14: talk seconds from the bridge >= the number's threshold
    duplicate: bool | None = None  # F15: same caller, same business, within the window
    first_time: bool | None = None  # no earlier call from this caller to this business
    repeat_count: int = 0  # earlier calls of this caller to this business within the window
    # -- issue 10 §6: the flow the call followed (plan interpreter; migration 'flow') --------
    flow_version: int | None = None  # the business configuration version the call ran
    flow_path: list[str] = field(default_factory=list)  # the steps, in order
    flow_rules: list[str] = field(default_factory=list)  # "blocklist=no", "hours:week=open"
    menu_choices: list[dict[str, object]] = field(default_factory=list)  # menu, digits, choice
    phases: dict[str, float | None] = field(default_factory=dict)  # received/answered/...
    hung_up_by: str = ""  # "caller" | "operator" | "system" | "" (calls/trace.py HungUpBy)
    # -- end issue 10 §6 ---------------------------------------------------------------------
    # issue 12 §5: a callback through a leased callback number: the call it calls back
    # (whose email showed the number); medium and campaign are that call's (migration 5).
    callback_of: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the HTTP API's representation of a call)."""
        d = asdict(self)
        d["disposition"] = self.disposition.value
        return d


class CallLog(Protocol):
    """What the server needs from a call log backend (SQLite now, PostgreSQL later)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def record_call(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None: ...

    async def record_final(
        self, rec: CallRecord, window: float, also: Sequence[SqlStatement] = ()
    ) -> None: ...

    async def get_call(self, call_id: str) -> CallRecord | None: ...

    async def list_calls(
        self,
        limit: int = 100,
        offset: int = 0,
        tracking_number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        disposition: Disposition | None = None,
        business: str | None = None,
    ) -> list[CallRecord]: ...

    async def update_analysis(
        self, call_id: str, analysis: dict[str, object], also: Sequence[SqlStatement] = ()
    ) -> None: ...

    async def record_live(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None: ...

    async def record_answer(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None: ...

    async def checkpoint_live(self, call_ids: Collection[str], now: float) -> int: ...

    async def mark_unfinished(self, end_reason: str = "server-restart") -> CutOff: ...

    async def count_calls(
        self,
        tracking_number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        disposition: Disposition | None = None,
        business: str | None = None,
    ) -> int: ...

    async def query_calls(self, query: CallQuery) -> tuple[list[CallRecord], str | None]: ...

    async def query_raw(self, query: CallQuery) -> tuple[list[tuple[Any, ...]], str | None]: ...

    async def count_query(self, query: CallQuery) -> int: ...

    def export_raw(
        self, query: CallQuery, limit: int, page: int = 5000
    ) -> AsyncIterator[list[tuple[Any, ...]]]: ...


# --------------------------------------------------------------------------- schema

_COLUMNS = tuple(CallRecord.__dataclass_fields__)
_JSON_DEFAULTS: dict[str, Callable[[], object]] = {
    "attempts": list,
    "media_stats": dict,
    "analysis": lambda: None,
    "flags": list,
    # issue 10 §6
    "flow_path": list,
    "flow_rules": list,
    "menu_choices": list,
    "phases": dict,
}
_JSON_COLUMNS = frozenset(_JSON_DEFAULTS)
CALL_COLUMNS = _COLUMNS
CALL_RECORD_FIELDS = _COLUMNS  # the API's call object: mediasrv/api/call_schema.py
_START_INDEX = _COLUMNS.index("start_time")
_BOOL_COLUMNS = frozenset(("valid", "duplicate", "first_time"))

CALLS_MIGRATIONS: list[Migration] = [
    # 1: the first call log (issue 2, item 8)
    [
        """
        CREATE TABLE calls (
            call_id         TEXT PRIMARY KEY,
            inbound_call_id TEXT NOT NULL,
            tracking_number TEXT NOT NULL,
            caller_number   TEXT NOT NULL,
            caller_display  TEXT NOT NULL DEFAULT '',
            business        TEXT NOT NULL DEFAULT '',
            medium          TEXT NOT NULL DEFAULT '',
            campaign        TEXT NOT NULL DEFAULT '',
            start_time      REAL NOT NULL,
            answer_time     REAL,
            end_time        REAL,
            ring_seconds    REAL NOT NULL DEFAULT 0,
            talk_seconds    REAL NOT NULL DEFAULT 0,
            disposition     TEXT NOT NULL,
            sip_code        INTEGER NOT NULL DEFAULT 0,
            end_reason      TEXT NOT NULL DEFAULT '',
            operator_uri    TEXT NOT NULL DEFAULT '',
            attempts        TEXT NOT NULL DEFAULT '[]',
            dtmf            TEXT NOT NULL DEFAULT '',
            recording_path  TEXT,
            media_stats     TEXT NOT NULL DEFAULT '{}',
            analysis        TEXT,
            flags           TEXT NOT NULL DEFAULT '[]'
        )
        """,
        "CREATE INDEX calls_start ON calls (start_time)",
        "CREATE INDEX calls_tracking_start ON calls (tracking_number, start_time)",
        "CREATE INDEX calls_disposition_start ON calls (disposition, start_time)",
    ],
    # 2: the last moment a live call was known alive (issue 8, finding 6). Stamped on every
    # in-progress row by the periodic checkpoint; a call cut off by a crash ends there.
    # Not a CallRecord field: it is the store's own bookkeeping, not part of the API's row.
    ["ALTER TABLE calls ADD COLUMN last_seen REAL"],
    # 3: caller attributes and what the reports and duplicate checks read (issue 11).
    # Indexes chosen by measurement on 1,000,000 rows (bench/reports.py, bench/RESULTS.md):
    # calls_business_caller_start serves the duplicate / first-time lookups (F15);
    # calls_start_id replaces calls_start: newest-first keyset pages need no sort;
    # calls_report covers every column a report reads (no table lookups: 3x faster);
    # medium / prefecture / business + start: a filtered page reads only its own rows.
    [
        "ALTER TABLE calls ADD COLUMN caller_kind TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN caller_area TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN prefecture_code TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN prefecture TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN caller_source TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN valid INTEGER",
        "ALTER TABLE calls ADD COLUMN duplicate INTEGER",
        "ALTER TABLE calls ADD COLUMN first_time INTEGER",
        "ALTER TABLE calls ADD COLUMN repeat_count INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX calls_business_caller_start ON calls (business, caller_number, start_time)",
        "CREATE INDEX calls_start_id ON calls (start_time, call_id)",
        "DROP INDEX calls_start",
        "CREATE INDEX calls_report ON calls (start_time, business, disposition, medium, "
        "campaign, tracking_number, operator_uri, prefecture_code, prefecture, valid, "
        "first_time, talk_seconds, ring_seconds)",
        "CREATE INDEX calls_medium_start ON calls (medium, start_time, call_id)",
        "CREATE INDEX calls_pref_start ON calls (prefecture_code, start_time, call_id)",
        "CREATE INDEX calls_business_start ON calls (business, start_time, call_id)",
    ],
    # 4 (issue 10 §6): the flow a call followed, from the plan interpreter's trace
    # (outputs/flow_records.py). Rows of the one-flow interpreter keep the defaults.
    [
        "ALTER TABLE calls ADD COLUMN flow_version INTEGER",
        "ALTER TABLE calls ADD COLUMN flow_path TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN flow_rules TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN menu_choices TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN phases TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE calls ADD COLUMN hung_up_by TEXT NOT NULL DEFAULT ''",
    ],
    # 5 (issue 12 §5): callbacks through a leased callback number name the call they call
    # back; the partial index finds a call's callbacks; the reports' covering index gains
    # the column (reports count callbacks: still no table lookups).
    [
        "ALTER TABLE calls ADD COLUMN callback_of TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX calls_callback_of ON calls (callback_of) WHERE callback_of != ''",
        "DROP INDEX calls_report",
        "CREATE INDEX calls_report ON calls (start_time, business, disposition, medium, "
        "campaign, tracking_number, operator_uri, prefecture_code, prefecture, valid, "
        "first_time, talk_seconds, ring_seconds, callback_of)",
    ],
]

# An upsert, not INSERT OR REPLACE: a replace deletes the row first and would reset the
# columns CallRecord does not carry (last_seen).
_UPSERT = (
    f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "call_id")
)
# A live row (in-progress) never overwrites a final one, whatever order the writes land in.
_UPSERT_LIVE = f"{_UPSERT} WHERE calls.disposition = '{Disposition.IN_PROGRESS.value}'"
# The answer of a call in progress: only what the answer changes (cheaper than the whole row).
_ANSWER_COLUMNS = (
    "answer_time",
    "sip_code",
    "operator_uri",
    "ring_seconds",
    "recording_path",
    "attempts",
)
_ANSWER = (
    f"UPDATE calls SET {', '.join(f'{c} = ?' for c in _ANSWER_COLUMNS)} "
    f"WHERE call_id = ? AND disposition = '{Disposition.IN_PROGRESS.value}'"
)
_CHECKPOINT = (
    "UPDATE calls SET last_seen = ? WHERE call_id IN (SELECT value FROM json_each(?)) "
    f"AND disposition = '{Disposition.IN_PROGRESS.value}'"
)
# Calls cut off by a crash (still in-progress at start). Every SET expression reads the row
# as it was before the update. The call ended at its last sign of life: the last checkpoint,
# or its answer or its start when that came later.
_CUT_OFF_END = "MAX(start_time, COALESCE(answer_time, start_time), COALESCE(last_seen, start_time))"
_FLAG_UNFINISHED = (
    "flags = CASE WHEN json_valid(flags) "
    "THEN json_insert(flags, '$[#]', 'unfinished') ELSE '[\"unfinished\"]' END"
)
_MARK_ANSWERED = (
    f"UPDATE calls SET disposition = '{Disposition.ANSWERED.value}', sip_code = 200, "
    f"end_time = {_CUT_OFF_END}, "
    f"talk_seconds = ROUND({_CUT_OFF_END} - answer_time, 3), "
    "ring_seconds = ROUND(MAX(0, answer_time - start_time), 3), "
    f"end_reason = ?, {_FLAG_UNFINISHED} "
    f"WHERE disposition = '{Disposition.IN_PROGRESS.value}' AND answer_time IS NOT NULL"
)
_MARK_FAILED = (
    f"UPDATE calls SET disposition = '{Disposition.FAILED.value}', "
    f"end_time = {_CUT_OFF_END}, talk_seconds = 0, "
    f"ring_seconds = ROUND({_CUT_OFF_END} - start_time, 3), "
    f"end_reason = ?, {_FLAG_UNFINISHED} "
    f"WHERE disposition = '{Disposition.IN_PROGRESS.value}' AND answer_time IS NULL"
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM calls"

# Duplicate / first-time / repeat count (F15), one SQL for the end of a call and for a
# recompute over a period, so both give the same answer. "Earlier" is by (start_time,
# call_id); the window is inclusive (a call exactly `window` seconds later is a repeat);
# a refused request (rejected) is not a call to the business; withheld callers
# (anonymous, payphone, unavailable) are never matched: duplicate 0, first_time NULL.
_WITHHELD_KINDS = "('anonymous', 'payphone', 'unavailable')"
_EARLIER = (
    "FROM calls AS p WHERE p.business = calls.business AND p.caller_number = calls.caller_number "
    "AND p.disposition != 'rejected' "
    "AND (p.start_time < calls.start_time "
    "OR (p.start_time = calls.start_time AND p.call_id < calls.call_id))"
)
_IN_WINDOW = f"{_EARLIER} AND p.start_time >= calls.start_time - :window"
_SET_REPEATS = (
    "UPDATE calls SET "
    f"repeat_count = CASE WHEN caller_kind IN {_WITHHELD_KINDS} THEN 0 "
    f"ELSE (SELECT COUNT(*) {_IN_WINDOW}) END, "
    f"duplicate = CASE WHEN caller_kind IN {_WITHHELD_KINDS} THEN 0 "
    f"ELSE EXISTS (SELECT 1 {_IN_WINDOW}) END, "
    f"first_time = CASE WHEN caller_kind IN {_WITHHELD_KINDS} THEN NULL "
    f"ELSE NOT EXISTS (SELECT 1 {_EARLIER}) END "
)
_REPEATS_OF_CALL = f"{_SET_REPEATS} WHERE call_id = :call_id"
_REPEATS_OF_PERIOD = (
    f"{_SET_REPEATS} WHERE business = :business AND start_time >= :since "
    f"AND start_time < :until AND disposition NOT IN "
    f"('rejected', '{Disposition.IN_PROGRESS.value}')"
)
# F14: answered and talked (from the bridge) at least the number's threshold.
_VALID_OF_PERIOD = (
    f"UPDATE calls SET valid = (disposition = '{Disposition.ANSWERED.value}' "
    "AND talk_seconds >= :threshold) "
    "WHERE tracking_number = :number AND start_time >= :since AND start_time < :until "
    f"AND disposition != '{Disposition.IN_PROGRESS.value}'"
)


def _named(sql: str, params: dict[str, object]) -> SqlStatement:
    """A statement with named parameters (``:name``) as a positional one."""
    names = re.findall(r":([a-z_]+)", sql)
    return re.sub(r":[a-z_]+", "?", sql), tuple(params[n] for n in names)


def _to_row(rec: CallRecord) -> tuple[object, ...]:
    out: list[object] = []
    for name in _COLUMNS:
        value = getattr(rec, name)
        if name == "disposition":
            value = Disposition(value).value
        elif name in _JSON_COLUMNS:
            # default=str: an odd value (a Path, an enum) is stored as text, never refused
            value = None if value is None else json.dumps(value, default=str, ensure_ascii=False)
        out.append(value)
    return tuple(out)


def _from_row(row: Sequence[Any]) -> CallRecord:
    values: dict[str, Any] = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_COLUMNS:
        raw = values[name]
        if raw is None:
            continue
        try:
            values[name] = json.loads(raw)
        except ValueError:
            log.warning("call %s: unreadable JSON in column %s", values["call_id"], name)
            values[name] = _JSON_DEFAULTS[name]()
    for name in _BOOL_COLUMNS:
        if values[name] is not None:
            values[name] = bool(values[name])
    try:
        values["disposition"] = Disposition.parse(values["disposition"])
    except ValueError:
        log.warning("call %s: unknown disposition %r", values["call_id"], values["disposition"])
        values["disposition"] = Disposition.FAILED
    return CallRecord(**values)


def _where(
    tracking_number: str | None,
    since: float | None,
    until: float | None,
    disposition: Disposition | None,
    business: str | None = None,
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if business is not None:  # issue 12 §4: a business token sees its own calls only
        clauses.append("business = ?")
        params.append(business)
    if tracking_number is not None:
        clauses.append("tracking_number = ?")
        params.append(tracking_number)
    if since is not None:
        clauses.append("start_time >= ?")
        params.append(since)
    if until is not None:
        clauses.append("start_time < ?")
        params.append(until)
    if disposition is not None:
        clauses.append("disposition = ?")
        params.append(Disposition(disposition).value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# --------------------------------------------------------------------------- queries

# Filters of a call-log query (issue 11, item 5): parameter name -> column.
QUERY_FILTERS = (
    "tracking_number",
    "business",
    "medium",
    "campaign",
    "operator_uri",
    "caller_number",
    "caller_kind",
    "prefecture_code",
    "disposition",
)
FLAG_FILTERS = ("valid", "duplicate", "first_time")


class BadCursor(ValueError):
    """A pagination cursor that this server did not make."""


def encode_cursor(start_time: float, call_id: str) -> str:
    raw = json.dumps([start_time, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, call_id = json.loads(raw)
        return float(start), str(call_id)
    except (ValueError, TypeError) as e:
        raise BadCursor(f"cursor: not a cursor from this server ({e})") from None


@dataclass(frozen=True)
class CallQuery:
    """A page of the call log, newest first: equality filters, a period, a cursor."""

    equals: tuple[tuple[str, str], ...] = ()  # (column from QUERY_FILTERS, value)
    flags: tuple[tuple[str, bool], ...] = ()  # (column from FLAG_FILTERS, value)
    since: float | None = None
    until: float | None = None
    after: tuple[float, str] | None = None  # keyset cursor: rows older than this one
    limit: int = 100
    offset: int = 0  # the older paging; a cursor is cheaper on a large log
    label: str | None = None  # the analysis's outcome label (issue 13 §2: the console filters on it)

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in self.equals:
            if column not in QUERY_FILTERS:
                raise ValueError(f"not a filter: {column}")
            clauses.append(f"{column} = ?")
            params.append(value)
        for column, flag in self.flags:
            if column not in FLAG_FILTERS:
                raise ValueError(f"not a flag filter: {column}")
            clauses.append(f"{column} = ?")
            params.append(int(flag))
        if self.label is not None:
            clauses.append("json_extract(analysis, '$.outcome.label') = ?")
            params.append(self.label)
        if self.since is not None:
            clauses.append("start_time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("start_time < ?")
            params.append(self.until)
        if self.after is not None:
            # The plain bound lets SQLite start the index scan at the cursor (a row-value
            # comparison alone is not used as a bound: every page would rescan the ones before).
            clauses.append("start_time <= ? AND (start_time, call_id) < (?, ?)")
            params.extend((self.after[0], *self.after))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# --------------------------------------------------------------------------- store


SqlStatement = tuple[str, tuple[object, ...]]


@dataclass
class _Write:
    sql: str
    params: tuple[object, ...]
    done: asyncio.Future[int]  # resolves to the statement's rowcount once committed
    # Statements committed in the same transaction as this one (the webhook outbox events
    # the change causes: outputs/outbox.event_statements): both land, or neither.
    also: tuple[SqlStatement, ...] = ()
    # Statements that are part of the row itself (its F15 attributes), run right after it
    # and before ``also`` (the events read what they computed); kept if the events fail.
    then: tuple[SqlStatement, ...] = ()


def _consume(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled():
        fut.exception()


class CutOff(NamedTuple):
    """Calls found cut off by a crash at start: answered ones stay answered."""

    answered: int
    failed: int

    @property
    def total(self) -> int:
        return self.answered + self.failed


class StoreClosed(RuntimeError):
    """The store is not open (never opened, or closed)."""


def _commit_batch(
    conn: sqlite3.Connection,
    batch: list[tuple[str, tuple[object, ...], tuple[SqlStatement, ...]]],
) -> list[int]:
    """One transaction for the whole batch (runs on the writer thread); the rowcounts of the
    main statements (the ``then`` and ``also`` statements ride along, in that order, in the
    same transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        counts = []
        for sql, params, extras in batch:
            counts.append(conn.execute(sql, params).rowcount)
            for extra_sql, extra_params in extras:
                conn.execute(extra_sql, extra_params)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


class _BatchWriter:
    """The write connection, used only from its own thread: a batch costs ONE hop to that
    thread, not one per statement (measured under load: ~2x the rows per second of one
    aiosqlite round trip per statement, and far less event-loop time per row)."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor

    @classmethod
    async def open(cls, path: Path, synchronous: Synchronous) -> _BatchWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calllog-writer")

        def connect_writer() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {Synchronous(synchronous).value}")
            except BaseException:
                conn.close()
                raise
            return conn

        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, connect_writer)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor)

    async def commit(self, batch: list[_Write]) -> list[int]:
        work = [(item.sql, item.params, item.then + item.also) for item in batch]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _commit_batch, self._conn, work)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)


class CallLogStore:
    """The SQLite call log: ``<data_dir>/mediasrv.db``, WAL, versioned schema."""

    def __init__(self, path: Path, synchronous: Synchronous = Synchronous.FULL) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._writer: _BatchWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        """Create the directory and file, switch to WAL, run pending migrations."""
        if self._writer is not None:
            return
        migrator = await connect(self.path, self._synchronous)
        try:
            await migrate(migrator, "calls", CALLS_MIGRATIONS, self.path)
        finally:
            await migrator.close()
        writer = await _BatchWriter.open(self.path, self._synchronous)
        try:
            self._reader = await connect(self.path, self._synchronous)
        except BaseException:
            await writer.close()
            raise
        self._writer = writer
        self._closing = False

    async def close(self) -> None:
        """Commit whatever is queued, then close both connections."""
        self._closing = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        for conn in (self._writer, self._reader):
            if conn is not None:
                await conn.close()
        self._writer = self._reader = None

    # ---------------------------------------------------------------- writes

    async def record_call(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None:
        """Insert or replace the call's row; returns once the row is committed.

        ``also``: statements committed in the same transaction (the outbox events of the
        call's end), so a crash loses neither the row nor its events."""
        await self._write(_UPSERT, _to_row(rec), also)

    async def record_final(
        self, rec: CallRecord, window: float, also: Sequence[SqlStatement] = ()
    ) -> None:
        """The finished call's row, then its duplicate / first-time / repeat count within
        ``window`` seconds (F15), computed against the rows already stored (earlier calls
        still in progress count: their rows exist from their start), then ``also`` (its
        events, which read the computed attributes from the row:
        :func:`~mediasrv.outputs.call_events.repeats_from_row`). One transaction; returns
        once committed."""
        repeats = _named(_REPEATS_OF_CALL, {"window": window, "call_id": rec.call_id})
        await self._write(_UPSERT, _to_row(rec), also, then=(repeats,))

    async def recompute_repeats(
        self, business: str, since: float, until: float, window: float
    ) -> int:
        """Recompute F15 for the business's finished calls with ``since`` <= start < ``until``
        (after a window change); the same SQL as :meth:`record_final`. Returns rows updated."""
        params = {"business": business, "since": since, "until": until, "window": window}
        return await self._write_named(_REPEATS_OF_PERIOD, params)

    async def recompute_valid(
        self, tracking_number: str, since: float, until: float, threshold: float
    ) -> int:
        """Recompute F14 for one tracking number's finished calls in the period."""
        params = {"number": tracking_number, "since": since, "until": until, "threshold": threshold}
        return await self._write_named(_VALID_OF_PERIOD, params)

    async def set_caller_attributes(self, rows: Sequence[tuple[str, str, str, str, str]]) -> int:
        """(call_id, caller_kind, caller_area, prefecture_code, prefecture) for each row."""
        total = 0
        for call_id, kind, area, code, pref in rows:
            total += await self._write(
                "UPDATE calls SET caller_kind = ?, caller_area = ?, prefecture_code = ?, "
                "prefecture = ? WHERE call_id = ?",
                (kind, area, code, pref, call_id),
            )
        return total

    async def period_numbers(self, since: float, until: float) -> list[tuple[str, str]]:
        """The (business, tracking number) pairs with calls starting in the period."""
        async with self._read_conn().execute(
            "SELECT DISTINCT business, tracking_number FROM calls "
            "WHERE start_time >= ? AND start_time < ?",
            (since, until),
        ) as cur:
            return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]

    async def unclassified(self, since: float, until: float) -> list[tuple[str, str]]:
        """(call_id, caller_number) of rows written before callers were classified."""
        async with self._read_conn().execute(
            "SELECT call_id, caller_number FROM calls WHERE caller_kind = '' "
            "AND start_time >= ? AND start_time < ?",
            (since, until),
        ) as cur:
            return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]

    async def update_analysis(
        self, call_id: str, analysis: dict[str, object], also: Sequence[SqlStatement] = ()
    ) -> None:
        """Set the analysis results of a call; :class:`KeyError` if no such call."""
        blob = json.dumps(analysis, default=str, ensure_ascii=False)
        changed = await self._write(
            "UPDATE calls SET analysis = ? WHERE call_id = ?", (blob, call_id), also
        )
        if changed == 0:
            raise KeyError(call_id)

    async def record_live(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None:
        """Insert or update the row of a call in progress (at its start, at its answer).

        Never overwrites a row that is no longer in progress: the final row wins, whatever
        order the writes land in. Returns once committed (with ``also``, as record_call).
        """
        await self._write(_UPSERT_LIVE, _to_row(rec), also)

    async def record_answer(self, rec: CallRecord, also: Sequence[SqlStatement] = ()) -> None:
        """The call in progress was answered: set its answer columns (time, code, operator,
        ring time, recording, attempts). Its start row is queued before, so it is normally
        there; if not (its write failed), the whole live row is written. Returns once
        committed; never touches a row that is no longer in progress."""
        attempts = json.dumps(rec.attempts, default=str, ensure_ascii=False)
        params = (
            rec.answer_time,
            rec.sip_code,
            rec.operator_uri,
            rec.ring_seconds,
            rec.recording_path,
            attempts,
            rec.call_id,
        )  # in _ANSWER_COLUMNS order
        if await self._write(_ANSWER, params, also) == 0:
            await self.record_live(rec)

    async def checkpoint_live(self, call_ids: Collection[str], now: float) -> int:
        """Stamp ``last_seen = now`` on the in-progress rows of ``call_ids``: ONE statement
        whatever their number (the ids travel as one JSON array). Returns the rows stamped."""
        if not call_ids:
            return 0
        return await self._write(_CHECKPOINT, (now, json.dumps(list(call_ids))))

    async def mark_unfinished(self, end_reason: str = "server-restart") -> CutOff:
        """Close the calls left ``in-progress`` (the process died mid-call); run at start.

        Each ends at its last sign of life (the last checkpoint, or its answer or start when
        later). An answered call stays ``answered`` (code 200, talk time up to that end); an
        unanswered one becomes ``failed``: the server dropped it, the caller did not give up.
        Both get ``end_reason`` and the flag ``"unfinished"``; the others are untouched.
        """
        answered, failed = await asyncio.gather(
            self._write(_MARK_ANSWERED, (end_reason,)), self._write(_MARK_FAILED, (end_reason,))
        )
        return CutOff(answered, failed)

    async def _write(
        self,
        sql: str,
        params: tuple[object, ...],
        also: Sequence[SqlStatement] = (),
        then: Sequence[SqlStatement] = (),
    ) -> int:
        if self._writer is None or self._closing:
            raise StoreClosed(f"call log {self.path} is not open")
        future = asyncio.get_running_loop().create_future()
        item = _Write(sql, params, future, tuple(also), tuple(then))
        # A caller cancelled while waiting never reads the outcome; the error is logged by
        # _flush, so mark it retrieved instead of "Future exception was never retrieved".
        item.done.add_done_callback(_consume)
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="calllog-flush")
        # shield: a cancelled caller does not cancel the write; the row still lands.
        return await asyncio.shield(item.done)

    async def _write_named(self, sql: str, params: dict[str, object]) -> int:
        """:meth:`_write` with named parameters (``:name``), converted to positional ones."""
        return await self._write(*_named(sql, params))

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                counts = await self._commit(batch)
            except Exception:
                log.exception("call log batch of %d failed; retrying one by one", len(batch))
                for item in batch:
                    await self._commit_one(item)
                continue
            for item, count in zip(batch, counts, strict=True):
                if not item.done.done():
                    item.done.set_result(count)

    async def _commit(self, batch: list[_Write]) -> list[int]:
        assert self._writer is not None
        return await self._writer.commit(batch)

    async def _commit_one(self, item: _Write) -> None:
        try:
            (count,) = await self._commit([item])
        except Exception as e:
            if item.also and await self._commit_without_events(item, e):
                return
            log.error("call log write failed: %s", e, extra={"sql": item.sql.split(" ", 3)[:3]})
            if not item.done.done():
                item.done.set_exception(e)
        else:
            if not item.done.done():
                item.done.set_result(count)

    async def _commit_without_events(self, item: _Write, error: Exception) -> bool:
        """The call data must not be lost for its events: if the pair cannot commit (an
        outbox table missing, say), commit the call row alone and say loudly what was lost."""
        alone = _Write(item.sql, item.params, item.done, then=item.then)
        try:
            (count,) = await self._commit([alone])
        except Exception:
            return False
        log.error(
            "call log: %d outbox statements could not be committed with their call row and "
            "were dropped (%s); the row itself is stored",
            len(item.also),
            error,
        )
        if not item.done.done():
            item.done.set_result(count)
        return True

    # ---------------------------------------------------------------- reads

    def _read_conn(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreClosed(f"call log {self.path} is not open")
        return self._reader

    async def get_call(self, call_id: str) -> CallRecord | None:
        async with self._read_conn().execute(f"{_SELECT} WHERE call_id = ?", (call_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else _from_row(row)

    async def list_calls(
        self,
        limit: int = 100,
        offset: int = 0,
        tracking_number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        disposition: Disposition | None = None,
        business: str | None = None,
    ) -> list[CallRecord]:
        """Calls matching every given filter, newest first (``since`` <= start < ``until``)."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where, params = _where(tracking_number, since, until, disposition, business)
        sql = f"{_SELECT}{where} ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?"
        async with self._read_conn().execute(sql, (*params, limit, offset)) as cur:
            rows = await cur.fetchall()
        return [_from_row(r) for r in rows]

    async def query_calls(self, query: CallQuery) -> tuple[list[CallRecord], str | None]:
        """One page of calls and the cursor of the next page (None on the last page)."""
        where, params = query.where()
        sql = f"{_SELECT}{where} ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?"
        async with self._read_conn().execute(sql, (*params, query.limit + 1, query.offset)) as cur:
            rows = list(await cur.fetchall())
        calls = [_from_row(r) for r in rows[: query.limit]]
        more = len(rows) > query.limit and calls
        return calls, encode_cursor(calls[-1].start_time, calls[-1].call_id) if more else None

    async def query_raw(self, query: CallQuery) -> tuple[list[tuple[Any, ...]], str | None]:
        """:meth:`query_calls` as stored tuples in :data:`CALL_COLUMNS` order (CSV export:
        no per-row objects). The JSON columns are JSON text."""
        where, params = query.where()
        sql = f"{_SELECT}{where} ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?"
        async with self._read_conn().execute(sql, (*params, query.limit + 1, query.offset)) as cur:
            rows: list[tuple[Any, ...]] = [tuple(r) for r in await cur.fetchall()]
        page = rows[: query.limit]
        if len(rows) > query.limit and page:
            last = page[-1]
            return page, encode_cursor(last[_START_INDEX], last[0])
        return page, None

    async def count_query(self, query: CallQuery) -> int:
        """How many calls match the query's filters (its cursor and paging ignored)."""
        where, params = replace(query, after=None).where()
        async with self._read_conn().execute(f"SELECT COUNT(*) FROM calls{where}", params) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def export_raw(
        self, query: CallQuery, limit: int, page: int = 5000
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Pages of stored rows (as :meth:`query_raw`) for an export of up to ``limit`` rows,
        following the keyset cursor; the next page is fetched (on the reader's thread) while
        the caller encodes this one."""
        query = replace(query, limit=min(page, limit))
        pending = asyncio.ensure_future(self.query_raw(query))
        done = 0
        try:
            while True:
                rows, cursor = await pending
                rows = rows[: limit - done]
                done += len(rows)
                more = cursor is not None and done < limit
                if more:
                    assert cursor is not None
                    query = replace(
                        query, after=decode_cursor(cursor), offset=0, limit=min(page, limit - done)
                    )
                    pending = asyncio.ensure_future(self.query_raw(query))
                if rows:
                    yield rows
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    def read_connection(self) -> aiosqlite.Connection:
        """The read connection (reports run their aggregate queries on it)."""
        return self._read_conn()

    async def count_calls(
        self,
        tracking_number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        disposition: Disposition | None = None,
        business: str | None = None,
    ) -> int:
        where, params = _where(tracking_number, since, until, disposition, business)
        async with self._read_conn().execute(f"SELECT COUNT(*) FROM calls{where}", params) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

"""The durable webhook outbox (F21; issue "Integrator surface" §4) and its delivery worker.

Producers turn an event into SQL statements (:func:`event_statements`) and run them in the
SAME transaction as the state change that causes the event (the call log's write batch), so
a crash can lose neither and cannot send one without the other. The statements insert the
event with the next sequence number of its subject (a call), and one delivery row per
matching, enabled endpoint of the business.

:class:`WebhookDispatcher` claims due deliveries from the store with a lease and POSTs them
per the Standard Webhooks spec (:mod:`mediasrv.outputs.webhooks`):
- in order per subject and endpoint (only the oldest undelivered delivery of an order key is
  ever claimable; a later event of the same call waits while an earlier one is retried),
  in parallel across subjects;
- 2xx is success, redirects are not followed; a failure is retried on the spec's schedule with
  jitter, honouring ``Retry-After``; after the last try the delivery is ``dead`` (it can be
  replayed); ``410 Gone`` disables the endpoint;
- every attempt is logged (status, latency, an excerpt of the response);
- at-least-once: a delivery in flight when the process dies is sent again (same
  ``webhook-id``, which receivers use as the idempotency key) when its lease is released at
  the next start of the same node, or when the lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiosqlite

from mediasrv.outputs.mailer import Mailer, parse_mailto, template_for
from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated
from mediasrv.outputs.webhooks import (
    RETRY_SCHEDULE,
    SafeResolver,
    TargetRefused,
    check_literal_host,
    check_url,
    new_message_id,
    new_secret,
    next_delay,
    parse_retry_after,
    secret_key,
    signature_header,
)

__all__ = [
    "OUTBOX_MIGRATIONS",
    "Attempt",
    "Claim",
    "DeliveryHooks",
    "DeliveryState",
    "Endpoint",
    "Finish",
    "OutboxEvent",
    "OutboxStore",
    "OversizedEvent",
    "WebhookDispatcher",
    "event_statements",
]

log = logging.getLogger(__name__)

_BUSY_RETRIES = (0.05, 0.2, 1.0)
MAX_BODY = 20_000  # spec "Payload size": keep bodies under 20 kB, link to larger data
EXCERPT = 512  # bytes of a receiver's answer kept in the delivery log
SqlStatement = tuple[str, tuple[object, ...]]

OUTBOX_MIGRATIONS: list[Migration] = [
    # 1: endpoints, events, deliveries, the attempt log (issue 12 §4)
    [
        """
        CREATE TABLE webhook_endpoints (
            endpoint_id     TEXT PRIMARY KEY,
            business        TEXT NOT NULL,
            url             TEXT NOT NULL,
            secrets         TEXT NOT NULL,
            event_types     TEXT NOT NULL DEFAULT '*',
            enabled         INTEGER NOT NULL DEFAULT 1,
            disabled_reason TEXT,
            description     TEXT NOT NULL DEFAULT '',
            created_at      REAL NOT NULL
        )
        """,
        "CREATE INDEX webhook_endpoints_business ON webhook_endpoints (business, enabled)",
        """
        CREATE TABLE outbox_events (
            event_id    TEXT PRIMARY KEY,
            business    TEXT NOT NULL,
            subject     TEXT NOT NULL,
            seq         INTEGER NOT NULL,
            type        TEXT NOT NULL,
            data        TEXT NOT NULL,
            created_at  REAL NOT NULL,
            UNIQUE (subject, seq)
        )
        """,
        "CREATE INDEX outbox_events_business_time ON outbox_events (business, created_at)",
        """
        CREATE TABLE webhook_deliveries (
            delivery_id  INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id     TEXT NOT NULL REFERENCES outbox_events (event_id),
            endpoint_id  TEXT NOT NULL,
            order_key    TEXT NOT NULL,
            state        TEXT NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_at      REAL NOT NULL,
            lease_owner  TEXT,
            lease_until  REAL,
            last_status  INTEGER,
            last_error   TEXT,
            delivered_at REAL,
            UNIQUE (event_id, endpoint_id)
        )
        """,
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at)",
        """CREATE INDEX webhook_deliveries_order
           ON webhook_deliveries (order_key, state, delivery_id)""",
        """
        CREATE TABLE webhook_attempts (
            attempt_id       INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery_id      INTEGER NOT NULL,
            attempt          INTEGER NOT NULL,
            at               REAL NOT NULL,
            status           INTEGER,
            latency_ms       REAL NOT NULL,
            error            TEXT,
            response_excerpt TEXT
        )
        """,
        "CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt)",
    ],
]


# The callback number an email about a call shows instead of the caller's (issue 12 §5).
CallbackNumber = Callable[[Mapping[str, Any]], Awaitable[str | None]]


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # every scheduled try failed; replay puts it back


class OversizedEvent(ValueError):
    """An event body over 20 kB: send a link to the data instead."""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event to push: ``subject`` orders it (a call id: every event of one call arrives in
    the order it was written, numbered by ``data["sequence"]``)."""

    business: str
    subject: str
    type: str
    data: Mapping[str, Any]
    created_at: float
    event_id: str = field(default_factory=new_message_id)
    only_endpoint: str | None = None  # a test event goes to one endpoint


def _data_json(event: OutboxEvent) -> str:
    text = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_BODY - 200:
        raise OversizedEvent(
            f"{event.type} event for {event.subject} is {len(text.encode())} bytes; "
            f"webhook bodies stay under {MAX_BODY} bytes: link to the data"
        )
    return text


def event_statements(event: OutboxEvent) -> list[SqlStatement]:
    """The SQL that writes ``event`` and its deliveries; run it inside the transaction of the
    state change that causes the event (it takes the next sequence number of the subject)."""
    statements: list[SqlStatement] = [
        (
            "INSERT INTO outbox_events (event_id, business, subject, seq, type, data, created_at) "
            "VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox_events "
            "WHERE subject = ?), ?, ?, ?)",
            (
                event.event_id,
                event.business,
                event.subject,
                event.subject,
                event.type,
                _data_json(event),
                event.created_at,
            ),
        )
    ]
    if event.only_endpoint is not None:
        statements.append(
            (
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, state, "
                "next_at) SELECT ?, endpoint_id, endpoint_id || '/' || ?, 'pending', ? "
                "FROM webhook_endpoints WHERE endpoint_id = ? AND business = ?",
                (
                    event.event_id,
                    event.subject,
                    event.created_at,
                    event.only_endpoint,
                    event.business,
                ),
            )
        )
        return statements
    statements.append(
        (
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, order_key, state, next_at) "
            "SELECT ?, endpoint_id, endpoint_id || '/' || ?, 'pending', ? "
            "FROM webhook_endpoints WHERE business = ? AND enabled = 1 AND "
            "(event_types = '*' OR instr(' ' || event_types || ' ', ' ' || ? || ' ') > 0)",
            (event.event_id, event.subject, event.created_at, event.business, event.type),
        )
    )
    return statements


async def _rollback(conn: aiosqlite.Connection) -> None:
    """ROLLBACK whatever state the transaction is in. BEGIN goes inside the ``try``: a task
    cancelled while awaiting BEGIN does not stop aiosqlite's thread from running it, and a
    transaction left open would fail every later BEGIN on this connection."""
    with contextlib.suppress(sqlite3.Error):
        await conn.execute("ROLLBACK")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def render_body(event_type: str, created_at: float, seq: int, data_json: str) -> bytes:
    """The body, rebuilt identically for every attempt from the stored row (the signature
    covers these exact bytes)."""
    data = json.loads(data_json)
    data["sequence"] = seq
    payload = {"type": event_type, "timestamp": _iso(created_at), "data": data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    business: str
    url: str
    secrets: tuple[str, ...]  # the current secret first; the previous one during a rotation
    event_types: tuple[str, ...]  # ("*",) for every type
    enabled: bool
    disabled_reason: str | None
    description: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to this worker."""

    delivery_id: int
    event_id: str
    endpoint_id: str
    attempts: int  # attempts made before this one
    event_type: str
    url: str
    secrets: tuple[str, ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: int
    attempt: int
    at: float
    status: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class Finish:
    """One attempt to record: the delivery goes to delivered (2xx), is retried at
    ``next_at``, or is dead (``next_at`` None after a failure)."""

    claim: Claim
    attempt: Attempt
    next_at: float | None
    disable_endpoint: str | None = None


# Recording finished attempts: the attempt rows first, then the deliveries, each statement
# run once for a whole batch (executemany). Both are conditioned on ``owner`` still holding
# the lease, checked before the UPDATE clears it: a worker whose lease was taken over (it
# expired, another node claimed the delivery) changes nothing, not even the log.
_LOG_ATTEMPT = (
    "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, latency_ms, error, "
    "response_excerpt) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM "
    "webhook_deliveries WHERE delivery_id = ? AND lease_owner = ?)"
)
_MOVE_ON = (
    "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_at = ?, "
    "lease_owner = NULL, lease_until = NULL, last_status = ?, last_error = ?, "
    "delivered_at = ? WHERE delivery_id = ? AND lease_owner = ?"
)
_DISABLE = "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ? WHERE endpoint_id = ?"


def _attempt_params(item: Finish, owner: str) -> tuple[object, ...]:
    a = item.attempt
    return (
        a.delivery_id,
        a.attempt,
        a.at,
        a.status,
        a.latency_ms,
        a.error,
        a.response_excerpt,
        item.claim.delivery_id,
        owner,
    )


def _move_on_params(item: Finish, owner: str) -> tuple[object, ...]:
    """Delivered (2xx), retried at ``next_at``, or dead (``next_at`` None after a failure)."""
    attempt = item.attempt
    delivered = attempt.status is not None and 200 <= attempt.status < 300
    if delivered:
        state, due = DeliveryState.DELIVERED, attempt.at
    elif item.next_at is None:
        state, due = DeliveryState.DEAD, attempt.at
    else:
        state, due = DeliveryState.PENDING, item.next_at
    return (
        state,
        due,
        attempt.status,
        attempt.error,
        attempt.at if delivered else None,
        item.claim.delivery_id,
        owner,
    )


def _secrets_of(text: str, now: float) -> tuple[str, ...]:
    """Secrets still signing at ``now``: [{"secret": ..., "until": ts|null}, ...]."""
    return tuple(
        item["secret"]
        for item in json.loads(text)
        if item.get("until") is None or float(item["until"]) > now
    )


def _endpoint(row: Sequence[Any], now: float) -> Endpoint:
    return Endpoint(
        endpoint_id=row[0],
        business=row[1],
        url=row[2],
        secrets=_secrets_of(row[3], now),
        event_types=tuple(row[4].split()) or ("*",),
        enabled=bool(row[5]),
        disabled_reason=row[6],
        description=row[7],
        created_at=row[8],
    )


_ENDPOINT_COLUMNS = (
    "endpoint_id, business, url, secrets, event_types, enabled, disabled_reason, "
    "description, created_at"
)


class OutboxStore:
    """The outbox tables in the store's SQLite file (own migrations, own connection)."""

    def __init__(
        self,
        path: Path,
        synchronous: Synchronous = Synchronous.FULL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        # One connection: its transactions must not interleave (the worker finishes many
        # deliveries concurrently).
        self._tx_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await connect_migrated(
                self.path, "outbox", OUTBOX_MIGRATIONS, self._synchronous
            )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the outbox store is not open")
        return self._conn

    async def _transaction(self, statements: Iterable[SqlStatement]) -> list[int]:
        work = list(statements)
        for delay in _BUSY_RETRIES:
            try:
                return await self._transaction_once(work)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                # Another connection (the call log's writer) held the lock past the busy
                # timeout, or SQLite refused to wait (a stale WAL snapshot): try again.
                log.warning("outbox: database busy (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
        return await self._transaction_once(work)

    async def _transaction_once(self, statements: list[SqlStatement]) -> list[int]:
        conn = self.conn
        async with self._tx_lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                counts = []
                for sql, params in statements:
                    cur = await conn.execute(sql, params)
                    counts.append(cur.rowcount)
                await conn.execute("COMMIT")
            except BaseException:
                await _rollback(conn)
                raise
        return counts

    # ---- producing ------------------------------------------------------------------------

    async def execute(self, statements: Sequence[SqlStatement]) -> None:
        """Run ready-made outbox statements (:func:`event_statements`) in one transaction."""
        await self._transaction(statements)

    async def enqueue(self, events: Sequence[OutboxEvent]) -> None:
        """Write events in one transaction of their own (for producers without one)."""
        statements: list[SqlStatement] = []
        for event in events:
            statements += event_statements(event)
        await self._transaction(statements)

    # ---- endpoints ------------------------------------------------------------------------

    async def add_endpoint(
        self,
        business: str,
        url: str,
        event_types: Sequence[str] = ("*",),
        secret: str | None = None,
        description: str = "",
    ) -> Endpoint:
        if url.startswith("mailto:"):
            try:
                parse_mailto(url)
            except ValueError as exc:
                raise TargetRefused(str(exc)) from exc
        else:
            check_url(url)
        secret = secret or new_secret()
        secret_key(secret)  # refuse a malformed secret before storing it
        types = " ".join(event_types) if event_types else "*"
        endpoint_id = "ep_" + uuid.uuid4().hex[:20]
        now = self._clock()
        await self._transaction(
            [
                (
                    f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, 1, NULL, ?, ?)",
                    (
                        endpoint_id,
                        business,
                        url,
                        json.dumps([{"secret": secret, "until": None}]),
                        types,
                        description,
                        now,
                    ),
                )
            ]
        )
        endpoint = await self.endpoint(business, endpoint_id)
        assert endpoint is not None
        return endpoint

    async def endpoint(self, business: str, endpoint_id: str) -> Endpoint | None:
        """The endpoint if it belongs to ``business`` (another tenant's id is "not found")."""
        async with self.conn.execute(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints "
            "WHERE endpoint_id = ? AND business = ?",
            (endpoint_id, business),
        ) as cur:
            row = await cur.fetchone()
        return _endpoint(row, self._clock()) if row else None

    async def endpoints(self, business: str) -> list[Endpoint]:
        async with self.conn.execute(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE business = ? "
            "ORDER BY created_at, endpoint_id",
            (business,),
        ) as cur:
            rows = await cur.fetchall()
        now = self._clock()
        return [_endpoint(r, now) for r in rows]

    async def subscribed_businesses(self) -> set[str]:
        """Businesses with at least one enabled endpoint (the others get no event rows)."""
        async with self.conn.execute(
            "SELECT DISTINCT business FROM webhook_endpoints WHERE enabled = 1"
        ) as cur:
            return {r[0] for r in await cur.fetchall()}

    async def rotate_secret(self, business: str, endpoint_id: str, overlap_s: float) -> str:
        """A new current secret; the previous one keeps signing for ``overlap_s`` seconds,
        so receivers can switch without missing a webhook."""
        async with self.conn.execute(
            "SELECT secrets FROM webhook_endpoints WHERE endpoint_id = ? AND business = ?",
            (endpoint_id, business),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise KeyError(endpoint_id)
        now = self._clock()
        current = _secrets_of(row[0], now)[:1]
        secret = new_secret()
        items: list[dict[str, object]] = [{"secret": secret, "until": None}]
        items += [{"secret": s, "until": now + overlap_s} for s in current]
        await self._transaction(
            [
                (
                    "UPDATE webhook_endpoints SET secrets = ? WHERE endpoint_id = ?",
                    (json.dumps(items), endpoint_id),
                )
            ]
        )
        return secret

    async def set_enabled(
        self, business: str, endpoint_id: str, enabled: bool, reason: str | None = None
    ) -> bool:
        counts = await self._transaction(
            [
                (
                    "UPDATE webhook_endpoints SET enabled = ?, disabled_reason = ? "
                    "WHERE endpoint_id = ? AND business = ?",
                    (int(enabled), None if enabled else reason, endpoint_id, business),
                )
            ]
        )
        return counts[0] == 1

    async def delete_endpoint(self, business: str, endpoint_id: str) -> bool:
        """Remove an endpoint (REST API, issue 12): its deliveries not yet made are dropped
        (marked dead with a reason); the delivery log stays."""
        counts = await self._transaction(
            [
                (
                    "UPDATE webhook_deliveries SET state = 'dead', last_error = ? "
                    "WHERE endpoint_id = ? AND state = 'pending' AND endpoint_id IN "
                    "(SELECT endpoint_id FROM webhook_endpoints WHERE business = ?)",
                    ("endpoint deleted", endpoint_id, business),
                ),
                (
                    "DELETE FROM webhook_endpoints WHERE endpoint_id = ? AND business = ?",
                    (endpoint_id, business),
                ),
            ]
        )
        return counts[1] == 1

    # ---- the worker's side ----------------------------------------------------------------

    async def release_leases(self, owner_prefix: str) -> int:
        """At start: leases this node held before a crash are free again at once."""
        counts = await self._transaction(
            [
                (
                    "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL "
                    "WHERE state = 'pending' AND lease_owner LIKE ? ESCAPE '\\'",
                    (owner_prefix.replace("%", "\\%").replace("_", "\\_") + "%",),
                )
            ]
        )
        return counts[0]

    async def claim(
        self,
        owner: str,
        now: float,
        limit: int,
        lease_s: float,
        finished: Sequence[Finish] = (),
    ) -> list[Claim]:
        """Record ``finished`` attempts (as :meth:`finish`, only where ``owner`` still holds
        the lease), then lease up to ``limit`` due deliveries, each the oldest undelivered one
        of its order key (so one call's events go out one after the other, in order): ONE
        transaction, one commit per dispatcher cycle however many deliveries it moves on.
        A delivery finished here is no longer pending, so the next event of its call is
        claimable in the same transaction."""
        for delay in _BUSY_RETRIES:
            try:
                async with self._tx_lock:
                    return await self._claim_locked(owner, now, limit, lease_s, finished)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                log.warning("outbox: database busy (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
        async with self._tx_lock:
            return await self._claim_locked(owner, now, limit, lease_s, finished)

    async def _claim_locked(
        self,
        owner: str,
        now: float,
        limit: int,
        lease_s: float,
        finished: Sequence[Finish] = (),
    ) -> list[Claim]:
        conn = self.conn
        try:
            await conn.execute("BEGIN IMMEDIATE")
            if finished:
                await self._record_locked(finished, owner)
            if limit <= 0:
                await conn.execute("COMMIT")
                return []
            async with conn.execute(
                "SELECT d.delivery_id, d.event_id, d.endpoint_id, d.attempts, e.type, "
                "e.created_at, e.seq, e.data, p.url, p.secrets "
                "FROM webhook_deliveries d "
                "JOIN outbox_events e ON e.event_id = d.event_id "
                "JOIN webhook_endpoints p ON p.endpoint_id = d.endpoint_id AND p.enabled = 1 "
                "WHERE d.state = 'pending' AND d.next_at <= ? "
                "AND (d.lease_until IS NULL OR d.lease_until < ?) "
                "AND d.delivery_id = (SELECT MIN(x.delivery_id) FROM webhook_deliveries x "
                "WHERE x.order_key = d.order_key AND x.state = 'pending') "
                "ORDER BY d.next_at, d.delivery_id LIMIT ?",
                (now, now, limit),
            ) as cur:
                rows = await cur.fetchall()
            claims = []
            if rows:
                await conn.executemany(
                    "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? "
                    "WHERE delivery_id = ?",
                    [(owner, now + lease_s, r[0]) for r in rows],
                )
            for r in rows:
                claims.append(
                    Claim(
                        delivery_id=r[0],
                        event_id=r[1],
                        endpoint_id=r[2],
                        attempts=r[3],
                        event_type=r[4],
                        url=r[8],
                        secrets=_secrets_of(r[9], now),
                        body=render_body(r[4], r[5], r[6], r[7]),
                    )
                )
            await conn.execute("COMMIT")
        except BaseException:
            await _rollback(conn)
            raise
        return claims

    async def _record_locked(self, finished: Sequence[Finish], owner: str) -> None:
        """Inside the caller's transaction: log the attempts, move the deliveries on."""
        conn = self.conn
        await conn.executemany(_LOG_ATTEMPT, [_attempt_params(f, owner) for f in finished])
        await conn.executemany(_MOVE_ON, [_move_on_params(f, owner) for f in finished])
        for f in finished:
            if f.disable_endpoint is not None:
                await conn.execute(_DISABLE, (f.disable_endpoint, f.claim.endpoint_id))

    async def next_due(self) -> float | None:
        """When the earliest pending delivery is due (None if there is none)."""
        async with self.conn.execute(
            "SELECT MIN(MAX(next_at, COALESCE(lease_until, 0))) FROM webhook_deliveries "
            "WHERE state = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def finish(
        self,
        claim: Claim,
        owner: str,
        attempt: Attempt,
        next_at: float | None,
        disable_endpoint: str | None = None,
    ) -> None:
        """Log the attempt and move the delivery on, in one transaction: delivered (2xx),
        retried at ``next_at``, or dead (``next_at`` None after a failure). Only the lease
        holder may (a worker whose lease was taken over changes nothing)."""
        await self.claim(
            owner, self._clock(), 0, 0.0, [Finish(claim, attempt, next_at, disable_endpoint)]
        )

    # ---- the delivery log, replay, recovery -----------------------------------------------

    async def deliveries(
        self, business: str, endpoint_id: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT d.delivery_id, d.event_id, d.endpoint_id, e.type, e.subject, e.seq, "
            "d.state, d.attempts, d.next_at, d.last_status, d.last_error, d.delivered_at "
            "FROM webhook_deliveries d JOIN outbox_events e ON e.event_id = d.event_id "
            "WHERE e.business = ?"
        )
        params: list[object] = [business]
        if endpoint_id is not None:
            sql += " AND d.endpoint_id = ?"
            params.append(endpoint_id)
        if state is not None:
            sql += " AND d.state = ?"
            params.append(state)
        sql += " ORDER BY d.delivery_id"
        async with self.conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        keys = (
            "delivery_id",
            "event_id",
            "endpoint_id",
            "type",
            "subject",
            "sequence",
            "state",
            "attempts",
            "next_at",
            "last_status",
            "last_error",
            "delivered_at",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def attempts(self, business: str, delivery_id: int) -> list[Attempt]:
        async with self.conn.execute(
            "SELECT a.delivery_id, a.attempt, a.at, a.status, a.latency_ms, a.error, "
            "a.response_excerpt FROM webhook_attempts a "
            "JOIN webhook_deliveries d ON d.delivery_id = a.delivery_id "
            "JOIN outbox_events e ON e.event_id = d.event_id "
            "WHERE a.delivery_id = ? AND e.business = ? ORDER BY a.attempt_id",
            (delivery_id, business),
        ) as cur:
            rows = await cur.fetchall()
        return [Attempt(*r) for r in rows]

    async def replay(self, business: str, delivery_id: int) -> bool:
        """Send one delivery again now (delivered or dead alike), with the same webhook-id."""
        counts = await self._transaction(
            [
                (
                    "UPDATE webhook_deliveries SET state = 'pending', next_at = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE delivery_id = ? AND "
                    "event_id IN (SELECT event_id FROM outbox_events WHERE business = ?)",
                    (self._clock(), delivery_id, business),
                )
            ]
        )
        return counts[0] == 1

    async def recover(self, business: str, endpoint_id: str, since: float) -> int:
        """Put every dead delivery of the endpoint for events since ``since`` back in line
        (after an outage); returns how many."""
        counts = await self._transaction(
            [
                (
                    "UPDATE webhook_deliveries SET state = 'pending', next_at = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE endpoint_id = ? AND "
                    "state = 'dead' AND event_id IN (SELECT event_id FROM outbox_events "
                    "WHERE business = ? AND created_at >= ?)",
                    (self._clock(), endpoint_id, business, since),
                )
            ]
        )
        return counts[0]

    async def send_test(self, business: str, endpoint_id: str) -> str:
        """A ``webhook.test`` event to one endpoint; returns its webhook-id."""
        event = OutboxEvent(
            business=business,
            subject="test-" + endpoint_id,
            type="webhook.test",
            data={"endpoint_id": endpoint_id},
            created_at=self._clock(),
            only_endpoint=endpoint_id,
        )
        await self.enqueue([event])
        return event.event_id

    async def backlog(self, now: float) -> tuple[int, float]:
        """(pending deliveries, age in seconds of the oldest undelivered event)."""
        async with self.conn.execute(
            "SELECT COUNT(*), MIN(e.created_at) FROM webhook_deliveries d "
            "JOIN outbox_events e ON e.event_id = d.event_id WHERE d.state = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        oldest = 0.0 if row[1] is None else max(0.0, now - float(row[1]))
        return int(row[0]), oldest


class DeliveryHooks(Protocol):
    """Metrics callbacks (F28); ``result`` is delivered | retry | dead | disabled;
    ``channel`` webhook | email."""

    def on_attempt(self, event_type: str, result: str, latency_s: float, channel: str) -> None: ...


class _NoHooks:
    def on_attempt(self, event_type: str, result: str, latency_s: float, channel: str) -> None:
        return None


class WebhookDispatcher:
    """Delivers the outbox; one per node. ``wake()`` after a producer commits."""

    def __init__(
        self,
        store: OutboxStore,
        *,
        node: str = "node",
        clock: Callable[[], float] = time.time,
        concurrency: int = 32,
        lease_s: float = 60.0,
        timeout_s: float = 15.0,
        allow_private: bool = False,
        schedule: Sequence[float] = RETRY_SCHEDULE,
        hooks: DeliveryHooks | None = None,
        idle_poll_s: float = 1.0,
        mailer: Mailer | None = None,
        callback_number: CallbackNumber | None = None,
    ) -> None:
        self._mailer = mailer
        self._callback_number = callback_number
        self._store = store
        self._node = node
        self._owner = f"{node}:{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._schedule = tuple(schedule)
        self._hooks: DeliveryHooks = hooks or _NoHooks()
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished: list[_Finished] = []  # attempts made, recorded by the next cycle
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        await self._store.release_leases(self._node + ":")
        connector = aiohttp.TCPConnector(
            resolver=SafeResolver(self._allow_private), limit=self._concurrency
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"User-Agent": "mediasrv-webhooks"},
        )
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming; wait up to ``grace_s`` for deliveries in flight (the rest are sent
        again after the restart: their leases are released then)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._record_finished()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            # Cleared BEFORE the cycle looks at the store and at the finished attempts: a
            # wake from here on (a producer's commit, an attempt ending) is for something
            # this cycle may not see, and makes the next wait return at once. (Clearing
            # after a wait would lose the wakes that came while the waiter was resuming.)
            self._wake.clear()
            try:
                claimed = await self._claim_some()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook outbox: claiming failed; retrying in 1 s")
                claimed = 0
                await asyncio.sleep(1.0)
            if claimed or self._wake.is_set():
                continue
            await self._idle()

    async def _claim_some(self) -> int:
        """One cycle: record the attempts finished since the last one and claim as many due
        deliveries as there are free slots, in one transaction. Returns how many deliveries
        it moved (finished or claimed)."""
        free = self._concurrency - len(self._inflight)
        if free <= 0 and not self._finished:
            await self._wait_wake(self._idle_poll_s)
            return 0
        finished, self._finished = self._finished, []
        try:
            claims = await self._store.claim(
                self._owner, self._clock(), max(0, free), self._lease_s, [f.item for f in finished]
            )
        except BaseException:
            # Not recorded: the leases still hold, the next cycle (or stop) records them.
            self._finished[:0] = finished
            raise
        self._report(finished)
        for claim in claims:
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(claim))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(claims) + len(finished)

    async def _record_finished(self) -> None:
        """At stop: record what finished after the last cycle (else it would be sent again)."""
        finished, self._finished = self._finished, []
        if not finished:
            return
        try:
            await self._store.claim(
                self._owner, self._clock(), 0, self._lease_s, [f.item for f in finished]
            )
        except Exception:
            log.exception("webhook outbox: recording %d finished deliveries failed", len(finished))
            return
        self._report(finished)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        self._wake.set()  # record it; the next delivery of that call may then be claimed

    async def _idle(self) -> None:
        """Nothing was claimable: sleep until a wake (a producer committed, a delivery
        finished) or until the next delivery is due. Deliveries due now but not claimable
        wait behind their call's delivery in flight (its end wakes us) or for their endpoint
        to be enabled again: no reason to poll before ``idle_poll_s``."""
        due = await self._store.next_due()
        now = self._clock()
        wait = self._idle_poll_s
        if due is not None and due > now:
            wait = min(wait, due - now)
        await self._wait_wake(wait)

    async def _wait_wake(self, timeout: float) -> None:
        """Until a wake since the current cycle began (see :meth:`_run`), or ``timeout``."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _deliver(self, claim: Claim) -> None:
        if claim.url.startswith("mailto:"):
            outcome = await self._mail(claim)
        else:
            outcome = await self._post(claim)
        self._finished.append(self._judge(claim, outcome))

    def _judge(self, claim: Claim, outcome: _Outcome) -> _Finished:
        """What the attempt's outcome does to its delivery."""
        now = self._clock()
        attempt = Attempt(
            delivery_id=claim.delivery_id,
            attempt=claim.attempts + 1,
            at=now,
            status=outcome.status,
            latency_ms=outcome.latency_s * 1000.0,
            error=outcome.error,
            response_excerpt=outcome.excerpt,
        )
        disable = None
        next_at: float | None = None
        if outcome.ok:
            result = "delivered"
        elif outcome.disable is not None:
            disable, result = outcome.disable, "disabled"
            next_at = now  # stays pending: a re-enabled endpoint gets it
        else:
            delay = (
                None if outcome.permanent else self._delay(claim.attempts + 1, outcome.retry_after)
            )
            result = "dead" if delay is None else "retry"
            next_at = None if delay is None else now + delay
        return _Finished(Finish(claim, attempt, next_at, disable), result, outcome)

    def _report(self, finished: Sequence[_Finished]) -> None:
        """Log and count attempts once they are recorded."""
        for f in finished:
            claim, outcome = f.item.claim, f.outcome
            if f.result == "dead":
                log.warning(
                    "notification %s to %s: dead after %d attempts (last: %s)",
                    claim.event_id,
                    claim.url,
                    f.item.attempt.attempt,
                    outcome.status if outcome.status is not None else outcome.error,
                )
            elif f.item.disable_endpoint:
                log.warning(
                    "webhook endpoint %s disabled: %s", claim.endpoint_id, f.item.disable_endpoint
                )
            channel = "email" if claim.url.startswith("mailto:") else "webhook"
            self._hooks.on_attempt(claim.event_type, f.result, outcome.latency_s, channel)

    def _delay(self, failed: int, retry_after: float | None) -> float | None:
        return next_delay(failed, retry_after, schedule=self._schedule)

    async def _post(self, claim: Claim) -> _Outcome:
        """One webhook POST (Standard Webhooks headers)."""
        assert self._session is not None
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": claim.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                claim.secrets, claim.event_id, timestamp, claim.body
            ),
        }
        started = time.perf_counter()
        try:
            check_literal_host(claim.url, self._allow_private)
            async with self._session.post(
                claim.url, data=claim.body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(EXCERPT)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
        except TargetRefused as exc:
            return _Outcome(error=str(exc), latency_s=time.perf_counter() - started)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Outcome(
                error=f"{type(exc).__name__}: {exc}"[:300], latency_s=time.perf_counter() - started
            )
        return _Outcome(
            ok=200 <= status < 300,  # 3xx is a failure: redirects are not followed (spec)
            status=status,
            excerpt=raw.decode("utf-8", "replace"),
            retry_after=retry_after,
            # Spec "Delivery success and failure": 410 Gone, the receiver wants no more.
            disable="410 Gone from the receiver" if status == 410 else None,
            latency_s=time.perf_counter() - started,
        )

    async def _mail(self, claim: Claim) -> _Outcome:
        """One notification email (F22) through the configured SMTP server."""
        started = time.perf_counter()
        if self._mailer is None:
            return _Outcome(error="no [notify.smtp] server configured", latency_s=0.0)
        try:
            target = parse_mailto(claim.url)
        except ValueError as exc:
            return _Outcome(error=str(exc), permanent=True, latency_s=0.0)
        envelope = json.loads(claim.body)
        data = await self._with_callback_number(envelope["type"], envelope["data"])
        msg = self._mailer.render(
            envelope["type"], data, target, f"{claim.event_id}.{claim.endpoint_id}"
        )
        if msg is None:
            return _Outcome(ok=True, excerpt="no email for this event type", latency_s=0.0)
        result = await self._mailer.send(msg)
        return _Outcome(
            ok=result.ok,
            status=result.code,
            excerpt=result.detail,
            error=None if result.ok else result.detail,
            permanent=result.permanent,
            latency_s=time.perf_counter() - started,
        )


    async def _with_callback_number(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Callback-email tracking (issue 12 §5): an email that shows the caller's number
        shows a leased callback number instead. A failed lease never stops the email: it
        then shows the caller's own number."""
        if self._callback_number is None or template_for(event_type, data) is None:
            return data
        try:
            number = await self._callback_number(data)
        except Exception:
            log.exception("callback number lease failed; the email shows the caller's number")
            return data
        return data if number is None else {**data, "callback_number": number}


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one attempt came to."""

    ok: bool = False
    status: int | None = None  # HTTP status, or the SMTP reply code
    excerpt: str | None = None
    error: str | None = None
    retry_after: float | None = None
    disable: str | None = None  # disable the endpoint, for this reason
    permanent: bool = False  # retrying cannot help: dead at once
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Finished:
    """An attempt made, waiting for the dispatcher's next cycle to record it."""

    item: Finish
    result: str  # delivered | retry | dead | disabled
    outcome: _Outcome

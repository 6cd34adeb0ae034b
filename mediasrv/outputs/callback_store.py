"""Callback-number leases (issue 12 §5), kept in the server's SQLite file and in memory.

:class:`CallbackLeases` owns the :class:`~mediasrv.calls.callback.LeaseBook`: the email
path asks it for a number to show (:meth:`number_for_email`, which leases and writes the
lease through before the email is sent), and routing asks it, synchronously, whom a call to
a callback number reaches (:meth:`active`). One process owns the leases (the one running the
notify dispatcher); the rows let a restart resume every lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from mediasrv.calls.business import Business
from mediasrv.calls.callback import CallbackCall, Lease, LeaseBook, LeaseOutcome, LeaseResult
from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated

__all__ = ["CALLBACK_MIGRATIONS", "CallbackLeases"]

log = logging.getLogger(__name__)

CALLBACK_MIGRATIONS: list[Migration] = [
    # 1: issue 12 §5, one row per callback number: its latest lease (active or expired)
    [
        """
        CREATE TABLE callback_leases (
            number          TEXT PRIMARY KEY,
            business        TEXT NOT NULL,
            caller          TEXT NOT NULL,
            call_id         TEXT NOT NULL,
            tracking_number TEXT NOT NULL,
            medium          TEXT NOT NULL,
            campaign        TEXT NOT NULL,
            leased_at       REAL NOT NULL,
            expires_at      REAL NOT NULL
        )
        """,
    ],
]
_COLUMNS = (
    "number", "business", "caller", "call_id", "tracking_number", "medium", "campaign",
    "leased_at", "expires_at",
)  # fmt: skip
_UPSERT = (
    f"INSERT INTO callback_leases ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (number) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "number")
)
# Callers a callback cannot reach: nothing to lease for them (the email shows what it has).
_UNREACHABLE_KINDS = frozenset(("anonymous", "payphone", "unavailable", "invalid", ""))

BusinessOf = Callable[[str], Awaitable[Business | None]]
LeaseCounter = Callable[[LeaseOutcome], None]


def _row(lease: Lease) -> tuple[object, ...]:
    c = lease.call
    return (lease.number, c.business, c.caller, c.call_id, c.tracking_number, c.medium,
            c.campaign, lease.leased_at, lease.expires_at)  # fmt: skip


def _lease(row: tuple[Any, ...]) -> Lease:
    number, business, caller, call_id, tracking, medium, campaign, leased_at, expires_at = row
    call = CallbackCall(str(business), str(caller), str(call_id), str(tracking), str(medium),
                        str(campaign))  # fmt: skip
    return Lease(str(number), call, float(leased_at), float(expires_at))


def callback_call_of(data: Mapping[str, Any]) -> CallbackCall | None:
    """The call an event's data describes, if a callback can reach its caller (an E.164
    number, not withheld); None otherwise."""
    caller = str(data.get("caller_number") or "")
    if not caller.startswith("+") or str(data.get("caller_kind", "")) in _UNREACHABLE_KINDS:
        return None
    if data.get("callback_of"):  # a callback's own email shows the number as it is
        return None
    return CallbackCall(
        business=str(data.get("business") or ""),
        caller=caller,
        call_id=str(data.get("call_id") or ""),
        tracking_number=str(data.get("tracking_number") or ""),
        medium=str(data.get("medium") or ""),
        campaign=str(data.get("campaign") or ""),
    )


class CallbackLeases:
    def __init__(
        self,
        path: Path,
        business_of: BusinessOf,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = Synchronous.FULL,
        count: LeaseCounter = lambda _outcome: None,
    ) -> None:
        self.path = Path(path)
        self._business_of = business_of
        self._clock = clock
        self._synchronous = synchronous
        self._count = count
        self.book = LeaseBook()
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await connect_migrated(
            self.path, "callback", CALLBACK_MIGRATIONS, self._synchronous
        )
        async with self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM callback_leases") as cur:
            self.book = LeaseBook(_lease(tuple(r)) for r in await cur.fetchall())

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    def leases(self) -> list[Lease]:
        """Every callback number's latest lease (active or expired)."""
        return self.book.leases()

    def active(self, number: str) -> Lease | None:
        """Whom a call to callback number ``number`` reaches now (None: no active lease)."""
        return self.book.active(number, self._clock())

    async def lease(self, call: CallbackCall) -> LeaseResult:
        """A callback number for ``call``'s caller, written through before it is returned."""
        business = await self._business_of(call.business)
        if business is None or not business.callback_pool:
            return LeaseResult(LeaseOutcome.EXHAUSTED)
        result = self.book.lease(
            business.callback_pool, call, self._clock(), business.callback.lease
        )
        self._count(result.outcome)
        if result.lease is None:
            log.warning(
                "callback pool exhausted: the email shows the caller's own number",
                extra={"business": call.business, "call": call.call_id,
                       "pool": len(business.callback_pool)},
            )  # fmt: skip
            return result
        await self._write(result.lease)
        return result

    async def number_for_email(self, data: Mapping[str, Any]) -> str | None:
        """The number an email about the call ``data`` shows instead of the caller's, or None
        (the business has no pool, the caller cannot be called back, the pool is full)."""
        call = callback_call_of(data)
        if call is None:
            return None
        result = await self.lease(call)
        return result.lease.number if result.lease is not None else None

    async def _write(self, lease: Lease) -> None:
        if self._db is None:
            raise RuntimeError("CallbackLeases is not open")
        await self._db.execute(_UPSERT, _row(lease))
        await self._db.commit()

"""Callback-email tracking (SPEC F22, 折り返しメールトラッキング; issue 12 §5): the lease rules.

Where a notification email would show the caller's number, it shows a number of the
business's callback pool instead, *leased* to that caller for the business's lease period.
A call to that number is forwarded to the caller and logged as a callback of the call the
email was about, under that call's medium. Pure rules on an in-memory book, time passed in
(tests use a fake clock); :mod:`mediasrv.outputs.callback_store` persists the book.

The choice of a number for a caller, in order:

1. the number the caller already has (active, or expired but not given to anyone since):
   the same caller keeps seeing the same number, and the lease is renewed;
2. a pool number never leased (pool order);
3. the expired lease expired longest ago (least recently used);
4. none: every number is leased to someone else (the pool is exhausted). The email shows
   the real number and the caller of :meth:`LeaseBook.lease` logs and counts it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CallbackCall", "Lease", "LeaseBook", "LeaseOutcome", "LeaseResult"]


@dataclass(frozen=True, slots=True)
class CallbackCall:
    """The call an email is about: whom a callback reaches, and what it is attributed to."""

    business: str
    caller: str  # E.164 of the caller: where a callback is forwarded
    call_id: str
    tracking_number: str = ""
    medium: str = ""
    campaign: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """Callback number ``number`` is ``call.caller``'s until ``expires_at`` (unix seconds)."""

    number: str  # the callback number (E.164)
    call: CallbackCall
    leased_at: float
    expires_at: float

    def active(self, now: float) -> bool:
        return now < self.expires_at


class LeaseOutcome(enum.Enum):
    NEW = "new"  # a free or expired number, now this caller's
    RENEWED = "renewed"  # the caller's own number again, for a new period
    EXHAUSTED = "exhausted"  # every pool number is leased to someone else


@dataclass(frozen=True, slots=True)
class LeaseResult:
    outcome: LeaseOutcome
    lease: Lease | None = None  # None when exhausted


class LeaseBook:
    """Every lease, one per callback number (a number's latest lease, active or expired)."""

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        self._by_number: dict[str, Lease] = {}
        for lease in leases:
            self._by_number[lease.number] = lease

    def get(self, number: str) -> Lease | None:
        """The number's latest lease (maybe expired), or None if it was never leased."""
        return self._by_number.get(number)

    def active(self, number: str, now: float) -> Lease | None:
        """The lease a call to ``number`` follows now, or None (expired, or never leased)."""
        lease = self._by_number.get(number)
        return lease if lease is not None and lease.active(now) else None

    def leases(self) -> list[Lease]:
        return list(self._by_number.values())

    def lease(
        self, pool: Sequence[str], call: CallbackCall, now: float, period: float
    ) -> LeaseResult:
        """A pool number for ``call.caller`` for ``period`` seconds from ``now`` (rules in the
        module docstring). Only the caller's own business's leases are considered: ``pool``
        is that business's, and a number belongs to one business."""
        if period <= 0 or not pool:
            return LeaseResult(LeaseOutcome.EXHAUSTED)
        own = self._own_number(pool, call)
        if own is not None:
            return LeaseResult(LeaseOutcome.RENEWED, self._put(own, call, now, period))
        number = self._free_number(pool, now)
        if number is None:
            return LeaseResult(LeaseOutcome.EXHAUSTED)
        return LeaseResult(LeaseOutcome.NEW, self._put(number, call, now, period))

    def _own_number(self, pool: Sequence[str], call: CallbackCall) -> str | None:
        mine = [
            lease
            for number in pool
            if (lease := self._by_number.get(number)) is not None
            and lease.call.business == call.business
            and lease.call.caller == call.caller
        ]
        if not mine:
            return None
        return max(mine, key=lambda lease: lease.leased_at).number

    def _free_number(self, pool: Sequence[str], now: float) -> str | None:
        expired: list[Lease] = []
        for number in pool:
            lease = self._by_number.get(number)
            if lease is None:
                return number
            if not lease.active(now):
                expired.append(lease)
        if not expired:
            return None
        return min(expired, key=lambda lease: (lease.expires_at, lease.number)).number

    def _put(self, number: str, call: CallbackCall, now: float, period: float) -> Lease:
        lease = Lease(number, call, now, now + period)
        self._by_number[number] = lease
        return lease

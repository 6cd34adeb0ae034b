"""Rate limits on failed digest authentication, per source address and per username
(fail2ban-style, in memory): exponential back-off between failures, then a temporary block
whose length doubles for a repeat offender, up to a ceiling.

Sans-IO: time comes from an injected clock (seconds, monotonic), so tests drive it in
milliseconds without sleeping. Nothing here sends or drops a message; the admission policy
asks :meth:`AuthGuard.refused` before it looks at credentials (so while a key is refused the
right password is refused too, and no password is checked) and reports each checked guess
with :meth:`AuthGuard.failure` or :meth:`AuthGuard.success`.

Only guesses count: an answer refused before any password was compared (forged or spent
nonce, a nonce issued to another address) is not one. Nonces are bound to the address they
were issued to, so counting a failure against an address needs a nonce received there: a
blind spoofer cannot get a carrier's address blocked.

Memory is bounded: each scope keeps at most ``max_entries`` records, least recently failed
forgotten first, and records with nothing left to remember are dropped as they are met.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["AuthGuard", "GuardObserver", "GuardPolicy", "GuardScope", "parse_exempt", "source_key"]

log = logging.getLogger("mediasrv.sip.auth")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class GuardScope(enum.Enum):
    SOURCE = "source"
    USER = "user"


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Thresholds and durations in seconds (the ``[sip.auth_guard]`` section, app.py maps it)."""

    max_failures: int = 5  # failed guesses from one source within ``window`` -> block
    max_user_failures: int = 20  # failed guesses for one username, any source; 0: no limit
    window: float = 60.0  # failures older than this (since the last one) are forgotten
    backoff: float = 0.25  # refusal after a source's 1st failure, doubling; 0: no back-off
    base_block: float = 60.0  # the first block; each further block of the same key doubles
    max_block: float = 3600.0  # ceiling of a block; also how long repeat offences are kept
    max_entries: int = 10_000  # records kept per scope
    exempt: tuple[IpNetwork, ...] = ()  # sources never counted nor refused (fail2ban ignoreip)

    def block_seconds(self, strikes: int) -> float:
        """Length of a key's block number ``strikes + 1`` (exponential, capped)."""
        return min(self.max_block, self.base_block * 2.0 ** min(strikes, 32))

    def backoff_seconds(self, failures: int) -> float:
        """Refusal after the ``failures``-th failure (exponential, never above a block)."""
        if self.backoff <= 0:
            return 0.0
        return min(self.base_block, self.backoff * 2.0 ** min(failures - 1, 32))


class GuardObserver(Protocol):
    """Told about each block as it starts (metrics live above sip/; app.py passes one in)."""

    def auth_blocked(self, scope: GuardScope, seconds: float) -> None: ...


class _NoObserver:
    def auth_blocked(self, scope: GuardScope, seconds: float) -> None:
        return None


@dataclass(slots=True)
class _Record:
    failures: int = 0  # within the window, since the last block
    last_failure: float = 0.0
    refused_until: float = 0.0  # end of the back-off or block in force
    blocked: bool = False  # refused_until ends a block (not a back-off)
    strikes: int = 0  # blocks so far: the next one lasts block_seconds(strikes)


@dataclass(slots=True)
class _Table:
    scope: GuardScope
    threshold: int
    records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)


def source_key(host: str) -> str:
    """The unit a source is counted in: an IPv4 address, or an IPv6 /64 (one subscriber's
    prefix: an attacker holding a /64 must not get 2**64 fresh counters)."""
    if ":" not in host:
        return host  # IPv4 as the socket reports it (already canonical): the common case
    text = host.strip().strip("[]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class AuthGuard:
    def __init__(
        self,
        policy: GuardPolicy,
        clock: Callable[[], float],
        observer: GuardObserver | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._observer: GuardObserver = observer or _NoObserver()
        self._sources = _Table(GuardScope.SOURCE, policy.max_failures)
        self._users = _Table(GuardScope.USER, policy.max_user_failures)

    # -- questions ------------------------------------------------------------------------

    def exempt(self, host: str) -> bool:
        if not self.policy.exempt:
            return False
        try:
            addr = ipaddress.ip_address(host.strip().strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.policy.exempt)

    def refused(self, host: str, user: str | None = None) -> GuardScope | None:
        """Why a request from ``host`` (for ``user``) must be refused now, or None."""
        if self.exempt(host):
            return None
        now = self._clock()
        if self._in_force(self._sources, source_key(host), now):
            return GuardScope.SOURCE
        if user is not None and self._users.threshold and self._in_force(self._users, user, now):
            return GuardScope.USER
        return None

    def blocked_count(self, scope: GuardScope) -> int:
        """Keys blocked now (back-offs not included), for a gauge."""
        table = self._sources if scope is GuardScope.SOURCE else self._users
        now = self._clock()
        return sum(1 for r in table.records.values() if r.blocked and r.refused_until > now)

    def entries(self) -> int:
        return len(self._sources.records) + len(self._users.records)

    # -- reports --------------------------------------------------------------------------

    def failure(self, host: str, user: str | None = None) -> None:
        """A checked guess from ``host`` (for ``user``, when it names a real account) failed."""
        if self.exempt(host):
            return
        now = self._clock()
        key = source_key(host)
        self._fail(self._sources, key, now, key, backoff=True)
        if user is not None and self._users.threshold:
            self._fail(self._users, user, now, user, backoff=False)

    def success(self, host: str, user: str | None = None) -> None:
        """Right credentials: the failure streaks of ``host`` and ``user`` end (not the
        memory of past blocks, which keeps a repeat offender's next block long)."""
        key = source_key(host)
        for table, k in ((self._sources, key), (self._users, user)):
            record = table.records.get(k) if k is not None else None
            if record is not None:
                record.failures = 0

    # -- internals ------------------------------------------------------------------------

    def _in_force(self, table: _Table, key: str, now: float) -> bool:
        record = table.records.get(key)
        return record is not None and record.refused_until > now

    def _fail(self, table: _Table, key: str, now: float, label: str, backoff: bool) -> None:
        policy = self.policy
        record = self._record(table, key, now)
        if now - record.last_failure > policy.window:
            record.failures = 0
        if (
            record.strikes
            and now - max(record.refused_until, record.last_failure) > policy.max_block
        ):
            record.strikes = 0  # clean for a whole max_block: the offence is forgotten
        record.failures += 1
        record.last_failure = now
        if record.failures >= table.threshold:
            seconds = policy.block_seconds(record.strikes)
            record.strikes += 1
            record.failures = 0
            record.blocked = True
            record.refused_until = now + seconds
            # one line per block, never one per refused attempt
            log.warning(
                "digest authentication: blocked",
                extra={
                    "scope": table.scope.value,
                    "key": label,
                    "seconds": seconds,
                    "block": record.strikes,
                    "failures": table.threshold,
                },
            )
            self._observer.auth_blocked(table.scope, seconds)
        elif backoff:
            pause = policy.backoff_seconds(record.failures)
            if pause > 0:
                record.blocked = False
                record.refused_until = now + pause

    def _record(self, table: _Table, key: str, now: float) -> _Record:
        records = table.records
        record = records.get(key)
        if record is not None:
            records.move_to_end(key)
            return record
        self._forget_idle(table, now)
        while len(records) >= self.policy.max_entries:
            records.popitem(last=False)  # least recently failed
        record = records[key] = _Record()
        return record

    def _forget_idle(self, table: _Table, now: float, budget: int = 4) -> None:
        """Drop a few of the oldest records that have nothing left to remember."""
        records = table.records
        policy = self.policy
        for _ in range(min(budget, len(records))):
            key, record = next(iter(records.items()))
            idle = now - max(record.last_failure, record.refused_until)
            keep_for = policy.max_block if record.strikes else policy.window
            if record.refused_until > now or idle <= keep_for:
                return
            del records[key]


def parse_exempt(networks: Sequence[str]) -> tuple[IpNetwork, ...]:
    """CIDR strings -> networks (validated by the config loader before)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)

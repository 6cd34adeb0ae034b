"""Per-source request limits, sans-IO: token buckets on an injected clock (issue 8, F7/F8).

Two limiters, both keyed by the source IP address:

* :class:`SourceGuard` is the pike-style flood limit (after Kamailio's ``pike`` module): every
  datagram (and every TCP connection and framed message) takes a token from its source's
  bucket **before it is parsed**, so a flood costs a dictionary lookup per packet, not a parse.
  A source that runs dry is blocked for ``block_seconds``: nothing from it is parsed or
  answered, it is counted, and one log line says so per block. Sources in a trunk (and every
  source when no trunk is configured) have their own, usually unlimited, budget. With the
  ``drop`` policy for untrusted sources, a source in no trunk that is not one of our peers is
  refused here too, before parsing, because its address alone decides.
* :class:`KeyedLimiter` is the generic bucket table under both; the unknown-number budget
  (INVITEs to numbers we do not serve, per source) is one more instance of it, used by the
  admission chain in :mod:`mediasrv.calls.admission`.

Tables are bounded (``max_keys``): when full, the oldest entry is evicted, so a spoofed flood
from random addresses costs bounded memory. :meth:`KeyedLimiter.sweep` forgets idle entries.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("mediasrv.sip.ratelimit")

Clock = Callable[[], float]
Drops = list[tuple[str, str, int]]  # (source address, reason, count)


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket: ``rate`` tokens per second up to ``burst``; rate 0 means no limit."""

    rate: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0.0


UNLIMITED = Limit(0.0, 0.0)


class Take(enum.Enum):
    ALLOW = "allow"
    BLOCKED = "blocked"  # already blocked: drop quietly
    NEW_BLOCK = "new-block"  # ran dry just now: drop, and say so once


class _Bucket:
    # Plain ints and floats only: a dropped datagram must not allocate a tracked object (a
    # tuple, a list), or a flood drives the cyclic GC into full collections that pause the loop.
    __slots__ = ("blocked_until", "dropped_policy", "dropped_rate", "stamp", "tokens", "trusted")

    def __init__(self, tokens: float, stamp: float, trusted: bool) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.blocked_until = 0.0
        self.trusted = trusted
        self.dropped_rate = 0  # rate-limited since the last collect()
        self.dropped_policy = 0  # refused by the drop policy since the last collect()


class KeyedLimiter:
    """Token buckets by key (a source address), bounded, with a block when one runs dry."""

    def __init__(self, clock: Clock, block_seconds: float, max_keys: int = 16384) -> None:
        self.clock = clock
        self.block_seconds = block_seconds
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self.blocks = 0  # blocks started since the start (a counter)

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: str, limit: Limit, trusted: bool = False) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                # Bounded table: evict the oldest entry (dicts keep insertion order). Its
                # uncollected drop counts are lost (they stay in no report, only in the log).
                del self._buckets[next(iter(self._buckets))]
            b = _Bucket(limit.burst, self.clock(), trusted)
            self._buckets[key] = b
        return b

    def take(self, key: str, limit: Limit, trusted: bool = False) -> Take:
        """Take one token from ``key``'s bucket under ``limit``."""
        b = self.bucket(key, limit, trusted)
        return self.take_from(b, limit)

    def take_from(self, b: _Bucket, limit: Limit) -> Take:
        now = self.clock()
        if b.blocked_until:
            if now < b.blocked_until:
                return Take.BLOCKED
            b.blocked_until = 0.0  # the block is over: start again with a full bucket
            b.tokens, b.stamp = limit.burst, now
        if limit.unlimited:
            return Take.ALLOW
        tokens = b.tokens + (now - b.stamp) * limit.rate
        if tokens > limit.burst:
            tokens = limit.burst
        b.stamp = now
        if tokens < 1.0:
            b.tokens = 0.0
            b.blocked_until = now + self.block_seconds
            self.blocks += 1
            return Take.NEW_BLOCK
        b.tokens = tokens - 1.0
        return Take.ALLOW

    def blocked(self, key: str) -> bool:
        b = self._buckets.get(key)
        return b is not None and b.blocked_until > self.clock()

    def blocked_now(self) -> int:
        now = self.clock()
        return sum(1 for b in self._buckets.values() if b.blocked_until > now)

    def sweep(self, idle_seconds: float) -> int:
        """Forget unblocked buckets untouched for ``idle_seconds`` (they would be full)."""
        now = self.clock()
        stale = [
            k
            for k, b in self._buckets.items()
            if b.blocked_until <= now
            and now - b.stamp >= idle_seconds
            and not (b.dropped_rate or b.dropped_policy)
        ]
        for k in stale:
            del self._buckets[k]
        return len(stale)


class SourceGuard:
    """The pre-parse gate of the transport: ``admit(host)`` per datagram, message, connection.

    ``is_trusted(host)``: the address is in a trunk (or no trunk is configured), computed once
    per table entry. ``is_peer(host)``: we have a transaction or dialog with that address (an
    operator's phone answers from an address in no trunk), asked only for untrusted sources.
    """

    def __init__(
        self,
        clock: Clock,
        is_trusted: Callable[[str], bool],
        is_peer: Callable[[str], bool],
        untrusted: Limit,
        trusted: Limit = UNLIMITED,
        block_seconds: float = 30.0,
        max_sources: int = 16384,
        drop_untrusted: bool = False,
        enabled: bool = True,
    ) -> None:
        self.limiter = KeyedLimiter(clock, block_seconds, max_sources)
        self.is_trusted = is_trusted
        self.is_peer = is_peer
        self.untrusted = untrusted
        self.trusted = trusted
        self.drop_untrusted = drop_untrusted
        self.enabled = enabled
        self._trusted_free = trusted.unlimited or not enabled

    def admit(self, host: str) -> bool:
        """True: parse and handle what ``host`` sent. False: drop it unparsed and unanswered."""
        limiter = self.limiter
        b = limiter._buckets.get(host)
        if b is None:
            trusted = self.is_trusted(host)
            b = limiter.bucket(host, self.trusted if trusted else self.untrusted, trusted)
        if b.trusted or self.is_peer(host):  # a trunk, or our own operator's phone
            if self._trusted_free:
                return True  # the common case of legitimate traffic: nothing more to do
            limit = self.trusted
        elif self.drop_untrusted:
            b.dropped_policy += 1
            return False
        else:
            limit = self.untrusted
        if not self.enabled:
            return True
        verdict = limiter.take_from(b, limit)
        if verdict is Take.ALLOW:
            return True
        if verdict is Take.NEW_BLOCK:
            log.warning(
                "SIP source over its request rate: blocked",
                extra={
                    "source": host,
                    "block_s": limiter.block_seconds,
                    "rate": limit.rate,
                    "burst": limit.burst,
                },
            )
        b.dropped_rate += 1
        return False

    def collect(self) -> Drops:
        """What was dropped per source since the last call (and reset): counts are kept in
        the buckets and handed over periodically, never per datagram."""
        out: Drops = []
        for host, b in self.limiter._buckets.items():
            if b.dropped_rate:
                out.append((host, "rate-limited", b.dropped_rate))
                b.dropped_rate = 0
            if b.dropped_policy:
                out.append((host, "untrusted-source", b.dropped_policy))
                b.dropped_policy = 0
        return out

    def sweep(self) -> int:
        """Forget idle sources (called periodically by the server)."""
        return self.limiter.sweep(max(self.limiter.block_seconds, 60.0))


class UnknownNumberBudget:
    """INVITEs to numbers we do not serve, per source: ``allow(host)`` or stay silent.

    Within the budget the caller gets its 404; beyond it, nothing at all (no 100, no 404) for
    ``block_seconds``, so a scanner learns nothing from the silence and stalls, while calls from
    the same source to real numbers still go through (a carrier's trunk must not be cut off by
    a spoofed burst of wrong numbers).
    """

    def __init__(
        self, clock: Clock, limit: Limit, block_seconds: float, max_sources: int = 16384
    ) -> None:
        self.limiter = KeyedLimiter(clock, block_seconds, max_sources)
        self.limit = limit

    def allow(self, host: str) -> bool:
        if self.limit.unlimited:
            return True
        verdict = self.limiter.take(host, self.limit)
        if verdict is Take.NEW_BLOCK:
            log.warning(
                "too many INVITEs to unknown numbers: no answers to this source for a while",
                extra={
                    "source": host,
                    "block_s": self.limiter.block_seconds,
                    "rate": self.limit.rate,
                    "burst": self.limit.burst,
                },
            )
        return verdict is Take.ALLOW

    def sweep(self) -> int:
        return self.limiter.sweep(max(self.limiter.block_seconds, 60.0))

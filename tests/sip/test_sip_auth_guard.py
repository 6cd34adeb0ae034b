"""The auth guard on a fake clock that moves in milliseconds (no sleeps): back-off, blocks,
their growth and end, per-source and per-username scopes, exemptions, bounded memory, and a
log line per block."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from mediasrv.sip.auth_guard import AuthGuard, GuardPolicy, GuardScope, source_key

ATTACKER = "192.0.2.66"
CARRIER = "198.51.100.1"


class MsClock:
    """Monotonic seconds, moved by the test in whole milliseconds."""

    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> float:
        return self.ms / 1000

    def advance_ms(self, ms: int) -> None:
        self.ms += ms


class Blocks:
    def __init__(self) -> None:
        self.seen: list[tuple[GuardScope, float]] = []

    def auth_blocked(self, scope: GuardScope, seconds: float) -> None:
        self.seen.append((scope, seconds))


def guard(**policy: object) -> tuple[AuthGuard, MsClock, Blocks]:
    clock = MsClock()
    blocks = Blocks()
    return AuthGuard(GuardPolicy(**policy), clock, blocks), clock, blocks  # type: ignore[arg-type]


def test_block_after_max_failures_and_it_ends() -> None:
    g, clock, blocks = guard(max_failures=5, backoff=0.0, base_block=60.0)
    for _ in range(4):
        g.failure(ATTACKER)
        assert g.refused(ATTACKER) is None  # no back-off configured: below the threshold
    g.failure(ATTACKER)
    assert g.refused(ATTACKER) is GuardScope.SOURCE
    assert blocks.seen == [(GuardScope.SOURCE, 60.0)]
    assert g.blocked_count(GuardScope.SOURCE) == 1
    assert g.refused(CARRIER) is None  # per source
    clock.advance_ms(59_999)
    assert g.refused(ATTACKER) is GuardScope.SOURCE
    clock.advance_ms(1)
    assert g.refused(ATTACKER) is None
    assert g.blocked_count(GuardScope.SOURCE) == 0


def test_backoff_doubles_after_each_failure_then_the_block() -> None:
    g, clock, blocks = guard(max_failures=5, backoff=0.25, base_block=60.0)
    pauses = []
    for _ in range(4):
        g.failure(ATTACKER)
        ms = 0
        while g.refused(ATTACKER) is not None:
            clock.advance_ms(1)
            ms += 1
        pauses.append(ms)
    assert pauses == [250, 500, 1000, 2000]
    assert blocks.seen == []  # back-offs are not blocks: no log line, no count
    g.failure(ATTACKER)
    assert blocks.seen == [(GuardScope.SOURCE, 60.0)]


def test_backoff_never_exceeds_a_block() -> None:
    policy = GuardPolicy(backoff=10.0, base_block=30.0)
    assert [policy.backoff_seconds(k) for k in (1, 2, 3, 4)] == [10.0, 20.0, 30.0, 30.0]
    assert GuardPolicy(backoff=0.0).backoff_seconds(3) == 0.0


def test_repeat_blocks_double_up_to_max_block() -> None:
    g, clock, blocks = guard(max_failures=2, backoff=0.0, base_block=60.0, max_block=300.0)
    for _ in range(5):
        g.failure(ATTACKER)
        g.failure(ATTACKER)
        seconds = blocks.seen[-1][1]
        clock.advance_ms(int(seconds * 1000))
        assert g.refused(ATTACKER) is None
    assert [s for _, s in blocks.seen] == [60.0, 120.0, 240.0, 300.0, 300.0]


def test_a_clean_max_block_forgets_past_blocks() -> None:
    g, clock, blocks = guard(max_failures=2, backoff=0.0, base_block=60.0, max_block=300.0)
    g.failure(ATTACKER)
    g.failure(ATTACKER)
    clock.advance_ms(60_000 + 300_001)  # the block, then a whole max_block without failure
    g.failure(ATTACKER)
    g.failure(ATTACKER)
    assert [s for _, s in blocks.seen] == [60.0, 60.0]


def test_failures_older_than_the_window_are_forgotten() -> None:
    g, clock, blocks = guard(max_failures=3, backoff=0.0, window=60.0)
    for _ in range(10):
        g.failure(ATTACKER)
        g.failure(ATTACKER)
        clock.advance_ms(60_001)  # two per minute: slower than the threshold
    assert blocks.seen == []
    assert g.refused(ATTACKER) is None


def test_success_ends_the_failure_streak() -> None:
    g, _clock, blocks = guard(max_failures=3, backoff=0.0)
    g.failure(CARRIER, "carrier/u")
    g.failure(CARRIER, "carrier/u")
    g.success(CARRIER, "carrier/u")
    g.failure(CARRIER, "carrier/u")
    g.failure(CARRIER, "carrier/u")
    assert blocks.seen == []


def test_username_blocked_across_sources() -> None:
    """Distributed guessing: 4 guesses from each of 5 addresses stay under the per-source
    threshold, but the username's own threshold (20) blocks the account everywhere."""
    g, _clock, blocks = guard(max_failures=5, max_user_failures=20, backoff=0.0)
    for i in range(5):
        for _ in range(4):
            g.failure(f"192.0.2.{i + 1}", "carrier/u")
    assert blocks.seen == [(GuardScope.USER, 60.0)]
    assert g.refused("192.0.2.99", "carrier/u") is GuardScope.USER
    assert g.refused("192.0.2.99", "carrier/other") is None
    assert g.refused("192.0.2.1") is None  # no source is blocked


def test_username_limit_can_be_turned_off() -> None:
    g, _clock, blocks = guard(max_failures=5, max_user_failures=0, backoff=0.0)
    for i in range(40):
        g.failure(f"192.0.2.{i + 1}", "carrier/u")
    assert blocks.seen == []
    assert g.refused("192.0.2.99", "carrier/u") is None


def test_exempt_networks_are_never_counted_nor_refused() -> None:
    exempt = (ipaddress.ip_network("198.51.100.0/24"),)
    g, _clock, blocks = guard(max_failures=2, max_user_failures=2, backoff=0.0, exempt=exempt)
    for _ in range(10):
        g.failure(CARRIER, "carrier/u")
    assert blocks.seen == []
    g.failure(ATTACKER, "carrier/u")
    g.failure(ATTACKER, "carrier/u")  # the attacker blocks itself and the username ...
    assert g.refused(ATTACKER, "carrier/u") is GuardScope.SOURCE
    assert g.refused("192.0.2.67", "carrier/u") is GuardScope.USER
    assert g.refused(CARRIER, "carrier/u") is None  # ... but not the exempt carrier


def test_ipv6_sources_count_per_64() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("[2001:db8:1:2:ffff::9]")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    g, _clock, _blocks = guard(max_failures=3, backoff=0.0)
    for i in range(3):  # rotating addresses within one /64
        g.failure(f"2001:db8:1:2::{i + 1}")
    assert g.refused("2001:db8:1:2::abcd") is GuardScope.SOURCE
    assert g.refused("2001:db8:1:3::1") is None


def test_memory_is_bounded_under_a_flood_of_sources() -> None:
    g, clock, _blocks = guard(max_failures=5, backoff=0.0, max_entries=1000)
    for i in range(50_000):
        g.failure(str(ipaddress.IPv4Address(0x0A000000 + i)))
        if i % 100 == 0:
            clock.advance_ms(1)
    assert g.entries() <= 1000


def test_idle_records_are_dropped_as_they_are_met() -> None:
    g, clock, _blocks = guard(max_failures=5, backoff=0.0, window=60.0)
    for i in range(100):
        g.failure(f"192.0.2.{i + 1}")
    clock.advance_ms(61_000)
    for i in range(100):
        g.failure(f"198.51.100.{i + 1}")
    assert g.entries() < 110  # the first hundred were forgotten, a few per new record


def test_one_log_line_per_block(caplog: pytest.LogCaptureFixture) -> None:
    g, _clock, _blocks = guard(max_failures=3, backoff=0.0)
    caplog.set_level(logging.INFO, logger="mediasrv.sip.auth")
    for _ in range(3):
        g.failure(ATTACKER, "carrier/u")
    for _ in range(500):  # refused attempts: asked about, never logged
        assert g.refused(ATTACKER, "carrier/u") is GuardScope.SOURCE
    records = [r for r in caplog.records if r.name == "mediasrv.sip.auth"]
    assert len(records) == 1
    assert records[0].getMessage() == "digest authentication: blocked"
    assert records[0].__dict__["scope"] == "source" and records[0].__dict__["key"] == ATTACKER

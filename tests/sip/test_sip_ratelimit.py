"""Per-source limits (issue 8, F7/F8) on a fake clock: token buckets, blocks, the pre-parse gate,
the unknown-number budget, and the user agent's stateless refusals and source screen."""

from __future__ import annotations

import logging

import pytest
from sip_fakeclock import FakeClock
from test_sip_ua import CALLER, Harness, invite, statuses

from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.message import Response
from mediasrv.sip.ratelimit import KeyedLimiter, Limit, SourceGuard, Take, UnknownNumberBudget
from mediasrv.sip.screening import (
    OptionsPolicy,
    Screen,
    SourcePolicy,
    UntrustedPolicy,
    stateless_tag,
)
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.ua import Admission, UserAgent

STRANGER = Peer("UDP", "127.0.0.3", 5099)


def test_bucket_allows_burst_then_blocks_for_block_seconds_then_refills() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(clock.time, block_seconds=30.0)
    limit = Limit(rate=10.0, burst=5)
    assert [limiter.take("a", limit) for _ in range(5)] == [Take.ALLOW] * 5
    assert limiter.take("a", limit) is Take.NEW_BLOCK
    assert limiter.take("a", limit) is Take.BLOCKED
    assert limiter.take("b", limit) is Take.ALLOW  # another source is not affected
    clock.advance(29.9)
    assert limiter.take("a", limit) is Take.BLOCKED  # no refill while blocked
    clock.advance(0.2)
    assert [limiter.take("a", limit) for _ in range(5)] == [Take.ALLOW] * 5  # full again
    assert limiter.blocks == 1


def test_bucket_sustains_its_rate() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(clock.time, block_seconds=30.0)
    limit = Limit(rate=100.0, burst=10)
    for _ in range(1000):  # 100 per second for 10 s: exactly the rate, never blocked
        assert limiter.take("a", limit) is Take.ALLOW
        clock.advance(0.01)


def test_table_is_bounded_and_sweep_forgets_idle_sources() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(clock.time, block_seconds=5.0, max_keys=100)
    limit = Limit(rate=1.0, burst=1)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}", limit)
    assert len(limiter) == 100
    limiter.take("blocked", limit)
    assert limiter.take("blocked", limit) is Take.NEW_BLOCK
    clock.advance(3.0)
    assert limiter.sweep(idle_seconds=2.0) == 99  # the blocked one stays
    assert limiter.blocked("blocked")


def guard(**kw: object) -> tuple[SourceGuard, FakeClock]:
    clock = FakeClock()
    peers: set[str] = set(kw.pop("peers", set()))  # type: ignore[arg-type]
    g = SourceGuard(
        clock.time,
        is_trusted=lambda host: host == "127.0.0.1",
        is_peer=peers.__contains__,
        untrusted=Limit(10.0, 20),
        **kw,  # type: ignore[arg-type]
    )
    return g, clock


def test_guard_limits_untrusted_sources_not_trunks(caplog: pytest.LogCaptureFixture) -> None:
    g, _clock = guard()
    with caplog.at_level(logging.WARNING, "mediasrv.sip.ratelimit"):
        admitted = sum(g.admit("127.0.0.3") for _ in range(10_000))
        trunk = sum(g.admit("127.0.0.1") for _ in range(10_000))
    assert admitted == 20
    assert trunk == 10_000  # trusted limit defaults to none
    assert g.collect() == [("127.0.0.3", "rate-limited", 10_000 - 20)]
    assert g.collect() == []  # handed over once
    blocked = [r for r in caplog.records if "blocked" in r.getMessage()]
    assert len(blocked) == 1  # one line per block, not per packet


def test_guard_drop_policy_refuses_untrusted_but_not_peers() -> None:
    g, _clock = guard(drop_untrusted=True, peers={"127.0.0.9"})
    assert not g.admit("127.0.0.3")
    assert g.collect() == [("127.0.0.3", "untrusted-source", 1)]
    assert g.admit("127.0.0.9")  # an operator we called: its answers must come through
    assert g.admit("127.0.0.1")


def test_guard_disabled_still_applies_drop_policy() -> None:
    g, _clock = guard(drop_untrusted=True, enabled=False)
    assert sum(g.admit("127.0.0.4") for _ in range(100)) == 0
    g2, _ = guard(enabled=False)
    assert sum(g2.admit("127.0.0.4") for _ in range(100)) == 100


def test_unknown_number_budget() -> None:
    clock = FakeClock()
    budget = UnknownNumberBudget(clock.time, Limit(1.0, 3), block_seconds=60.0)
    assert [budget.allow("a") for _ in range(5)] == [True, True, True, False, False]
    clock.advance(59.0)
    assert not budget.allow("a")
    clock.advance(2.0)
    assert budget.allow("a")
    assert UnknownNumberBudget(clock.time, Limit(0.0, 0), 60.0).allow("a")  # 0: no limit


# -- the user agent: stateless refusals and the screen ------------------------------------------


def test_refused_invite_is_answered_once_statelessly_with_a_stable_tag() -> None:
    h = Harness(admission=lambda req, peer: Admission.reject(404, "Not Found"))
    h.feed(invite())
    first = h.take()
    assert statuses(first) == [404]
    h.clock.advance(40.0)  # Timer G would have resent a stateful 404 ten times by now
    assert h.take() == []
    h.feed(invite())  # a retransmission: answered again, same To tag (RFC 3261 §8.2.7)
    again = h.take()
    assert statuses(again) == [404]
    assert isinstance(first[0], Response) and isinstance(again[0], Response)
    assert first[0].to_tag == again[0].to_tag
    assert h.idle()


def test_dropped_invite_gets_nothing_and_leaves_nothing() -> None:
    h = Harness(admission=lambda req, peer: Admission.drop("x"))
    h.feed(invite())
    h.clock.advance(40.0)
    assert h.take() == [] and h.idle() and h.legs == []


def options(branch: str = "z9hG4bKopt1") -> bytes:
    return (
        "OPTIONS sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.3:5099;branch={branch}\r\n"
        "From: <sip:probe@127.0.0.3>;tag=p1\r\nTo: <sip:0312345678@127.0.0.1>\r\n"
        "Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def screened_ua(policy: SourcePolicy, user_agent: str = "mediasrv") -> Harness:
    h = Harness()
    h.ua = UserAgent(
        h.clock,
        h._send,
        LocalContact("127.0.0.1", 5060, user_agent),
        h._incoming,
        cfg=TimerConfig(),
        screen=policy.screen,
    )
    return h


@pytest.mark.parametrize(
    ("untrusted", "options_policy", "from_trunk", "from_stranger"),
    [
        (UntrustedPolicy.REJECT, OptionsPolicy.TRUNKS, [200], [403]),
        (UntrustedPolicy.DROP, OptionsPolicy.TRUNKS, [200], []),
        (UntrustedPolicy.DROP, OptionsPolicy.ANY, [200], [200]),
    ],
)
def test_options_answered_per_policy(
    untrusted: UntrustedPolicy,
    options_policy: OptionsPolicy,
    from_trunk: list[int],
    from_stranger: list[int],
) -> None:
    policy = SourcePolicy(lambda host: host == CALLER.host, untrusted, options_policy)
    h = screened_ua(policy)
    h.feed(options(), CALLER)
    assert statuses(h.take()) == from_trunk
    h.feed(options("z9hG4bKopt2"), STRANGER)
    assert statuses(h.take()) == from_stranger


def test_invite_and_stray_bye_from_untrusted_source_are_screened() -> None:
    policy = SourcePolicy(lambda host: host == CALLER.host, UntrustedPolicy.REJECT)
    h = screened_ua(policy)
    h.feed(invite(), STRANGER)
    assert statuses(h.take()) == [403]
    assert h.legs == [] and h.idle()
    bye = invite().replace(b"INVITE sip", b"BYE sip").replace(b"1 INVITE", b"2 BYE")
    bye = bye.replace(b"To: <sip:0312345678@127.0.0.1>", b"To: <sip:0312345678@127.0.0.1>;tag=x")
    h.feed(bye, STRANGER)
    assert statuses(h.take()) == [403]  # not 481: a stranger learns nothing about dialogs
    h.feed(invite(), CALLER)
    assert statuses(h.take())[:1] == [100] and len(h.legs) == 1


def test_server_header_configurable_and_omitted_when_empty() -> None:
    policy = SourcePolicy(lambda host: True)
    for value, expected in (("acme-sbc/2", "acme-sbc/2"), ("", None)):
        h = screened_ua(policy, user_agent=value)
        h.feed(options(), CALLER)
        (response,) = h.take()
        assert response.headers.get("Server") == expected


def test_screen_verdicts() -> None:
    p = SourcePolicy(lambda host: False, UntrustedPolicy.DROP)
    h = Harness()
    from mediasrv.sip.parser import parse_message

    req = parse_message(options())
    assert p.screen(req, STRANGER) is Screen.DROP  # type: ignore[arg-type]
    assert stateless_tag(req) == stateless_tag(parse_message(options()))  # type: ignore[arg-type]
    assert h.idle()


def test_peers_are_tracked_while_a_client_transaction_lives() -> None:
    h = Harness()
    operator = Peer("UDP", "127.0.0.9", 5090)
    leg = h.ua.create_outbound(
        "sip:op@127.0.0.9:5090", operator, "caller", "", b"", sink=lambda e: None
    )
    assert h.ua.is_peer("127.0.0.9")
    leg.cancel()
    h.clock.advance(64.0)  # Timer B/D: the transaction is gone
    assert not h.ua.is_peer("127.0.0.9")

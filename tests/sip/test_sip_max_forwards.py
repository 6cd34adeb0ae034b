"""Max-Forwards (issue 7 part 5): decremented from the inbound INVITE onto the outbound leg
(RFC 3261 §16.6 step 3, RFC 7332 §3), 483 for an INVITE with none left (§16.3 step 3), and
``[sip] max_forwards`` on what we originate. Sans-IO, on a fake clock."""

from __future__ import annotations

import pytest
from sip_fakeclock import FakeClock
from test_sip_ua import CALLER, OPERATOR, SDP, in_dialog, invite, response_to, statuses

from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.legs import InboundLeg, OutboundLeg
from mediasrv.sip.message import (
    Request,
    Response,
    onward_max_forwards,
    parse_max_forwards,
    serialize,
)
from mediasrv.sip.parser import SipParseError, parse_message
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.ua import UserAgent


class Harness:
    def __init__(self, max_forwards: int = 70) -> None:
        self.clock = FakeClock()
        self.sent: list[tuple[Request | Response, Peer]] = []
        self.legs: list[InboundLeg] = []
        self.ua = UserAgent(
            self.clock,
            lambda data, peer: self.sent.append((parse_message(data), peer)),
            LocalContact("127.0.0.1", 5060, max_forwards=max_forwards),
            lambda leg, _trunk: self.legs.append(leg),
            cfg=TimerConfig(),
        )

    def feed(self, data: bytes, peer: Peer = CALLER) -> None:
        self.ua.receive(data, peer)

    def take(self) -> list[Request | Response]:
        out = [m for m, _ in self.sent]
        self.sent.clear()
        return out

    def outbound(self, max_forwards: int | None) -> tuple[OutboundLeg, Request]:
        leg = self.ua.create_outbound(
            "sip:op@127.0.0.1:5090", OPERATOR, "0901234567", "", SDP, lambda _e: None,
            max_forwards=max_forwards,
        )  # fmt: skip
        sent = self.take()
        assert statuses(sent) == ["INVITE"]
        assert isinstance(sent[0], Request)
        return leg, sent[0]


def with_max_forwards(wire: bytes, value: str | None) -> bytes:
    if value is None:
        return wire.replace(b"Max-Forwards: 70\r\n", b"")
    return wire.replace(b"Max-Forwards: 70", b"Max-Forwards: " + value.encode())


@pytest.mark.parametrize(
    ("text", "value"),
    [(None, None), ("70", 70), ("0068", 68), (" 0 ", 0), ("255", 255)],
)
def test_parse_max_forwards_accepts_1_digit_forms(text: str | None, value: int | None) -> None:
    assert parse_max_forwards(text) == value


@pytest.mark.parametrize("text", ["", "-1", "256", "300", "7O", "1" * 50, "٣"])
def test_parse_max_forwards_refuses_what_is_not_0_to_255(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_max_forwards(text)


@pytest.mark.parametrize(
    ("received", "configured", "onward"),
    [(70, 70, 69), (1, 70, 0), (10, 70, 9), (200, 70, 70), (None, 20, 20), (0, 70, 0)],
)
def test_onward_value_is_received_minus_one_capped_by_the_configured_value(
    received: int | None, configured: int, onward: int
) -> None:
    assert onward_max_forwards(received, configured) == onward


def test_invite_with_max_forwards_zero_gets_483_and_starts_no_call() -> None:
    h = Harness()
    h.feed(with_max_forwards(invite(), "0"))
    sent = h.take()
    assert statuses(sent) == [100, 483]
    assert sent[1].reason == "Too Many Hops"  # type: ignore[union-attr]
    assert h.legs == []
    # the caller's ACK for the 483 ends the transaction; nothing is left behind
    h.clock.advance(64 * 0.5)
    assert h.ua.transaction_count() == 0


def test_invite_with_a_bad_max_forwards_gets_400() -> None:
    h = Harness()
    h.feed(with_max_forwards(invite(), "many"))
    sent = h.take()
    assert statuses(sent) == [100, 400]
    assert "Max-Forwards" in sent[1].reason  # type: ignore[union-attr]
    assert h.legs == []


@pytest.mark.parametrize(("received", "onward"), [("70", 69), ("1", 0), ("0042", 41), (None, 30)])
def test_outbound_leg_of_a_call_carries_the_decremented_hop_count(
    received: str | None, onward: int
) -> None:
    h = Harness(max_forwards=30)
    h.feed(with_max_forwards(invite(), received))
    assert statuses(h.take()) == [100]
    inbound = h.legs[0]
    expected = min(onward, 30)
    assert inbound.onward_max_forwards == expected
    _leg, request = h.outbound(inbound.onward_max_forwards)
    assert request.headers.get("Max-Forwards") == str(expected)


def test_requests_we_originate_carry_the_configured_value() -> None:
    h = Harness(max_forwards=17)
    leg, request = h.outbound(None)
    assert request.headers.get("Max-Forwards") == "17"
    h.feed(response_to(request, 180), OPERATOR)
    leg.cancel()
    cancel = h.take()
    assert statuses(cancel) == ["CANCEL"]
    assert cancel[0].headers.get("Max-Forwards") == "17"  # the INVITE's (§9.1)
    h.feed(response_to(request, 487), OPERATOR)
    h.take()
    # in-dialog requests (ACK, BYE) of an answered leg
    leg2, request2 = h.outbound(None)
    h.feed(response_to(request2, 200, body=SDP), OPERATOR)
    ack = h.take()
    assert statuses(ack) == ["ACK"] and ack[0].headers.get("Max-Forwards") == "17"
    leg2.bye()
    bye = h.take()
    assert statuses(bye) == ["BYE"] and bye[0].headers.get("Max-Forwards") == "17"


def test_cancel_of_a_forwarded_invite_keeps_its_hop_count() -> None:
    h = Harness()
    leg, request = h.outbound(5)
    h.feed(response_to(request, 180), OPERATOR)
    leg.cancel()
    cancel = h.take()
    assert cancel[0].headers.get("Max-Forwards") == "5"


def test_options_and_bye_with_max_forwards_zero_are_still_answered() -> None:
    """We are their final recipient (§16.3 step 3 lets OPTIONS be answered; a BYE is not
    forwarded as such): answered, never 483, never silence."""
    h = Harness()
    options = in_dialog("OPTIONS", "", 1, "z9hG4bKo1").replace(b";tag=\r\n", b"\r\n")
    h.feed(with_max_forwards(options.replace(b"CSeq", b"Max-Forwards: 70\r\nCSeq"), "0"))
    assert statuses(h.take()) == [200]
    h.feed(invite())
    h.take()
    h.legs[0].answer(SDP)
    ok = h.take()[0]
    to_tag = ok.to_tag or ""
    h.feed(in_dialog("ACK", to_tag, 1, "z9hG4bKack"))
    bye = in_dialog("BYE", to_tag, 2, "z9hG4bKbye")
    h.feed(bye.replace(b"CSeq", b"Max-Forwards: 0\r\nCSeq"))
    assert statuses(h.take()) == [200]


def test_reinvite_with_max_forwards_zero_gets_483() -> None:
    h = Harness()
    h.feed(invite())
    h.take()
    h.legs[0].answer(SDP)
    to_tag = h.take()[0].to_tag or ""
    h.feed(in_dialog("ACK", to_tag, 1, "z9hG4bKack"))
    reinvite = in_dialog("INVITE", to_tag, 2, "z9hG4bKre")
    h.feed(reinvite.replace(b"CSeq", b"Max-Forwards: 0\r\nCSeq"))
    assert statuses(h.take()) == [483]


def test_a_loop_through_one_server_ends_after_the_hop_budget() -> None:
    """Sans-IO model of a tracking number routed to ourselves: each inbound INVITE becomes an
    outbound INVITE fed back in. The chain stops with 483 after at most 70 hops."""
    h = Harness()
    wire = invite()
    hops = 0
    while True:
        h.feed(wire)
        sent = h.take()
        if 483 in statuses(sent):
            break
        hops += 1
        assert hops <= 70, "no runaway"
        inbound = h.legs[-1]
        _leg, request = h.outbound(inbound.onward_max_forwards)
        wire = serialize(request)
    assert hops == 70

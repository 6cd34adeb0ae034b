"""The adapters between SIP legs and the call flow's leg protocols (mediasrv/flow_legs.py), on
the real sans-IO user agent: wire bytes in, flow signals out, flow commands to wire bytes."""

from __future__ import annotations

from test_sip_ua import OPERATOR, SDP, Harness, in_dialog, invite, response_to, statuses

from mediasrv.calls.legs import (
    DialRequest,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegInfoDigit,
    LegRinging,
    LegSignal,
    TargetUnresolved,
)
from mediasrv.flow_legs import SipCallerLeg, SipDialer
from mediasrv.sip.dialog import Peer
from mediasrv.sip.message import Request, Response


def inbound(h: Harness, wire: bytes | None = None) -> tuple[SipCallerLeg, list[LegSignal]]:
    h.feed(wire or invite())
    assert statuses(h.take()) == [100]
    caller = SipCallerLeg(h.legs[-1])
    signals: list[LegSignal] = []
    caller.listen(signals.append)
    return caller, signals


def test_caller_leg_rings_answers_and_reports_cancel() -> None:
    h = Harness()
    caller, signals = inbound(h)
    assert (caller.called, caller.caller, caller.withheld) == ("0312345678", "+81901234567", "")
    assert caller.offer == SDP and not caller.terminated
    caller.ring(183, SDP)
    assert statuses(h.take()) == [183]
    h.feed(
        b"CANCEL sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n"
        b"From: <sip:0901234567@127.0.0.1:5071>;tag=from1\r\nTo: <sip:0312345678@127.0.0.1:5060>\r\n"
        b"Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    assert sorted(statuses(h.take())) == [200, 487]
    assert signals == [LegHungUp("cancel")] and caller.terminated


def test_caller_info_digit_and_bye_become_signals() -> None:
    h = Harness()
    caller, signals = inbound(h)
    caller.answer(SDP)
    ok = h.take()[0]
    assert isinstance(ok, Response) and ok.status == 200
    tag = (ok.headers.get("To") or "").split("tag=")[1]
    h.feed(in_dialog("ACK", tag, 1, "z9hG4bKack1"))
    info = in_dialog("INFO", tag, 2, "z9hG4bKinfo1").replace(
        b"Content-Length: 0\r\n\r\n",
        b"Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
    )
    h.feed(info)
    h.feed(in_dialog("BYE", tag, 3, "z9hG4bKbye1"))
    assert signals == [LegInfoDigit("5", 160), LegHungUp("bye")]


def test_withheld_callers_have_no_number_and_a_category() -> None:
    h = Harness()
    wire = invite().replace(b"sip:0901234567@", b"sip:anonymous@")
    caller, _ = inbound(h, wire)
    assert caller.caller == "" and caller.withheld == "anonymous"


async def test_dialer_places_the_leg_with_the_callers_hop_count_and_translates_responses() -> None:
    h = Harness()
    caller, _ = inbound(h, invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 10"))

    async def resolve(uri: str) -> Peer:
        return OPERATOR

    dialer = SipDialer(h.ua.create_outbound, resolve=resolve)
    signals: list[LegSignal] = []
    leg = await dialer.dial(
        DialRequest("sip:op@127.0.0.1:5090", SDP, "0901234567", on_behalf_of=caller),
        signals.append,
    )
    sent = h.take()
    assert statuses(sent) == ["INVITE"]
    req = sent[0]
    assert isinstance(req, Request) and req.headers.get("Max-Forwards") == "9"
    assert "sip:0901234567@" in (req.headers.get("From") or "")
    h.feed(response_to(req, 180), OPERATOR)
    h.feed(response_to(req, 200, body=SDP), OPERATOR)
    assert signals == [LegRinging(180, None), LegAnswered(SDP)]
    assert "ACK" in statuses(h.take())
    leg.end()
    assert statuses(h.take()) == ["BYE"]


async def test_dialer_reports_busy_and_unresolvable_targets() -> None:
    h = Harness()

    async def resolve(uri: str) -> Peer:
        if "nowhere" in uri:
            raise ValueError("cannot resolve 'nowhere'")
        return OPERATOR

    dialer = SipDialer(h.ua.create_outbound, resolve=resolve, route_phone=lambda _n, _t: None)
    signals: list[LegSignal] = []
    await dialer.dial(DialRequest("sip:op@127.0.0.1:5090", SDP, "0901234567"), signals.append)
    req = h.take()[0]
    assert isinstance(req, Request)
    h.feed(response_to(req, 486), OPERATOR)
    assert [type(s) for s in signals] == [LegFailed] and signals[0].code == 486  # type: ignore[union-attr]
    for uri in ("sip:op@nowhere", "tel:+81355550000"):
        try:
            await dialer.dial(DialRequest(uri, SDP, "0901234567"), signals.append)
        except TargetUnresolved:
            continue
        raise AssertionError(f"{uri} should not resolve")

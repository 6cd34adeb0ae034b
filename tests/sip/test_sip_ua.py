"""Sans-IO tests of transactions, dialogs and legs: a UserAgent on a fake clock, wire bytes in,
wire bytes out. Timers A..M run in simulated time (these tests take milliseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sip_fakeclock import FakeClock

from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.digest import DigestCredentials, DigestServer
from mediasrv.sip.events import Answered, Dtmf, Failed, Hangup, LegEvent, ReOffer, Ringing
from mediasrv.sip.legs import InboundLeg
from mediasrv.sip.message import Request, Response, serialize
from mediasrv.sip.parser import parse_message
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.ua import Admission, UserAgent

DATA = Path(__file__).parent.parent / "data" / "sip"
CALLER = Peer("UDP", "127.0.0.1", 5071)
OPERATOR = Peer("UDP", "127.0.0.1", 5090)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"


class Harness:
    def __init__(self, admission: object = None) -> None:
        self.clock = FakeClock()
        self.sent: list[tuple[Request | Response, Peer]] = []
        self.legs: list[InboundLeg] = []
        self.events: list[LegEvent] = []
        kwargs = {}
        if admission is not None:
            kwargs["admission"] = admission
        self.ua = UserAgent(
            self.clock,
            self._send,
            LocalContact("127.0.0.1", 5060),
            self._incoming,
            cfg=TimerConfig(),
            **kwargs,  # type: ignore[arg-type]
        )

    def _send(self, data: bytes, peer: Peer) -> None:
        self.sent.append((parse_message(data), peer))

    def _incoming(self, leg: InboundLeg, trunk: str) -> None:
        leg.sink = self.events.append
        self.legs.append(leg)

    def feed(self, msg: Request | Response | bytes, peer: Peer = CALLER) -> None:
        self.ua.receive(msg if isinstance(msg, bytes) else serialize(msg), peer)

    def take(self) -> list[Request | Response]:
        out = [m for m, _ in self.sent]
        self.sent.clear()
        return out

    def idle(self) -> bool:
        return self.ua.transaction_count() == 0 and self.ua.dialog_count() == 0


def invite(branch: str = "z9hG4bKinv1", call_id: str = "call-1", body: bytes = SDP) -> bytes:
    return (
        f"INVITE sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch={branch}\r\n"
        f"Max-Forwards: 70\r\n"
        f'From: "Alice" <sip:0901234567@127.0.0.1:5071>;tag=from1\r\n'
        f"To: <sip:0312345678@127.0.0.1:5060>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@127.0.0.1:5071;transport=UDP>\r\n"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def in_dialog(method: str, to_tag: str, cseq: int, branch: str, call_id: str = "call-1") -> bytes:
    return (
        f"{method} sip:mediasrv@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch={branch}\r\n"
        f"From: <sip:0901234567@127.0.0.1:5071>;tag=from1\r\n"
        f"To: <sip:0312345678@127.0.0.1:5060>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def statuses(msgs: list[Request | Response]) -> list[int | str]:
    return [m.status if isinstance(m, Response) else m.method for m in msgs]


def test_invite_gets_100_at_once_and_retransmission_gets_it_again() -> None:
    h = Harness()
    h.feed(invite())
    assert statuses(h.take()) == [100]
    assert len(h.legs) == 1
    h.feed(invite())  # retransmission: same branch -> same transaction
    assert statuses(h.take()) == [100]
    assert len(h.legs) == 1


def test_answer_retransmits_2xx_until_ack_then_bye_cleans_up() -> None:
    h = Harness()
    h.feed(invite())
    h.take()
    leg = h.legs[0]
    leg.answer(SDP)
    ok = h.take()
    assert statuses(ok) == [200]
    to_tag = ok[0].to_tag
    assert to_tag
    # §13.3.1.4: 2xx retransmitted at T1, 2T1, 4T1 ... until the ACK
    h.clock.advance(0.5)
    assert statuses(h.take()) == [200]
    h.clock.advance(1.0)
    assert statuses(h.take()) == [200]
    h.feed(in_dialog("ACK", to_tag, 1, "z9hG4bKack1"))
    h.clock.advance(10)
    assert h.take() == []
    h.feed(in_dialog("BYE", to_tag, 2, "z9hG4bKbye1"))
    assert statuses(h.take()) == [200]
    assert h.events == [Hangup("bye")]
    h.clock.advance(64 * 0.5 + 1)  # timers J and L expire
    assert h.idle()


def test_missing_ack_ends_dialog_with_bye_after_64_t1() -> None:
    h = Harness()
    h.feed(invite())
    leg = h.legs[0]
    leg.answer(SDP)
    h.take()
    h.clock.advance(64 * 0.5 + 0.1)
    sent = h.take()
    # 2xx retransmissions, then a BYE (§13.3.1.4)
    assert "BYE" in statuses(sent)
    assert Hangup("ack-timeout") in h.events


def test_cancel_before_answer_gets_200_and_487() -> None:
    h = Harness()
    h.feed(invite())
    h.take()
    cancel = (
        b"CANCEL sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv1\r\n"
        b'From: "Alice" <sip:0901234567@127.0.0.1:5071>;tag=from1\r\n'
        b"To: <sip:0312345678@127.0.0.1:5060>\r\n"
        b"Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    h.feed(cancel)
    sent = h.take()
    assert sorted(statuses(sent)) == [200, 487]
    assert h.events == [Hangup("cancel")]
    # The caller ACKs the 487 (same branch as the INVITE, §17.1.1.3)
    h.feed(
        in_dialog("ACK", sent[-1].to_tag or "", 1, "z9hG4bKinv1").replace(
            b"ACK sip:mediasrv", b"ACK sip:0312345678"
        )
    )
    h.clock.advance(40)
    assert h.idle()


def test_non_2xx_final_is_retransmitted_by_timer_g_until_timer_h() -> None:
    h = Harness()
    h.feed(invite())
    h.take()
    h.legs[0].reject(486)
    assert statuses(h.take()) == [486]
    h.clock.advance(0.5)
    assert statuses(h.take()) == [486]
    h.clock.advance(1.0)
    assert statuses(h.take()) == [486]
    h.clock.advance(40)  # timer H: no ACK, give up
    assert h.idle()


def test_unknown_dialog_bye_gets_481_and_options_gets_200() -> None:
    h = Harness()
    h.feed(in_dialog("BYE", "nosuchtag", 2, "z9hG4bKx"))
    assert statuses(h.take()) == [481]
    options = (
        b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKopt\r\n"
        b"From: <sip:ka@127.0.0.1>;tag=k\r\nTo: <sip:127.0.0.1>\r\n"
        b"Call-ID: ka-1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    h.feed(options)
    reply = h.take()
    assert statuses(reply) == [200]
    assert "INVITE" in (reply[0].headers.get("Allow") or "")
    h.clock.advance(40)
    assert h.idle()


@pytest.mark.parametrize(
    "name",
    sorted(
        p.name
        for p in DATA.glob("*.sip")
        if p.name.startswith(
            ("bad_", "missing", "cseq", "content_length", "header_without", "non_utf8", "binary")
        )
    ),
)
def test_malformed_fixtures_never_crash_and_leave_no_state(name: str) -> None:
    h = Harness()
    h.feed((DATA / name).read_bytes())
    expected = 505 if name == "bad_version.sip" else 400  # §21.5.6 Version Not Supported
    for msg in h.take():
        assert isinstance(msg, Response) and msg.status == expected
    h.clock.advance(40)
    assert h.idle()


def test_unanswerable_message_is_dropped_answerable_one_gets_400() -> None:
    h = Harness()
    wire: list[bytes] = []
    h.ua._send_to = lambda data, _peer: wire.append(data)
    h.feed(invite().replace(b"Call-ID: call-1\r\n", b""))
    # no Call-ID: the client matches a response by Via branch and CSeq (§17.1.3), so it gets
    # its 400 (RFC 4475 §3.3.1), without an invented Call-ID
    assert len(wire) == 1 and wire[0].startswith(b"SIP/2.0 400") and b"\r\nCall-ID:" not in wire[0]
    h.feed(invite().replace(b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv1\r\n", b""))
    assert len(wire) == 1  # no Via: nowhere to send a response (§18.2.2), dropped
    h.ua._send_to = h._send
    h.feed(invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
    assert statuses(h.take()) == [400]


def test_admission_reject_and_draining_503() -> None:
    h = Harness(admission=lambda req, peer: Admission.reject(403, "Forbidden"))
    h.feed(invite())
    # Refused before any state (issue 8): no 100 Trying, and the 403 is sent once.
    assert statuses(h.take()) == [403]
    assert h.idle()
    h2 = Harness()
    h2.ua.draining = True
    h2.feed(invite())
    assert statuses(h2.take()) == [100, 503]


def test_admission_drop_answers_nothing_and_keeps_no_transaction() -> None:
    """A dropped INVITE (auth guard, blocked_policy = "drop"): no 100, no final, and no
    server transaction that would wait forever for a response."""
    seen: list[str] = []

    def drop(req: Request, _peer: Peer) -> Admission:
        seen.append(req.call_id)
        return Admission.drop()

    h = Harness(admission=drop)
    h.feed(invite())
    h.feed(invite())  # a retransmission meets the policy again: still nothing
    assert h.take() == []
    assert seen == ["call-1", "call-1"]
    assert h.idle()
    h.clock.advance(40)
    assert h.take() == []


# -- outbound leg ---------------------------------------------------------------------------------


def response_to(req: Request, code: int, to_tag: str | None = "op1", body: bytes = b"") -> bytes:
    to = req.headers.get("To") or ""
    if to_tag:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {code} X"]
    lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
    lines += [
        f"From: {req.headers.get('From')}",
        f"To: {to}",
        f"Call-ID: {req.call_id}",
        f"CSeq: {req.cseq[0]} {req.cseq[1]}",
        "Contact: <sip:op@127.0.0.1:5090>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def start_outbound(
    h: Harness, creds: DigestCredentials | None = None
) -> tuple[object, list[LegEvent], Request]:
    events: list[LegEvent] = []
    leg = h.ua.create_outbound(
        "sip:op@127.0.0.1:5090", OPERATOR, "0901234567", "Alice", SDP, events.append, creds
    )
    sent = h.take()
    assert statuses(sent) == ["INVITE"]
    req = sent[0]
    assert isinstance(req, Request)
    return leg, events, req


def test_outbound_invite_timer_a_doubles_and_timer_b_fails_408() -> None:
    h = Harness()
    _leg, events, _req = start_outbound(h)
    times = []
    for _ in range(6):
        h.clock.advance(0.5 * 2 ** len(times))
        if h.take():
            times.append(h.clock.now)
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    h.clock.advance(1.0)
    assert events == [Failed(408, "Request Timeout")]
    assert h.idle()


def test_outbound_ringing_answer_ack_and_bye() -> None:
    h = Harness()
    leg, events, req = start_outbound(h)
    h.feed(response_to(req, 180), OPERATOR)
    h.feed(response_to(req, 200, body=SDP), OPERATOR)
    acks = h.take()
    assert statuses(acks) == ["ACK"]
    assert acks[0].uri == "sip:op@127.0.0.1:5090"  # to the Contact (remote target)
    assert events == [Ringing(180, None), Answered(SDP, "<sip:op@127.0.0.1:5090>")]
    # a retransmitted 200 gets the same ACK again (§13.2.2.4)
    h.feed(response_to(req, 200, body=SDP), OPERATOR)
    assert statuses(h.take()) == ["ACK"]
    leg.bye()  # type: ignore[attr-defined]
    bye = h.take()
    assert statuses(bye) == ["BYE"]
    assert isinstance(bye[0], Request)
    h.feed(response_to(bye[0], 200), OPERATOR)
    h.clock.advance(40)
    assert h.idle()


def test_outbound_cancel_waits_for_provisional_and_200_race_gets_ack_and_bye() -> None:
    h = Harness()
    leg, events, req = start_outbound(h)
    leg.cancel()  # type: ignore[attr-defined]
    assert h.take() == []  # §9.1: no CANCEL before a provisional response
    h.feed(response_to(req, 180), OPERATOR)
    sent = h.take()
    assert statuses(sent) == ["CANCEL"]
    assert sent[0].branch == req.branch
    h.feed(response_to(req, 200, body=SDP), OPERATOR)  # the 200 raced the CANCEL
    assert statuses(h.take()) == ["ACK", "BYE"]
    assert not any(isinstance(e, Answered) for e in events)


def test_outbound_busy_486_is_acked_and_reported() -> None:
    h = Harness()
    _leg, events, req = start_outbound(h)
    h.feed(response_to(req, 486), OPERATOR)
    assert statuses(h.take()) == ["ACK"]
    assert events == [Failed(486, "X")]
    h.clock.advance(40)
    assert h.idle()


def test_outbound_digest_retry_with_credentials() -> None:
    h = Harness()
    server = DigestServer("carrier", b"0123456789abcdef-secret")
    creds = DigestCredentials("trunkuser", "pw")
    _leg, events, req = start_outbound(h, creds)
    challenge = response_to(req, 401).replace(
        b"Content-Length: 0",
        f"WWW-Authenticate: {server.challenges()[0]}\r\nContent-Length: 0".encode(),
    )
    h.feed(challenge, OPERATOR)
    sent = h.take()
    assert statuses(sent) == ["ACK", "INVITE"]
    retry = sent[1]
    assert isinstance(retry, Request)
    assert retry.cseq[0] == req.cseq[0] + 1
    auth = retry.headers.get("Authorization") or ""
    result = server.verify(auth, "INVITE", lambda u: "pw", retry.uri)
    assert result.ok
    assert events == []


def test_reinvite_from_caller_is_offered_to_flow_and_answered() -> None:
    h = Harness()
    h.feed(invite())
    h.legs[0].answer(SDP)
    ok = next(m for m in h.take() if isinstance(m, Response) and m.status == 200)
    tag = ok.to_tag or ""
    h.feed(in_dialog("ACK", tag, 1, "z9hG4bKa1"))
    reinvite = in_dialog("INVITE", tag, 2, "z9hG4bKre1").replace(
        b"Content-Length: 0\r\n\r\n",
        b"Content-Type: application/sdp\r\nContent-Length: "
        + str(len(SDP)).encode()
        + b"\r\n\r\n"
        + SDP,
    )
    h.feed(reinvite)
    offers = [e for e in h.events if isinstance(e, ReOffer)]
    assert len(offers) == 1 and offers[0].sdp == SDP
    offers[0].respond(200, SDP)
    assert 200 in statuses(h.take())
    h.feed(in_dialog("ACK", tag, 2, "z9hG4bKa2"))
    h.clock.advance(5)
    assert h.take() == []  # the re-INVITE's 2xx stopped after its ACK


def test_a_bug_in_admission_costs_one_call_not_the_server() -> None:
    def broken(_req: Request, _peer: Peer) -> Admission:
        raise RuntimeError("boom")

    h = Harness(admission=broken)
    h.feed(invite())
    # the policy runs before the transaction exists (a dropped INVITE must leave none), so
    # the 500 goes out statelessly, without a 100 first; nothing is left behind
    assert statuses(h.take()) == [500]
    assert h.idle()
    h.clock.advance(40)
    assert h.idle()


def confirmed_inbound(h: Harness) -> tuple[InboundLeg, str]:
    h.feed(invite())
    leg = h.legs[0]
    leg.answer(SDP)
    ok = next(m for m in h.take() if isinstance(m, Response) and m.status == 200)
    tag = ok.to_tag or ""
    h.feed(in_dialog("ACK", tag, 1, "z9hG4bKack"))
    return leg, tag


def test_bye_timer_e_doubles_to_t2_and_timer_f_gives_up() -> None:
    """§17.1.2.2: E at T1, 2T1, 4T1, then every T2; F ends the transaction at 64*T1."""
    h = Harness()
    leg, _tag = confirmed_inbound(h)
    leg.bye()
    assert statuses(h.take()) == ["BYE"]
    times = []
    while h.clock.now < 40:
        h.clock.advance(0.25)
        if h.take():
            times.append(round(h.clock.now, 2))
    gaps = [round(b - a, 2) for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert set(gaps[4:]) == {4.0}  # capped at T2
    assert h.idle()


def test_bye_answered_then_timer_k_cleans_up() -> None:
    h = Harness()
    leg, _tag = confirmed_inbound(h)
    leg.bye()
    bye = h.take()[0]
    assert isinstance(bye, Request)
    h.feed(response_to(bye, 200, to_tag=None))
    h.clock.advance(5.1)  # timer K = T4
    assert h.ua.transaction_count() <= 1  # the INVITE server transaction may linger (timer L)
    h.clock.advance(40)
    assert h.idle()


def test_retransmitted_bye_gets_the_same_200_from_timer_j_state() -> None:
    h = Harness()
    _leg, tag = confirmed_inbound(h)
    bye = in_dialog("BYE", tag, 2, "z9hG4bKbye9")
    h.feed(bye)
    assert statuses(h.take()) == [200]
    h.feed(bye)  # the caller did not get our 200: same response again (§17.2.2)
    assert statuses(h.take()) == [200]
    h.clock.advance(64 * 0.5 + 0.1)  # timer J
    assert h.idle()


def test_info_dtmf_relay_becomes_a_dtmf_event() -> None:
    h = Harness()
    _leg, tag = confirmed_inbound(h)
    body = b"Signal=5\r\nDuration=160\r\n"
    info = in_dialog("INFO", tag, 2, "z9hG4bKinfo").replace(
        b"Content-Length: 0\r\n\r\n",
        b"Content-Type: application/dtmf-relay\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    h.feed(info)
    assert statuses(h.take()) == [200]
    assert Dtmf("5", 160) in h.events


def test_non_2xx_ack_moves_to_confirmed_and_timer_i_ends_it() -> None:
    h = Harness()
    h.feed(invite())
    h.legs[0].reject(486)
    busy = next(m for m in h.take() if isinstance(m, Response) and m.status == 486)
    ack = in_dialog("ACK", busy.to_tag or "", 1, "z9hG4bKinv1").replace(
        b"ACK sip:mediasrv", b"ACK sip:0312345678"
    )
    h.feed(ack)
    h.clock.advance(0.6)
    assert h.take() == []  # no more 486 retransmissions after the ACK (Confirmed)
    h.clock.advance(5.0)  # timer I = T4
    assert h.idle()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Alice" <sip:a@h>;tag=abc', '"Alice" <sip:a@h>'),
        ("<sip:a@h;transport=tcp>;TAG=x;foo=bar", "<sip:a@h;transport=tcp>;foo=bar"),
        ("<sip:a@h>", "<sip:a@h>"),
        ("sip:a@h;tag=zz", "<sip:a@h>"),
    ],
)
def test_strip_tag(value: str, expected: str) -> None:
    from mediasrv.sip.legs import strip_tag

    assert strip_tag(value) == expected

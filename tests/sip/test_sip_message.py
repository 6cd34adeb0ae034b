"""Parser, serializer and message model against wire fixtures (tests/data/sip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    serialize,
)
from mediasrv.sip.parser import SipParseError, parse_message
from mediasrv.sip.uri import parse_name_addr, parse_uri

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


VALID = [
    "pjsua2_invite.sip",
    "pjsua2_100_trying.sip",
    "pjsua2_180_ringing.sip",
    "pjsua2_200_ok_sdp.sip",
    "pjsua2_bye_200_ok.sip",
    "sipp_invite.sip",
    "sipp_invite_transport_upper.sip",
    "sipp_180_ringing.sip",
    "sipp_200_ok_sdp.sip",
    "compact_form.sip",
    "folded_headers.sip",
    "multi_via_one_line.sip",
    "bare_lf.sip",
    "ipv6_invite.sip",
    "unknown_method_mixed_case.sip",
    "ok_401_challenge.sip",
]

MALFORMED = {
    "bad_start_line.sip": "bad request line",
    "bad_version.sip": "unsupported SIP version",
    "bad_status.sip": "bad status code",
    "missing_call_id.sip": "missing Call-ID",
    "cseq_mismatch.sip": "CSeq method does not match",
    "content_length_too_big.sip": "Content-Length larger than body",
    "header_without_colon.sip": "header line without colon",
    "non_utf8_header.sip": "non-UTF-8 header bytes",
}


@pytest.mark.parametrize("name", VALID)
def test_round_trip(name: str) -> None:
    msg = parse_message(load(name))
    wire = serialize(msg)
    again = parse_message(wire)
    assert again == msg
    # serialising is a fixed point after the first normalisation
    assert serialize(again) == wire
    assert wire.count(b"\r\n\r\n") >= 1
    assert b"\n" not in wire.replace(b"\r\n", b"")[: wire.index(b"\r\n\r\n")]


def test_pjsua2_invite() -> None:
    msg = parse_message(load("pjsua2_invite.sip"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:0312345678@127.0.0.1:5999"
    assert msg.call_id == "LzftzT80EGzJ9BetJHoNwRYnhprXpRH3"
    assert msg.cseq == (22594, "INVITE")
    # From is an addr-spec without <>: ;tag is a header param (RFC 3261 §20.10)
    assert msg.from_tag == "P5cCSRrHiMEAElchspg1UHBuGE7U18Pb"
    assert msg.to_tag is None
    assert msg.branch == "z9hG4bKPjJh0pi485y7SYxoChZ6dd3rWM4bgwT-vh"
    assert msg.top_via.rport == ""
    assert msg.top_via.host == "127.0.0.1" and msg.top_via.port == 5996
    assert len(msg.body) == 620
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"cname:7b5758a272d4e151\r\n")
    assert "OPTIONS" in msg.headers.get_all("Allow")
    assert len(msg.headers.get_all("Allow")) == 12
    assert msg.headers.get_all("Supported") == ["replaces", "100rel", "timer", "norefersub"]
    contact = parse_name_addr(msg.headers.get("Contact") or "")
    assert contact.uri.params == {"ob": None}


def test_pjsua2_responses() -> None:
    trying, ringing, ok, bye_ok = (
        parse_message(load(f"pjsua2_{n}.sip"))
        for n in ("100_trying", "180_ringing", "200_ok_sdp", "bye_200_ok")
    )
    assert isinstance(ok, Response) and isinstance(bye_ok, Response)
    assert [m.status for m in (trying, ringing, ok, bye_ok)] == [100, 180, 200, 200]
    assert trying.to_tag is None
    assert ringing.to_tag == ok.to_tag == "PDlo0cnSVgPsBJtX4pmhp3YRd5TwT22U"
    assert ok.top_via.received == "127.0.0.1"
    assert ok.branch == "z9hG4bK-6210-1-0"
    assert ok.cseq == (1, "INVITE") and bye_ok.cseq == (2, "BYE")
    assert parse_name_addr(ok.headers.get("Contact") or "").uri.host_port() == ("127.0.0.1", 5995)
    assert parse_name_addr(ok.headers.get("From") or "").display_name == "sipp"
    assert len(ok.body) == 251 and ok.body.endswith(b"cname:1b7d0f330d65ea30\r\n")


def test_sipp_upper_case_transport_is_case_insensitive() -> None:
    msg = parse_message(load("sipp_invite_transport_upper.sip"))
    contact = parse_name_addr(msg.headers.get("m") or "")
    assert contact.uri.params["transport"] == "UDP"  # kept as written
    assert contact.uri.transport == "udp"
    assert contact.uri.host_port() == ("127.0.0.1", 5998)
    ok = parse_message(load("sipp_200_ok_sdp.sip"))
    assert parse_name_addr(ok.headers.get("Contact") or "").uri.transport == "udp"


def test_sipp_200_ok_with_sdp() -> None:
    msg = parse_message(load("sipp_200_ok_sdp.sip"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to_tag == "6248SIPpTag011"
    assert msg.cseq == (1, "INVITE")
    assert msg.headers.get("content-type") == "application/sdp"
    # "Content-Length:   129" with extra spaces
    assert len(msg.body) == 129 and msg.body.startswith(b"v=0")


def test_compact_forms_expand_to_canonical_names() -> None:
    msg = parse_message(load("compact_form.sip"))
    names = [n for n, _ in msg.headers.items()]
    assert names == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Supported",
        "Content-Type",
        "Content-Length",
    ]
    assert msg.call_id == "compact-1@192.0.2.1"
    assert msg.from_tag == "cmp1"
    assert msg.headers.get("i") == msg.headers.get("CALL-ID")
    assert msg.headers.get_all("k") == ["100rel", "timer"]
    assert msg.body.startswith(b"v=0\r\n")
    assert b"Content-Length: " + str(len(msg.body)).encode() in serialize(msg)


def test_folded_headers_are_unfolded() -> None:
    msg = parse_message(load("folded_headers.sip"))
    assert isinstance(msg, Request)
    assert msg.headers.get("Subject") == "first part second part"
    assert msg.cseq == (1, "OPTIONS")
    assert msg.branch == "z9hG4bKfold1"
    assert msg.top_via.rport == ""
    assert msg.from_tag == "fold-tag"
    assert msg.headers.get("To") == "<sip:127.0.0.1>"  # "TO   :" with spaces before the colon


def test_multi_value_via_and_route() -> None:
    msg = parse_message(load("multi_via_one_line.sip"))
    vias = msg.vias
    assert [v.branch for v in vias] == ["z9hG4bKp2", "z9hG4bKp1", "z9hG4bKua"]
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[1].received == "198.51.100.3"
    assert vias[2].rport == "5062"
    assert msg.top_via.host == "proxy2.example.net"
    routes = [parse_name_addr(r) for r in msg.headers.get_all("Route")]
    assert [r.uri.host for r in routes] == ["proxy2.example.net", "proxy1.example.net"]
    assert routes[1].display == '"Edge, Outer"'
    assert all(r.uri.lr for r in routes)
    # the quoted comma in To's display name does not split anything
    assert msg.to_tag == "c1"


def test_bare_lf_line_endings() -> None:
    msg = parse_message(load("bare_lf.sip"))
    assert isinstance(msg, Request)
    assert msg.method == "ACK"
    assert msg.cseq == (1, "ACK")
    assert msg.body == b""


def test_ipv6() -> None:
    msg = parse_message(load("ipv6_invite.sip"))
    assert isinstance(msg, Request)
    uri = parse_uri(msg.uri)
    assert uri.host == "[2001:db8::10]" and uri.port == 5070
    assert uri.host_port() == ("2001:db8::10", 5070)
    assert uri.transport == "tcp"
    via = msg.top_via
    assert via.host == "[2001:db8::9]" and via.port == 5060
    assert via.received == "2001:db8::9"


def test_unknown_method_and_case_insensitive_names() -> None:
    msg = parse_message(load("unknown_method_mixed_case.sip"))
    assert isinstance(msg, Request)
    assert msg.method == "NEWMETHOD"
    assert msg.branch == "z9hG4bKnm"  # BRANCH= key lower-cased
    assert msg.from_tag == "nm1"
    assert msg.headers.get_all("X-CUSTOM-HEADER") == ["some value", "second value"]
    assert [n for n, _ in msg.headers.items()][:5] == ["Via", "From", "To", "Call-ID", "CSeq"]


def test_authenticate_values_are_not_split() -> None:
    msg = parse_message(load("ok_401_challenge.sip"))
    values = msg.headers.get_all("www-authenticate")
    assert len(values) == 2
    assert values[0].startswith("Digest ") and "SHA-256" in values[0]
    assert 'nonce="abc,def"' in values[1]


@pytest.mark.parametrize(("name", "reason"), sorted(MALFORMED.items()))
def test_malformed_fixtures(name: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.reason == reason


def test_binary_junk() -> None:
    with pytest.raises(SipParseError):
        parse_message(load("binary_junk.sip"))


def test_partial_request_for_400() -> None:
    """Where a 400 can be formed, the error carries the partially parsed request."""
    for name in (
        "cseq_mismatch.sip",
        "content_length_too_big.sip",
        "header_without_colon.sip",
        "non_utf8_header.sip",
    ):
        with pytest.raises(SipParseError) as info:
            parse_message(load(name))
        partial = info.value.partial
        assert partial is not None, name
        bad = make_response(partial, 400, info.value.reason)
        assert bad.branch == "z9hG4bKbad"
        assert bad.call_id == "bad@192.0.2.1"
        assert bad.reason == info.value.reason
    # A usable Via is enough to answer (RFC 4475 §3.3.1): what is missing is not invented.
    with pytest.raises(SipParseError) as info:
        parse_message(load("missing_call_id.sip"))
    partial = info.value.partial
    assert partial is not None
    bad = make_response(partial, 400, info.value.reason)
    assert bad.branch == "z9hG4bKbad" and "Call-ID" not in bad.headers
    with pytest.raises(SipParseError) as info:
        parse_message(load("bad_start_line.sip"))
    assert info.value.partial is None


def test_content_length_absent_takes_rest_and_extra_bytes_dropped() -> None:
    wire = load("sipp_invite.sip")
    head, _, body = wire.partition(b"\r\n\r\n")
    no_length = b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length")
    )
    msg = parse_message(no_length + b"\r\n\r\n" + body)
    assert msg.body == body  # UDP: no Content-Length -> rest of datagram (§18.3)
    msg = parse_message(wire + b"garbage after the body")
    assert msg.body == body  # bytes past Content-Length are discarded


def test_leading_crlf_is_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + load("sipp_invite.sip"))
    assert isinstance(msg, Request) and msg.method == "INVITE"


def test_response_missing_mandatory_is_rejected() -> None:
    wire = load("sipp_200_ok_sdp.sip").replace(b"CSeq: 1 INVITE\r\n", b"")
    with pytest.raises(SipParseError, match="missing CSeq"):
        parse_message(wire)


def test_bad_cseq_number() -> None:
    wire = load("sipp_invite.sip")
    for cseq in (
        b"CSeq: x INVITE",
        b"CSeq: 2147483648 INVITE",
        b"CSeq: 1",
        b"CSeq: \xd9\xa1 INVITE",
    ):
        with pytest.raises(SipParseError):
            parse_message(wire.replace(b"CSeq: 1 INVITE", cseq))


def test_method_is_case_sensitive() -> None:
    wire = load("sipp_invite.sip").replace(b"INVITE sip:", b"invite sip:", 1)
    with pytest.raises(SipParseError, match="CSeq method"):
        parse_message(wire)


def test_make_response_copies_headers_per_8_2_6_2() -> None:
    req = parse_message(load("multi_via_one_line.sip"))
    assert isinstance(req, Request)
    resp = make_response(req, 200)
    assert resp.reason == "OK"
    # every Via line in order, exactly as received
    assert resp.headers.get_lines("Via") == req.headers.get_lines("Via")
    for name in ("From", "To", "Call-ID", "CSeq"):
        assert resp.headers.get(name) == req.headers.get(name)
    assert "Route" not in resp.headers and "Max-Forwards" not in resp.headers
    # To already has a tag: a given tag is not added a second time
    assert make_response(req, 200, to_tag="new").to_tag == "c1"

    invite = parse_message(load("sipp_invite.sip"))
    assert isinstance(invite, Request)
    ringing = make_response(invite, 180, to_tag="srvtag")
    assert ringing.to_tag == "srvtag"
    assert ringing.from_tag == invite.from_tag
    assert make_response(invite, 100).to_tag is None
    assert make_response(invite, 486).reason == "Busy Here"
    assert make_response(invite, 499).reason == "Client Error"
    assert make_response(invite, 603, "Not Today").reason == "Not Today"
    wire = serialize(ringing)
    assert wire.startswith(b"SIP/2.0 180 Ringing\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    assert serialize(parse_message(wire)) == wire


def test_trying_copies_timestamp() -> None:
    wire = load("sipp_invite.sip").replace(b"Max-Forwards", b"Timestamp: 54\r\nMax-Forwards")
    req = parse_message(wire)
    assert isinstance(req, Request)
    assert make_response(req, 100).headers.get("Timestamp") == "54"
    assert "Timestamp" not in make_response(req, 180).headers


def test_serialize_fixes_content_length() -> None:
    req = Request(
        "MESSAGE",
        "sip:a@b",
        Headers([("l", "999"), ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")]),
        b"hello",
    )
    wire = serialize(req)
    assert wire.split(b"\r\n")[1] == b"Content-Length: 5"
    assert wire.endswith(b"\r\n\r\nhello")


def test_headers_api() -> None:
    h = Headers([("v", "a"), ("From", "f"), ("VIA", "b, c"), ("x-thing", "1")])
    assert h.items()[0] == ("Via", "a")
    assert h.items()[3] == ("X-Thing", "1")
    assert h.get("via") == "a"
    assert h.get_all("Via") == ["a", "b", "c"]
    assert h.get("Missing") is None and h.get("Missing", "d") == "d"
    assert "from" in h and "f" in h and "To" not in h and 3 not in h
    h.prepend("Via", "top")
    assert h.get_all("v") == ["top", "a", "b", "c"]
    h.prepend("Route", "<sip:r;lr>")
    assert h.items()[0] == ("Route", "<sip:r;lr>")
    h.add("Via", "last")
    assert h.get_all("Via")[-1] == "last"
    h.set("via", "only")
    assert h.get_all("Via") == ["only"]
    assert [n for n, _ in h.items()] == ["Route", "Via", "From", "X-Thing"]
    h.set("Call-ID", "x")
    assert h.items()[-1] == ("Call-ID", "x")
    copy = h.copy()
    copy.remove("via")
    assert "Via" in h and "Via" not in copy
    assert h != copy and h == h.copy()
    # names with canonical spellings that are not Title-Case
    assert Headers([("www-authenticate", "x"), ("cseq", "1 A"), ("call-id", "i")]).items() == [
        ("WWW-Authenticate", "x"),
        ("CSeq", "1 A"),
        ("Call-ID", "i"),
    ]


def test_header_injection_refused() -> None:
    h = Headers()
    for call in (h.add, h.set, h.prepend):
        with pytest.raises(ValueError, match="line break"):
            call("Subject", "x\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError):
        Headers([("Subject", "a\nb")])
    assert len(h) == 0


def test_get_all_respects_quotes_and_brackets() -> None:
    h = Headers([("Contact", '"Doe, John" <sip:j@h;x="a,b">;q=0.5, <sip:k@h>')])
    assert h.get_all("Contact") == ['"Doe, John" <sip:j@h;x="a,b">;q=0.5', "<sip:k@h>"]
    h = Headers([("Subject", "a, b")])
    assert h.get_all("Subject") == ["a, b"]  # not a list header


def test_identifiers() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith("z9hG4bK") and len(b) > 16 for b in branches)
    assert len({new_tag() for _ in range(100)}) == 100
    cid = new_call_id("10.0.0.1")
    assert cid.endswith("@10.0.0.1") and len(cid) > 20


def test_size_limits() -> None:
    wire = load("sipp_invite.sip")
    with pytest.raises(SipParseError, match="message too large"):
        parse_message(wire + b"x" * 300_000)
    many = wire.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 300)
    with pytest.raises(SipParseError, match="too many headers") as info:
        parse_message(many)
    assert info.value.partial is not None  # still answerable with a 400


def test_conflicting_content_length() -> None:
    wire = load("sipp_invite.sip").replace(b"Max-Forwards", b"l: 3\r\nMax-Forwards")
    with pytest.raises(SipParseError, match="conflicting Content-Length"):
        parse_message(wire)
    same = load("sipp_invite.sip").replace(b"Max-Forwards", b"l: 129\r\nMax-Forwards")
    assert len(parse_message(same).body) == 129


def test_unusable_via_gives_no_partial() -> None:
    wire = load("sipp_invite.sip").replace(b"Via: SIP/2.0/UDP 127.0.0.1:5998", b"Via: garbage")
    with pytest.raises(SipParseError, match="bad Via") as info:
        parse_message(wire)
    assert info.value.partial is None  # nowhere to send a 400 (§18.2.2 needs the top Via)


def test_empty_and_whitespace_input() -> None:
    for data in (b"", b"\r\n", b"\r\n\r\n", b"   ", b"\x00"):
        with pytest.raises(SipParseError):
            parse_message(data)


@pytest.mark.parametrize("name", VALID)
def test_bare_lf_and_folding_paths_agree(name: str) -> None:
    """The CRLF fast path and the lenient path (bare LF, folding) give the same message."""
    msg = parse_message(load(name))
    wire = serialize(msg)
    head, _, body = wire.partition(b"\r\n\r\n")
    lf = parse_message(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert lf == msg
    # fold every header value after its first word (§7.3.1): same message once unfolded
    folded_lines = [head.split(b"\r\n")[0]]
    for line in head.split(b"\r\n")[1:]:
        name_part, _, value = line.partition(b": ")
        first, sp, rest = value.partition(b" ")
        folded_lines.append(name_part + b": " + first + (b"\r\n\t " + rest if sp else b""))
    folded = parse_message(b"\r\n".join(folded_lines) + b"\r\n\r\n" + body)
    assert folded == msg

"""TCP stream framing (RFC 3261 §18.3) with split and coalesced segments."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mediasrv.sip.message import serialize
from mediasrv.sip.parser import SipParseError, StreamFramer, parse_message

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"


def wire(name: str) -> bytes:
    # serialize() normalises to CRLF with a correct Content-Length, as a TCP peer must send
    return serialize(parse_message((DATA / name).read_bytes()))


MESSAGES = [
    wire("pjsua2_invite.sip"),
    wire("sipp_200_ok_sdp.sip"),
    wire("folded_headers.sip"),
    wire("compact_form.sip"),
    wire("ok_401_challenge.sip"),
]


def test_several_messages_in_one_segment() -> None:
    framer = StreamFramer()
    out = framer.feed(b"".join(MESSAGES))
    assert out == MESSAGES


def test_one_byte_at_a_time() -> None:
    framer = StreamFramer()
    stream = b"".join(MESSAGES)
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(framer.feed(stream[i : i + 1]))
    assert out == MESSAGES


def test_random_segmentation_with_keepalives() -> None:
    rng = random.Random(3261)
    # RFC 5626 §3.5.1: CRLFCRLF pings (and CRLF pongs) may sit between messages
    stream = b"\r\n\r\n".join(MESSAGES) + b"\r\n"
    for _ in range(50):
        framer = StreamFramer()
        out: list[bytes] = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 400)
            out.extend(framer.feed(stream[pos : pos + step]))
            pos += step
        assert out == MESSAGES
        assert framer.pings == len(MESSAGES) - 1
    assert [parse_message(m).headers.get("Call-ID") for m in out] == [
        parse_message(m).headers.get("Call-ID") for m in MESSAGES
    ]


def test_body_split_from_headers() -> None:
    framer = StreamFramer()
    msg = MESSAGES[0]
    head_end = msg.index(b"\r\n\r\n") + 4
    assert framer.feed(msg[:head_end]) == []
    assert framer.feed(msg[head_end:-1]) == []
    assert framer.feed(msg[-1:] + MESSAGES[1][:5]) == [msg]
    assert framer.feed(MESSAGES[1][5:]) == [MESSAGES[1]]


def test_keepalive_only() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings == 2


def test_missing_content_length_on_stream() -> None:
    msg = MESSAGES[2].replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match="missing Content-Length"):
        StreamFramer().feed(msg)


def test_compact_content_length_on_stream() -> None:
    msg = MESSAGES[2].replace(b"Content-Length: 0", b"l: 0")
    assert StreamFramer().feed(msg) == [msg]


def test_bad_content_length_on_stream() -> None:
    for bad in (b"Content-Length: -1", b"Content-Length: abc", b"Content-Length: 9999999999"):
        with pytest.raises(SipParseError):
            StreamFramer().feed(MESSAGES[2].replace(b"Content-Length: 0", bad))


def test_body_larger_than_limit() -> None:
    msg = MESSAGES[2].replace(b"Content-Length: 0", b"Content-Length: 70000")
    with pytest.raises(SipParseError, match="body too large"):
        StreamFramer().feed(msg)


def test_endless_header_block() -> None:
    framer = StreamFramer(max_message=4096)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError, match="header block too large"):
        for _ in range(1000):
            framer.feed(b"X-Junk: " + b"a" * 100 + b"\r\n")

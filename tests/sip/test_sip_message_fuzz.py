"""parse_message on hostile input raises SipParseError and nothing else (issue 2, bad input).

Property: for any bytes, parse_message either returns a message that survives
serialize -> parse unchanged, or raises SipParseError. The accessors on a parsed message
likewise raise nothing but SipParseError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediasrv.sip.message import Request, Response, serialize
from mediasrv.sip.parser import SipParseError, StreamFramer, parse_message
from mediasrv.sip.uri import parse_name_addr, parse_uri, parse_via

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
FIXTURES = sorted(p.read_bytes() for p in DATA.glob("*.sip"))


def _parses(data: bytes) -> bool:
    try:
        parse_message(data)
    except SipParseError:
        return False
    return True


VALID = [f for f in FIXTURES if _parses(f)]  # the well-formed fixtures are the fuzz seeds

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check(data: bytes) -> None:
    """The contract under test: SipParseError or a message that round-trips."""
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert exc.partial is None or isinstance(exc.partial, Request)
        return
    assert isinstance(msg, Request | Response)
    wire = serialize(msg)
    again = parse_message(wire)
    assert serialize(again) == wire
    assert again.body == msg.body
    # equal except that serialize always writes Content-Length (RFC 3261 §18.3)
    again.headers.remove("Content-Length")
    msg.headers.remove("Content-Length")
    assert again == msg
    for accessor in ("call_id", "cseq", "from_tag", "to_tag", "vias", "top_via", "branch"):
        try:
            getattr(msg, accessor)
        except SipParseError:
            pass
    for value in msg.headers.get_all("Contact") + msg.headers.get_all("Route"):
        try:
            parse_name_addr(value)
        except SipParseError:
            pass
    if isinstance(msg, Request):
        try:
            parse_uri(msg.uri)
        except SipParseError:
            pass


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_mutated_fixtures(base: bytes, data: st.DataObject) -> None:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = data.draw(
                st.sampled_from(
                    [b"\r\n", b"\n", b" ", b",", b";", b":", b"<", b'"', b"\x00", b"\t"]
                )
            )
        elif op == "delete" and buf:
            del buf[pos : pos + data.draw(st.integers(1, 20))]
        elif op == "dup":
            end = min(len(buf), pos + data.draw(st.integers(1, 40)))
            buf[pos:pos] = buf[pos:end]
    check(bytes(buf))


@FUZZ
@given(
    st.lists(
        st.text(
            alphabet=st.sampled_from(list('SIP/2.0 sip:@;=,<>"\\:tagbranchz9hG4bKVia\r\n\t[]?&1%')),
            max_size=80,
        ),
        max_size=12,
    )
)
def test_sip_shaped_text(lines: list[str]) -> None:
    check("\r\n".join(lines).encode())
    for line in lines:
        check_value(line)


def check_value(text: str) -> None:
    """URI / name-addr / Via parsers: SipParseError, or a value whose str() parses back equal."""
    for fn in (parse_uri, parse_name_addr, parse_via):
        try:
            value = fn(text)
        except SipParseError:
            continue
        assert fn(str(value)) == value, (fn.__name__, text, str(value))


@FUZZ
@given(
    st.sampled_from(["sip:", "sips:", "tel:", "SIP:", "<sip:", '"A" <sip:', "SIP/2.0/UDP "]),
    st.text(alphabet=st.sampled_from(list('ab1.:@;=?&<>[]" ,%+-_~*')), max_size=40),
)
def test_value_round_trip(prefix: str, rest: str) -> None:
    check_value(prefix + rest)


@pytest.mark.parametrize("index", range(len(VALID)))
def test_every_truncation(index: int) -> None:
    base = VALID[index]
    for cut in range(len(base)):
        check(base[:cut])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(1, 500), max_size=10))
def test_framer_only_raises_sip_parse_error(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer(max_message=1024)
    pos = 0
    try:
        for step in [*cuts, len(data)]:
            for raw in framer.feed(data[pos : pos + step]):
                check(raw)
            pos += step
    except SipParseError:
        pass

"""SIP URIs, name-addr and Via values (RFC 3261 §19.1, §20.10, §20.42)."""

from __future__ import annotations

import pytest

from mediasrv.sip.uri import (
    NameAddr,
    SipParseError,
    SipUri,
    Via,
    parse_name_addr,
    parse_uri,
    parse_via,
)


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sip:alice:secretword@Atlanta.COM:5070;Transport=TCP;lr;maddr=239.1.1.1?subject=x&priority=urgent"
    )
    assert uri.scheme == "sip"
    assert (uri.user, uri.password) == ("alice", "secretword")
    assert uri.host == "atlanta.com" and uri.port == 5070
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "239.1.1.1"}
    assert uri.transport == "tcp" and uri.lr and uri.maddr == "239.1.1.1"
    assert uri.headers == {"subject": "x", "priority": "urgent"}
    assert str(uri) == (
        "sip:alice:secretword@atlanta.com:5070;transport=TCP;lr;maddr=239.1.1.1"
        "?subject=x&priority=urgent"
    )
    assert parse_uri(str(uri)) == uri


def test_minimal_and_default_ports() -> None:
    assert parse_uri("sip:127.0.0.1").host_port() == ("127.0.0.1", 5060)
    assert parse_uri("SIPS:Bob@Biloxi.example").host_port() == ("biloxi.example", 5061)
    uri = parse_uri("sips:bob@biloxi.example")
    assert uri.scheme == "sips" and uri.user == "bob" and uri.port is None
    assert uri.transport is None and not uri.lr
    assert str(uri) == "sips:bob@biloxi.example"


def test_user_part_keeps_case_and_reserved_characters() -> None:
    # user-unreserved allows ";" "?" "/" etc. before the "@" (§25.1); users are case-sensitive
    uri = parse_uri("sip:+81-3-1234;phone-context=Tokyo@Gw.Example;user=phone")
    assert uri.user == "+81-3-1234;phone-context=Tokyo"
    assert uri.host == "gw.example"
    assert uri.params == {"user": "phone"}


def test_ipv6_uri() -> None:
    uri = parse_uri("sip:[2001:DB8::1]:5080;transport=udp")
    assert uri.host == "[2001:db8::1]" and uri.port == 5080
    assert uri.host_port() == ("2001:db8::1", 5080)
    assert parse_uri("sip:[::1]").host_port() == ("::1", 5060)
    assert str(parse_uri("sip:u@[::1]:5062")) == "sip:u@[::1]:5062"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+81312345678;phone-context=+81")
    assert uri.scheme == "tel" and uri.user == "+81312345678" and uri.host == ""
    assert uri.params == {"phone-context": "+81"}
    assert str(uri) == "tel:+81312345678;phone-context=+81"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",
        "http://example.com",
        "sip:",
        "sip:alice@",
        "sip:host:port",
        "sip:host:99999",
        "sip:host:٥٠٦٠",
        "sip:[::1",
        "sip:[::1]x",
        "sip:ho st",
        "sip:a@b@c",
        "tel:",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Bob \\"B\\" Smith" <sip:bob@biloxi.example>;tag=a6c85cf;X=1')
    assert na.display == '"Bob \\"B\\" Smith"'
    assert na.display_name == 'Bob "B" Smith'
    assert na.uri.user == "bob" and na.tag == "a6c85cf"
    assert na.params == {"tag": "a6c85cf", "x": "1"}
    assert str(na) == '"Bob \\"B\\" Smith" <sip:bob@biloxi.example>;tag=a6c85cf;x=1'

    token = parse_name_addr("Anonymous <sip:anonymous@anonymous.invalid>")
    assert token.display == "Anonymous" and token.display_name == "Anonymous"
    assert token.tag is None

    bare = parse_name_addr("<sip:carol@chicago.example;transport=UDP>;expires=60")
    assert bare.display is None
    assert bare.uri.params == {"transport": "UDP"}  # inside <>: URI parameter
    assert bare.params == {"expires": "60"} and bare.expires == 60


def test_addr_spec_params_belong_to_the_header() -> None:
    # §20.10: without <>, ";" parameters are header parameters, not URI parameters
    na = parse_name_addr("sip:caller@127.0.0.1;tag=P5cC;transport=udp")
    assert na.uri.params == {}
    assert na.params == {"tag": "P5cC", "transport": "udp"}
    assert str(na) == "<sip:caller@127.0.0.1>;tag=P5cC;transport=udp"


def test_unicode_display_name() -> None:
    na = parse_name_addr('"山田 太郎" <sip:0312345678@example.jp>;tag=1')
    assert na.display_name == "山田 太郎"
    assert parse_name_addr(str(na)) == na


def test_contact_wildcard() -> None:
    star = parse_name_addr("*")
    assert star.wildcard and str(star) == "*"


@pytest.mark.parametrize(
    "text",
    ['"unterminated <sip:a@b>', '"Bob" sip:bob@b', "<sip:a@b", "<sip:a@b> junk", "Bob <http://x>"],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_name_addr_round_trip() -> None:
    for text in (
        "<sip:a@b>",
        '"A, B" <sip:a@b:5060;lr>;tag=x;+sip.instance="<urn:uuid:1;2>"',
        "<sips:[::1]:5061>;q=0.5",
    ):
        na = parse_name_addr(text)
        assert parse_name_addr(str(na)) == na
    q = parse_name_addr('<sip:a@b>;+sip.instance="<urn:uuid:1;2>";q=0.5')
    assert q.params == {"+sip.instance": '"<urn:uuid:1;2>"', "q": "0.5"}


def test_via_forms() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK74bf9;received=192.0.2.1;rport=4000")
    assert via == Via(
        transport="UDP",
        host="10.0.0.1",
        port=5060,
        params={"branch": "z9hG4bK74bf9", "received": "192.0.2.1", "rport": "4000"},
    )
    assert via.branch == "z9hG4bK74bf9" and via.received == "192.0.2.1" and via.rport == "4000"
    assert via.sent_by == "10.0.0.1:5060"
    assert parse_via(str(via)) == via

    lower = parse_via("sip/2.0/tcp Proxy.Example;BRANCH=z9hG4bKx;rport")
    assert lower.protocol == "SIP/2.0" and lower.transport == "TCP"
    assert lower.host == "Proxy.Example" and lower.port is None  # sent-by echoed as written
    assert lower.rport == "" and lower.branch == "z9hG4bKx"
    assert str(lower) == "SIP/2.0/TCP Proxy.Example;branch=z9hG4bKx;rport"

    spaced = parse_via("SIP / 2.0 / UDP   first.example.com: 4000 ;ttl=16 ;maddr=224.2.0.1")
    assert spaced.transport == "UDP" and spaced.host == "first.example.com"
    assert spaced.params == {"ttl": "16", "maddr": "224.2.0.1"}

    v6 = parse_via("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKv6")
    assert v6.host == "[2001:db8::9]" and v6.port == 5061 and v6.transport == "TLS"
    assert parse_via("SIP/2.0/UDP h").branch is None and parse_via("SIP/2.0/UDP h").rport is None


@pytest.mark.parametrize(
    "text",
    ["", "SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host:x", "SIP//UDP host", "SIP/2.0/UDP a b"],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_dataclass_defaults_are_independent() -> None:
    a, b = SipUri(host="a"), SipUri(host="b")
    a.params["lr"] = None
    assert b.params == {}
    na = NameAddr(uri=a)
    na.params["tag"] = "t"
    assert NameAddr(uri=b).params == {}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # RFC 3261 §19.1.4 examples of equivalent URIs
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        # SIPp's upper-case transport value
        ("sip:sipp@127.0.0.1:5998;transport=UDP", "sip:sipp@127.0.0.1:5998;transport=udp"),
    ],
)
def test_equivalent_uris(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b))
    assert parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # RFC 3261 §19.1.4 examples of URIs that are not equivalent
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:a@b", "sips:a@b"),
    ],
)
def test_not_equivalent_uris(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b))
    assert not parse_uri(b).equivalent(parse_uri(a))

"""P-Asserted-Identity (RFC 3325 §9.1), Privacy (RFC 3323 §4.2) and From display names."""

from __future__ import annotations

from mediasrv.sip.legs import asserted_identities, display_text, privacy_tokens


def test_pai_as_one_comma_list_or_several_lines() -> None:
    one = ['"Sapporo Office" <sip:+81112345678@trunk;user=phone>, <tel:+81112345678>']
    assert asserted_identities(one) == [("+81112345678", "Sapporo Office"), ("+81112345678", "")]
    two = ["<sip:0112345678@trunk>", "tel:+81112345678"]
    assert asserted_identities(two) == [("0112345678", ""), ("+81112345678", "")]


def test_a_pai_value_that_does_not_parse_is_skipped() -> None:
    assert asserted_identities(["<sip:broken", '"x" <sip:+8131@h>']) == [("+8131", "x")]
    assert asserted_identities([]) == []


def test_privacy_tokens() -> None:
    assert privacy_tokens(["id;critical"]) == ["id", "critical"]
    assert privacy_tokens(["ID", " none "]) == ["id", "none"]


def test_display_names_in_any_script_are_unquoted() -> None:
    assert display_text('"山田 太郎"') == "山田 太郎"
    assert display_text('"say \\"hi\\""') == 'say "hi"'
    assert display_text("Bob") == "Bob"
    assert display_text(None) == ""


def test_inbound_leg_carries_identity_and_outbound_from_is_quoted_again() -> None:
    from test_sip_ua import OPERATOR, SDP, Harness

    h = Harness()
    h.feed(
        b"INVITE sip:0312345678@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKpai1\r\n"
        b"Max-Forwards: 70\r\n"
        + 'From: "\\"Q\\" 札幌 支店" <sip:0112111111@127.0.0.1:5071>;tag=f1\r\n'.encode()
        + b"To: <sip:0312345678@127.0.0.1>\r\n"
        b"Call-ID: pai-1\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:0112111111@127.0.0.1:5071>\r\n"
        b"P-Asserted-Identity: <sip:+81112111111@trunk;user=phone>\r\n"
        b"P-Asserted-Identity: <tel:+81112111111>\r\n"
        b"Privacy: none\r\n"
        b"Content-Type: application/sdp\r\n"
        + f"Content-Length: {len(SDP)}\r\n\r\n".encode()
        + SDP
    )
    (leg,) = h.legs
    assert leg.caller_display == '"Q" 札幌 支店'
    assert leg.asserted_identities == [("+81112111111", ""), ("+81112111111", "")]
    assert leg.privacy == ["none"]
    out = h.ua.create_outbound(
        target="sip:op@127.0.0.1:5090", peer=OPERATOR, from_user=leg.caller_user,
        from_display=leg.caller_display, sdp=SDP, sink=lambda _e: None,
    )  # fmt: skip
    assert out.request.headers.get("From", "").startswith('"\\"Q\\" 札幌 支店" <sip:0112111111@')

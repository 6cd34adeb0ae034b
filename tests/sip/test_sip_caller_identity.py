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

"""Caller numbers (issue 11): E.164, kinds, withheld callers, numbering area and prefecture."""

from __future__ import annotations

from collections import defaultdict

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.geodata import GEOCODE_DATA

from mediasrv.calls.caller_id import (
    PREFECTURES,
    NumberKind,
    area_table,
    identify_caller,
    number_info,
)

# One fixed-line number in each prefecture's capital (its city hall), by JIS X 0401 code.
CAPITALS = {
    1: "011-211-1111", 2: "017-734-1111", 3: "019-651-3111", 4: "022-261-1111",
    5: "018-860-1111", 6: "023-630-2211", 7: "024-521-1111", 8: "029-301-1111",
    9: "028-623-2323", 10: "027-223-1111", 11: "048-824-2111", 12: "043-223-2110",
    13: "03-5321-1111", 14: "045-210-1111", 15: "025-285-5511", 16: "076-431-4111",
    17: "076-225-1111", 18: "0776-21-1111", 19: "055-237-1111", 20: "026-232-0111",
    21: "058-272-1111", 22: "054-221-2455", 23: "052-961-2111", 24: "059-224-2000",
    25: "077-528-3993", 26: "075-451-8111", 27: "06-6941-0351", 28: "078-341-7711",
    29: "0742-22-1101", 30: "073-432-4111", 31: "0857-26-7111", 32: "0852-22-5111",
    33: "086-224-2111", 34: "082-228-2111", 35: "083-922-3111", 36: "088-621-2500",
    37: "087-831-1111", 38: "089-941-2111", 39: "088-823-1111", 40: "092-651-1111",
    41: "0952-24-2111", 42: "095-824-1111", 43: "096-383-1111", 44: "097-536-1111",
    45: "0985-26-7111", 46: "099-286-2111", 47: "098-866-2333",
}  # fmt: skip


@pytest.mark.parametrize("code", sorted(CAPITALS))
def test_each_prefectures_capital_resolves(code: int) -> None:
    info = number_info(CAPITALS[code])
    assert info.kind is NumberKind.FIXED, info
    assert info.prefecture_code == code and info.prefecture == PREFECTURES[code - 1], info
    assert info.e164 == "+81" + CAPITALS[code].replace("-", "")[1:]
    assert info.area


@pytest.mark.parametrize(
    ("number", "area", "prefecture"),
    [
        ("0288-21-1111", "今市", "栃木県"),  # phonenumbers en: Imabari, Ehime
        ("0735-22-1111", "新宮", "和歌山県"),  # en: Shingu, Fukuoka
        ("0779-66-1111", "大野", "福井県"),  # en: Ono, Gifu
        ("0846-62-1111", "木江", "広島県"),  # en: Mima, Tokushima
    ],
)
def test_areas_phonenumbers_misattributes(number: str, area: str, prefecture: str) -> None:
    info = number_info(number)
    assert (info.area, info.prefecture) == (area, prefecture), info
    assert "corrected" in info.source


def test_an_area_that_straddles_a_border_says_so() -> None:
    info = number_info("0942-30-1111")  # 久留米: also 佐賀県鳥栖市
    assert info.prefecture == "福岡県" and info.also_prefectures == ("佐賀県",)


def test_every_numbering_area_in_phonenumbers_has_exactly_one_prefecture() -> None:
    table = area_table()
    installed: dict[str, str] = {}
    names: defaultdict[str, int] = defaultdict(int)
    for prefix, desc in GEOCODE_DATA.items():
        if prefix.startswith("81") and desc.get("ja"):
            installed[prefix[2:]] = desc["ja"]
            names[desc["ja"]] += 1
    assert table.prefixes == installed, "jp_area_prefixes.tsv differs from phonenumbers"
    missing = sorted(set(names) - set(table.areas))
    assert not missing, f"areas without a prefecture row: {missing}"
    extra = sorted(set(table.areas) - set(names))
    assert not extra, f"rows for areas phonenumbers does not know: {extra}"
    for area in table.areas.values():
        assert 1 <= area.prefecture_code <= 47
        assert area.prefecture_code not in area.also
    assert phonenumbers.__version__ == "9.0.43"  # the table was reviewed against this


@pytest.mark.parametrize(
    ("text", "kind", "e164"),
    [
        ("090-1234-5678", NumberKind.MOBILE, "+819012345678"),
        ("08012345678", NumberKind.MOBILE, "+818012345678"),
        ("070-1234-5678", NumberKind.MOBILE, "+817012345678"),
        ("050-1234-5678", NumberKind.IP, "+815012345678"),
        ("0120-123-456", NumberKind.TOLL_FREE, "+81120123456"),
        ("0800-123-4567", NumberKind.TOLL_FREE, "+818001234567"),
        ("0570-064-556", NumberKind.NAVI_DIAL, "+81570064556"),
        ("+1 202 555 0123", NumberKind.INTERNATIONAL, "+12025550123"),
        ("+81 3 1234 5678", NumberKind.FIXED, "+81312345678"),
        ("0081312345678", NumberKind.FIXED, "+81312345678"),
        ("81312345678", NumberKind.FIXED, "+81312345678"),
        ("186-03-1234-5678", NumberKind.FIXED, "+81312345678"),
        ("tel:+81-3-1234-5678", NumberKind.FIXED, "+81312345678"),
        ("sip:+81312345678@trunk.example;user=phone", NumberKind.FIXED, "+81312345678"),
        ("sip:0312345678@192.0.2.1", NumberKind.FIXED, "+81312345678"),
        ("０３１２３４５６７８", NumberKind.FIXED, "+81312345678"),
    ],
)
def test_kinds_and_e164(text: str, kind: NumberKind, e164: str) -> None:
    info = number_info(text)
    assert (info.kind, info.e164) == (kind, e164), info


@pytest.mark.parametrize("text", ["090-1234-5678", "050-1234-5678", "0120-123-456", "anonymous"])
def test_no_region_numbers_are_an_explicit_unknown_with_a_reason(text: str) -> None:
    info = number_info(text)
    assert info.prefecture == "unknown" and info.prefecture_code is None
    assert "no region" in info.source or "withheld" in info.source


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("anonymous", NumberKind.ANONYMOUS),
        ("Anonymous", NumberKind.ANONYMOUS),
        ("非通知", NumberKind.ANONYMOUS),
        ("Coin line/payphone", NumberKind.PAYPHONE),
        ("公衆電話", NumberKind.PAYPHONE),
        ("Unavailable", NumberKind.UNAVAILABLE),
        ("Interaction with other service", NumberKind.UNAVAILABLE),
        ("表示圏外", NumberKind.UNAVAILABLE),
        ("sip:anonymous@anonymous.invalid", NumberKind.ANONYMOUS),
    ],
)
def test_withheld_kinds_are_recorded_as_themselves(text: str, kind: NumberKind) -> None:
    info = number_info(text)
    assert info.kind is kind and info.e164 is None and info.logged_number == kind.value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("abcdefg", "not digits"),
        ("03-12ab-5678", "not digits"),
        ("123", "too short"),
        ("0312345678901234567", "too long"),
        ("", "empty"),
        ("   ", "empty"),
        ("+", "empty"),
        ("9" * 200, "too long"),
        ("\x00\x01", "not digits"),
    ],
)
def test_malformed_input_is_invalid_never_an_exception(text: str, why: str) -> None:
    info = number_info(text)
    assert info.kind is NumberKind.INVALID and info.e164 is None
    assert why in info.source or info.source.startswith("invalid"), info


def test_privacy_id_makes_the_caller_anonymous_even_with_an_asserted_number() -> None:
    caller = identify_caller(
        "0312345678", "山田", [("+81312345678", "山田")], privacy=["id"], trusted=True
    )
    assert caller.info.kind is NumberKind.ANONYMOUS and caller.number == "anonymous"
    assert caller.display == "" and caller.source == "privacy"


def test_asserted_identity_only_from_a_trusted_trunk() -> None:
    asserted = [("+81112345678", "札幌 太郎")]
    untrusted = identify_caller("0312345678", "Tokyo", asserted, trusted=False)
    assert untrusted.number == "+81312345678" and untrusted.source == "from"
    trusted = identify_caller("0312345678", "Tokyo", asserted, trusted=True)
    assert trusted.number == "+81112345678" and trusted.source == "p-asserted-identity"
    assert trusted.display == "札幌 太郎" and trusted.info.prefecture == "北海道"


def test_display_names_say_which_withheld_kind() -> None:
    caller = identify_caller("", "Coin line/payphone")
    assert caller.info.kind is NumberKind.PAYPHONE and caller.display == ""
    kept = identify_caller("0112345678", "さっぽろ 😀 Ünïcode")
    assert kept.display == "さっぽろ 😀 Ünïcode"


def test_a_184_prefix_withholds() -> None:
    assert identify_caller("1840312345678").info.kind is NumberKind.ANONYMOUS


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"\A(\+|00|010|184|186|tel:|sip:)?[0-9\- ]{0,20}\Z"))
def test_any_text_gets_a_classification_never_an_exception(text: str) -> None:
    info = number_info(text)
    assert isinstance(info.kind, NumberKind)
    assert (info.e164 is None) == (info.kind is NumberKind.INVALID or info.withheld)
    caller = identify_caller(text, text, [(text, text)], [text], trusted=True)
    assert isinstance(caller.number, str)

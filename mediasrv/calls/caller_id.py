"""Caller numbers (issue 11, F13/F16): normalise to E.164, classify, find the prefecture.

Pure functions over strings, no SIP: ``sip/`` hands the From user and display name, the
P-Asserted-Identity values and the Privacy tokens over as text, and :func:`identify_caller`
picks the caller from them (RFC 3325 §9.1: P-Asserted-Identity only from a trusted trunk;
RFC 3323 §4.2 / RFC 3325 §9.3: ``Privacy: id`` withholds it). :func:`number_info` classifies
any number a person or a trunk gives:

    fixed (with its numbering area and prefecture), mobile (070/080/090), ip (050),
    toll-free (0120/0800), navi-dial (0570), other (a valid Japanese number of another kind:
    020, 0600, 0990 ...), international, invalid, and the withheld kinds anonymous (非通知),
    payphone (公衆電話) and unavailable (表示圏外), each recorded as itself.

Parsing and number types come from ``phonenumbers``; the numbering area of a fixed-line
prefix from its Japanese geocoding names (shipped as ``data/jp_area_prefixes.tsv``, checked
against the installed package by the tests); the prefecture from the reviewed table
``data/jp_area_prefecture.tsv`` (see its header for the provenance). Nothing here raises on
bad input: a malformed number is ``invalid`` with the reason.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

__all__ = [
    "PREFECTURES",
    "WITHHELD",
    "AreaTable",
    "CallerId",
    "NumberInfo",
    "NumberKind",
    "area_table",
    "identify_caller",
    "is_withheld",
    "number_info",
    "strip_dial_prefix",
]

REGION = "JP"
MAX_INPUT = 64  # characters: anything longer is not a phone number


class NumberKind(enum.StrEnum):
    FIXED = "fixed"
    MOBILE = "mobile"
    IP = "ip"
    TOLL_FREE = "toll-free"
    NAVI_DIAL = "navi-dial"
    OTHER = "other"
    INTERNATIONAL = "international"
    INVALID = "invalid"
    ANONYMOUS = "anonymous"  # 非通知: the caller withheld the number
    PAYPHONE = "payphone"  # 公衆電話
    UNAVAILABLE = "unavailable"  # 表示圏外: the network could not give the number


WITHHELD = frozenset((NumberKind.ANONYMOUS, NumberKind.PAYPHONE, NumberKind.UNAVAILABLE))

# JIS X 0401 prefecture codes 1..47, in code order.
PREFECTURES: tuple[str, ...] = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県",
    "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県",
    "山梨県", "長野県", "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府",
    "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県",
    "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県",
    "鹿児島県", "沖縄県",
)  # fmt: skip

# What trunks put where a number would be when there is none (ISDN's "reason for absence
# of number", carried in SIP as the From display name or user part): matched case-insensitively.
_WITHHELD_WORDS: dict[str, NumberKind] = {
    "anonymous": NumberKind.ANONYMOUS,
    "非通知": NumberKind.ANONYMOUS,
    "restricted": NumberKind.ANONYMOUS,
    "private": NumberKind.ANONYMOUS,
    "reject by user": NumberKind.ANONYMOUS,
    "payphone": NumberKind.PAYPHONE,
    "coin line/payphone": NumberKind.PAYPHONE,
    "coin line": NumberKind.PAYPHONE,
    "公衆電話": NumberKind.PAYPHONE,
    "unavailable": NumberKind.UNAVAILABLE,
    "interaction with other service": NumberKind.UNAVAILABLE,
    "表示圏外": NumberKind.UNAVAILABLE,
}
_KINDS_BY_TYPE = {
    PhoneNumberType.FIXED_LINE: NumberKind.FIXED,
    PhoneNumberType.MOBILE: NumberKind.MOBILE,
    PhoneNumberType.VOIP: NumberKind.IP,
    PhoneNumberType.TOLL_FREE: NumberKind.TOLL_FREE,
    PhoneNumberType.UAN: NumberKind.NAVI_DIAL,
}
_NO_REGION_REASON = {
    NumberKind.MOBILE: "mobile numbers carry no region",
    NumberKind.IP: "050 IP-phone numbers carry no region",
    NumberKind.TOLL_FREE: "toll-free numbers carry no region",
    NumberKind.NAVI_DIAL: "navi-dial (0570) numbers carry no region",
    NumberKind.OTHER: "this kind of number carries no region",
    NumberKind.INTERNATIONAL: "not a Japanese number",
    NumberKind.INVALID: "not a valid number",
    NumberKind.ANONYMOUS: "the caller withheld the number (非通知)",
    NumberKind.PAYPHONE: "a payphone gives no number (公衆電話)",
    NumberKind.UNAVAILABLE: "the network gave no number (表示圏外)",
}
_SEPARATORS = re.compile(r"[\s\-().\u2010-\u2015\u2212\u30fc\uff0d]")
_URI_SCHEME = re.compile(r"^(sips?|tel):", re.IGNORECASE)
_DIGITS = re.compile(r"^\+?[0-9]+$")
# 184 (withhold) and 186 (present) are dialled before a number, not part of it (NTT).
_DIAL_PREFIXES = ("184", "186")


# --------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Area:
    """One numbering area (番号区域) and its prefecture."""

    name: str
    prefecture_code: int
    also: tuple[int, ...]  # other prefectures the area reaches into
    how: str  # how the prefecture was established (see the data file)


class AreaTable:
    """Fixed-line prefix -> numbering area -> prefecture, from the two shipped data files."""

    def __init__(self, prefixes: dict[str, str], areas: dict[str, Area]) -> None:
        self.prefixes = prefixes
        self.areas = areas
        self._lengths = sorted({len(p) for p in prefixes}, reverse=True)

    @classmethod
    def from_lines(cls, prefix_lines: Iterable[str], area_lines: Iterable[str]) -> AreaTable:
        prefixes: dict[str, str] = {}
        for fields in _tsv(prefix_lines):
            prefixes[fields[0]] = fields[1]
        areas: dict[str, Area] = {}
        for fields in _tsv(area_lines):
            name, _prefix, code, also, how = fields
            if name in areas:
                raise ValueError(f"numbering area {name!r} listed twice")
            areas[name] = Area(name, int(code), tuple(int(c) for c in also.split(",") if c), how)
        return cls(prefixes, areas)

    def area_for(self, national: str) -> str | None:
        """The numbering area of a national significant number (no trunk 0): longest prefix."""
        for n in self._lengths:
            name = self.prefixes.get(national[:n])
            if name is not None:
                return name
        return None


def _tsv(lines: Iterable[str]) -> Iterable[list[str]]:
    for line in lines:
        line = line.rstrip("\n")
        if line and not line.startswith("#"):
            yield line.split("\t")


@cache
def area_table() -> AreaTable:
    """The shipped table (read once per process: immutable data, not a service)."""
    data = resources.files("mediasrv.calls") / "data"
    prefixes = (data / "jp_area_prefixes.tsv").read_text(encoding="utf-8").splitlines()
    areas = (data / "jp_area_prefecture.tsv").read_text(encoding="utf-8").splitlines()
    return AreaTable.from_lines(prefixes, areas)


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class NumberInfo:
    """What a number is: ``number-info``'s answer and the call row's caller attributes."""

    input: str
    kind: NumberKind
    e164: str | None = None
    area: str | None = None
    prefecture_code: int | None = None  # JIS X 0401
    prefecture: str = "unknown"
    source: str = ""  # where the prefecture came from, or why it is unknown
    also_prefectures: tuple[str, ...] = ()  # the area straddles a border into these
    dial_prefix: str = ""  # "184" / "186" when the input carried one

    @property
    def withheld(self) -> bool:
        return self.kind in WITHHELD

    @property
    def logged_number(self) -> str:
        """What the call log keeps as the caller number: E.164, the withheld kind, or the
        input as given (an invalid number is kept as itself, never guessed)."""
        if self.e164:
            return self.e164
        if self.withheld:
            return self.kind.value
        return self.input

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.input,
            "e164": self.e164,
            "kind": self.kind.value,
            "area": self.area,
            "prefecture_code": f"{self.prefecture_code:02d}" if self.prefecture_code else None,
            "prefecture": self.prefecture,
            "also_prefectures": list(self.also_prefectures),
            "source": self.source,
            "dial_prefix": self.dial_prefix,
        }


def withheld_kind(text: str) -> NumberKind | None:
    """The withheld kind a word stands for (``"Anonymous"``, ``"公衆電話"``...), else None."""
    return _WITHHELD_WORDS.get(text.strip().strip('"').strip().casefold())


def is_withheld(kind: NumberKind | str) -> bool:
    return NumberKind(kind) in WITHHELD


def _user_part(text: str) -> str:
    """``sip:+8131234@h;user=phone`` -> ``+8131234``; ``tel:+81-3-1234;npdi`` -> ``+81-3-1234``."""
    text = text.strip().strip("<>")
    match = _URI_SCHEME.match(text)
    if match is None:
        return text.split(";", 1)[0]
    rest = text[match.end() :]
    if match.group(1).lower() != "tel":
        rest = rest.split("@", 1)[0] if "@" in rest else ""
    return rest.split(";", 1)[0]


def strip_dial_prefix(digits: str) -> tuple[str, str]:
    """``"1840312345678"`` -> ``("0312345678", "184")``; other numbers are returned as they are."""
    for prefix in _DIAL_PREFIXES:
        if digits.startswith(prefix + "0") and len(digits) > len(prefix) + 9:
            return digits[len(prefix) :], prefix
    return digits, ""


def _cleaned(text: str) -> str:
    """Digits with an optional leading '+': separators and full-width digits normalised."""
    user = _user_part(text)
    user = user.translate(_FULLWIDTH)
    user = _SEPARATORS.sub("", user)
    if user.startswith("00") and not user.startswith("000"):
        user = "+" + user[2:]  # 00 + country code, the common international prefix
    elif user.startswith("010") and len(user) > 5:
        user = "+" + user[3:]  # Japan's own international prefix (010)
    elif user.startswith("81") and len(user) >= 11:
        user = "+" + user  # E.164 without '+', as some trunks send it
    return user


_FULLWIDTH = str.maketrans("０１２３４５６７８９＋", "0123456789+")


def number_info(text: str, table: AreaTable | None = None) -> NumberInfo:
    """Classify ``text`` (a number, a ``tel:`` or ``sip:`` URI, or a withheld word)."""
    raw = text if len(text) <= MAX_INPUT else text[:MAX_INPUT] + "..."
    kind = withheld_kind(text) or withheld_kind(_user_part(text))
    if kind is not None:
        return NumberInfo(raw, kind, source=_NO_REGION_REASON[kind])
    if len(text) > MAX_INPUT:
        return _invalid(raw, "too long")
    digits = _cleaned(text)
    if not digits:
        return _invalid(raw, "empty")
    if not _DIGITS.match(digits):
        return _invalid(raw, "not digits")
    digits, dial_prefix = strip_dial_prefix(digits)
    try:
        parsed = phonenumbers.parse(digits, REGION)
    except NumberParseException as exc:
        return _invalid(raw, str(exc.args[0] if exc.args else exc))
    if not phonenumbers.is_valid_number(parsed):
        return _invalid(raw, _why_invalid(parsed), dial_prefix)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.region_code_for_number(parsed) != REGION:
        kind = NumberKind.INTERNATIONAL
    else:
        kind = _KINDS_BY_TYPE.get(phonenumbers.number_type(parsed), NumberKind.OTHER)
    if kind is not NumberKind.FIXED:
        return NumberInfo(raw, kind, e164, source=_NO_REGION_REASON[kind], dial_prefix=dial_prefix)
    return _fixed(raw, e164, table or area_table(), dial_prefix)


def _why_invalid(parsed: phonenumbers.PhoneNumber) -> str:
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    return {
        ValidationResult.TOO_SHORT: "too short",
        ValidationResult.TOO_LONG: "too long",
        ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
        ValidationResult.INVALID_LENGTH: "wrong length",
    }.get(reason, "not an assigned number range")


def _invalid(raw: str, why: str, dial_prefix: str = "") -> NumberInfo:
    return NumberInfo(raw, NumberKind.INVALID, source=f"invalid: {why}", dial_prefix=dial_prefix)


def _fixed(raw: str, e164: str, table: AreaTable, dial_prefix: str) -> NumberInfo:
    national = e164[3:]  # "+81" stripped: the national significant number
    name = table.area_for(national)
    if name is None:
        return NumberInfo(
            raw, NumberKind.FIXED, e164, source="unknown: no numbering area known for this prefix",
            dial_prefix=dial_prefix,
        )  # fmt: skip
    area = table.areas.get(name)
    if area is None:  # the tests keep the two files in step; never guess
        return NumberInfo(
            raw, NumberKind.FIXED, e164, name,
            source=f"unknown: numbering area {name} is not in the prefecture table",
            dial_prefix=dial_prefix,
        )  # fmt: skip
    return NumberInfo(
        raw,
        NumberKind.FIXED,
        e164,
        name,
        area.prefecture_code,
        PREFECTURES[area.prefecture_code - 1],
        f"numbering area table ({area.how})",
        tuple(PREFECTURES[c - 1] for c in area.also),
        dial_prefix,
    )


# --------------------------------------------------------------------------- the caller


@dataclass(frozen=True)
class CallerId:
    """Who called, as the call log records it."""

    info: NumberInfo
    display: str = ""  # the From (or asserted) display name, in any script, as given
    source: str = "from"  # "from" | "p-asserted-identity" | "privacy"
    privacy: tuple[str, ...] = field(default=())

    @property
    def number(self) -> str:
        return self.info.logged_number


def _privacy_withholds(privacy: Sequence[str]) -> bool:
    # RFC 3323 §4.2: "id" (RFC 3325 §9.3), "user" and "header" all hide who the caller is.
    return any(p.strip().lower() in ("id", "user", "header") for p in privacy)


def identify_caller(
    from_user: str,
    from_display: str = "",
    asserted: Sequence[tuple[str, str]] = (),
    privacy: Sequence[str] = (),
    trusted: bool = False,
) -> CallerId:
    """The caller of an inbound call.

    ``asserted`` is the P-Asserted-Identity values as (user part or tel number, display);
    they count only when the trunk is ``trusted`` (RFC 3325 §9.1: a PAI from outside the
    trust domain is ignored). ``Privacy: id`` (or ``user``/``header``) makes the caller
    anonymous whatever the headers say; the display name is then not kept either. A number
    dialled with 184 (withhold) is anonymous too.
    """
    if _privacy_withholds(privacy):
        info = NumberInfo(from_user, NumberKind.ANONYMOUS, source=_NO_REGION_REASON[NumberKind.ANONYMOUS])
        return CallerId(info, "", "privacy", tuple(privacy))
    display = from_display
    source = "from"
    user = from_user
    if trusted:
        for asserted_user, asserted_display in asserted:
            if number_info(asserted_user).kind is not NumberKind.INVALID:
                user, source = asserted_user, "p-asserted-identity"
                display = asserted_display or from_display
                break
    info = number_info(user)
    if info.kind is NumberKind.INVALID or not user:
        by_display = withheld_kind(display) if display else None
        if by_display is not None:
            info = NumberInfo(user, by_display, source=_NO_REGION_REASON[by_display])
    if info.dial_prefix == "184":
        info = NumberInfo(user, NumberKind.ANONYMOUS, source="the caller dialled 184 (withhold)")
    if info.withheld:
        display = ""  # "Anonymous" is not a name
    return CallerId(info, display, source, tuple(privacy))

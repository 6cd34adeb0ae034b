"""Outcome labels (F19, first version): per-business phrase rules over the timeline.

A rule fires on one timeline segment when the segment is from the rule's speaker (or any),
contains one of its ``any`` phrases (and all of its ``all`` phrases), none of its
``exclude`` phrases, and the matched phrase is not negated right after it (Japanese
negation follows the verb: 予約できません, 予約はしない). Text is compared after
normalisation: NFKC (full/half-width), lower case, katakana folded to hiragana, kanji digits
to arabic, spaces and punctuation removed. The first label (in configuration order) with a
firing rule wins; the result quotes the segment as evidence; otherwise ``undetermined``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

UNDETERMINED = "undetermined"
DEFAULT_NEGATIONS = ("ない", "ません", "なかった", "ず", "無理", "できな", "not", "no", "dont", "cant")
_NEGATION_WINDOW = 10  # characters after the phrase where a negation cancels it

_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
                 "七": 7, "八": 8, "九": 9}
_KANJI_NUM = re.compile(r"[〇零一二三四五六七八九十]+")


class RuleError(ValueError):
    """Bad label configuration; the message names the business, label and key."""


def _kanji_number(m: re.Match[str]) -> str:
    s = m.group(0)
    if "十" not in s:
        return "".join(str(_KANJI_DIGITS[c]) for c in s)
    tens, _, ones = s.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        return s  # not a simple 1-99 numeral; leave it
    return str((_KANJI_DIGITS.get(tens, 1) if tens else 1) * 10 + _KANJI_DIGITS.get(ones, 0))


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in t)
    t = _KANJI_NUM.sub(_kanji_number, t)
    return "".join(c for c in t if unicodedata.category(c)[0] in "LN" or c == "ー")


@dataclass(frozen=True)
class Rule:
    name: str
    any: tuple[str, ...]
    all: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    speaker: str | None = None  # "caller", "operator" or None for either
    negations: tuple[str, ...] = DEFAULT_NEGATIONS

    def match(self, speaker: str, text: str) -> str | None:
        """The phrase that fired, or None."""
        if self.speaker is not None and speaker != self.speaker:
            return None
        norm = normalize(text)
        if any(normalize(x) in norm for x in self.exclude):
            return None
        if not all(normalize(x) in norm for x in self.all):
            return None
        negs = [normalize(n) for n in self.negations]
        for phrase in self.any:
            p = normalize(phrase)
            for m in re.finditer(re.escape(p), norm):
                tail = norm[m.end() : m.end() + _NEGATION_WINDOW]
                if not any(n and n in tail for n in negs):
                    return phrase
        return None


@dataclass(frozen=True)
class LabelSet:
    business: str
    labels: tuple[tuple[str, tuple[Rule, ...]], ...]

    @classmethod
    def from_config(cls, business: str, cfg: Mapping[str, Any]) -> LabelSet:
        labels: list[tuple[str, tuple[Rule, ...]]] = []
        raw = cfg.get("labels")
        if not isinstance(raw, Sequence):
            raise RuleError(f"business {business!r}: 'labels' must be a list")
        for i, lab in enumerate(raw):
            name = lab.get("label") if isinstance(lab, Mapping) else None
            if not isinstance(name, str) or not name:
                raise RuleError(f"business {business!r}: labels[{i}] needs a 'label' name")
            rules = tuple(_rule(business, name, j, r) for j, r in enumerate(lab.get("rules", [])))
            labels.append((name, rules))
        return cls(business, tuple(labels))


def _strs(business: str, label: str, key: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RuleError(f"business {business!r} label {label!r}: {key!r} must be a list of strings")


def _rule(business: str, label: str, j: int, r: Any) -> Rule:
    if not isinstance(r, Mapping):
        raise RuleError(f"business {business!r} label {label!r}: rules[{j}] must be a table")
    phrases = _strs(business, label, "any", r.get("any"))
    if not phrases:
        raise RuleError(f"business {business!r} label {label!r}: rules[{j}] needs 'any' phrases")
    speaker = r.get("speaker")
    if speaker not in (None, "caller", "operator", "any"):
        raise RuleError(f"business {business!r} label {label!r}: speaker must be caller|operator")
    negs = r.get("negations")
    return Rule(
        name=str(r.get("name", f"{label}#{j}")), any=phrases,
        all=_strs(business, label, "all", r.get("all")),
        exclude=_strs(business, label, "exclude", r.get("exclude")),
        speaker=None if speaker in (None, "any") else speaker,
        negations=DEFAULT_NEGATIONS if negs is None else _strs(business, label, "negations", negs),
    )


@dataclass(frozen=True)
class OutcomeResult:
    label: str
    rule: str | None = None
    phrase: str | None = None
    evidence: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "rule": self.rule, "phrase": self.phrase,
                "evidence": self.evidence or None}


def classify(labels: LabelSet, timeline: Sequence[Mapping[str, Any]]) -> OutcomeResult:
    """Timeline entries need ``channel`` and ``text`` (and start/end for the evidence)."""
    for name, rules in labels.labels:
        for rule in rules:
            for seg in timeline:
                phrase = rule.match(str(seg.get("channel")), str(seg.get("text", "")))
                if phrase is not None:
                    evidence = {k: seg.get(k) for k in ("channel", "start", "end", "text")}
                    return OutcomeResult(name, rule.name, phrase, evidence)
    return OutcomeResult(UNDETERMINED)


# A first rule set, usable as-is and as an example for per-business configuration.
DEFAULT_RULES: dict[str, Any] = {
    "labels": [
        {"label": "booking_made", "rules": [
            {"name": "operator_confirms_booking", "speaker": "operator",
             "any": ["予約を承りました", "ご予約承りました", "予約を受け付けました",
                     "予約をお取りしました", "予約完了", "ご予約を受けたまわりました",
                     "予約を受けたまわりました", "booking is confirmed", "booked you in"]},
            {"name": "caller_books", "speaker": "caller",
             "any": ["予約をお願いします", "予約お願いします", "それで予約します", "予約したい"],
             "exclude": ["キャンセル"]},
        ]},
        {"label": "cancelled", "rules": [
            {"name": "cancellation", "any": ["キャンセル", "取り消し", "cancel"]},
        ]},
    ],
}

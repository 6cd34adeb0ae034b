"""Blocking (SPEC F6): does a caller match the global, business or number blocklist?

A caller is an E.164 number (``"+819012345678"``) or, when the network withheld the number,
a :class:`~mediasrv.calls.business.WithheldCategory` (anonymous, payphone, unavailable).
:func:`classify_caller` turns the caller's user part as SIP delivers it into one of those.
Blocklists are compiled once per (hashable, frozen) list into sets, so a check is a few set
lookups plus one pass over the prefixes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from mediasrv.calls.business import (
    Blocklist,
    BlockRule,
    BlockScope,
    MatchKind,
    WithheldCategory,
)

__all__ = ["BlockMatch", "Caller", "ThreeLists", "caller_blocked", "classify_caller", "find_block"]

Caller = str | WithheldCategory  # E.164 number, or why there is none

# User parts that carriers and phones send instead of a number (RFC 3323 §4.1.1.3 recommends
# "anonymous"; Japanese carriers also signal payphones and numbers they could not deliver).
_WITHHELD_USERS: dict[str, WithheldCategory] = {
    "": WithheldCategory.ANONYMOUS,
    "anonymous": WithheldCategory.ANONYMOUS,
    "restricted": WithheldCategory.ANONYMOUS,
    "private": WithheldCategory.ANONYMOUS,
    "payphone": WithheldCategory.PAYPHONE,
    "coin line/payphone": WithheldCategory.PAYPHONE,
    "unavailable": WithheldCategory.UNAVAILABLE,
    "unknown": WithheldCategory.UNAVAILABLE,
    "interaction with other service": WithheldCategory.UNAVAILABLE,
}


def classify_caller(user: str) -> Caller:
    """``"Anonymous"`` -> ANONYMOUS, ``"payphone"`` -> PAYPHONE, ``"+8190..."`` stays.

    Anything that is not a withheld marker is returned stripped; the caller of this function
    normalises numbers to E.164 (the SIP layer knows the trunk's country)."""
    text = user.strip()
    return _WITHHELD_USERS.get(text.lower(), text)


@dataclass(frozen=True, slots=True)
class BlockMatch:
    """Why a caller is blocked: which list, which rule (logged with the blocked call)."""

    scope: BlockScope
    rule: BlockRule


@dataclass(frozen=True, slots=True)
class _Compiled:
    exact: dict[str, BlockRule]
    prefixes: tuple[BlockRule, ...]  # longest first: the most specific rule is reported
    withheld: dict[WithheldCategory, BlockRule]


@functools.lru_cache(maxsize=1024)
def _compile(blocklist: Blocklist) -> _Compiled:
    exact: dict[str, BlockRule] = {}
    withheld: dict[WithheldCategory, BlockRule] = {}
    prefixes: list[BlockRule] = []
    for rule in blocklist.rules:
        if rule.kind is MatchKind.EXACT:
            exact.setdefault(rule.value, rule)
        elif rule.kind is MatchKind.PREFIX:
            prefixes.append(rule)
        else:
            withheld.setdefault(WithheldCategory(rule.value), rule)
    prefixes.sort(key=lambda r: len(r.value), reverse=True)
    return _Compiled(exact, tuple(prefixes), withheld)


def _match(blocklist: Blocklist, caller: Caller) -> BlockRule | None:
    compiled = _compile(blocklist)
    if isinstance(caller, WithheldCategory):
        return compiled.withheld.get(caller)
    rule = compiled.exact.get(caller)
    if rule is not None:
        return rule
    for prefix in compiled.prefixes:
        if caller.startswith(prefix.value):
            return prefix
    return None


def find_block(
    caller: Caller,
    *,
    number: Blocklist | None = None,
    business: Blocklist | None = None,
    global_: Blocklist | None = None,
) -> BlockMatch | None:
    """The first matching rule, most specific scope first (number, business, global)."""
    for scope, blocklist in (
        (BlockScope.NUMBER, number),
        (BlockScope.BUSINESS, business),
        (BlockScope.GLOBAL, global_),
    ):
        if blocklist is not None and blocklist.rules:
            rule = _match(blocklist, caller)
            if rule is not None:
                return BlockMatch(scope, rule)
    return None


class ThreeLists(Protocol):
    """The three blocklists of a call (the flow plan's ``CallerBlocked`` condition)."""

    @property
    def number(self) -> object: ...

    @property
    def business(self) -> object: ...

    @property
    def global_(self) -> object: ...


def _as_list(value: object) -> Blocklist | None:
    return value if isinstance(value, Blocklist) else None


def caller_blocked(lists: ThreeLists, caller: str, withheld: str = "") -> BlockMatch | None:
    """The evaluator the flow plan injects: ``caller`` is the E.164 number (or the raw user
    part), ``withheld`` the category name when the network withheld the number ("" if not)."""
    who: Caller
    if withheld:
        try:
            who = WithheldCategory(withheld.strip().lower())
        except ValueError:
            who = classify_caller(withheld)
            if not isinstance(who, WithheldCategory):
                who = WithheldCategory.UNAVAILABLE  # withheld for a reason we do not know
    else:
        who = classify_caller(caller)
    return find_block(
        who,
        number=_as_list(lists.number),
        business=_as_list(lists.business),
        global_=_as_list(lists.global_),
    )

"""Blocking (SPEC F6): exact numbers, prefixes, withheld categories, three scopes."""

from __future__ import annotations

import pytest

from mediasrv.calls.blocking import BlockMatch, classify_caller, find_block
from mediasrv.calls.business import (
    Blocklist,
    BlockRule,
    BlockScope,
    MatchKind,
    WithheldCategory,
)


def rules(*specs: tuple[MatchKind, str]) -> Blocklist:
    return Blocklist(
        tuple(BlockRule(kind, value, note=f"{kind.value}:{value}") for kind, value in specs)
    )


GLOBAL = rules((MatchKind.PREFIX, "+8150"), (MatchKind.WITHHELD, "payphone"))
BUSINESS = rules((MatchKind.EXACT, "+819011112222"), (MatchKind.WITHHELD, "anonymous"))
NUMBER = rules((MatchKind.PREFIX, "+8190111"), (MatchKind.PREFIX, "+819011112"))


def check(caller: str | WithheldCategory) -> BlockMatch | None:
    return find_block(caller, number=NUMBER, business=BUSINESS, global_=GLOBAL)


def test_an_unlisted_caller_is_not_blocked() -> None:
    assert check("+81312345678") is None
    assert check(WithheldCategory.UNAVAILABLE) is None
    assert find_block("+819011112222") is None  # no lists at all


def test_exact_numbers_prefixes_and_the_most_specific_scope_first() -> None:
    # listed exactly in the business AND by prefix in the number: the number's rule is reported
    match = check("+819011112222")
    assert match is not None and match.scope is BlockScope.NUMBER
    assert match.rule.value == "+819011112"  # the longest matching prefix
    match = find_block("+819011112222", business=BUSINESS, global_=GLOBAL)
    assert match == BlockMatch(BlockScope.BUSINESS, BUSINESS.rules[0])
    match = check("+815012345678")  # 050 IP phones, blocked server-wide
    assert match is not None and match.scope is BlockScope.GLOBAL


def test_an_exact_rule_matches_only_the_whole_number() -> None:
    only_exact = rules((MatchKind.EXACT, "+819011112222"))
    assert find_block("+8190111122223", business=only_exact) is None
    assert find_block("+81901111222", business=only_exact) is None


@pytest.mark.parametrize(
    ("category", "scope"),
    [
        (WithheldCategory.ANONYMOUS, BlockScope.BUSINESS),
        (WithheldCategory.PAYPHONE, BlockScope.GLOBAL),
        (WithheldCategory.UNAVAILABLE, None),
    ],
)
def test_withheld_categories(category: WithheldCategory, scope: BlockScope | None) -> None:
    match = check(category)
    assert (match.scope if match else None) is scope


def test_a_withheld_rule_never_matches_a_number_and_vice_versa() -> None:
    assert (
        find_block("anonymous", business=BUSINESS) is None
    )  # a string is a number, not a category
    assert find_block(WithheldCategory.ANONYMOUS, number=NUMBER) is None


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("Anonymous", WithheldCategory.ANONYMOUS),
        ("", WithheldCategory.ANONYMOUS),
        ("restricted", WithheldCategory.ANONYMOUS),
        ("PAYPHONE", WithheldCategory.PAYPHONE),
        ("unavailable", WithheldCategory.UNAVAILABLE),
        ("Unknown", WithheldCategory.UNAVAILABLE),
        (" +819011112222 ", "+819011112222"),
    ],
)
def test_classify_caller(user: str, expected: str | WithheldCategory) -> None:
    assert classify_caller(user) == expected


class _Lists:
    """Shaped like the flow plan's CallerBlocked condition."""

    def __init__(self) -> None:
        self.number: object = NUMBER
        self.business: object = BUSINESS
        self.global_: object = GLOBAL


@pytest.mark.parametrize(
    ("caller", "withheld", "scope"),
    [
        ("+819011112222", "", BlockScope.NUMBER),
        ("+815012345678", "", BlockScope.GLOBAL),
        ("+81312345678", "", None),
        ("", "anonymous", BlockScope.BUSINESS),
        ("", "PAYPHONE", BlockScope.GLOBAL),
        ("", "unavailable", None),
        ("Anonymous", "", BlockScope.BUSINESS),  # no category given: the user part tells
        ("", "Coin line/payphone", BlockScope.GLOBAL),
        ("", "some new reason", None),  # unknown reason: unavailable, not blocked here
    ],
)
def test_the_evaluator_the_flow_plan_injects(
    caller: str, withheld: str, scope: BlockScope | None
) -> None:
    from mediasrv.calls.blocking import caller_blocked

    match = caller_blocked(_Lists(), caller, withheld)
    assert (match.scope if match else None) is scope


def test_the_evaluator_ignores_missing_lists() -> None:
    from mediasrv.calls.blocking import caller_blocked

    lists = _Lists()
    lists.number = lists.business = None
    match = caller_blocked(lists, "+819011112222", "")
    assert match is None  # only the global list is left, and it does not list this number

"""Callback-email tracking (issue 12 §5): the lease rules, on a fake clock (no sleeps)."""

from __future__ import annotations

from mediasrv.calls.callback import CallbackCall, LeaseBook, LeaseOutcome

POOL = ("+81355550001", "+81355550002")
DAY = 86400.0


def call(caller: str, call_id: str, medium: str = "web", business: str = "acme") -> CallbackCall:
    return CallbackCall(business, caller, call_id, "+81312345678", medium, "spring")


def test_a_new_caller_gets_the_first_free_number_for_the_period() -> None:
    book = LeaseBook()
    result = book.lease(POOL, call("+819011110001", "c1"), now=1000.0, period=DAY)
    assert result.outcome is LeaseOutcome.NEW and result.lease is not None
    assert result.lease.number == POOL[0] and result.lease.expires_at == 1000.0 + DAY
    assert book.active(POOL[0], 1000.0 + DAY - 0.001) == result.lease
    assert book.active(POOL[0], 1000.0 + DAY) is None  # the period is half-open
    assert book.active(POOL[1], 1000.0) is None  # never leased


def test_the_same_caller_keeps_its_number_and_the_latest_call_is_attributed() -> None:
    book = LeaseBook()
    book.lease(POOL, call("+819011110001", "c1", medium="web"), 0.0, DAY)
    again = book.lease(POOL, call("+819011110001", "c2", medium="radio"), 3600.0, DAY)
    assert again.outcome is LeaseOutcome.RENEWED and again.lease is not None
    assert again.lease.number == POOL[0] and again.lease.expires_at == 3600.0 + DAY
    lease = book.active(POOL[0], 3601.0)
    assert lease is not None and (lease.call.call_id, lease.call.medium) == ("c2", "radio")
    # renewed, not a second number: the other one is still free
    other = book.lease(POOL, call("+819022220002", "c3"), 3700.0, DAY)
    assert other.lease is not None and other.lease.number == POOL[1]


def test_an_expired_number_not_given_away_is_the_callers_again() -> None:
    book = LeaseBook()
    book.lease(POOL, call("+819011110001", "c1"), 0.0, DAY)
    back = book.lease(POOL, call("+819011110001", "c9"), 10 * DAY, DAY)
    assert back.outcome is LeaseOutcome.RENEWED and back.lease is not None
    assert back.lease.number == POOL[0]


def test_a_full_pool_reuses_the_number_expired_longest_ago() -> None:
    book = LeaseBook()
    book.lease(POOL, call("+819011110001", "c1"), 0.0, DAY)  # expires at DAY
    book.lease(POOL, call("+819022220002", "c2"), 100.0, DAY)  # expires at DAY + 100
    third = book.lease(POOL, call("+819033330003", "c3"), 2 * DAY, DAY)
    assert third.outcome is LeaseOutcome.NEW and third.lease is not None
    assert third.lease.number == POOL[0]  # expired first (least recently used)
    fourth = book.lease(POOL, call("+819044440004", "c4"), 2 * DAY + 1, DAY)
    assert fourth.lease is not None and fourth.lease.number == POOL[1]
    # the first caller's number went to the third caller: the first gets none now
    assert book.get(POOL[0]) is not None and book.get(POOL[0]).call.caller == "+819033330003"  # type: ignore[union-attr]


def test_a_pool_leased_to_others_is_exhausted() -> None:
    book = LeaseBook()
    book.lease(POOL, call("+819011110001", "c1"), 0.0, DAY)
    book.lease(POOL, call("+819022220002", "c2"), 0.0, DAY)
    full = book.lease(POOL, call("+819033330003", "c3"), 10.0, DAY)
    assert full.outcome is LeaseOutcome.EXHAUSTED and full.lease is None
    # the leases held are untouched
    assert {book.active(n, 10.0).call.call_id for n in POOL} == {"c1", "c2"}  # type: ignore[union-attr]


def test_no_pool_or_no_period_leases_nothing() -> None:
    book = LeaseBook()
    assert book.lease((), call("+819011110001", "c1"), 0.0, DAY).lease is None
    assert book.lease(POOL, call("+819011110001", "c1"), 0.0, 0.0).lease is None
    assert book.leases() == []


def test_another_business_caller_never_takes_over_a_number_as_its_own() -> None:
    book = LeaseBook()
    book.lease(POOL, call("+819011110001", "c1", business="acme"), 0.0, DAY)
    # same caller, another business with (wrongly) the same pool: not a renewal
    other = book.lease(POOL, call("+819011110001", "c2", business="beta"), 1.0, DAY)
    assert other.outcome is LeaseOutcome.NEW and other.lease is not None
    assert other.lease.number == POOL[1]


def test_leases_reload_into_a_new_book() -> None:
    book = LeaseBook()
    lease = book.lease(POOL, call("+819011110001", "c1"), 0.0, DAY).lease
    again = LeaseBook(book.leases())
    assert again.active(POOL[0], 1.0) == lease

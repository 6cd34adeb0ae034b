"""The dispatcher's cycle (bench/notify.py's findings): the attempts finished since the last
cycle are recorded in the same transaction that claims the next deliveries, only where this
worker still holds the lease; a backlog drains without waiting for the idle poll (no lost
wake-up), and deliveries that cannot be claimed yet cost no busy loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from receiver import Receiver

from mediasrv.outputs.outbox import (
    Attempt,
    DeliveryState,
    Finish,
    OutboxEvent,
    OutboxStore,
    WebhookDispatcher,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OutboxStore]:
    s = OutboxStore(tmp_path / "mediasrv.db")
    await s.open()
    yield s
    await s.close()


def _event(call: str, step: int) -> OutboxEvent:
    return OutboxEvent("acme", call, "call.updated", {"call_id": call, "step": step}, time.time())


def _ok(claim_id: int, attempt: int = 1) -> Attempt:
    return Attempt(claim_id, attempt, time.time(), 204, 1.0, None, "")


async def _endpoint_for(store: OutboxStore, receiver: Receiver | None = None) -> str:
    ep = await store.add_endpoint("acme", "http://placeholder.invalid/")
    if receiver is not None:
        receiver.secrets.append(ep.secrets[0])
        await store.conn.execute(
            "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?",
            (receiver.url, ep.endpoint_id),
        )
    return ep.endpoint_id


async def _count_claims(store: OutboxStore) -> list[int]:
    """Wrap ``store.claim`` to count the dispatcher's cycles (each is one transaction)."""
    calls = [0]
    original = store.claim

    async def counting(*args: object, **kw: object) -> object:
        calls[0] += 1
        return await original(*args, **kw)  # type: ignore[arg-type]

    store.claim = counting  # type: ignore[method-assign]
    return calls


async def test_one_transaction_records_finished_attempts_and_claims_the_next(
    store: OutboxStore,
) -> None:
    await _endpoint_for(store)
    await store.enqueue([_event(f"call-{c}", i) for i in range(2) for c in range(3)])
    now = time.time()
    first = await store.claim("n1:a", now, 10, 60.0)
    assert len(first) == 3  # one per call: each call's second event waits for its first
    finished = [Finish(c, _ok(c.delivery_id), None) for c in first]
    second = await store.claim("n1:a", now, 10, 60.0, finished)
    # The first events are delivered and logged, and in the SAME transaction the second
    # event of each call became the oldest undelivered one of its call, so it was claimed.
    assert len(second) == 3
    assert {c.delivery_id for c in second}.isdisjoint(c.delivery_id for c in first)
    delivered = await store.deliveries("acme", state=DeliveryState.DELIVERED)
    assert sorted(d["delivery_id"] for d in delivered) == sorted(c.delivery_id for c in first)
    for c in first:
        (attempt,) = await store.attempts("acme", c.delivery_id)
        assert attempt.status == 204 and attempt.attempt == 1


async def test_a_worker_whose_lease_was_taken_over_records_nothing(store: OutboxStore) -> None:
    await _endpoint_for(store)
    await store.enqueue([_event("call-1", 0)])
    (stale,) = await store.claim("n1:old", time.time(), 10, -1.0)  # its lease has expired
    (taken,) = await store.claim("n2:new", time.time(), 10, 60.0)
    assert taken.delivery_id == stale.delivery_id
    await store.claim("n1:old", time.time(), 0, 60.0, [Finish(stale, _ok(stale.delivery_id), None)])
    (row,) = await store.deliveries("acme")
    assert row["state"] == DeliveryState.PENDING and row["attempts"] == 0
    assert await store.attempts("acme", stale.delivery_id) == []
    # The holder's own finish counts.
    await store.finish(taken, "n2:new", _ok(taken.delivery_id), None)
    (row,) = await store.deliveries("acme")
    assert row["state"] == DeliveryState.DELIVERED and row["attempts"] == 1


async def test_a_failed_attempt_in_a_batch_is_scheduled_and_the_rest_delivered(
    store: OutboxStore,
) -> None:
    await _endpoint_for(store)
    await store.enqueue([_event("call-1", 0), _event("call-2", 0)])
    a, b = await store.claim("n1:a", time.time(), 10, 60.0)
    failed = Attempt(b.delivery_id, 1, time.time(), 500, 1.0, None, "no")
    retry_at = time.time() + 300
    await store.claim(
        "n1:a",
        time.time(),
        10,
        60.0,
        [Finish(a, _ok(a.delivery_id), None), Finish(b, failed, retry_at)],
    )
    rows = {r["delivery_id"]: r for r in await store.deliveries("acme")}
    assert rows[a.delivery_id]["state"] == DeliveryState.DELIVERED
    assert rows[b.delivery_id]["state"] == DeliveryState.PENDING
    assert rows[b.delivery_id]["next_at"] == pytest.approx(retry_at)
    assert [x.status for x in await store.attempts("acme", b.delivery_id)] == [500]


async def test_a_backlog_drains_without_waiting_for_the_idle_poll(store: OutboxStore) -> None:
    # 8 calls x 6 events through 4 slots: every cycle depends on wake-ups from attempts
    # ending. With the idle poll at 30 s, one lost wake-up would stall the drain for 30 s.
    receiver = Receiver([])
    await receiver.start()
    await _endpoint_for(store, receiver)
    events = [_event(f"call-{c}", i) for i in range(6) for c in range(8)]
    await store.enqueue(events)
    d = WebhookDispatcher(store, allow_private=True, concurrency=4, idle_poll_s=30.0)
    await d.start()
    try:
        await receiver.wait_for(len(events), timeout=20)
    finally:
        await d.stop()
        await receiver.stop()
    by_call: dict[str, list[int]] = {}
    for r in receiver.requests:
        by_call.setdefault(str(r.data["call_id"]), []).append(r.subject_seq)
    assert all(seqs == [1, 2, 3, 4, 5, 6] for seqs in by_call.values())
    assert len(by_call) == 8 and receiver.rejected == []


async def test_a_producer_commit_wakes_an_idle_dispatcher_at_once(store: OutboxStore) -> None:
    receiver = Receiver([])
    await receiver.start()
    await _endpoint_for(store, receiver)
    d = WebhookDispatcher(store, allow_private=True, idle_poll_s=30.0)
    await d.start()
    try:
        for i in range(5):
            await asyncio.sleep(0.05)  # idle again between events
            await store.enqueue([_event("call-1", i)])
            d.wake()
            await receiver.wait_for(i + 1, timeout=10)  # not the 30 s idle poll
    finally:
        await d.stop()
        await receiver.stop()
    assert [r.subject_seq for r in receiver.requests] == [1, 2, 3, 4, 5]


async def test_no_busy_loop_while_due_deliveries_cannot_be_claimed(store: OutboxStore) -> None:
    # Due deliveries of a disabled endpoint stay pending (a re-enabled endpoint gets them):
    # the dispatcher must sleep until woken or its idle poll, not claim in a loop.
    endpoint = await _endpoint_for(store)
    await store.enqueue([_event(f"call-{c}", 0) for c in range(5)])
    await store.set_enabled("acme", endpoint, False, "test")
    cycles = await _count_claims(store)
    d = WebhookDispatcher(store, allow_private=True, idle_poll_s=0.2)
    await d.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        await d.stop()
    assert 1 <= cycles[0] <= 12  # about one per idle poll (a loop would make thousands)

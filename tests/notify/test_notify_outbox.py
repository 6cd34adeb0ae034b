"""The durable outbox delivered to a real receiver that verifies each request with the
``standardwebhooks`` library: order per call, retries with the same webhook-id, Retry-After,
410, dead letters and replay, redirects, tenant scoping, leases across restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from receiver import Answer, Receiver

from mediasrv.outputs.outbox import (
    DeliveryState,
    OutboxEvent,
    OutboxStore,
    OversizedEvent,
    WebhookDispatcher,
)

FAST = (0.05, 0.05, 0.05)  # three retries, quick: the real schedule is tested in signing


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OutboxStore]:
    s = OutboxStore(tmp_path / "mediasrv.db")
    await s.open()
    yield s
    await s.close()


async def _receiver(secret: str, script: Callable[[int, str], Answer] | None = None) -> Receiver:
    r = Receiver([secret]) if script is None else Receiver([secret], script)
    await r.start()
    return r


def _event(call: str, type_: str = "call.updated", business: str = "acme", **data: object):
    return OutboxEvent(business, call, type_, {"call_id": call, **data}, time.time())


async def _dispatcher(store: OutboxStore, **kw: object) -> WebhookDispatcher:
    d = WebhookDispatcher(store, allow_private=True, schedule=FAST, idle_poll_s=0.05, **kw)  # type: ignore[arg-type]
    await d.start()
    return d


async def _wait_state(store: OutboxStore, business: str, state: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = await store.deliveries(business, state=state)
        if len(rows) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} deliveries reached {state}")


async def test_events_arrive_verified_and_in_order_per_call(store: OutboxStore) -> None:
    # A slow receiver (20 ms per request) and 4 concurrent slots: calls go in parallel, each
    # call's events strictly one after the other.
    probe = await store.add_endpoint("acme", "http://127.0.0.1:9/x")
    await store.set_enabled("acme", probe.endpoint_id, False, "probe only")
    ep = await store.add_endpoint("acme", "http://placeholder.invalid/")
    receiver = await _receiver(ep.secrets[0])
    receiver.delay_s = 0.02
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    events = [_event(f"call-{c}", step=i) for i in range(6) for c in range(5)]
    await store.enqueue(events)
    d = await _dispatcher(store, concurrency=4)
    try:
        await receiver.wait_for(len(events))
    finally:
        await d.stop()
        await receiver.stop()
    assert receiver.rejected == []
    by_call: dict[str, list[int]] = {}
    for r in receiver.requests:
        by_call.setdefault(str(r.data["call_id"]), []).append(r.subject_seq)
    assert sorted(by_call) == [f"call-{c}" for c in range(5)]
    for seqs in by_call.values():
        assert seqs == [1, 2, 3, 4, 5, 6]  # in order, numbered per call, none twice
    assert len({r.webhook_id for r in receiver.requests}) == len(events)
    assert len(await store.deliveries("acme", state=DeliveryState.DELIVERED)) == len(events)


async def test_a_500_is_retried_with_the_same_id_and_logged(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = await _receiver(ep.secrets[0], lambda n, _id: (500, {}) if n == 0 else (200, {}))
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1", "call.answered")])
    d = await _dispatcher(store)
    try:
        await receiver.wait_for(2)
        await _wait_state(store, "acme", DeliveryState.DELIVERED, 1)
    finally:
        await d.stop()
        await receiver.stop()
    first, second = receiver.requests
    assert first.webhook_id == second.webhook_id
    (row,) = await store.deliveries("acme")
    attempts = await store.attempts("acme", row["delivery_id"])
    assert [a.status for a in attempts] == [500, 200]
    assert [a.attempt for a in attempts] == [1, 2]
    assert all(a.latency_ms > 0 for a in attempts)
    assert attempts[0].response_excerpt == '{"n": 0}'


async def test_retry_after_is_honoured(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    script = lambda n, _id: (503, {"Retry-After": "1"}) if n == 0 else (200, {})  # noqa: E731
    receiver = await _receiver(ep.secrets[0], script)
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1")])
    d = await _dispatcher(store)
    try:
        await receiver.wait_for(2)
    finally:
        await d.stop()
        await receiver.stop()
    gap = receiver.requests[1].at - receiver.requests[0].at
    assert gap >= 0.9  # the schedule alone would have retried after 50 ms


async def test_after_the_last_try_it_is_dead_and_replay_delivers_it(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    healthy = {"ok": False}
    receiver = await _receiver(
        ep.secrets[0], lambda _n, _id: (200, {}) if healthy["ok"] else (500, {})
    )
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1"), _event("call-1")])
    d = await _dispatcher(store)
    try:
        # 1 try + 3 retries, then dead; then the second event of the call goes (order kept).
        await _wait_state(store, "acme", DeliveryState.DEAD, 2)
        rows = await store.deliveries("acme")
        assert [r["attempts"] for r in rows] == [4, 4]
        healthy["ok"] = True
        assert await store.replay("acme", rows[0]["delivery_id"])
        assert not await store.replay("other-business", rows[1]["delivery_id"])
        await _wait_state(store, "acme", DeliveryState.DELIVERED, 1)
        assert await store.recover("acme", ep.endpoint_id, since=0.0) == 1
        await _wait_state(store, "acme", DeliveryState.DELIVERED, 2)
    finally:
        await d.stop()
        await receiver.stop()
    assert len(receiver.requests) == 10  # 4 + 4 failed, then one success each


async def test_410_disables_the_endpoint_and_keeps_the_events(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = await _receiver(ep.secrets[0], lambda n, _id: (410, {}) if n == 0 else (200, {}))
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1"), _event("call-2")])
    d = await _dispatcher(store, concurrency=1)
    try:
        await receiver.wait_for(1)
        deadline = time.monotonic() + 5
        while (await store.endpoint("acme", ep.endpoint_id)).enabled:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 1  # nothing more goes to a disabled endpoint
        disabled = await store.endpoint("acme", ep.endpoint_id)
        assert disabled is not None and disabled.disabled_reason == "410 Gone from the receiver"
        await store.set_enabled("acme", ep.endpoint_id, True)
        d.wake()
        await _wait_state(store, "acme", DeliveryState.DELIVERED, 2)
    finally:
        await d.stop()
        await receiver.stop()


async def test_a_redirect_is_a_failure_and_is_not_followed(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = await _receiver(
        ep.secrets[0], lambda _n, _id: (302, {"Location": "http://127.0.0.1:9/elsewhere"})
    )
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1")])
    d = await _dispatcher(store)
    try:
        await _wait_state(store, "acme", DeliveryState.DEAD, 1)
    finally:
        await d.stop()
        await receiver.stop()
    (row,) = await store.deliveries("acme")
    assert row["last_status"] == 302
    assert len(receiver.requests) == 4


async def test_internal_targets_are_refused_unless_allowed(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = await _receiver(ep.secrets[0])
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1")])
    d = WebhookDispatcher(store, allow_private=False, schedule=(0.01,), idle_poll_s=0.05)
    await d.start()
    try:
        await _wait_state(store, "acme", DeliveryState.DEAD, 1)
    finally:
        await d.stop()
        await receiver.stop()
    assert receiver.requests == []
    (row,) = await store.deliveries("acme")
    assert "loopback" in row["last_error"]


async def test_subscriptions_filter_by_type_and_business(store: OutboxStore) -> None:
    answered = await store.add_endpoint("acme", "http://x.invalid/", ["call.answered"])
    every = await store.add_endpoint("acme", "http://y.invalid/")
    other = await store.add_endpoint("globex", "http://z.invalid/")
    await store.enqueue(
        [
            _event("c1", "call.answered"),
            _event("c1", "call.completed"),
            _event("c9", business="globex"),
        ]
    )
    rows = await store.deliveries("acme")
    assert sorted((r["endpoint_id"], r["type"]) for r in rows) == sorted(
        [
            (answered.endpoint_id, "call.answered"),
            (every.endpoint_id, "call.answered"),
            (every.endpoint_id, "call.completed"),
        ]
    )
    assert [r["endpoint_id"] for r in await store.deliveries("globex")] == [other.endpoint_id]
    assert await store.endpoint("globex", answered.endpoint_id) is None  # another tenant's id
    assert await store.endpoints("globex") == [await store.endpoint("globex", other.endpoint_id)]


async def test_a_rotation_signs_with_both_secrets(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    old = ep.secrets[0]
    new = await store.rotate_secret("acme", ep.endpoint_id, overlap_s=3600)
    old_receiver = await _receiver(old)
    new_receiver = await _receiver(new)
    for r in (old_receiver, new_receiver):
        await store.conn.execute(
            "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (r.url, ep.endpoint_id)
        )
        await store.enqueue([_event(f"call-{r.url[-9:]}")])
        d = await _dispatcher(store)
        try:
            await r.wait_for(1)
        finally:
            await d.stop()
            await r.stop()
        assert r.rejected == []
    rotated = await store.endpoint("acme", ep.endpoint_id)
    assert rotated is not None and rotated.secrets == (new, old)


async def test_a_test_event_goes_to_one_endpoint(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    await store.add_endpoint("acme", "http://y.invalid/")
    receiver = await _receiver(ep.secrets[0])
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    event_id = await store.send_test("acme", ep.endpoint_id)
    d = await _dispatcher(store)
    try:
        await receiver.wait_for(1)
    finally:
        await d.stop()
        await receiver.stop()
    assert [(r.webhook_id, r.type) for r in receiver.requests] == [(event_id, "webhook.test")]
    assert len(await store.deliveries("acme")) == 1


async def test_oversized_events_are_refused_before_anything_is_written(store: OutboxStore) -> None:
    await store.add_endpoint("acme", "http://x.invalid/")
    with pytest.raises(OversizedEvent, match="link to the data"):
        await store.enqueue([_event("c1"), _event("c1", transcript="あ" * 8000)])
    assert await store.deliveries("acme") == []


async def test_a_lease_of_a_crashed_node_is_released_at_its_restart(store: OutboxStore) -> None:
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = await _receiver(ep.secrets[0])
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    await store.enqueue([_event("call-1")])
    # A worker of node "n1" claims and dies before delivering (lease for 10 minutes).
    claims = await store.claim("n1:dead", time.time(), 10, lease_s=600)
    assert len(claims) == 1
    other = await _dispatcher(store, node="n2")
    try:
        await asyncio.sleep(0.3)
        assert receiver.requests == []  # another node respects the lease
    finally:
        await other.stop()
    restarted = await _dispatcher(store, node="n1")
    try:
        await receiver.wait_for(1)
    finally:
        await restarted.stop()
        await receiver.stop()
    assert receiver.requests[0].webhook_id == claims[0].event_id

"""A call row and the outbox events it causes commit in ONE transaction of the call log's
writer: both are there, or (when the outbox is broken) the row alone, said loudly."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from mediasrv.outputs.calllog import CallLogStore, CallRecord
from mediasrv.outputs.outbox import OutboxEvent, OutboxStore, event_statements


def _record(call_id: str) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        inbound_call_id=f"{call_id}@192.0.2.1",
        tracking_number="0312345678",
        caller_number="+819012345678",
        start_time=time.time() - 30,
    )


async def test_row_and_events_commit_together(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    outbox = OutboxStore(db)
    await outbox.open()
    await outbox.add_endpoint("acme", "http://hooks.example.com/x")
    calls = CallLogStore(db)
    await calls.open()
    try:
        event = OutboxEvent("acme", "c1", "call.completed", {"call_id": "c1"}, time.time())
        await calls.record_call(_record("c1"), also=event_statements(event))
    finally:
        await calls.close()
        await outbox.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT call_id FROM calls").fetchall() == [("c1",)]
        assert conn.execute("SELECT event_id, seq FROM outbox_events").fetchall() == [
            (event.event_id, 1)
        ]
        assert conn.execute("SELECT state FROM webhook_deliveries").fetchall() == [("pending",)]


async def test_a_broken_outbox_never_costs_the_call_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "mediasrv.db"  # no outbox tables: the event statements must fail
    calls = CallLogStore(db)
    await calls.open()
    try:
        event = OutboxEvent("acme", "c2", "call.completed", {"call_id": "c2"}, time.time())
        with caplog.at_level(logging.ERROR, logger="mediasrv.outputs.calllog"):
            await calls.record_call(_record("c2"), also=event_statements(event))
        assert (await calls.get_call("c2")) is not None
    finally:
        await calls.close()
    assert any("outbox statements could not be committed" in r.message for r in caplog.records)

"""A call row and the outbox events it causes commit in ONE transaction of the call log's
writer: both are there, or (when the outbox is broken) the row alone, said loudly."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from mediasrv.outputs.call_events import call_event_statements
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


def _final(call_id: str, start: float, caller: str = "+819012345678") -> CallRecord:
    rec = _record(call_id)
    rec.business, rec.caller_number, rec.caller_kind, rec.start_time = "acme", caller, "mobile", start
    rec.end_time = start + 5
    return rec


async def test_call_completed_carries_the_duplicate_the_row_computes(tmp_path: Path) -> None:
    """Issue 12: call.completed says the real duplicate / first_time / repeat_count, computed
    in SQL in the very transaction that writes the event (not null from before the SQL)."""
    db = tmp_path / "mediasrv.db"
    outbox = OutboxStore(db)
    await outbox.open()
    await outbox.add_endpoint("acme", "http://hooks.example.com/x")
    calls = CallLogStore(db)
    await calls.open()
    now = time.time()
    try:
        for call_id, start in (("first", now - 100), ("again", now - 50)):
            rec = _final(call_id, start)
            assert rec.duplicate is None  # what the record says before the store's SQL
            also = call_event_statements(rec, ("call.completed",), now, from_row=True)
            await calls.record_final(rec, 3600.0, also)
        # a call with no events (nobody listens) still gets its F15 attributes
        other = _final("other", now - 10, caller="+819099999999")
        await calls.record_final(other, 3600.0)
    finally:
        await calls.close()
        await outbox.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT subject, type, data FROM outbox_events ORDER BY subject, seq"
        ).fetchall()
        stored = dict(
            conn.execute("SELECT call_id, duplicate FROM calls").fetchall()  # type: ignore[arg-type]
        )
    data = {(subject, kind): json.loads(text) for subject, kind, text in rows}
    assert set(data) == {(c, t) for c in ("first", "again") for t in ("call.completed", "call.updated")}
    for kind in ("call.completed", "call.updated"):
        first, again = data[("first", kind)], data[("again", kind)]
        assert (first["duplicate"], first["first_time"], first["repeat_count"]) == (False, True, 0)
        assert (again["duplicate"], again["first_time"], again["repeat_count"]) == (True, False, 1)
    assert stored == {"first": 0, "again": 1, "other": 0}


async def test_repeats_survive_a_broken_outbox(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"  # no outbox tables: the event statements fail
    calls = CallLogStore(db)
    await calls.open()
    now = time.time()
    try:
        for call_id, start in (("a", now - 100), ("b", now - 50)):
            rec = _final(call_id, start)
            also = call_event_statements(rec, ("call.completed",), now, from_row=True)
            await calls.record_final(rec, 3600.0, also)
        again = await calls.get_call("b")
    finally:
        await calls.close()
    assert again is not None and again.duplicate is True and again.repeat_count == 1


async def test_a_voicemail_call_commits_voicemail_created_with_its_length(tmp_path: Path) -> None:
    """Issue 12 §4: a finished call that left a message causes ``voicemail.created`` (which
    sends the voicemail email) with ``call.completed``, in the row's transaction, and the
    payload fits the published event schema."""
    import jsonschema

    from mediasrv.api.call_schema import CALL_EVENT_DATA
    from mediasrv.call_pipeline import completion_events
    from mediasrv.calls.trace import CallTrace, VoicemailMessage
    from mediasrv.outputs.mailer import template_for

    trace = CallTrace("c9", "+81312345678", "+819012345678", business="acme")
    assert completion_events(trace) == (("call.completed",), None)
    trace.voicemail = VoicemailMessage("front", tmp_path / "vm.wav", 7.26)
    milestones, extra = completion_events(trace)
    assert milestones == ("call.completed", "voicemail.created")
    db = tmp_path / "mediasrv.db"
    outbox = OutboxStore(db)
    await outbox.open()
    await outbox.add_endpoint("acme", "http://hooks.example.com/x")
    calls = CallLogStore(db)
    await calls.open()
    try:
        record = _record("c9")
        record.business = "acme"
        statements = call_event_statements(record, milestones, time.time(), extra, from_row=True)
        await calls.record_final(record, 86400.0, statements)
    finally:
        await calls.close()
        await outbox.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT type, data FROM outbox_events ORDER BY seq").fetchall()
    assert [kind for kind, _ in rows] == ["call.completed", "voicemail.created", "call.updated"]
    data = {kind: json.loads(body) for kind, body in rows}["voicemail.created"]
    assert data["voicemail_seconds"] == 7.3 and data["voicemail_mailbox"] == "front"
    jsonschema.validate({**data, "sequence": 2}, CALL_EVENT_DATA)
    assert template_for("voicemail.created", data) == "voicemail"

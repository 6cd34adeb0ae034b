"""Calls cut off by a crash (issue 8, finding 6): the live-call checkpoint on a fake clock,
the store's live rows and checkpoint statement, and ``mark_unfinished``'s repair at restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import aiosqlite
import pytest

from mediasrv.config import ConfigError, load_config
from mediasrv.outputs.calllog import (
    CALLS_MIGRATIONS,
    CallLogStore,
    CallRecord,
    CutOff,
    Disposition,
)
from mediasrv.outputs.checkpoint import LiveCallCheckpoint
from mediasrv.outputs.sqlite import migrate, schema_version

T0 = 1_700_000_000.0


def make(n: int = 0, **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": uuid.uuid4().hex,
        "inbound_call_id": f"abc{n}@192.0.2.1",
        "tracking_number": "0312345678",
        "caller_number": "+819012345678",
        "start_time": T0 + n,
        "disposition": Disposition.IN_PROGRESS,
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallLogStore]:
    s = CallLogStore(tmp_path / "mediasrv.db")
    await s.open()
    yield s
    await s.close()


def last_seen(path: Path, call_id: str) -> float | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT last_seen FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    assert row is not None
    value = row[0]
    return None if value is None else float(value)


# --------------------------------------------------------------------------- fake clock


class FakeTime:
    """Wall clock and sleep that move only when the checkpoint sleeps."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.limit = 0  # after this many sleeps, park until cancelled
        self._parked = asyncio.Event()

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if len(self.sleeps) >= self.limit:
            self._parked.set()
            await asyncio.Event().wait()
        self.sleeps.append(seconds)
        self.now += seconds

    async def parked(self) -> None:
        await asyncio.wait_for(self._parked.wait(), 5.0)


class FakeWrites:
    def __init__(self, fail: int = 0, time: FakeTime | None = None, takes: float = 0.0) -> None:
        self.calls: list[tuple[list[str], float]] = []
        self.fail = fail  # the first `fail` writes raise
        self.time = time
        self.takes = takes  # fake seconds a write takes

    async def __call__(self, ids: Collection[str], now: float) -> int:
        self.calls.append((list(ids), now))
        if self.time is not None:
            self.time.now += self.takes
        if len(self.calls) <= self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        return len(ids)


async def run_for(checkpoint: LiveCallCheckpoint, time: FakeTime, sleeps: int) -> None:
    time.limit = sleeps
    task = asyncio.create_task(checkpoint.run())
    await time.parked()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_checkpoint_stamps_every_live_call_once_per_interval_in_one_write() -> None:
    time = FakeTime()
    writes = FakeWrites()
    live = {f"call{i}": object() for i in range(300)}
    cp = LiveCallCheckpoint(writes, live.keys, 2.0, wall_clock=time.wall, sleep=time.sleep)
    await run_for(cp, time, sleeps=3)
    assert time.sleeps == [2.0, 2.0, 2.0]
    # one write per interval, each with every live call and the time of that checkpoint
    assert [(len(ids), now - T0) for ids, now in writes.calls] == [
        (300, 2.0),
        (300, 4.0),
        (300, 6.0),
    ]
    assert set(writes.calls[0][0]) == set(live)
    assert cp.checkpoints == 3


async def test_no_live_call_no_write_and_the_ids_are_a_snapshot() -> None:
    time = FakeTime()
    live: dict[str, object] = {}
    seen: list[list[str]] = []

    async def write(ids: Collection[str], now: float) -> int:
        seen.append(list(ids))
        live.clear()  # every call ends while the write is queued
        return len(ids)

    cp = LiveCallCheckpoint(write, live.keys, 1.0, wall_clock=time.wall, sleep=time.sleep)
    assert await cp.tick() == 0 and seen == []
    live["a"] = live["b"] = object()
    assert await cp.tick() == 2
    assert seen == [["a", "b"]]
    assert await cp.tick() == 0 and len(seen) == 1


async def test_a_failing_write_is_logged_once_and_checkpoints_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    writes = FakeWrites(fail=3)
    cp = LiveCallCheckpoint(writes, lambda: ["x"], 0.5, wall_clock=time.wall, sleep=time.sleep)
    with caplog.at_level(logging.INFO, logger="mediasrv.outputs.checkpoint"):
        await run_for(cp, time, sleeps=5)
    assert len(writes.calls) == 5  # the failures did not stop the loop
    assert cp.checkpoints == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "disk I/O error" in errors[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_a_slow_write_never_overlaps_the_next_checkpoint() -> None:
    time = FakeTime()
    writes = FakeWrites(time=time, takes=3.0)  # longer than the interval
    cp = LiveCallCheckpoint(writes, lambda: ["x"], 2.0, wall_clock=time.wall, sleep=time.sleep)
    await run_for(cp, time, sleeps=3)
    # the interval starts when the previous write has landed: 2, then 2+3+2, then 7+3+2
    assert [now - T0 for _ids, now in writes.calls] == [2.0, 7.0, 12.0]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LiveCallCheckpoint(FakeWrites(), list, 0.0)


# --------------------------------------------------------------------------- the store


async def test_checkpoint_is_one_statement_for_every_live_row_and_spares_final_rows(
    tmp_path: Path, store: CallLogStore
) -> None:
    live = [make(i) for i in range(1200)]  # more than SQLite's 999 bound parameters
    done = make(5000, disposition=Disposition.ANSWERED, end_time=T0 + 10)
    await asyncio.gather(*(store.record_live(r) for r in live), store.record_call(done))
    ids = [r.call_id for r in live] + [done.call_id, "not-a-call"]
    assert await store.checkpoint_live(ids, T0 + 42.0) == 1200
    path = tmp_path / "mediasrv.db"
    assert last_seen(path, live[0].call_id) == T0 + 42.0
    assert last_seen(path, live[-1].call_id) == T0 + 42.0
    assert last_seen(path, done.call_id) is None
    assert await store.checkpoint_live([], T0 + 43.0) == 0


async def test_rewriting_a_row_keeps_its_last_seen(tmp_path: Path, store: CallLogStore) -> None:
    rec = make()
    await store.record_live(rec)
    await store.checkpoint_live([rec.call_id], T0 + 5.0)
    rec.recording_path = None
    await store.record_call(rec)  # as the start-up pass over missing recordings does
    await store.record_live(rec)
    assert last_seen(tmp_path / "mediasrv.db", rec.call_id) == T0 + 5.0


async def test_a_live_row_never_overwrites_the_final_row(store: CallLogStore) -> None:
    rec = make(answer_time=T0 + 1, sip_code=200, operator_uri="sip:op@127.0.0.1")
    final = make(
        call_id=rec.call_id,
        disposition=Disposition.ANSWERED,
        answer_time=T0 + 1,
        end_time=T0 + 9,
        talk_seconds=8.0,
        sip_code=200,
        end_reason="caller-bye",
    )
    await store.record_call(final)
    await store.record_live(rec)  # a late live write (answer) after the final row
    assert await store.get_call(rec.call_id) == final
    fresh = make()
    await store.record_live(fresh)  # and it inserts when there is no row yet
    assert await store.get_call(fresh.call_id) == fresh


async def test_the_answer_updates_the_live_row_and_nothing_else(store: CallLogStore) -> None:
    start = make(recording_path="/rec/x.wav", caller_display="山田", media_stats={"k": 1})
    await store.record_live(start)
    attempts: list[dict[str, object]] = [{"uri": "sip:op1@127.0.0.1", "code": 200}]
    answered = make(
        call_id=start.call_id,
        answer_time=T0 + 3.5,
        sip_code=200,
        operator_uri="sip:op1@127.0.0.1",
        ring_seconds=3.5,
        recording_path="/rec/x.wav",
        attempts=attempts,
        caller_display="changed?",  # not an answer column: stays as the start row had it
    )
    await store.record_answer(answered)
    got = await store.get_call(start.call_id)
    assert got is not None and got.disposition is Disposition.IN_PROGRESS
    assert (got.answer_time, got.sip_code, got.operator_uri) == (
        T0 + 3.5,
        200,
        answered.operator_uri,
    )
    assert got.ring_seconds == 3.5 and got.attempts == attempts
    assert got.caller_display == "山田" and got.media_stats == {"k": 1}
    # no start row (its write failed): the answer writes the whole live row
    lone = make(answer_time=T0 + 1, sip_code=200, operator_uri="sip:o")
    await store.record_answer(lone)
    assert await store.get_call(lone.call_id) == lone
    # a final row is never touched
    final = make(disposition=Disposition.ANSWERED, end_time=T0 + 9, sip_code=200)
    await store.record_call(final)
    await store.record_answer(make(call_id=final.call_id, answer_time=T0 + 5, sip_code=200))
    assert await store.get_call(final.call_id) == final


async def test_restart_keeps_answered_cut_off_calls_answered(store: CallLogStore) -> None:
    """The repair at start: ends at the last checkpoint (or the answer, if later)."""
    answered = make(
        1,
        answer_time=T0 + 4.0,
        sip_code=200,
        operator_uri="sip:op1@127.0.0.1:5090",
        ring_seconds=3.0,
        recording_path="/rec/a.wav",
        flags=["valid"],
    )
    answered_after_checkpoint = make(2, answer_time=T0 + 30.0, sip_code=200, operator_uri="sip:o")
    ringing = make(3, attempts=[{"uri": "sip:op1@127.0.0.1:5090", "code": 0}])
    never_checkpointed = make(4)
    finished = make(5, disposition=Disposition.BUSY, sip_code=486, end_time=T0 + 8)
    for r in (answered, answered_after_checkpoint, ringing, never_checkpointed, finished):
        await store.record_call(r)
    ids = [answered.call_id, answered_after_checkpoint.call_id, ringing.call_id]
    await store.checkpoint_live(ids, T0 + 20.0)

    assert await store.mark_unfinished() == CutOff(answered=2, failed=2)

    got = await store.get_call(answered.call_id)
    assert got is not None
    assert got.disposition is Disposition.ANSWERED and got.sip_code == 200
    assert (got.answer_time, got.end_time) == (T0 + 4.0, T0 + 20.0)
    assert got.talk_seconds == 16.0 and got.ring_seconds == 3.0
    assert got.operator_uri == "sip:op1@127.0.0.1:5090" and got.recording_path == "/rec/a.wav"
    assert got.end_reason == "server-restart" and got.flags == ["valid", "unfinished"]

    late = await store.get_call(answered_after_checkpoint.call_id)
    assert late is not None and late.disposition is Disposition.ANSWERED
    assert late.end_time == T0 + 30.0 and late.talk_seconds == 0.0  # no later sign of life

    rang = await store.get_call(ringing.call_id)
    assert rang is not None
    assert rang.disposition is Disposition.FAILED and rang.sip_code == 0
    assert rang.answer_time is None and rang.talk_seconds == 0.0
    assert rang.end_time == T0 + 20.0 and rang.ring_seconds == 17.0
    assert rang.attempts == ringing.attempts and rang.flags == ["unfinished"]

    bare = await store.get_call(never_checkpointed.call_id)
    assert bare is not None and bare.disposition is Disposition.FAILED
    assert bare.end_time == bare.start_time and bare.ring_seconds == 0.0

    assert await store.get_call(finished.call_id) == finished
    assert await store.mark_unfinished() == CutOff(0, 0)  # idempotent
    assert await store.count_calls(disposition=Disposition.IN_PROGRESS) == 0


async def test_migration_2_adds_last_seen_to_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    conn = await aiosqlite.connect(path, isolation_level=None)
    await migrate(conn, "calls", CALLS_MIGRATIONS[:1], path)  # the database of the last release
    await conn.execute(
        "INSERT INTO calls (call_id, inbound_call_id, tracking_number, caller_number, "
        "start_time, answer_time, disposition, sip_code) VALUES "
        "('old', 'x@y', '0312345678', 'anonymous', ?, ?, 'in-progress', 200)",
        (T0, T0 + 2.0),
    )
    await conn.close()
    s = CallLogStore(path)
    await s.open()
    try:
        with sqlite3.connect(path) as check:
            columns = {r[1] for r in check.execute("PRAGMA table_info(calls)")}
        assert "last_seen" in columns
        reader = await aiosqlite.connect(path)
        try:
            assert await schema_version(reader, "calls") == len(CALLS_MIGRATIONS) >= 2
        finally:
            await reader.close()
        assert await s.mark_unfinished() == CutOff(answered=1, failed=0)
        got = await s.get_call("old")
        assert got is not None and got.disposition is Disposition.ANSWERED
        assert got.end_time == T0 + 2.0 and got.talk_seconds == 0.0
    finally:
        await s.close()


# --------------------------------------------------------------------------- config


def test_checkpoint_interval_is_configured_and_checked(tmp_path: Path) -> None:
    assert load_config(None).store.checkpoint_interval == 2.0
    p = tmp_path / "x.toml"
    p.write_text("[store]\ncheckpoint_interval = 0.5\n")
    assert load_config(p).store.checkpoint_interval == 0.5
    for bad, fragment in (
        ("0", "greater than 0"),
        ('"2"', "expected a number"),
        ("7200", "at most 3600"),
    ):
        p.write_text(f"[store]\ncheckpoint_interval = {bad}\n")
        with pytest.raises(ConfigError) as exc:
            load_config(p)
        assert str(exc.value).startswith(f"{p}:2: store.checkpoint_interval: "), str(exc.value)
        assert fragment in exc.value.message
    p.write_text("[store]\ncheckpoint_intervl = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "did you mean 'checkpoint_interval'" in exc.value.message

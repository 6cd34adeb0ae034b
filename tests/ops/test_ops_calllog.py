"""The SQLite call log on a real file: durability, concurrency, filters, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mediasrv.outputs.calllog import (
    CALLS_MIGRATIONS,
    CallLogStore,
    CallRecord,
    CutOff,
    Disposition,
    StoreClosed,
)
from mediasrv.outputs.recordings import is_within, recording_path
from mediasrv.outputs.sqlite import SchemaVersionError, Synchronous


def make(n: int = 0, **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": uuid.uuid4().hex,
        "inbound_call_id": f"abc{n}@192.0.2.1",
        "tracking_number": "0312345678",
        "caller_number": "+819012345678",
        "start_time": 1_700_000_000.0 + n,
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallLogStore]:
    s = CallLogStore(tmp_path / "var" / "mediasrv.db")
    await s.open()
    yield s
    await s.close()


async def test_open_creates_dir_and_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "var" / "mediasrv.db"
    s = CallLogStore(path)
    await s.open()
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute(
            "SELECT version FROM schema_version WHERE component = 'calls'"
        ).fetchone() == (len(CALLS_MIGRATIONS),)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"calls_start_id", "calls_tracking_start", "calls_disposition_start"} <= names


async def test_full_record_round_trips(store: CallLogStore) -> None:
    rec = make(
        caller_display="山田 太郎",
        business="acme",
        medium="web",
        campaign="spring",
        answer_time=1_700_000_003.5,
        end_time=1_700_000_063.5,
        ring_seconds=3.5,
        talk_seconds=60.0,
        disposition=Disposition.ANSWERED,
        sip_code=200,
        end_reason="caller-bye",
        operator_uri="sip:op1@127.0.0.1:5090",
        attempts=[{"uri": "sip:op1@127.0.0.1:5090", "code": 200, "start": 1.0, "end": 2.0}],
        dtmf="12#",
        recording_path="/var/rec/a.wav",
        media_stats={"caller": {"packets_in": 3000, "jitter_ms": 1.5}},
        analysis={"gender": "female", "timeline": []},
        flags=["valid"],
    )
    await store.record_call(rec)
    got = await store.get_call(rec.call_id)
    assert got == rec
    assert await store.get_call("nope") is None


async def test_replace_updates_the_row(store: CallLogStore) -> None:
    rec = make()
    await store.record_call(rec)
    rec.disposition = Disposition.ABANDONED
    rec.sip_code = 487
    await store.record_call(rec)
    assert await store.count_calls() == 1
    got = await store.get_call(rec.call_id)
    assert got is not None and got.disposition is Disposition.ABANDONED and got.sip_code == 487


async def test_restart_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    s = CallLogStore(path)
    await s.open()
    recs = [make(i) for i in range(5)]
    for r in recs:
        await s.record_call(r)
    await s.close()
    s2 = CallLogStore(path)
    await s2.open()  # re-open runs migrations again: must be a no-op
    try:
        assert await s2.count_calls() == 5
        assert [r.call_id for r in await s2.list_calls()] == [r.call_id for r in reversed(recs)]
    finally:
        await s2.close()


async def test_row_survives_a_killed_process(tmp_path: Path) -> None:
    """record_call returned -> the row is on disk, even if the process dies without close()."""
    path = tmp_path / "mediasrv.db"
    code = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from mediasrv.outputs.calllog import CallLogStore, CallRecord
        async def main():
            s = CallLogStore(Path({str(path)!r}))
            await s.open()
            await s.record_call(CallRecord("killed1", "x@y", "0312345678", "anonymous"))
            os._exit(9)  # no close, no checkpoint
        asyncio.run(main())
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    s = CallLogStore(path)
    await s.open()
    try:
        got = await s.get_call("killed1")
        assert got is not None and got.caller_number == "anonymous"
    finally:
        await s.close()


async def test_concurrent_writes_from_many_tasks(tmp_path: Path) -> None:
    s = CallLogStore(tmp_path / "mediasrv.db", synchronous=Synchronous.NORMAL)
    await s.open()
    try:
        recs = [make(i) for i in range(300)]
        await asyncio.gather(*(s.record_call(r) for r in recs))
        assert await s.count_calls() == 300
        # and interleaved with reads and analysis updates
        await asyncio.gather(
            *(s.update_analysis(r.call_id, {"n": i}) for i, r in enumerate(recs[:50])),
            *(s.get_call(r.call_id) for r in recs[50:100]),
            *(s.record_call(make(1000 + i)) for i in range(50)),
        )
        assert await s.count_calls() == 350
        got = await s.get_call(recs[7].call_id)
        assert got is not None and got.analysis == {"n": 7}
    finally:
        await s.close()


async def test_cancelled_writer_still_lands(store: CallLogStore) -> None:
    rec = make()
    task = asyncio.create_task(store.record_call(rec))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # close drains the queue
    await store.open()
    assert await store.get_call(rec.call_id) is not None


async def test_list_filters_and_pagination(store: CallLogStore) -> None:
    disp = [Disposition.ANSWERED, Disposition.BUSY, Disposition.NO_ANSWER]
    recs = [
        make(i, tracking_number=("0311111111" if i % 2 else "0322222222"), disposition=disp[i % 3])
        for i in range(12)
    ]
    for r in recs:
        await store.record_call(r)
    newest_first = sorted(recs, key=lambda r: r.start_time, reverse=True)
    assert [r.call_id for r in await store.list_calls(limit=5)] == [
        r.call_id for r in newest_first[:5]
    ]
    assert [r.call_id for r in await store.list_calls(limit=5, offset=10)] == [
        r.call_id for r in newest_first[10:]
    ]
    odd = await store.list_calls(tracking_number="0311111111")
    assert len(odd) == 6 and all(r.tracking_number == "0311111111" for r in odd)
    t0 = recs[0].start_time
    window = await store.list_calls(since=t0 + 3, until=t0 + 6)
    assert sorted(r.start_time - t0 for r in window) == [3, 4, 5]
    busy = await store.list_calls(disposition=Disposition.BUSY)
    assert {r.call_id for r in busy} == {
        r.call_id for r in recs if r.disposition is Disposition.BUSY
    }
    assert await store.count_calls(disposition=Disposition.BUSY) == 4
    assert await store.count_calls(tracking_number="0311111111", since=t0 + 5) == 4  # 5, 7, 9, 11
    with pytest.raises(ValueError):
        await store.list_calls(limit=-1)


async def test_update_analysis_of_unknown_call(store: CallLogStore) -> None:
    with pytest.raises(KeyError):
        await store.update_analysis("missing", {"x": 1})


async def test_closed_store_refuses(tmp_path: Path) -> None:
    s = CallLogStore(tmp_path / "x.db")
    with pytest.raises(StoreClosed):
        await s.record_call(make())
    with pytest.raises(StoreClosed):
        await s.get_call("x")


async def test_migrates_an_existing_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    sqlite3.connect(path).close()  # an empty file some other tool created
    s = CallLogStore(path)
    await s.open()
    await s.record_call(make())
    await s.close()
    await s.open()
    assert await s.count_calls() == 1
    await s.close()


async def test_database_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    s = CallLogStore(path)
    await s.open()
    await s.close()
    future = len(CALLS_MIGRATIONS) + 5
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ? WHERE component = 'calls'", (future,))
    s = CallLogStore(path)
    with pytest.raises(SchemaVersionError) as exc:
        await s.open()
    msg = str(exc.value)
    assert str(path) in msg and f"version {future}" in msg and "newer" in msg
    with sqlite3.connect(path) as conn:  # untouched
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (future,)


async def test_odd_values_are_stored_not_refused(store: CallLogStore) -> None:
    rec = make(media_stats={"path": Path("/x"), "disp": Disposition.BUSY})
    await store.record_call(rec)
    got = await store.get_call(rec.call_id)
    assert got is not None and got.media_stats == {"path": "/x", "disp": "Disposition.BUSY"}


async def test_unreadable_json_column_reads_as_default(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    s = CallLogStore(path)
    await s.open()
    rec = make(flags=["valid"])
    await s.record_call(rec)
    await s.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE calls SET flags = '[broken', disposition = 'weird'")
    await s.open()
    try:
        got = await s.get_call(rec.call_id)
        assert got is not None and got.flags == [] and got.disposition is Disposition.FAILED
    finally:
        await s.close()


def test_recording_path(tmp_path: Path) -> None:
    p = recording_path(tmp_path, "0123abcd", 1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    assert p == tmp_path / "2023" / "11" / "14" / "0123abcd.wav"
    for bad in ("../etc/passwd", ".hidden", "a/b", ""):
        with pytest.raises(ValueError):
            recording_path(tmp_path, bad, 0.0)
    assert is_within(p, tmp_path)
    assert not is_within(tmp_path / ".." / "x.wav", tmp_path)


async def test_calls_cut_off_by_a_crash_are_marked_at_restart(tmp_path: Path) -> None:
    path = tmp_path / "mediasrv.db"
    s = CallLogStore(path)
    await s.open()
    live = make(1, disposition=Disposition.IN_PROGRESS, flags=["valid"])
    done = make(2, disposition=Disposition.ANSWERED)
    await s.record_call(live)
    await s.record_call(done)
    await s.close()
    await s.open()  # "after the restart"
    try:
        assert await s.mark_unfinished() == CutOff(answered=0, failed=1)
        got = await s.get_call(live.call_id)
        assert got is not None
        assert got.disposition is Disposition.FAILED and got.end_reason == "server-restart"
        assert got.flags == ["valid", "unfinished"]
        untouched = await s.get_call(done.call_id)
        assert untouched == done
        assert await s.mark_unfinished() == CutOff(0, 0)  # idempotent
    finally:
        await s.close()


async def test_one_bad_row_does_not_sink_its_batch(store: CallLogStore) -> None:
    good = [make(i) for i in range(5)]
    bad = make(99, start_time=object())  # sqlite cannot bind this: the write fails
    results = await asyncio.gather(
        *(store.record_call(r) for r in good[:2]),
        store.record_call(bad),
        *(store.record_call(r) for r in good[2:]),
        return_exceptions=True,
    )
    assert [r is None for r in results] == [True, True, False, True, True, True]
    assert isinstance(results[2], sqlite3.Error)
    assert await store.count_calls() == 5
    assert await store.get_call(bad.call_id) is None

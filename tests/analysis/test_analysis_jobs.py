"""The durable analysis queue and its worker processes, on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from analysis_support import ASTERISK_DIR

from mediasrv.analysis.analyzer import AnalysisConfig
from mediasrv.outputs.analysis_jobs import (
    AnalysisJob,
    AnalysisJobQueue,
    AnalysisWorkerPool,
    JobOutcome,
    JobState,
)
from mediasrv.outputs.calllog import CallLogStore, CallRecord

# ------------------------------------------------------------- job functions (run in workers)


def init_nothing(config: Any) -> None:
    del config


def crash_first_attempt(job: AnalysisJob) -> JobOutcome:
    """Dies (hard exit, like a segfault or the OOM killer) the first time it sees a job."""
    marker = Path(job.wav_path + ".attempted")
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(9)
    return JobOutcome({"pid": os.getpid(), "call": job.call_id}, 1.0, 0.1)


def echo_job(job: AnalysisJob) -> JobOutcome:
    return JobOutcome({"call": job.call_id}, 1.0, 0.1)


def slow_job(job: AnalysisJob) -> JobOutcome:
    time.sleep(30)
    return JobOutcome({"late": True}, 1.0, 1.0)


def always_raises(job: AnalysisJob) -> JobOutcome:
    raise ValueError(f"cannot read {job.wav_path}")


class Metrics:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.done: list[tuple[float, float]] = []
        self.failed = 0

    def analysis_queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def analysis_job_done(self, audio_seconds: float, cpu_seconds: float) -> None:
        self.done.append((audio_seconds, cpu_seconds))

    def analysis_job_failed(self) -> None:
        self.failed += 1


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.event = asyncio.Event()

    async def __call__(self, call_id: str, result: dict[str, Any]) -> None:
        self.calls.append((call_id, result))
        self.event.set()


class FakeClock:
    """Wall-clock stand-in for the queue's leases: time moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _until(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ queue


async def test_enqueue_is_idempotent_and_claims_are_exclusive(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    a, b = AnalysisJobQueue(db, owner="a"), AnalysisJobQueue(db, owner="b")
    await a.open()
    await b.open()
    try:
        assert await a.enqueue("call-1", "/rec/1.wav")
        assert not await b.enqueue("call-1", "/rec/1.wav")
        job = await a.claim(lease_seconds=60)
        assert job is not None and job.call_id == "call-1" and job.attempts == 1
        assert await b.claim(lease_seconds=60) is None
        assert await a.depth() == 1
    finally:
        await a.close()
        await b.close()


async def test_expired_lease_is_taken_over_and_the_stale_result_refused(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    clock = FakeClock()
    a = AnalysisJobQueue(db, owner="a", clock=clock)
    b = AnalysisJobQueue(db, owner="b", clock=clock)
    await a.open()
    await b.open()
    try:
        await a.enqueue("call-1", "/rec/1.wav")
        job_a = await a.claim(lease_seconds=10)
        assert job_a is not None
        clock.advance(9.9)
        assert await b.claim(lease_seconds=60) is None  # a's lease still holds
        clock.advance(0.2)  # a's server "crashed": its lease runs out
        job_b = await b.claim(lease_seconds=60)
        assert job_b is not None and job_b.job_id == job_a.job_id and job_b.attempts == 2
        assert await b.complete(job_b.job_id, {"label": "from b"})
        # a wakes up late with a different result: refused, b's result stands.
        assert not await a.complete(job_a.job_id, {"label": "from a"})
        row = await a.get("call-1")
        assert row is not None and row["state"] == "done" and row["result"] == {"label": "from b"}
        assert await a.claim(lease_seconds=60) is None
    finally:
        await a.close()
        await b.close()


async def test_failures_requeue_until_max_attempts(tmp_path: Path) -> None:
    q = AnalysisJobQueue(tmp_path / "mediasrv.db", owner="a")
    await q.open()
    try:
        await q.enqueue("call-1", "/rec/1.wav")
        states = []
        for _ in range(3):
            job = await q.claim(60)
            assert job is not None
            states.append(await q.fail(job.job_id, "boom", max_attempts=3))
        assert states == [JobState.QUEUED, JobState.QUEUED, JobState.FAILED]
        assert await q.claim(60) is None
        assert await q.depth() == 0
    finally:
        await q.close()


async def test_queue_shares_the_call_log_file(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    store = CallLogStore(db)
    await store.open()
    q = AnalysisJobQueue(db)
    await q.open()
    try:
        await store.record_call(CallRecord("c1", "sip-c1", "0312345678", "+819012345678"))
        await q.enqueue("c1", "/rec/c1.wav")
        assert (await store.get_call("c1")) is not None
        assert await q.depth() == 1
    finally:
        await q.close()
        await store.close()


# ------------------------------------------------------------------------- workers


async def test_worker_crash_mid_job_is_retried_and_completes_once(tmp_path: Path) -> None:
    q = AnalysisJobQueue(tmp_path / "mediasrv.db")
    await q.open()
    sink, metrics = Sink(), Metrics()
    pool = AnalysisWorkerPool(q, None, sink, metrics, workers=1, poll_seconds=0.1,
                              job_fn=crash_first_attempt, initializer=init_nothing)
    wav = tmp_path / "c1.wav"
    wav.write_bytes(b"")
    await pool.start()
    try:
        await pool.enqueue("c1", str(wav))
        await asyncio.wait_for(sink.event.wait(), 60)
        await asyncio.sleep(0.5)  # nothing else may arrive
    finally:
        await pool.stop()
    row = await q.get("c1")
    await q.close()
    crashed_pid = int((tmp_path / "c1.wav.attempted").read_text())
    assert len(sink.calls) == 1
    call_id, result = sink.calls[0]
    assert call_id == "c1" and result["pid"] != crashed_pid
    assert row is not None and row["state"] == "done" and row["attempts"] == 2
    assert result["job_id"] == row["job_id"]
    assert row["delivered"] is True
    assert len(metrics.done) == 1 and metrics.failed == 0


async def test_job_that_keeps_failing_ends_failed(tmp_path: Path) -> None:
    q = AnalysisJobQueue(tmp_path / "mediasrv.db")
    await q.open()
    sink, metrics = Sink(), Metrics()
    pool = AnalysisWorkerPool(q, None, sink, metrics, workers=1, poll_seconds=0.05,
                              max_attempts=2, job_fn=always_raises, initializer=init_nothing)
    await pool.start()
    try:
        await pool.enqueue("c1", "/nonexistent.wav")

        async def failed() -> bool:
            row = await q.get("c1")
            return row is not None and row["state"] == "failed"

        await _until(failed, 60)
    finally:
        await pool.stop()
    row = await q.get("c1")
    await q.close()
    assert row is not None and "cannot read /nonexistent.wav" in row["error"]
    assert sink.calls == [] and metrics.failed == 1


async def test_restart_picks_up_a_job_abandoned_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    clock = FakeClock()
    q1 = AnalysisJobQueue(db, owner="old-server", clock=clock)
    await q1.open()
    pool1 = AnalysisWorkerPool(q1, None, Sink(), None, workers=1, lease_seconds=120.0,
                               poll_seconds=0.05, job_fn=slow_job, initializer=init_nothing)
    await pool1.start()
    await pool1.enqueue("c1", "/rec/c1.wav")

    async def running() -> bool:
        row = await q1.get("c1")
        return row is not None and row["state"] == "running"

    await _until(running, 30)
    await pool1.stop()  # the old server goes away mid-job
    await q1.close()
    q2 = AnalysisJobQueue(db, owner="new-server", clock=clock)
    await q2.open()
    assert await q2.claim(lease_seconds=60) is None  # the old lease still holds
    clock.advance(121.0)  # its lease expires
    sink = Sink()
    pool2 = AnalysisWorkerPool(q2, None, sink, None, workers=1, poll_seconds=0.05,
                               job_fn=echo_job, initializer=init_nothing)
    await pool2.start()
    try:
        await asyncio.wait_for(sink.event.wait(), 60)
    finally:
        await pool2.stop()
    row = await q2.get("c1")
    await q2.close()
    assert [c for c, _ in sink.calls] == ["c1"]
    assert row is not None and row["state"] == "done" and row["attempts"] >= 2


@pytest.mark.slow
async def test_real_analysis_updates_the_call_row(models_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    store = CallLogStore(db)
    await store.open()
    await store.record_call(CallRecord("c1", "sip-c1", "0312345678", "+819012345678",
                                       recording_path=str(ASTERISK_DIR / "hello-world.wav")))
    q = AnalysisJobQueue(db)
    await q.open()
    metrics = Metrics()
    done = asyncio.Event()

    async def sink(call_id: str, result: dict[str, Any]) -> None:
        await store.update_analysis(call_id, result)
        done.set()

    cfg = AnalysisConfig(models_dir=models_dir, whisper_model="whisper-tiny.en", language="en")
    pool = AnalysisWorkerPool(q, cfg, sink, metrics, workers=1, poll_seconds=0.1)
    await pool.start()
    try:
        await pool.enqueue("c1", str(ASTERISK_DIR / "hello-world.wav"))
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await pool.stop()
    rec = await store.get_call("c1")
    await q.close()
    await store.close()
    assert rec is not None and rec.analysis is not None
    timeline = rec.analysis["timeline"]
    assert isinstance(timeline, list) and "hello world" in timeline[0]["text"].lower()
    assert rec.analysis["gender"]["gender"] in ("female", "unknown")
    audio_s, cpu_s = metrics.done[0]
    assert audio_s == pytest.approx(1.4, abs=0.1) and cpu_s > 0


async def test_failed_delivery_is_retried_with_the_stored_result(tmp_path: Path) -> None:
    q = AnalysisJobQueue(tmp_path / "mediasrv.db")
    await q.open()
    seen: list[dict[str, Any]] = []
    delivered = asyncio.Event()

    async def flaky_sink(call_id: str, result: dict[str, Any]) -> None:
        seen.append(result)
        if len(seen) == 1:
            raise RuntimeError("call log busy")
        delivered.set()

    pool = AnalysisWorkerPool(q, None, flaky_sink, None, workers=1, lease_seconds=0.4,
                              poll_seconds=0.05, job_fn=echo_job, initializer=init_nothing)
    await pool.start()
    try:
        await pool.enqueue("c1", "/rec/c1.wav")
        await asyncio.wait_for(delivered.wait(), 60)

        async def marked() -> bool:
            row = await q.get("c1")
            return row is not None and row["delivered"] is True

        await _until(marked, 10)
    finally:
        await pool.stop()
    row = await q.get("c1")
    await q.close()
    assert len(seen) == 2 and seen[0] == seen[1]  # the same stored result, not a re-run
    assert row is not None and row["attempts"] == 1 and row["delivered"] is True


def pid_job(job: AnalysisJob) -> JobOutcome:
    return JobOutcome({"pid": os.getpid()}, 1.0, 0.1)


async def test_worker_killed_while_idle_does_not_stall_the_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = AnalysisJobQueue(tmp_path / "mediasrv.db")
    await q.open()
    sink = Sink()
    pool = AnalysisWorkerPool(q, None, sink, None, workers=1, poll_seconds=0.05,
                              job_fn=pid_job, initializer=init_nothing)
    await pool.start()
    try:
        await pool.enqueue("c1", "/rec/c1.wav")
        await asyncio.wait_for(sink.event.wait(), 60)
        first_pid = int(sink.calls[0][1]["pid"])
        os.kill(first_pid, signal.SIGKILL)  # the idle worker dies
        await asyncio.sleep(0.5)
        sink.event.clear()
        await pool.enqueue("c2", "/rec/c2.wav")
        await asyncio.wait_for(sink.event.wait(), 60)
    finally:
        await pool.stop()
    row = await q.get("c2")
    await q.close()
    assert [c for c, _ in sink.calls] == ["c1", "c2"]
    assert int(sink.calls[1][1]["pid"]) != first_pid
    assert row is not None and row["state"] == "done" and row["attempts"] == 1
    assert "broken while idle" in caplog.text

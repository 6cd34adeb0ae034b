"""Durable post-call analysis queue and its worker processes.

Jobs live in the ``analysis_jobs`` table of the store's SQLite file (own migrations, own
connection). A dispatcher on the event loop claims jobs with a lease and hands them to a
pool of worker processes (``spawn``; each loads the models once and runs onnxruntime with
one thread), so analysis never runs on the event loop.

Exactly-once results:
- A claim sets ``lease_owner``/``lease_until``; the dispatcher renews leases of jobs in
  flight. A job whose lease has expired (its server crashed or restarted) is claimed again.
- A result is stored only by the current lease holder (``UPDATE ... WHERE lease_owner = ?``
  in the same transaction that marks the job done), so a stale worker whose lease was taken
  over cannot store a second, conflicting result.
- The stored result is then delivered to the app's sink (``CallLog.update_analysis`` plus
  the "analysis done" event) and the job marked delivered. After a crash between the two
  steps the *same stored result* is delivered again: the write is idempotent.
- A worker process that dies mid-job breaks the pool: the dispatcher makes a new pool and
  returns the job to the queue (attempt counted); after ``max_attempts`` it is ``failed``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from mediasrv.outputs.sqlite import Migration, Synchronous, connect_migrated

__all__ = [
    "ANALYSIS_JOBS_MIGRATIONS",
    "AnalysisJob",
    "AnalysisJobQueue",
    "AnalysisMetricsHooks",
    "AnalysisWorkerPool",
    "JobOutcome",
    "JobState",
    "WallClock",
    "run_analysis_job",
]

log = logging.getLogger(__name__)

ANALYSIS_JOBS_MIGRATIONS: list[Migration] = [
    # 1: durable analysis queue (issue 4, item 5)
    [
        """
        CREATE TABLE analysis_jobs (
            job_id       INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id      TEXT NOT NULL UNIQUE,
            wav_path     TEXT NOT NULL,
            business     TEXT NOT NULL DEFAULT '',
            state        TEXT NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            lease_owner  TEXT,
            lease_until  REAL,
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL,
            error        TEXT,
            result       TEXT,
            delivered    INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX analysis_jobs_claim ON analysis_jobs (state, lease_until, job_id)",
    ],
]


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class AnalysisJob:
    job_id: int
    call_id: str
    wav_path: str
    business: str
    attempts: int


@dataclass(frozen=True)
class JobOutcome:
    """What a worker process returns for one job (picklable)."""

    result: dict[str, Any]
    audio_seconds: float
    cpu_seconds: float


class AnalysisMetricsHooks(Protocol):
    """What the pool reports; the app adapts its Prometheus metrics to this."""

    def analysis_queue_depth(self, depth: int) -> None: ...

    def analysis_job_done(self, audio_seconds: float, cpu_seconds: float) -> None: ...

    def analysis_job_failed(self) -> None: ...


ResultSink = Callable[[str, dict[str, Any]], Awaitable[None]]
JobFunction = Callable[[AnalysisJob], JobOutcome]
# Wall-clock seconds (``time.time`` in the app): leases are compared across processes and
# restarts through the shared table, so they need a clock every server agrees on.
WallClock = Callable[[], float]


class AnalysisJobQueue:
    """The ``analysis_jobs`` table: enqueue, claim with a lease, complete, fail.

    Every timestamp and lease deadline comes from ``clock`` (the app passes ``time.time``;
    tests pass a fake one and move it instead of sleeping out a lease).
    """

    def __init__(
        self,
        path: Path,
        owner: str | None = None,
        synchronous: Synchronous = Synchronous.FULL,
        clock: WallClock = time.time,
    ) -> None:
        self.path = Path(path)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._synchronous = synchronous
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on our connection

    async def open(self) -> None:
        if self._db is not None:
            return
        db = await connect_migrated(
            self.path, "analysis_jobs", ANALYSIS_JOBS_MIGRATIONS, self._synchronous
        )
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"analysis queue {self.path} is not open")
        return self._db

    async def _tx(self, sql: str, params: tuple[object, ...]) -> list[aiosqlite.Row]:
        async with self._lock:
            db = self._conn()
            await db.execute("BEGIN IMMEDIATE")
            try:
                async with db.execute(sql, params) as cur:
                    rows = list(await cur.fetchall())
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            return rows

    async def enqueue(self, call_id: str, wav_path: str, business: str = "") -> bool:
        """Queue a call once; False if it already has a job (re-enqueueing is a no-op)."""
        now = self._clock()
        rows = await self._tx(
            "INSERT INTO analysis_jobs (call_id, wav_path, business, state, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING "
            "RETURNING job_id",
            (call_id, wav_path, business, JobState.QUEUED.value, now, now),
        )
        return bool(rows)

    async def claim(self, lease_seconds: float) -> AnalysisJob | None:
        """Take the oldest queued job, or one whose holder's lease ran out."""
        now = self._clock()
        rows = await self._tx(
            "UPDATE analysis_jobs SET state = ?, attempts = attempts + 1, lease_owner = ?, "
            "lease_until = ?, updated_at = ? WHERE job_id = (SELECT job_id FROM analysis_jobs "
            "WHERE state = ? OR (state = ? AND lease_until < ?) ORDER BY job_id LIMIT 1) "
            "RETURNING job_id, call_id, wav_path, business, attempts",
            (
                JobState.RUNNING.value,
                self.owner,
                now + lease_seconds,
                now,
                JobState.QUEUED.value,
                JobState.RUNNING.value,
                now,
            ),
        )
        if not rows:
            return None
        r = rows[0]
        return AnalysisJob(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]))

    async def renew(self, job_ids: list[int], lease_seconds: float) -> None:
        for job_id in job_ids:
            await self._tx(
                "UPDATE analysis_jobs SET lease_until = ? WHERE job_id = ? AND lease_owner = ? "
                "AND state = ? RETURNING job_id",
                (self._clock() + lease_seconds, job_id, self.owner, JobState.RUNNING.value),
            )

    async def complete(self, job_id: int, result: dict[str, Any]) -> bool:
        """Store the result iff we still hold the lease; False means someone else took over."""
        rows = await self._tx(
            "UPDATE analysis_jobs SET state = ?, result = ?, error = NULL, lease_until = NULL, "
            "updated_at = ? WHERE job_id = ? AND lease_owner = ? AND state = ? RETURNING job_id",
            (
                JobState.DONE.value,
                json.dumps(result, ensure_ascii=False),
                self._clock(),
                job_id,
                self.owner,
                JobState.RUNNING.value,
            ),
        )
        return bool(rows)

    async def fail(self, job_id: int, error: str, max_attempts: int) -> JobState | None:
        """Requeue (or give up after ``max_attempts``) a job we hold; returns its new state."""
        rows = await self._tx(
            "UPDATE analysis_jobs SET state = CASE WHEN attempts >= ? THEN ? ELSE ? END, "
            "error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? "
            "WHERE job_id = ? AND lease_owner = ? AND state = ? RETURNING state",
            (
                max_attempts,
                JobState.FAILED.value,
                JobState.QUEUED.value,
                error[:2000],
                self._clock(),
                job_id,
                self.owner,
                JobState.RUNNING.value,
            ),
        )
        return JobState(rows[0][0]) if rows else None

    async def undelivered(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Done jobs whose stored result has not reached the sink yet."""
        async with (
            self._lock,
            self._conn().execute(
                "SELECT job_id, call_id, result FROM analysis_jobs WHERE state = ? AND delivered = 0 "
                "ORDER BY job_id",
                (JobState.DONE.value,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

    async def mark_delivered(self, job_id: int) -> None:
        await self._tx(
            "UPDATE analysis_jobs SET delivered = 1 WHERE job_id = ? RETURNING job_id", (job_id,)
        )

    async def depth(self) -> int:
        async with (
            self._lock,
            self._conn().execute(
                "SELECT COUNT(*) FROM analysis_jobs WHERE state IN (?, ?)",
                (JobState.QUEUED.value, JobState.RUNNING.value),
            ) as cur,
        ):
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def get(self, call_id: str) -> dict[str, Any] | None:
        async with (
            self._lock,
            self._conn().execute(
                "SELECT job_id, state, attempts, error, result, delivered FROM analysis_jobs "
                "WHERE call_id = ?",
                (call_id,),
            ) as cur,
        ):
            r = await cur.fetchone()
        if r is None:
            return None
        return {
            "job_id": r[0],
            "state": r[1],
            "attempts": r[2],
            "error": r[3],
            "result": json.loads(r[4]) if r[4] else None,
            "delivered": bool(r[5]),
        }


# ------------------------------------------------------------------ worker processes

# Per worker process: the Analyzer built by _init_worker (models loaded once per process).
# This lives only inside the spawned worker processes, never in the server process.
_worker_analyzer: Any = None


def _init_worker(config: Any) -> None:
    global _worker_analyzer
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mediasrv.analysis.analyzer import Analyzer

    _worker_analyzer = Analyzer(config)


def run_analysis_job(job: AnalysisJob) -> JobOutcome:
    """The default job function, run in a worker process."""
    if _worker_analyzer is None:
        raise RuntimeError("analysis worker not initialised")
    t0 = time.process_time()
    result = _worker_analyzer.analyze(Path(job.wav_path), job.business or "default")
    return JobOutcome(result.to_dict(), result.audio_seconds, time.process_time() - t0)


def _init_noop(config: Any) -> None:
    del config


def _terminate_workers(executor: ProcessPoolExecutor) -> None:
    """Stop the worker processes now (a job takes minutes; its lease brings it back).

    ProcessPoolExecutor gains ``terminate_workers()`` only in Python 3.14; before that the
    process table is the private ``_processes`` mapping.
    """
    terminate = getattr(executor, "terminate_workers", None)
    if callable(terminate):
        terminate()
        return
    for proc in list(getattr(executor, "_processes", {}).values()):
        proc.terminate()


@dataclass
class _Inflight:
    job: AnalysisJob
    task: asyncio.Future[JobOutcome]
    executor: ProcessPoolExecutor
    started: float = field(default_factory=time.monotonic)


class AnalysisWorkerPool:
    """Claims jobs from the queue and runs them in worker processes.

    ``config`` is the picklable analysis configuration handed to each worker's initializer
    (an ``AnalysisConfig``); ``sink(call_id, result)`` is awaited once per finished job (the
    app updates the call row and emits "analysis done"); ``metrics`` gets queue depth and
    job counters. ``job_fn``/``initializer`` are injectable for tests (module-level
    functions, as they cross the process boundary).
    """

    def __init__(
        self,
        queue: AnalysisJobQueue,
        config: Any,
        sink: ResultSink,
        metrics: AnalysisMetricsHooks | None = None,
        workers: int | None = None,
        lease_seconds: float = 120.0,
        max_attempts: int = 3,
        poll_seconds: float = 1.0,
        job_fn: JobFunction = run_analysis_job,
        initializer: Callable[[Any], None] = _init_worker,
    ) -> None:
        self.queue = queue
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self._job_fn = job_fn
        self._initializer = initializer
        self._executor: ProcessPoolExecutor | None = None
        self._inflight: dict[int, _Inflight] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=self._initializer,
            initargs=(self.config,),
        )

    async def start(self) -> None:
        self._stopping = False
        self._executor = self._new_executor()
        self._task = asyncio.create_task(self._run(), name="analysis-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; jobs in flight are abandoned to their lease (retried later)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        busy = bool(self._inflight)
        for f in self._inflight.values():
            f.task.cancel()
        self._inflight.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            if busy:
                _terminate_workers(executor)
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def notify(self) -> None:
        """Call after ``queue.enqueue`` to start the job without waiting for the next poll."""
        self._wake.set()

    async def enqueue(self, call_id: str, wav_path: str, business: str = "") -> bool:
        added = await self.queue.enqueue(call_id, wav_path, business)
        self.notify()
        return added

    async def _run(self) -> None:
        last_renew = time.monotonic() - self.lease_seconds  # deliver leftovers at once
        while not self._stopping:
            try:
                last_renew = await self._tick(last_renew)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A store hiccup (disk full, lock timeout) must not end the dispatcher:
                # jobs stay in the table and are picked up on a later tick.
                log.exception("analysis dispatcher: store error; retrying")
                await asyncio.sleep(self.poll_seconds)

    async def _tick(self, last_renew: float) -> float:
        while len(self._inflight) < self.workers:
            job = await self.queue.claim(self.lease_seconds)
            if job is None:
                break
            self._submit(job)
        await self._report_depth()
        if time.monotonic() - last_renew > self.lease_seconds / 4:
            await self.queue.renew(list(self._inflight), self.lease_seconds)
            await self._deliver_pending()  # results whose sink failed earlier
            last_renew = time.monotonic()
        await self._wait()
        return last_renew

    def _submit(self, job: AnalysisJob) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor, self._job_fn, job)
        except BrokenProcessPool:
            # A worker died while idle (e.g. the OOM killer): the pool refuses new work.
            log.warning("analysis worker pool broken while idle; starting a new one")
            broken, self._executor = self._executor, self._new_executor()
            broken.shutdown(wait=False, cancel_futures=True)
            fut = loop.run_in_executor(self._executor, self._job_fn, job)
        self._inflight[job.job_id] = _Inflight(job, fut, self._executor)
        fut.add_done_callback(lambda _f: self._wake.set())

    async def _wait(self) -> None:
        self._wake.clear()
        done = [f for f in self._inflight.values() if f.task.done()]
        if not done:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            done = [f for f in self._inflight.values() if f.task.done()]
        for f in done:
            del self._inflight[f.job.job_id]
            if await self._finish(f) and f.executor is self._executor:
                await self._replace_executor()

    async def _finish(self, f: _Inflight) -> bool:
        """Record one finished future; True if the worker pool is broken."""
        exc = f.task.exception()
        if exc is None:
            outcome = f.task.result()
            # job_id inside the result: the idempotency key for whoever consumes the
            # "analysis done" event (a crash after storing re-delivers the same result).
            result = {**outcome.result, "job_id": f.job.job_id}
            if await self.queue.complete(f.job.job_id, result):
                if self.metrics is not None:
                    self.metrics.analysis_job_done(outcome.audio_seconds, outcome.cpu_seconds)
                await self._deliver(f.job.job_id, f.job.call_id, result)
            else:
                log.warning("analysis job %d: lease lost, result discarded", f.job.job_id)
            return False
        broken = isinstance(exc, BrokenProcessPool)
        reason = "worker process died" if broken else f"{type(exc).__name__}: {exc}"
        state = await self.queue.fail(f.job.job_id, reason, self.max_attempts)
        log.warning(
            "analysis job %d (call %s) failed: %s -> %s", f.job.job_id, f.job.call_id, reason, state
        )
        if state is JobState.FAILED and self.metrics is not None:
            self.metrics.analysis_job_failed()
        return broken

    async def _replace_executor(self) -> None:
        # The futures still running on the broken pool fail with BrokenProcessPool too and
        # are requeued by _finish; only the pool itself is replaced here, once.
        old, self._executor = self._executor, self._new_executor()
        if old is not None:
            await asyncio.to_thread(old.shutdown, wait=False, cancel_futures=True)

    async def _deliver(self, job_id: int, call_id: str, result: dict[str, Any]) -> None:
        try:
            await self.sink(call_id, result)
        except KeyError:
            log.warning(
                "analysis of call %s: no such call in the log; result kept in the queue table",
                call_id,
            )
        except Exception:
            log.exception("analysis result of call %s not delivered; will retry", call_id)
            return
        await self.queue.mark_delivered(job_id)

    async def _deliver_pending(self) -> None:
        for job_id, call_id, result in await self.queue.undelivered():
            await self._deliver(job_id, call_id, result)

    async def _report_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.analysis_queue_depth(await self.queue.depth())

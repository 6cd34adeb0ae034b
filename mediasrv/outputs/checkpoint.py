"""Periodic checkpoint of live calls (issue 8, finding 6): how long a call cut off by a crash
lasted is known to within one interval.

Every ``interval`` seconds ONE write stamps the current wall-clock time on the call-log rows
of every call in progress (``CallLogStore.checkpoint_live``: one statement, whatever the
number of calls). It goes through the store's group commit like any other row, so its cost
is one more statement in a batch every interval, not a transaction per call. After a crash
the next start ends each cut-off call at its last stamp (``mark_unfinished``).

Time comes from injected callables (``wall_clock`` for the stamp, ``sleep`` for the pacing),
so tests drive it on a fake clock without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection

__all__ = ["LiveCallCheckpoint"]

log = logging.getLogger(__name__)

CheckpointWrite = Callable[[Collection[str], float], Awaitable[int]]


class LiveCallCheckpoint:
    """Stamps the rows of the live calls every ``interval`` seconds, one write at a time."""

    def __init__(
        self,
        write: CheckpointWrite,
        live_ids: Callable[[], Collection[str]],
        interval: float,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval}")
        self._write = write
        self._live_ids = live_ids
        self.interval = interval
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._failing = False
        self.checkpoints = 0  # writes that landed (for tests and the log)
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> int:
        """One checkpoint now: stamp every live call; returns the rows stamped.

        The ids are copied first: calls that start or end while the write is queued do not
        change it. No live call, no write. A failed write is logged (once until one succeeds
        again) and never stops the checkpoints.
        """
        ids = list(self._live_ids())
        if not ids:
            return 0
        try:
            stamped = await self._write(ids, self._wall_clock())
        except Exception as exc:
            if not self._failing:
                log.error("live-call checkpoint failed: %s", exc, extra={"calls": len(ids)})
            self._failing = True
            return 0
        if self._failing:
            log.info("live-call checkpoint works again", extra={"calls": len(ids)})
        self._failing = False
        self.checkpoints += 1
        return stamped

    async def run(self) -> None:
        """Forever: wait one interval, checkpoint. A write never overlaps the previous one
        (the next interval starts when the write has landed)."""
        while True:
            await self._sleep(self.interval)
            await self.tick()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="calllog-checkpoint"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

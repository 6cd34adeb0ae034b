"""A fake clock for sans-IO timer tests: time moves only when the test says so."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, FakeHandle, Callable[[], object]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle()
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        """Run every timer due within ``seconds``, in order, moving time as they fire."""
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, handle, callback = heapq.heappop(self._heap)
            self.now = when
            if not handle.cancelled:
                callback()
        self.now = end

    def pending(self) -> int:
        return sum(1 for _, _, h, _ in self._heap if not h.cancelled)

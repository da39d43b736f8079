"""The event loop's timers: one min-heap of due times."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

Action = Callable[[], None]


class Timer:
    """One scheduled action. cancel() leaves it in the heap as a no-op: cheaper than removal."""

    __slots__ = ("action", "cancelled")

    def __init__(self, action: Action) -> None:
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One min-heap of due times; the loop sleeps in select() until the earliest is due.

    Cancelled entries stay until their due time, so the heap holds at most the timers scheduled
    in the last IDLE_TIMEOUT (or delay) seconds.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()  # tie-breaker, so Timers themselves are never compared

    def after(self, delay: float, action: Action) -> Timer:
        timer = Timer(action)
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), timer))
        return timer

    def timeout(self) -> float | None:
        """Seconds until the next live timer, or None to block until I/O."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def run_due(self) -> None:
        # Timers added while running are due strictly after `now`, so this always ends.
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                timer.cancelled = True
                timer.action()

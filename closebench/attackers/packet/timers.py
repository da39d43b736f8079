"""The connections' timers: a FIFO per fixed delay, a heap for the rest, cancelled by token.

Most timers never fire: a reply cancels them first. Each attempt arms several (its timeout, a
SYN retransmission, a request and a FIN retransmission), so at tens of thousands of attempts a
second a plain heap spends its time sorting the dead. A timer whose delay is one of the fixed
ones goes into that delay's FIFO, already in due order (O(1)); any other delay (an RTO measured
per connection) waits in the FIFO of `first` if it is longer, and only if still armed then moves
to a heap until it is due. A timer is armed while its connection holds its token (in `deadline`
or `retry`); cancelling one is forgetting its token.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Iterator

from closebench.attackers.packet.connection import Conn
from closebench.attackers.packet.states import Event

Entry = tuple[float, float, int, int, Event]  # (when to look, due, token, slot, event)


class Timers:
    def __init__(self, conns: list[Conn | None], fixed: Iterable[float], first: float) -> None:
        self.conns = conns  # by slot: the engine's own list
        self.queues: dict[float, deque[Entry]] = {d: deque() for d in fixed}
        self.queues.setdefault(first, deque())
        self.first = first
        self.heap: list[tuple[float, int, int, Event]] = []  # (due, token, slot, event)
        self.tokens = itertools.count(1)

    def add(self, now: float, delay: float, slot: int, event: Event) -> int:
        """Arm a timer for the connection in `slot`; its token."""
        token = next(self.tokens)
        due = now + delay
        queue = self.queues.get(delay)
        if queue is not None:
            queue.append((due, due, token, slot, event))
        elif delay > self.first:
            self.queues[self.first].append((now + self.first, due, token, slot, event))
        else:
            heapq.heappush(self.heap, (due, token, slot, event))
        return token

    def due(self, now: float) -> Iterator[tuple[Conn, Event]]:
        """(connection, event) of each armed timer due by `now`."""
        conns, heap = self.conns, self.heap
        for queue in self.queues.values():
            while queue and queue[0][0] <= now:
                _, due, token, slot, event = queue.popleft()
                conn = conns[slot]
                if conn is None or (token != conn.retry and token != conn.deadline):
                    continue
                if due <= now:
                    yield conn, event
                else:
                    heapq.heappush(heap, (due, token, slot, event))
        while heap and heap[0][0] <= now:
            _, token, slot, event = heapq.heappop(heap)
            conn = conns[slot]
            if conn is not None and (token == conn.retry or token == conn.deadline):
                yield conn, event

    def next_due(self) -> float:
        """When due() may next yield something (a lower bound, given the cancelled ones)."""
        heads = [queue[0][0] for queue in self.queues.values() if queue]
        if self.heap:
            heads.append(self.heap[0][0])
        return min(heads, default=math.inf)

"""The child's event loop: start attempts as the policy allows, feed the engine, run its timers.

One thread, one poll(): what arrived is handed to the engine before due timers run (a reply
already in counts before our timeout does), then attempts start within the window, the rate and
the bounds, then what the engine sent meanwhile goes out (the wire batches it; the sends it
could not make go back to the engine), then finished attempts are flushed to the runner every
FLUSH_EVERY.
"""

from __future__ import annotations

import math
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from closebench.attackers.packet.connection import LostSend
from closebench.attackers.packet.engine import Engine
from closebench.attackers.packet.segments import IcmpError, Segment
from closebench.attackers.policy import Policy

FLUSH_EVERY = 0.02  # seconds between batches of records to the runner
BURST = 0.01  # seconds of rate-capped starts that may be caught up after a stall
SETTLE = 1.0  # seconds to wait at the end for the server to acknowledge our FINs


class Receiver(Protocol):
    def fileno(self) -> int: ...

    def receive(self) -> list[Segment | IcmpError]: ...

    def flush(self) -> list[LostSend]: ...


class Pacer:
    """When attempts may start: the window (concurrency), the rate, the attempt bound, the end."""

    def __init__(self, policy: Policy, now: float) -> None:
        self.window = policy.concurrency
        self.gap = 1.0 / policy.rate if policy.rate else 0.0
        self.stop_at = now + policy.duration if policy.duration else math.inf
        attempts = policy.attempts
        if not policy.reconnect:  # one attempt per slot, as the kernel spammer does
            attempts = min(attempts or policy.concurrency, policy.concurrency)
        self.attempts = attempts
        self.started = 0
        self.next_start = now

    def starting(self, now: float) -> bool:
        """Whether attempts may still start (the bounds are not reached)."""
        return now < self.stop_at and (self.attempts is None or self.started < self.attempts)

    def due(self, now: float, in_flight: int) -> int:
        """How many attempts to start now; counts them as started."""
        room = self.window - in_flight
        if self.attempts is not None:
            room = min(room, self.attempts - self.started)
        if self.gap:
            self.next_start = max(self.next_start, now - BURST)
            allowed = int((now - self.next_start) / self.gap) + 1 if now >= self.next_start else 0
            room = min(room, allowed)
        room = max(0, room)
        self.next_start += room * self.gap
        self.started += room
        return room

    def wake(self, in_flight: int) -> float:
        """When the next start may be due (monotonic), if the window has room."""
        if in_flight >= self.window:
            return self.stop_at
        return min(self.next_start, self.stop_at)


@dataclass
class LoopReport:
    elapsed_s: float
    starting_s: float  # how long attempts were being started
    cancelled: bool


def run(
    engine: Engine,
    wire: Receiver,
    policy: Policy,
    cancel: threading.Event,
    flush: Callable[[], None],
    settle: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> LoopReport:
    """Run the policy to its end or until `cancel`; `settle`: wait a little for our FINs' ACKs.
    `clock` paces the starts and measures the run (the engine keeps its own, Unix time)."""
    started = clock()
    pacer = Pacer(policy, started)
    poller = select.poll()
    poller.register(wire.fileno(), select.POLLIN)
    last_flush = started
    starting_until: float | None = None
    idle_since: float | None = None
    readable = True
    while not cancel.is_set():
        if readable:
            for item in wire.receive():
                engine.receive(item)
        engine.fire_timers()
        now = clock()
        starting = pacer.starting(now)
        if starting:
            for _ in range(pacer.due(now, engine.in_flight)):
                engine.open()
        else:
            starting_until = starting_until or now
            if engine.in_flight == 0:
                idle_since = idle_since or now
                if not (settle and engine.settling() and now - idle_since < SETTLE):
                    break
        for lost in wire.flush():
            engine.send_lost(lost)
        if now - last_flush >= FLUSH_EVERY:
            flush()
            last_flush = now
        wake = min(last_flush + FLUSH_EVERY, now + engine.next_timer() - engine.clock())
        if starting:
            wake = min(wake, pacer.wake(engine.in_flight))
        timeout_ms = max(0, math.ceil((wake - clock()) * 1000))
        readable = bool(poller.poll(timeout_ms))
    if cancel.is_set():
        engine.abandon()
    for lost in wire.flush():  # what the last round (or abandon) sent: the RSTs of give-ups...
        engine.send_lost(lost)
    ended = clock()
    flush()
    return LoopReport(
        elapsed_s=round(ended - started, 3),
        starting_s=round((starting_until or ended) - started, 3),
        cancelled=cancel.is_set(),
    )

"""The kernel-socket spammer: what a script using ordinary sockets experiences.

asyncio with non-blocking sockets, many connections in flight from one thread. The thread runs
inside the attacker host (setns is per thread), so every socket it makes belongs to that host.
The same client, asking for `/` at a low rate from its own address, is the legitimate client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

from closebench.attackers.conversation import (
    RECEIVE_SIZE,
    Abort,
    Connect,
    Conversation,
    Pause,
    Send,
    Step,
    Unsent,
    abort_on_close,
    advance,
    conversation,
    new_attempt,
    unsent_bytes,
)
from closebench.attackers.policy import Budget, Policy, Target
from closebench.core.outcomes import Attempt
from closebench.core.summary import percentile
from closebench.lab import Lab

CANCEL_POLL = 0.1  # seconds between looks at the cancel event
LAG_EVERY = 0.05  # seconds between looks at how late the event loop runs


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit: high concurrency needs the fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class KernelSpammer:
    """Runs `policy` against `target` with kernel sockets, one Attempt per connection."""

    name = "kernel"

    def __init__(self, label: str = "kernel") -> None:
        self.label = label
        self.in_flight = 0
        self.peak_in_flight = 0
        # Its own load: how late its event loop woke (s), and the failures on its own side (no
        # fd, no port, no buffer: errno names) that started no connection.
        self.lags: list[float] = []
        self.local_errors: Counter[str] = Counter()

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | list[str] | None = None,
        drain: threading.Event | None = None,
    ) -> dict:
        """`source`: the address to send from, or several (a botnet): see slot_sources().
        `cancel` abandons the attempts in flight; `drain` only stops new ones (those in flight
        end and are recorded: every connection on the wire has its record)."""
        raise_fd_limit()
        if not source:
            source = lab.attacker_ip(target.family)
        sources = [source] if isinstance(source, str) else list(source)
        self._drain = drain or threading.Event()
        started, cpu = time.monotonic(), time.thread_time()
        with lab.attacker.entered():
            asyncio.run(self._main(target, policy, sink, cancel, sources))
        return {"peak_open_sockets": self.peak_in_flight, **self.own_load(started, cpu)}

    def own_load(self, started: float, cpu: float) -> dict:
        """What running the client cost this thread: its CPU as a share of one core, how late
        its event loop ran (p95, max), and its own failures."""
        wall = time.monotonic() - started
        used = time.thread_time() - cpu
        return {
            "cpu_s": round(used, 3),
            "cpu_share": round(used / wall, 3) if wall > 0 else None,
            "loop_lag_p95_s": percentile(self.lags, 95),
            "loop_lag_max_s": max(self.lags, default=None),
            "local_errors": sum(self.local_errors.values()),
            "local_error_kinds": dict(self.local_errors),
        }

    async def _main(self, target, policy, sink, cancel, sources: list[str]) -> None:
        self._cancel = cancel
        budget = Budget(policy)
        slots = [
            asyncio.create_task(
                self._slot(budget, target, policy, sink, slot_sources(sources, i, policy))
            )
            for i in range(policy.concurrency)
        ]
        watcher = asyncio.create_task(_watch(cancel, slots))
        lag = asyncio.create_task(self._watch_lag())
        await asyncio.gather(*slots, return_exceptions=True)
        for task in (watcher, lag):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch_lag(self) -> None:
        """How late the loop wakes from a short sleep: a loop too busy (or a process starved of
        CPU) measures its own delay, not the server's."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_EVERY)
            self.lags.append(max(0.0, loop.time() - before - LAG_EVERY))

    async def _slot(self, budget: Budget, target, policy, sink, sources: list[str]) -> None:
        turn = itertools.cycle(sources)
        while not self._cancel.is_set() and await budget.take():
            if self._drain.is_set():
                return
            try:
                attempt = await self.attempt(target, policy, next(turn), policy.timeout)
            except OSError as error:  # no socket, no port: nothing reached the wire
                await self.note_local_error(error)
                continue
            sink(attempt)
            if not policy.reconnect:
                return

    async def note_local_error(self, error: OSError) -> None:
        """A failure on its own side (no socket, no port: nothing reached the wire): counted,
        and a pause before the next try."""
        self.local_errors[errno.errorcode.get(error.errno or 0, str(error))] += 1
        await asyncio.sleep(CANCEL_POLL)

    def steps(self, attempt: Attempt, target: Target, policy: Policy) -> Conversation:
        """The conversation each connection holds (a bot's: attackers/bots.py)."""
        return conversation(attempt, target, policy.request_delay)

    async def attempt(self, target: Target, policy: Policy, source: str, timeout: float) -> Attempt:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET if target.family == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            sock.setblocking(False)
            sock.bind((source, 0))
            attempt = new_attempt(self.label, target, sock, timeout)
            await _drive(loop, sock, self.steps(attempt, target, policy))
            return attempt
        finally:
            sock.close()
            self.in_flight -= 1


async def _drive(loop: asyncio.AbstractEventLoop, sock: socket.socket, steps: Conversation) -> None:
    """Run a conversation (attackers/conversation.py) on a non-blocking socket."""
    step = advance(steps, None, None)
    while step is not None:
        try:
            step = advance(steps, await _perform(loop, sock, step), None)
        except OSError as error:
            step = advance(steps, None, error)


async def _perform(loop, sock: socket.socket, step: Step) -> bytes | int | None:
    if isinstance(step, Connect):
        await asyncio.wait_for(loop.sock_connect(sock, step.address), step.timeout)
    elif isinstance(step, Pause):
        await asyncio.sleep(step.seconds)
    elif isinstance(step, Send):
        await loop.sock_sendall(sock, step.data)
    elif isinstance(step, Unsent):
        return unsent_bytes(sock)
    elif isinstance(step, Abort):
        abort_on_close(sock)
    else:
        return await asyncio.wait_for(loop.sock_recv(sock, RECEIVE_SIZE), step.timeout)
    return None


def slot_sources(sources: list[str], slot: int, policy: Policy) -> list[str]:
    """The addresses slot `slot` cycles over: with at least as many slots as addresses, one each
    (slot i takes address i mod N); with more addresses than slots, slot i takes i, i+C, i+2C...
    (C slots), so every address is used in turn."""
    if len(sources) <= policy.concurrency:
        return [sources[slot % len(sources)]]
    return sources[slot :: policy.concurrency]


async def _watch(cancel: threading.Event, tasks: list[asyncio.Task]) -> None:
    while not cancel.is_set():
        await asyncio.sleep(CANCEL_POLL)
    # asyncio.wait_for (Python 3.11) can swallow a cancellation that races its inner future, and
    # the slot would attack on: keep cancelling until every task has ended.
    while not all(task.done() for task in tasks):
        for task in tasks:
            task.cancel()
        await asyncio.sleep(CANCEL_POLL)

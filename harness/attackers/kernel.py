"""The kernel-socket spammer: what a script using ordinary sockets experiences.

asyncio with non-blocking sockets, many connections in flight from one thread. The thread runs
inside the attacker host (setns is per thread), so every socket it makes belongs to that host.
The same client, asking for `/` at a low rate from its own address, is the legitimate client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import resource
import socket
import threading
import time
from collections.abc import Callable

from harness.attackers.policy import Budget, Policy, Target
from harness.lab import Lab
from harness.outcomes import Attempt, Outcome, http_status, outcome_of_error

CANCEL_POLL = 0.1  # seconds between looks at the cancel event


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
        with lab.attacker.entered():
            asyncio.run(self._main(target, policy, sink, cancel, sources))
        return {"peak_open_sockets": self.peak_in_flight}

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
        await asyncio.gather(*slots, return_exceptions=True)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    async def _slot(self, budget: Budget, target, policy, sink, sources: list[str]) -> None:
        turn = itertools.cycle(sources)
        while not self._cancel.is_set() and await budget.take():
            if self._drain.is_set():
                return
            sink(await self.attempt(target, policy, next(turn), policy.timeout))
            if not policy.reconnect:
                return

    async def attempt(self, target: Target, policy: Policy, source: str, timeout: float) -> Attempt:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET if target.family == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            sock.setblocking(False)
            sock.bind((source, 0))
            attempt = Attempt(
                attacker=self.label,
                family=target.family,
                src=source,
                sport=sock.getsockname()[1],
                dst=target.address,
                dport=target.port,
                client_timeout=timeout,
                outcome=Outcome.SILENT,
                t_syn=time.time(),
            )
            await self._converse(loop, sock, attempt, target, policy, timeout)
            return attempt
        finally:
            sock.close()
            self.in_flight -= 1

    async def _converse(self, loop, sock, attempt: Attempt, target, policy, timeout) -> None:
        established = False
        head = b""
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (target.address, target.port)), timeout)
            established = True
            attempt.t_established = time.time()
            if policy.request_delay:
                await asyncio.sleep(policy.request_delay)
            await loop.sock_sendall(sock, target.request())
            attempt.t_request = time.time()
            deadline = loop.time() + timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), remaining)
                if not chunk:
                    attempt.outcome = Outcome.FIN
                    break
                if not attempt.bytes_received:
                    attempt.t_first_byte = time.time()
                attempt.bytes_received += len(chunk)
                head = (head + chunk)[:64]
        except OSError as error:
            outcome = outcome_of_error(error, established)
            if outcome is None:
                attempt.outcome = Outcome.RST if established else Outcome.REFUSED
                attempt.detail = f"{type(error).__name__}: {error}"
            else:
                attempt.outcome = outcome
        attempt.t_end = time.time()
        attempt.data_first = attempt.bytes_received > 0
        attempt.http_status = http_status(head)


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

"""How an attacker behaves (its policy) and what it aims at (its target)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from closebench.core.errors import UsageError
from closebench.core.limits import MAX_SECONDS


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    family: int = 4
    path: str = "/spam"

    def request(self) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.address}\r\n"
            "User-Agent: closebench-spammer\r\nAccept: */*\r\n\r\n"
        ).encode()


@dataclass(frozen=True)
class Policy:
    """The seed's spam script by default: reconnect at once, give up after a browser-like 10 s.

    Every attack is bounded: by `duration` seconds, by `attempts`, or by both (whichever first).
    """

    timeout: float = 10.0  # give up on an attempt after this long without an end
    reconnect: bool = True  # start the next attempt as soon as one ends; else one per slot
    concurrency: int = 1  # connections in flight at once
    rate: float | None = None  # cap on attempts started per second, over all slots
    duration: float | None = 30.0
    attempts: int | None = None
    request_delay: float = 0.0  # seconds between the handshake and the request

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be a finite number, got {value}"  # NaN passes every `<= 0` below
            for name in ("timeout", "rate", "duration", "request_delay")
            if (value := getattr(self, name)) is not None and not math.isfinite(value)
        ]
        if self.timeout <= 0:
            problems.append(f"timeout must be > 0 s, got {self.timeout}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be at least 1, got {self.concurrency}")
        if self.rate is not None and self.rate <= 0:
            problems.append(f"rate must be > 0 attempts/s, got {self.rate}")
        if self.duration is None and self.attempts is None:
            problems.append("give a duration or a number of attempts: every attack is bounded")
        if self.duration is not None and self.duration <= 0:
            problems.append(f"duration must be > 0 s, got {self.duration}")
        if self.attempts is not None and self.attempts < 1:
            problems.append(f"attempts must be at least 1, got {self.attempts}")
        if self.request_delay < 0:
            problems.append(f"request_delay must be >= 0 s, got {self.request_delay}")
        problems += [
            f"{name} must be at most {MAX_SECONDS:g} s (a day), got {value:g}"
            for name in ("timeout", "duration", "request_delay")
            if (value := getattr(self, name)) is not None and value > MAX_SECONDS
        ]
        if problems:
            raise UsageError("bad attack policy: " + "; ".join(problems))


class Budget:
    """Hands out attempt starts: honours the rate cap, the attempt count and the deadline.

    Safe to share between threads (the command client) or tasks (the asyncio spammers).
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.started = 0
        self._next_start = time.monotonic()
        self.deadline = time.monotonic() + policy.duration if policy.duration else None
        self._lock = threading.Lock()

    def expired(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return True
        return self.policy.attempts is not None and self.started >= self.policy.attempts

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline else float("inf")

    def claim(self) -> float | None:
        """Reserve the next start: how long to wait before it, or None once the attack is over."""
        with self._lock:
            if self.expired():
                return None
            wait = 0.0
            if self.policy.rate:
                now = time.monotonic()
                start = max(now, self._next_start)
                self._next_start = start + 1.0 / self.policy.rate
                wait = start - now
                if wait >= self.remaining():
                    return None
            self.started += 1
            return wait

    async def take(self) -> bool:
        import asyncio  # here: the packet attacker's child imports this module, not asyncio

        wait = self.claim()
        if wait is None:
            return False
        await asyncio.sleep(wait)
        return True

    def take_blocking(self, cancel: threading.Event) -> bool:
        wait = self.claim()
        return wait is not None and not cancel.wait(wait)

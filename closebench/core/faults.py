"""A part of a trial that crashed (an attacker, the legitimate client, the server, the sampler),
or a trial that raised: the one typed error value a trial's result, its summary.json row and the
run's errors carry.

A thread that dies of an exception must not leave a row that reads as a measurement: its trial
keeps the fault (which part, the exception's type and message) and fails with it.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from closebench.core.errors import ClosebenchError

MESSAGE_LIMIT = 300  # characters of an exception's message kept in a row (a NUL path can be long)


@dataclass(frozen=True)
class Fault:
    part: str  # "the curl attacker", "the legitimate client", "the server"...
    kind: str  # the exception's type, or what went wrong ("NoAttempts", "ThreadCrash")
    message: str
    # A ClosebenchError's message is already the user's whole line (the problem and its fix).
    whole: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return self.message if self.whole else f"{self.part} failed: {self.kind}: {self.message}"

    def to_dict(self) -> dict:
        """summary.json's `faults` entry."""
        return {"part": self.part, "kind": self.kind, "message": self.message}

    @classmethod
    def told(cls, part: str, error: ClosebenchError) -> Fault:
        """An error closebench raised on purpose: told as its own message."""
        return cls(part, type(error).__name__, str(error), whole=True)

    @classmethod
    def of(cls, part: str, error: BaseException) -> Fault:
        message = str(error) or repr(error)
        if isinstance(error, MemoryError):  # pyarrow's ArrowMemoryError is one too
            message += f" ({memory_limit()})"
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "..."
        # One visible line: a NUL or a newline in the message is shown escaped.
        visible = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        return cls(part, type(error).__name__, visible)


def memory_limit() -> str:
    """The process's address-space limit (`ulimit -v`), as an out-of-memory message names it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return "no `ulimit -v` is set: the machine's memory ran out"
    return f"the memory limit, `ulimit -v`, is {soft // 1024:,} KiB; raise it"


class Faults:
    """The faults of one trial, gathered from its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def guarded(self, part: str, work: Callable[[], None]) -> Callable[[], None]:
        """`work`, for a thread: an exception it raises is kept as this part's fault."""

        def run() -> None:
            try:
                work()
            except Exception as error:  # any crash of the part fails the trial
                self.add(Fault.of(part, error))

        return run

    def parts(self) -> set[str]:
        with self._lock:
            return {fault.part for fault in self._faults}

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

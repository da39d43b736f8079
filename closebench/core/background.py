"""Long work in a worker thread, so the main thread stays free for a display and for Ctrl-C
(or SIGTERM)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """Runs `work()` in a thread; `wait()` polls, `result()` returns or re-raises.

    Waiting uses an Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave the
    thread looking finished while it still runs (CPython before 3.13).
    """

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=name).start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as error:  # handed to the waiting thread
            self._error = error
        finally:
            self._done.set()

    def wait(self, seconds: float | None = None) -> bool:
        """True once the work is done."""
        return self._done.wait(seconds)

    def result(self) -> T:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """While inside, Ctrl-C (and SIGTERM, see terminate_like_ctrl_c) sets `event` rather than
    raising KeyboardInterrupt at a random point (where it could skip the code that stops the
    workers)."""
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# Set by SIGTERM: whoever sent it wants the process gone within seconds (systemd kills it 90 s
# later, `timeout -k` sooner), so what is slow and can be redone later is left out (the report).
TERMINATED = threading.Event()


def terminate_like_ctrl_c() -> None:
    """Make SIGTERM (what `timeout`, systemd and a cancelled CI job send) do what Ctrl-C does at
    that moment: set the event of `ctrl_c_sets`, or raise KeyboardInterrupt. Either way the work
    stops cleanly, keeps what it measured and removes its lab, where SIGTERM's default would end
    the process at once and lose the run."""

    def like_ctrl_c(signum: int, frame) -> None:
        TERMINATED.set()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signum, frame)
        else:  # SIGINT ignored (a background job of a non-interactive shell): stop anyway
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, like_ctrl_c)

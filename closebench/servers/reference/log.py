"""The reference server's log lines on stderr, and the crashes of its threads."""

from __future__ import annotations

import sys
import threading

PROG = "closebench-server"


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def count_thread_crashes(counters) -> None:
    """From now on, a thread that dies of an exception is counted in `counters` (thread_crashes,
    and the first one's exception in thread_crash) and told: its trial then fails rather than
    read as a measurement (a delayed-close thread that died leaves its socket open: `silent`)."""

    def hook(args: threading.ExceptHookArgs) -> None:
        counters.thread_crashes += 1
        if counters.thread_crash is None:
            counters.thread_crash = f"{args.exc_type.__name__}: {args.exc_value}"
        log(f"!!! a thread died: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook

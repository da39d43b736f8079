"""The reference server's log lines on stderr."""

from __future__ import annotations

import sys

PROG = "closebench-server"


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)

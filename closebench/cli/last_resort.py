"""What the command says when it fails for a reason no check caught: the machine's limits (memory,
open files), input nested past Python's stack, or a bug. One line and an exit status, never a
traceback (CLOSEBENCH_TRACEBACK=1 shows it, for a bug report)."""

from __future__ import annotations

import errno
import os
import resource
import traceback
from dataclasses import dataclass

from closebench.core.faults import memory_limit


@dataclass(frozen=True)
class Failure:
    message: str
    status: int  # 2: the input; 1: the machine or closebench


def machine_fault(error: Exception) -> Failure:
    if os.environ.get("CLOSEBENCH_TRACEBACK"):
        traceback.print_exception(error)
    if isinstance(error, RecursionError):
        return Failure(
            "the input is nested too deeply to read (lists or tables inside each other "
            "hundreds of levels deep); no file closebench writes is",
            2,
        )
    if _out_of_memory(error):
        return Failure(f"out of memory ({memory_limit()}): {_short(error)}", 1)
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        return Failure(
            f"too many open files (the limit is {open_files_limit()}; raise it with "
            f"`ulimit -n`): {_short(error)}",
            1,
        )
    if isinstance(error, OSError):
        return Failure(f"{_short(error)}", 1)
    return Failure(
        f"internal error: {_short(error)} (a bug: please report it with CLOSEBENCH_TRACEBACK=1 "
        "set, which shows where)",
        1,
    )


def _out_of_memory(error: Exception) -> bool:
    if isinstance(error, MemoryError):
        return True
    # pyarrow's ArrowMemoryError is a MemoryError too; its message says so otherwise
    return "MemoryError" in type(error).__name__ or "out of memory" in str(error).lower()


def open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def _short(error: Exception) -> str:
    text = str(error) or "no message"
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(error).__name__}: {text}".replace("\n", " ")

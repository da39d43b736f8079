"""Room on the disk a run writes to: a reserve kept for the results, and noticing a full disk.

tcpdump does not stop when its file system fills up: it drops what it cannot write and goes on,
so trials would run on with truncated captures, and the results would find no room at the end.
While a run goes, the runner holds RESERVE bytes in an unlinked file (freed with the process,
even by kill -9) and watches the free space; below LOW_WATER it stops the run and frees the
reserve, so that summary.json and the rest of what was measured can still be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path

from closebench.core.errors import EnvironmentProblem

MIB = 1 << 20
RESERVE = 4 * MIB  # summary.json, samples.csv and the attempts' last batches fit in this
LOW_WATER = 1 * MIB  # free space below this means full: stop before a capture is cut short


def size_text(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


class DiskGuard:
    """The reserve and the watch for one directory's file system."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._releasing = threading.Lock()
        self._reserve: int | None = _allocate(directory, RESERVE)
        if self.free() < LOW_WATER:
            self.release()
            raise EnvironmentProblem(
                f"the file system of {directory} is nearly full ({size_text(self.free())} free; "
                f"a run needs {size_text(RESERVE + LOW_WATER)}): free some space or give "
                "another --out"
            )

    def free(self) -> int:
        return shutil.disk_usage(self.directory).free

    def full(self) -> bool:
        try:
            return self.free() < LOW_WATER
        except OSError:  # the directory is gone: writing into it will say so
            return False

    def release(self) -> None:
        """Give the reserve back: the results are about to be written (from any thread)."""
        with self._releasing:
            if self._reserve is not None:
                os.close(self._reserve)
                self._reserve = None


def _allocate(directory: Path, size: int) -> int:
    """An open, unlinked file of `size` bytes in `directory`'s file system."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:  # a file system without O_TMPFILE
        fd, name = tempfile.mkstemp(dir=directory, prefix=".closebench-reserve-")
        os.unlink(name)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _write_zeros(fd, size)  # no fallocate here: real blocks instead
    except OSError as error:
        os.close(fd)
        raise EnvironmentProblem(
            f"no room for a run on the file system of {directory} ({error.strerror}; a run "
            f"needs {size_text(RESERVE + LOW_WATER)}): free some space or give another --out"
        ) from None
    return fd


def _write_zeros(fd: int, size: int) -> None:
    block = bytes(MIB)
    written = 0
    while written < size:
        written += os.write(fd, block[: size - written])
    with contextlib.suppress(OSError):
        os.fsync(fd)  # the blocks are taken now, not at some later flush

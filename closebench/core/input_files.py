"""Opening files that come from elsewhere (a scenario, a run directory from a colleague or a CI
artifact) so that no file can hang or exhaust a reader: only regular files are read (a FIFO would
block forever, /dev/zero never ends), and never more than a cap per kind of file.

Each refusal is a UsageError naming the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

from closebench.core.errors import ClosebenchError, UsageError

MiB = 1 << 20
# The most a reader takes of each kind of file (docs/reference/limits-and-errors.md).
SCENARIO_BYTES = 1 * MiB
SUMMARY_BYTES = 256 * MiB  # summary.json: a run of 1,000 trials is a few MB
TABLE_BYTES = 4096 * MiB  # samples.csv, attempts' Parquet files, pcaps: read as streams


def open_regular(path: Path | str, what: str, limit: int) -> int:
    """A descriptor of `path` for reading, once it is known to be a regular file of at most
    `limit` bytes. Opened without blocking: a FIFO planted there fails at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise read_error(path, what, error) from None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise UsageError(
                f"{path} is {_kind(found.st_mode)}, not a regular file: give the file itself"
            )
        if found.st_size > limit:
            raise UsageError(
                f"{path} is {found.st_size:,} bytes, more than the {limit:,} a {what} may be"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path | str, what: str, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes (see open_regular)."""
    fd = open_regular(path, what, limit)
    try:
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise read_error(path, what, error) from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise UsageError(f"{path} is more than the {limit:,} bytes a {what} may be")
    return data


def check_regular(path: Path | str, what: str, limit: int) -> None:
    """Refuse `path` unless it is a regular file of at most `limit` bytes (for readers that open
    it themselves: pyarrow, dpkt)."""
    os.close(open_regular(path, what, limit))


def read_error(path: Path | str, what: str, error: OSError) -> ClosebenchError:
    """One line for a file that could not be read: too many open files is the machine's fault
    (exit 1), anything else the input's (exit 2)."""
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return ClosebenchError(
            f"cannot open {what} {path}: too many open files (raise `ulimit -n`, now "
            f"{_open_file_limit()})"
        )
    return UsageError(f"cannot read {what} {path}: {error.strerror or error}")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def _open_file_limit() -> str:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return str(soft)


def parse_toml(text: str, path: Path | str) -> dict:
    """A TOML document; UsageError when it is not TOML or is nested too deeply to read."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:  # `a = [[[[...` 100,000 deep
        raise UsageError(f"{path}: nested too deeply to read ({DEEP})") from None


def parse_json(text: str | bytes, path: Path | str) -> object:
    """A JSON document; UsageError when it is not JSON or is nested too deeply to read."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to read ({DEEP})") from None
    except ValueError as error:  # not JSON, or not UTF-8
        raise UsageError(f"{path}: not valid JSON: {error}") from None


def read_json(path: Path, name: str, limit: int, refuse: Callable[[str], UsageError]) -> object:
    """A JSON file of a run (summary.json): a regular file of at most `limit` bytes, parsed
    without recursing past Python's stack; `refuse(why)` makes the error for a missing or
    unreadable one."""
    if not os.path.lexists(path):
        raise refuse(f"no {name}")
    try:
        return parse_json(read_bytes(path, name, limit), path)
    except UsageError as error:
        raise refuse(f"{name} is unreadable: {error}") from None


DEEP = "lists or tables inside each other hundreds of levels deep; no closebench file is"

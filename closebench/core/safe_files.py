"""Files closebench reads from users and writes into run directories, without surprises.

Reading: a file that cannot be read or is not UTF-8 is one clear error, not a traceback.

Writing: a run directory may come from elsewhere (a CI artifact, a colleague's tarball) with
symbolic links planted in it, e.g. `index.html -> ~/.bashrc` or `figures -> /etc`. Nothing here
follows a link: a file is written under a new name in the directory and renamed into place (the
rename replaces a link itself, never its target, and readers never see half a file), and a
subdirectory that is a link or a file is replaced by a real one. Write errors name the file: a
read-only place is the user's to fix (UsageError, exit 2), a full disk is a failed run (exit 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.input_files import SCENARIO_BYTES, read_bytes

# A place the user pointed us at that we may not write: their input to change.
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def read_text(path: Path, what: str, limit: int = SCENARIO_BYTES) -> str:
    """The UTF-8 text of a file the user gave (`what` names it: "scenario", "expectations"): a
    regular file of at most `limit` bytes (core/input_files.py)."""
    try:
        return read_bytes(path, what, limit).decode("utf-8")
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte 0x{byte:02x} at offset {error.start}): "
            "save it as UTF-8"
        ) from None


def write_error(path: Path, error: OSError, fix: str = "") -> ClosebenchError:
    """One line for a failed write: whose fix it is decides the exit status. `fix` says what to
    do about a place that cannot be written."""
    reason = error.strerror or str(error)
    if error.errno in NOT_WRITABLE:
        return UsageError(f"cannot write {path}: {reason}; {fix or 'give a writable place'}")
    if error.errno in NO_SPACE:
        return ClosebenchError(f"cannot write {path}: {reason}; free some space and try again")
    return ClosebenchError(f"cannot write {path}: {reason}")


class SafeDirectory:
    """A directory written without following links inside it (see the module's docstring).

    Operations go through a file descriptor of the directory, so a link swapped in for one of
    its entries is never followed either.
    """

    def __init__(self, path: Path, fix: str = "", fd: int | None = None) -> None:
        self.path = Path(path)
        self.fix = fix  # what to do when it cannot be written (see write_error)
        if fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as error:
                raise write_error(self.path, error, fix) from None
        self._fd = fd

    def __enter__(self) -> SafeDirectory:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write(self, name: str, data: bytes | str) -> Path:
        """Write `name` whole: a new file renamed over whatever was there (a link included)."""
        if isinstance(data, str):
            data = data.encode()
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=self._fd,
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except OSError as error:
            self._remove(temporary)
            raise write_error(self.path / name, error, self.fix) from None
        return self.path / name

    def subdirectory(self, name: str) -> SafeDirectory:
        """`name` as a real directory of this one: a link or a file there is removed first."""
        try:
            found = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        except OSError as error:
            raise write_error(self.path / name, error, self.fix) from None
        try:
            if found is not None and not stat.S_ISDIR(found.st_mode):
                os.unlink(name, dir_fd=self._fd)  # the link itself, not what it points at
                found = None
            if found is None:
                os.mkdir(name, 0o755, dir_fd=self._fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self._fd)
        except OSError as error:
            raise write_error(self.path / name, error, self.fix) from None
        return SafeDirectory(self.path / name, self.fix, fd)

    def _remove(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self._fd)

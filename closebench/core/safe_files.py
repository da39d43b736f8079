"""Files closebench reads from users and writes into run directories, without surprises.

Reading: a file that cannot be read or is not UTF-8 is one clear error, not a traceback.

Writing: a run directory may come from elsewhere (a CI artifact, a colleague's tarball) with
symbolic links planted in it, e.g. `index.html -> ~/.bashrc` or `figures -> /etc`. Nothing here
follows a link: a file is written under a new name in the directory and renamed into place (the
rename replaces a link itself, never its target, and readers never see half a file), and a
subdirectory that is a link or a file is replaced by a real one. Write errors name the file: a
read-only place is the user's to fix (UsageError, exit 2), a full disk is a failed run (exit 1).

A SafeDirectory is opened once, by a path walked as closebench/core/trusted_paths.py says (a
directory another user could change is refused), and everything below it is reached through its
descriptor: a directory renamed or swapped for a link after it was opened changes nothing. Code
that only takes a path (a child process, a library) gets `anchor`, /proc/PID/fd/N, which the
kernel resolves through the same descriptor, not by name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.trusted_paths import open_trusted_directory

# A place the user pointed us at that we may not write: their input to change.
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The anchors of the directories open now, with the names they were opened by (see shown()).
_ANCHORS: dict[str, Path] = {}


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user gave (`what` names it: "scenario", "expectations")."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror}") from None
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

    def __init__(
        self, path: Path, fix: str = "", fd: int | None = None, create: bool = False
    ) -> None:
        self.path = Path(path)  # the name it was opened by: for messages only
        self.fix = fix  # what to do when it cannot be written (see write_error)
        if fd is None:
            try:
                fd = open_trusted_directory(self.path, create, fix)
            except OSError as error:
                raise write_error(self.path, error, fix) from None
        self._fd = fd
        _ANCHORS[str(self.anchor)] = self.path

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def anchor(self) -> Path:
        """A path to this very directory (not to whatever has its name now), for code that
        takes only paths: the kernel follows /proc/PID/fd/N to the open descriptor."""
        return Path(f"/proc/{os.getpid()}/fd/{self._fd}")

    @property
    def real(self) -> Path:
        """Where the directory is now, for a process that cannot reach `anchor` (another uid):
        its components were checked when it was opened, so no other user can move it."""
        return Path(os.readlink(self.anchor))

    def __enter__(self) -> SafeDirectory:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            _ANCHORS.pop(str(self.anchor), None)
            os.close(self._fd)
            self._fd = -1

    def open(self, name: str, mode: str = "wb", replace: bool = False) -> IO:
        """`name` created for writing (mode "w"/"wb" or "a"), never through a link: an existing
        link or file is an error unless `replace`, which removes it first (the link itself)."""
        flags = NEW_FILE
        if "a" in mode:
            flags = (flags & ~os.O_EXCL) | os.O_APPEND
        elif replace:
            self._remove(name)
        try:
            fd = os.open(name, flags, 0o644, dir_fd=self._fd)
        except OSError as error:
            raise write_error(self.path / name, error, self.fix) from None
        binary = "b" in mode
        return os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8", "newline": ""}))

    @contextlib.contextmanager
    def atomic(self, name: str, binary: bool = False) -> Iterator[IO]:
        """A stream whose text becomes `name` whole when the block ends without an error (a
        new file renamed over whatever was there, a link included); nothing is left otherwise."""
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            with self.open(temporary, "wb" if binary else "w") as stream:
                yield stream
            os.replace(temporary, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except BaseException as error:
            self._remove(temporary)
            if isinstance(error, OSError):
                raise write_error(self.path / name, error, self.fix) from None
            raise

    def symlink(self, target: str, name: str) -> None:
        """`name` as a link to `target`, replaced at once: readers never see it missing."""
        temporary = f".{name}.{secrets.token_hex(4)}"
        try:
            os.symlink(target, temporary, dir_fd=self._fd)
            os.replace(temporary, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except OSError:
            self._remove(temporary)
            raise

    def new_subdirectory(self, name: str) -> SafeDirectory:
        """A directory made now under `name` (FileExistsError when the name is taken)."""
        os.mkdir(name, 0o755, dir_fd=self._fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self._fd)
        return SafeDirectory(self.path / name, self.fix, fd)

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


def shown(path: str | Path) -> str:
    """A path as the user knows it: an anchor (/proc/PID/fd/N/...) by its directory's name."""
    text = str(path)
    for anchor, name in _ANCHORS.items():
        if text == anchor or text.startswith(anchor + "/"):
            return str(name) + text[len(anchor) :]
    return text

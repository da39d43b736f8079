"""Opening a directory root writes into, by a path no other user can redirect.

closebench runs as root and writes where the user points it (`--out`, a run directory, `--html`).
If another user can write to a directory on that path, they can swap an entry for a symbolic link
between the moment root checks it and the moment root writes, and make root write anywhere. So
the path is walked one component at a time from `/`, each opened with O_NOFOLLOW relative to the
one before (no name is looked up twice), and a directory another user could change is refused:

- owned by a user other than root or the caller, or
- writable by its group (a group other than root's or the caller's), or by anyone,

unless it is sticky and owned by root or the caller (like /tmp: others may add entries there, but
not rename or remove ours). A symbolic link on the way is followed only where its owner could not
have planted it for us: in a directory nobody else can write, or, in a sticky one, when the link
is owned by root or the caller (the kernel's fs.protected_symlinks rule).

"The caller" is the effective user, and under sudo also the user who ran sudo (SUDO_UID and
SUDO_GID): they could run anything as root already. In a user namespace (the lab's `unshare -Urnm`
mode) the process holds no power over unmapped owners, which show as the overflow id, so those
are trusted as well.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path

from closebench.core.errors import UsageError

OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40  # as the kernel's path walk (ELOOP beyond)
# A path through an open descriptor (closebench/core/safe_files.py's anchor): the kernel follows
# /proc/PID/fd/N to the open directory itself, not to whatever has its name now.
ANCHOR = re.compile(r"^(/proc/(?:\d+|self)/fd/\d+)(?:/|$)")


def trusted_ids() -> tuple[set[int], set[int]]:
    """The uids and gids whose directories root may write into (see the module's docstring)."""
    uids, gids = {0, os.geteuid()}, {0, os.getegid()}
    for name, ids in (("SUDO_UID", uids), ("SUDO_GID", gids)):
        value = os.environ.get(name, "")
        if value.isdigit():
            ids.add(int(value))
    if _in_user_namespace():
        uids.add(_overflow("uid"))
        gids.add(_overflow("gid"))
    return uids, gids


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as stream:
            return stream.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _overflow(kind: str) -> int:
    try:
        with open(f"/proc/sys/kernel/overflow{kind}") as stream:
            return int(stream.read())
    except (OSError, ValueError):
        return 65534


def others_can_write(found: os.stat_result, uids: set[int], gids: set[int]) -> str | None:
    """Why another user could change this directory's entries; None: nobody else can."""
    if found.st_mode & stat.S_ISVTX and found.st_uid in uids:
        return None  # sticky: others may add entries, never rename or remove ours
    if found.st_uid not in uids:
        return f"it belongs to uid {found.st_uid}"
    if found.st_mode & stat.S_IWOTH:
        return "anyone can write to it"
    if found.st_mode & stat.S_IWGRP and found.st_gid not in gids:
        return f"group {found.st_gid} can write to it"
    return None


def _may_follow(link: os.stat_result, holder: os.stat_result, uids: set[int]) -> bool:
    """A link is followed unless someone else could have put it there (fs.protected_symlinks)."""
    sticky_shared = holder.st_mode & stat.S_ISVTX and holder.st_mode & stat.S_IWOTH
    return not sticky_shared or link.st_uid in uids


def open_trusted_directory(path: str | Path, create: bool = False, fix: str = "") -> int:
    """A descriptor of the directory `path`, walked as the module's docstring says (missing
    components made, 0755, with `create`). UsageError, one line, for a directory another user
    could change; OSError for the rest (the caller's write_error() names it)."""
    walk = _Walk(os.fspath(path), create, fix)
    try:
        while walk.pending:
            walk.step(walk.pending.pop(0))
        return walk.fd
    except BaseException:
        os.close(walk.fd)
        raise


class _Walk:
    """One path walked a component at a time, holding the descriptor of where it has got to."""

    def __init__(self, text: str, create: bool, fix: str) -> None:
        self.uids, self.gids = trusted_ids()
        self.create, self.fix = create, fix
        self.turns = 0  # links followed and directories made: bounded, like the kernel's walk
        anchored = ANCHOR.match(text)
        if anchored:  # a directory opened (and checked) before: through its descriptor
            self.fd = os.open(anchored[1], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.walked, text = Path(anchored[1]), text[anchored.end(1) :]
        else:
            self.fd, self.walked = os.open("/", OPEN_DIRECTORY), Path("/")
        self.pending = _parts(text)
        if not anchored and not text.startswith("/"):
            self.pending = _parts(os.getcwd()) + self.pending
        self.here = os.fstat(self.fd)

    def step(self, name: str) -> None:
        try:
            found = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            if not self.create:
                raise
            self._turn(name)
            with contextlib.suppress(FileExistsError):  # made meanwhile: looked at alike
                os.mkdir(name, 0o755, dir_fd=self.fd)
            self.pending.insert(0, name)
            return
        if stat.S_ISLNK(found.st_mode):
            self._follow(name, found)
        else:
            self._enter(name)

    def _turn(self, name: str) -> None:
        self.turns += 1
        if self.turns > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(self.walked / name))

    def _follow(self, name: str, link: os.stat_result) -> None:
        self._turn(name)
        if not _may_follow(link, self.here, self.uids):
            raise UsageError(
                f"{self.walked / name} is a link owned by uid {link.st_uid} in a directory "
                f"anyone can write, so root will not follow it; {self.fix or 'give the real path'}"
            )
        target = os.readlink(name, dir_fd=self.fd)
        self.pending[:0] = _parts(target)
        if target.startswith("/"):
            os.close(self.fd)
            self.fd, self.walked = os.open("/", OPEN_DIRECTORY), Path("/")
            self.here = os.fstat(self.fd)

    def _enter(self, name: str) -> None:
        child = os.open(name, OPEN_DIRECTORY, dir_fd=self.fd)  # ELOOP if a link came meanwhile
        os.close(self.fd)
        self.fd, self.here = child, os.fstat(child)
        self.walked = self.walked.parent if name == ".." else self.walked / name
        why = others_can_write(self.here, self.uids, self.gids)
        if why:
            raise UsageError(
                f"{self.walked} could be changed by another user ({why}), so root will not "
                f"write below it; {self.fix or 'give a place only you can write'}"
            )


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]

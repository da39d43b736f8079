"""Namespaces owned by a process, not by a name.

Each lab host is a network namespace plus a PID namespace held by a tiny keeper process
(`unshare --net --pid --fork --kill-child`). Nothing is bind-mounted, so nothing can outlive the
keeper: when the runner dies, even by SIGKILL, the keeper gets SIGKILL (PR_SET_PDEATHSIG), the PID 1
of its PID namespace dies with it, the kernel kills every process in that namespace, and the network
namespace with its veths and nft tables goes away.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
KEEPER_PREFIX = "closebench-lab"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that spawned it goes away."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, nstype), f"setns({path})")
    finally:
        os.close(fd)


@contextmanager
def entered(pid: int) -> Iterator[None]:
    """Run the body with this thread inside the network namespace of `pid`.

    Sockets made inside keep that namespace for their whole life, so an attacker can live in the
    runner process and still send from the attacker host. setns affects the calling thread only, so
    threads can each be in a different host at once; nesting restores each thread's own home.
    """
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        setns(f"/proc/{pid}/ns/net", CLONE_NEWNET)
        try:
            yield
        finally:
            _check(_libc.setns(home, CLONE_NEWNET), "setns(back home)")
    finally:
        os.close(home)


class Keeper:
    """The process that owns one host's network and PID namespaces."""

    def __init__(self, name: str, parent: Keeper | None = None) -> None:
        self.name = name
        # Created from inside `parent`'s network namespace, the new one inherits what that one
        # sets for its children (tcp_child_ehash_entries).
        inside = ["nsenter", f"--net=/proc/{parent.pid}/ns/net", "--"] if parent else []
        # bash's `exec -a` names PID 1 so that `closebench lab clean` and people can spot it.
        self._unshare = subprocess.Popen(
            [
                *inside,
                "unshare",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "bash",
                "-c",
                f"exec -a {KEEPER_PREFIX}:{name} sleep infinity",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        self.pid: int = self._wait_for_init()

    def _wait_for_init(self) -> int:
        """The PID (in our namespace) of the keeper's PID 1, once it has exec'd sleep."""
        import psutil  # here: the packet attacker's child imports this module, not psutil

        deadline = time.monotonic() + 10
        parent = psutil.Process(self._unshare.pid)
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                assert self._unshare.stderr is not None  # opened with stderr=PIPE
                error = self._unshare.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(
                    f"could not create the namespaces of lab host {self.name}: {error}"
                )
            for child in parent.children():
                try:
                    if child.cmdline()[:1] == [f"{KEEPER_PREFIX}:{self.name}"]:
                        return child.pid
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.005)
        self.close()
        raise RuntimeError(f"lab host {self.name}: its namespace keeper did not start within 10 s")

    def alive(self) -> bool:
        return self._unshare.poll() is None

    def close(self) -> None:
        """Kill PID 1: the kernel then kills the host's processes and frees its namespaces."""
        if self._unshare.poll() is None:
            self._unshare.kill()
        self._unshare.wait()
        if self._unshare.stderr:
            self._unshare.stderr.close()


def nsexec_argv(keeper_pid: int, argv: list[str]) -> list[str]:
    """The command line that runs `argv` inside the host owned by `keeper_pid`."""
    return [sys.executable, "-m", "closebench.lab.nsexec", str(keeper_pid), "--", *argv]

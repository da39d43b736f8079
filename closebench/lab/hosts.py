"""A lab host: a network namespace owned by a keeper process (netns.py), with the commands run in
it and the processes spawned into it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from closebench.core.errors import LabError
from closebench.lab import cpus, netns
from closebench.lab.socket_table import tcp_sockets


class Host:
    """One lab host: run short commands in it, spawn long-lived ones, or enter it from a thread."""

    def __init__(self, lab_name: str, role: str, parent: Host | None = None) -> None:
        self.role = role
        self.keeper: netns.Keeper = netns.Keeper(
            f"{lab_name}:{role}", parent.keeper if parent else None
        )
        self._spawned: list[subprocess.Popen] = []

    @property
    def pid(self) -> int:
        return self.keeper.pid

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        """Run a short command in this host's network namespace; raise LabError if it fails."""
        result = subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            problem = result.stderr.strip() or f"exit status {result.returncode}"
            raise LabError(f"{self.role}: `{' '.join(argv)}` failed: {problem}")
        return result.stdout

    def spawn(self, argv: list[str], side: str | None = None, **popen_kwargs) -> subprocess.Popen:
        """Start a long-lived command as a member of this host (it dies with the lab), on the
        CPUs of its side (cpus.py): the defender host's are the defender's, unless told."""
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        side = side or ("defender" if self.role == "defender" else "attackers")

        def prepare() -> None:
            netns.die_with_parent()
            cpus.preexec(side)

        process = subprocess.Popen(
            netns.nsexec_argv(self.pid, argv), preexec_fn=prepare, **popen_kwargs
        )
        self._spawned.append(process)
        return process

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Make sockets from this thread in this host (see netns.entered)."""
        with netns.entered(self.pid):
            yield

    def proc_net(self, name: str) -> str:
        """A /proc/net file (tcp, tcp6, snmp, sockstat...) as this host sees it."""
        with open(f"/proc/{self.pid}/net/{name}") as f:
            return f.read()

    def listening(self, port: int) -> bool:
        return any(s.state == "LISTEN" and s.local[1] == port for s in tcp_sockets(self))

    def stop_spawned(self, grace: float = 2.0) -> None:
        stop_processes(self._spawned, grace)
        self._spawned.clear()

    def close(self) -> None:
        self.stop_spawned()
        self.keeper.close()


def stop_processes(processes: list[subprocess.Popen], grace: float = 2.0) -> None:
    """SIGTERM each that still runs, SIGKILL those still there after `grace` seconds, reap all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

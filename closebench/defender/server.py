"""The server under test, started inside the defender host: a reference strategy, a peer (real
software with a generated config, closebench/defender/peers/) or any command (what to start:
config.py). It may be several processes (a peer and its backend); each is ready once its port
listens.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

import psutil

from closebench.core.errors import LabError
from closebench.defender import bpf_drop, firewall, peers, steering, sysctl
from closebench.defender.config import ServerConfig
from closebench.defender.peers import Launch
from closebench.lab import Host, Lab

# How long a server may take to listen: with the defender on CPUs of its own (lab/cpus.py) and a
# busy CI runner, a server that imports scapy (zero-window) took over 10 s; one that exits fails
# at once whatever this is.
LISTEN_TIMEOUT = 30.0


def _new_file(path: Path) -> IO[bytes]:
    """A file for a server's output, never opened through a link."""
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o644), "w+b")


class ServerProcess:
    """One process of the server under test, its output in files (a chatty server must never
    block on a full pipe)."""

    def __init__(self, host: Host, launch: Launch, directory: Path) -> None:
        self.launch = launch
        self._stdout = _new_file(directory / f"{launch.name}.stdout")
        self._stderr = _new_file(directory / f"{launch.name}.stderr")
        self.process = host.spawn(launch.argv, stdout=self._stdout, stderr=self._stderr)
        self.early_exit: int | None = None  # its status, when it exited before stop()

    @property
    def pid(self) -> int:
        """Its own PID (the spawned process is the launcher that forks it into the host)."""
        children = psutil.Process(self.process.pid).children()
        return children[0].pid if children else self.process.pid

    def stop(self) -> None:
        if self.early_exit is None and self.process.poll() is not None:
            self.early_exit = self.process.returncode  # it ended before it was asked to
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stdout(self) -> str:
        self._stdout.seek(0)
        return self._stdout.read().decode(errors="replace")

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        self.stop()
        self._stdout.close()
        self._stderr.close()


class Defender:
    """A running server in the lab's defender host. stop() returns its closing statistics."""

    def __init__(
        self, lab: Lab, config: ServerConfig, listen_timeout: float = LISTEN_TIMEOUT
    ) -> None:
        self.config = config
        self.listen_timeout = listen_timeout
        if lab.defender.listening(config.port):
            raise LabError(
                f"port {config.port} is already in use in the defender host; "
                "choose another with --port"
            )
        peers.require(config.spec)
        self.lab = lab
        # Before the server listens: somaxconn and tcp_max_syn_backlog bound its listen queue.
        sysctl.apply(lab.defender, sysctl.for_trial(config.sysctl, config.spec))
        # A fw-* strategy needs its nftables table (in this host or the router) before it starts.
        config = self.config = firewall.prepare(lab, config)
        steering.prepare(lab, config)  # zero-window: its packets kept from the kernel's TCP
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if config.files:
            self.directory = Path(config.files)
        else:
            self._scratch = tempfile.TemporaryDirectory(prefix="closebench-")
            self.directory = Path(self._scratch.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.processes: list[ServerProcess] = []
        self.bpf: bpf_drop.Loaded | None = None  # xdp-drop, tc-drop: the program, pinned
        try:
            if config.spec is not None and config.spec.name in bpf_drop.STRATEGIES:
                self.bpf = bpf_drop.load(lab, config.spec, config.port)
                config = self.config = replace(config, bpf_maps=self.bpf.maps)
            for launch in config.launches(self.directory):
                self.processes.append(ServerProcess(lab.defender, launch, self.directory))
                self._wait_until_listening(self.processes[-1])
        except BaseException:
            self.close()
            raise

    @property
    def main(self) -> ServerProcess:
        """The process the clients talk to (a peer's backend starts before it)."""
        return self.processes[-1]

    @property
    def process(self) -> subprocess.Popen:
        return self.main.process

    def _wait_until_listening(self, server: ServerProcess) -> None:
        deadline = time.monotonic() + self.listen_timeout
        port = server.launch.port
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise LabError(
                    f"the defender command `{self._label(server)}` exited with status "
                    f"{server.process.returncode} before listening on port {port}"
                    + _tail(server.stderr(), ": ")
                )
            if self.lab.defender.listening(port):
                return
            time.sleep(0.02)
        raise LabError(
            f"the defender command `{self._label(server)}` did not listen on port "
            f"{port} within {self.listen_timeout:g} s; check --port matches what it "
            "listens on" + _tail(server.stderr(), " (its output: ", ")")
        )

    def _label(self, server: ServerProcess) -> str:
        if server is self.main or not self.processes:
            return self.config.label
        return f"{self.config.label} ({server.launch.name})"

    @property
    def server_pid(self) -> int:
        """The main process's own PID."""
        return self.main.pid

    @property
    def server_pids(self) -> list[int]:
        """Every process started for this server (a peer and its backend); their children, such
        as a proxy's workers, are theirs to count (metrics.ProcessTree)."""
        return [server.pid for server in self.processes]

    def alive(self) -> bool:
        return all(server.process.poll() is None for server in self.processes)

    def stop(self) -> dict:
        """Stop the server; return its counters: the reference server's, or what a peer's own
        output says (with its backend's counters under "backend"); empty for other commands."""
        for server in reversed(self.processes):
            server.stop()
        if not self.processes:
            return {}
        stats = _counters(self.main.stdout())
        peer = peers.peer_for(self.config.spec)
        if peer is not None:
            stats = peer.stats(self.main.stdout())
            if len(self.processes) > 1:
                stats["backend"] = _counters(self.processes[0].stdout())
        return stats

    def exited_early(self) -> list[tuple[str, str]]:
        """(name, status) of each process that failed on its own before stop(): a crash, not
        the end of the trial (one that exited with status 0 is taken as a daemon's parent)."""
        return [
            (server.launch.name, f"status {server.early_exit}")
            for server in self.processes
            if server.early_exit not in (None, 0)
        ]

    def log(self) -> str:
        if len(self.processes) == 1:
            return self.main.stderr()
        return "".join(
            f"{server.launch.name}: {line}\n"
            for server in self.processes
            for line in server.stderr().splitlines()
        )

    def close(self) -> None:
        for server in reversed(self.processes):
            server.close()
        if self.bpf is not None:
            bpf_drop.remove(self.bpf)
            self.bpf = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _counters(stdout: str) -> dict:
    """The reference server's counters: the last JSON line of its output."""
    stats: dict = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                stats = json.loads(line)
    return stats


def _tail(text: str, before: str, after: str = "") -> str:
    lines = text.strip().splitlines()[-3:]
    return before + " | ".join(lines) + after if lines else ""

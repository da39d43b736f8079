"""The server under test, started inside the defender host: a reference strategy or any command."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

import psutil

from harness import firewall, steering
from harness.errors import LabError
from harness.lab import Lab
from servers.strategies import StrategySpec

LISTEN_TIMEOUT = 10.0
DEFAULT_PORT = 8080
DEFAULT_ABUSE_PATH = "^/spam"


@dataclass
class ServerConfig:
    """What to start: a reference strategy (spec) or a user's command listening on `port`."""

    port: int = DEFAULT_PORT
    spec: StrategySpec | None = None
    command: list[str] = field(default_factory=list)
    abuse_path: str = DEFAULT_ABUSE_PATH
    abuse_sources: list[str] = field(default_factory=list)
    nofile: int | None = None
    backlog: int | None = None
    ban_netns: str | None = None  # fw-* with where=router: the router's namespace (firewall.py)

    @property
    def label(self) -> str:
        return str(self.spec) if self.spec else " ".join(self.command)

    def with_attacker_rule(self, attacker_ip: str) -> ServerConfig:
        """Acting before the request (read_first=false, zero-window) needs an address rule:
        name the attacker."""
        if self.spec and self.spec.by_address:
            prefix = 32 if ":" not in attacker_ip else 128
            return replace(self, abuse_sources=[*self.abuse_sources, f"{attacker_ip}/{prefix}"])
        return self

    def argv(self) -> list[str]:
        if self.command:
            return list(self.command)
        argv = [sys.executable, "-m", "servers.reference", "--strategy", str(self.spec)]
        argv += ["--port", str(self.port), "--abuse-path", self.abuse_path]
        for source in self.abuse_sources:
            argv += ["--abuse-source", source]
        if self.nofile is not None:
            argv += ["--nofile", str(self.nofile)]
        if self.backlog is not None:
            argv += ["--backlog", str(self.backlog)]
        if self.ban_netns is not None:
            argv += ["--ban-netns", self.ban_netns]
        return argv


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
        self.lab = lab
        # A fw-* strategy needs its nftables table (in this host or the router) before it starts.
        config = self.config = firewall.prepare(lab, config)
        steering.prepare(lab, config)  # zero-window: its packets kept from the kernel's TCP
        # Output goes to files, not pipes: a chatty server must never block on a full pipe.
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = lab.defender.spawn(config.argv(), stdout=self._stdout, stderr=self._stderr)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.listen_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(
                    f"the defender command `{self.config.label}` exited with status "
                    f"{self.process.returncode} before listening on port {self.config.port}"
                    + self._stderr_tail(": ")
                )
            if self.lab.defender.listening(self.config.port):
                return
            time.sleep(0.02)
        self.stop()
        raise LabError(
            f"the defender command `{self.config.label}` did not listen on port "
            f"{self.config.port} within {self.listen_timeout:g} s; check --port matches what it "
            "listens on" + self._stderr_tail(" (its output: ", ")")
        )

    def _stderr_tail(self, before: str, after: str = "") -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        lines = text.splitlines()[-3:]
        return before + " | ".join(lines) + after if lines else ""

    @property
    def server_pid(self) -> int:
        """The server's own PID (the spawned process is the launcher that forks it)."""
        children = psutil.Process(self.process.pid).children()
        return children[0].pid if children else self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> dict:
        """Stop the server; return the reference server's counters (empty for other commands)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.seek(0)
        stats: dict = {}
        for line in self._stdout.read().decode(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    stats = json.loads(line)
        return stats

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        self.stop()
        self._stdout.close()
        self._stderr.close()

"""What the defender host runs: a reference strategy, a peer (closebench/defender/peers/) or a
user's command, and its limits."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from closebench.core.errors import UsageError
from closebench.defender import peers
from closebench.defender.peers import Launch, PeerSetup
from closebench.servers.strategies import StrategySpec

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
    bpf_maps: str | None = None  # xdp-drop, tc-drop: where their ban maps are pinned (bpf_drop.py)
    files: str | None = None  # a peer's config and every process's output; None: a temporary dir
    sysctl: tuple[tuple[str, int], ...] = ()  # the defender host's TCP knobs (defender/sysctl.py)

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

    def launches(self, directory: Path) -> list[Launch]:
        """The processes to start, in order; a peer's config is written into `directory`."""
        peer = peers.peer_for(self.spec)
        if peer is None:
            return [Launch("server", self.argv(), self.port)]
        setup = PeerSetup(
            self.spec,
            self.port,
            self.abuse_path,
            tuple(self.abuse_sources),
            self.backlog,
            self.nofile,
        )
        try:
            return peer.launches(setup, directory)
        except ValueError as error:
            raise UsageError(f"{self.spec}: {error}") from None

    def argv(self) -> list[str]:
        if self.command:
            return list(self.command)
        argv = [sys.executable, "-m", "closebench.servers.reference", "--strategy", str(self.spec)]
        argv += ["--port", str(self.port), "--abuse-path", self.abuse_path]
        for source in self.abuse_sources:
            argv += ["--abuse-source", source]
        if self.nofile is not None:
            argv += ["--nofile", str(self.nofile)]
        if self.backlog is not None:
            argv += ["--backlog", str(self.backlog)]
        if self.ban_netns is not None:
            argv += ["--ban-netns", self.ban_netns]
        if self.bpf_maps is not None:
            argv += ["--bpf-maps", self.bpf_maps]
        return argv

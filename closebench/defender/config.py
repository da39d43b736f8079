"""What the defender host runs: a reference strategy, a peer (closebench/defender/peers/) or a
user's command, and its limits."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from closebench.core.errors import UsageError
from closebench.core.placeholders import fill
from closebench.defender import peers
from closebench.defender.peers import Launch, PeerSetup
from closebench.lab.confine import Confinement
from closebench.servers.strategies import StrategySpec

DEFAULT_PORT = 8080
DEFAULT_ABUSE_PATH = "^/spam"
# What a server command may name: filled in before it starts (core/placeholders.py).
SERVER_PLACEHOLDERS = ("port", "abuse_path")


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
    confine: Confinement | None = None  # a command from a scenario file runs confined
    name: str | None = None  # a command's label (a scenario's strategy entry), for its trial
    basic_auth: str | None = None  # USER:PASSWORD: the abuse path asks for HTTP basic auth

    @property
    def label(self) -> str:
        if self.spec:
            return str(self.spec)
        return self.name or " ".join(self.argv())

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
        if peer is None or self.spec is None:  # a peer comes only from a spec
            # A command from a scenario file: confined once inside its host (lab/confine.py).
            argv = self.confine.wrap(self.argv()) if self.confine else self.argv()
            return [Launch("server", argv, self.port)]
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
            return fill(self.command, {"port": str(self.port), "abuse_path": self.abuse_path})
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
        if self.basic_auth is not None:
            argv += ["--basic-auth", self.basic_auth]
        return argv

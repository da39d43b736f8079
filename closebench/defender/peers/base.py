"""What every peer shares: the settings its config is written from, and the processes it runs.

A peer is real software in the defender host (HAProxy, nginx, endlessh) with a config closebench
writes, whose abusive-request rule is the reference server's: requests whose path matches the
abuse path (a regular expression, `^/spam` by default) are abusive, and with read_first=false the
abusive addresses are turned away at accept. A proxy sends the rest to a backend: the reference
server in graceful mode, listening on loopback, which answers every request it gets with 200.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from closebench.core.outcomes import Attempt
from closebench.core.safe_files import SafeDirectory
from closebench.servers.strategies import STRATEGIES, StrategySpec

NEVER_MATCHES = "(?!)"  # the backend's abuse path: it is the application, abuse is the peer's job


@dataclass(frozen=True)
class Launch:
    """One process of the server under test: it is ready once `port` listens in the host."""

    name: str  # also names its output files (NAME.stdout, NAME.stderr)
    argv: list[str]
    port: int


@dataclass(frozen=True)
class PeerSetup:
    """What a peer's config is written from."""

    spec: StrategySpec
    port: int
    abuse_path: str
    abuse_sources: tuple[str, ...] = ()  # networks turned away at accept (read_first=false)
    backlog: int | None = None
    nofile: int | None = None  # RLIMIT_NOFILE of its processes, when the scenario sets one

    @property
    def backend_port(self) -> int:
        return self.port + 1 if self.port < 65535 else self.port - 1


class Peer:
    """One piece of software and the strategies it implements."""

    binary: str = ""
    package: str = ""  # the Debian package that brings it (setup.sh installs it)
    package_note: str = ""  # where the package has another name
    config_name: str = ""
    uses_backend: bool = True

    def config(self, setup: PeerSetup, directory: Path) -> str:
        """The config file's text; `directory` holds it and anything else the peer writes."""
        raise NotImplementedError

    def argv(self, setup: PeerSetup, config: Path, directory: Path) -> list[str]:
        raise NotImplementedError

    def stats(self, stdout: str) -> dict:
        """What the peer's own output says it did (endlessh's log); empty by default."""
        return {}

    def account(self, stats: dict, attempts: list[Attempt]) -> dict:
        """`stats` (from stats()) once the attempts are known: what the peer claims next to what
        the clients measured. As it is by default."""
        return stats

    def installed(self) -> bool:
        return shutil.which(self.binary) is not None

    def install_hint(self) -> str:
        note = f" ({self.package_note})" if self.package_note else ""
        return (
            f"install the package {self.package}{note}: apt-get install {self.package}, "
            "or ./setup.sh, which installs everything closebench uses"
        )

    def launches(self, setup: PeerSetup, directory: Path) -> list[Launch]:
        """Write the config into `directory`; the processes to start, in order."""
        config = directory / self.config_name
        # Never through a link (closebench/core/safe_files.py): root writes it.
        with SafeDirectory(directory, "give another place for the run", create=True) as place:
            place.write(self.config_name, self.config(setup, directory))
        peer = Launch(self.binary, self.argv(setup, config, directory), setup.port)
        return [backend_launch(setup), peer] if self.uses_backend else [peer]


def backend_launch(setup: PeerSetup) -> Launch:
    """The application behind a proxy: the reference server, on loopback, serving everything."""
    argv = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "graceful"]
    argv += ["--port", str(setup.backend_port), "--bind4", "127.0.0.1", "--no-ipv6"]
    argv += ["--abuse-path", NEVER_MATCHES]
    return Launch("backend", argv, setup.backend_port)


def header(setup: PeerSetup, comment: str = "#") -> str:
    """The first lines of a generated config: which strategy it is, and who wrote it."""
    summary = STRATEGIES[setup.spec.name].summary
    return f"{comment} Written by closebench for the strategy {setup.spec}: {summary}\n"


def refuse(text: str, characters: str, what: str) -> None:
    """A ValueError naming a character the peer's config syntax cannot carry in `text`."""
    for character in characters:
        if character in text:
            raise ValueError(f"{what} {text!r} holds {character!r}, which the config cannot quote")

"""Attackers: each runs a Policy against a Target from the attacker host, one Attempt a connection.

Every attacker has a `name` and a blocking `run(lab, target, policy, sink, cancel, source=None)`
that calls `sink(attempt)` for each finished connection, stops when the policy's bounds are reached
or `cancel` is set, and returns a dict of what the attack cost the attacker itself.
"""

from __future__ import annotations

from typing import Protocol

# The kinds are imported when one is made, not here: the CLI and scenarios read the tables below,
# and every packet attacker child imports this package, without scapy or the lab.

# The attacker kinds, and what each is for. The one list the CLI and scenarios accept.
ATTACKERS = {
    "kernel": "asyncio kernel sockets: what an ordinary spam script experiences",
    "scapy": "crafted packets, no kernel socket: the truth packet by packet",
    "volume": "the same packet engine as a DoS tool: many addresses, no retransmission",
    "syn-flood": "the volume attacker sending SYNs only, its SYN-ACKs never answered",
    "curl": "curl itself: one request a run",
    "command": "any command (--attacker-command, `command = [...]`): each connection it opens",
    "browser": "headless Chromium, one page load per attempt slot",
    "bot": "a bot's timers from its source (profile: mirai, degreaser), on kernel sockets",
}
# Kinds that run a command: each connection the command opens is an attempt (closebench/wire/pcap.py
# reads them from the attacker host's wire), tied to its run.
COMMAND_KINDS = ("curl", "command", "browser")
# What an attacker's command may name, filled in for each run (core/placeholders.py); {scratch} is
# a fresh empty directory per run.
COMMAND_PLACEHOLDERS = (
    "url",
    "address",
    "port",
    "path",
    "timeout",
    "timeout_ms",
    "source",
    "scratch",
)


def command_kind(kind: str, command: list[str] | None) -> tuple[str, str | None]:
    """The kind that runs `command`, and one line to warn with where the old spelling was used:
    the curl kind with a command of its own is the command kind now."""
    if kind == "curl" and command:
        return "command", (
            'kind "curl" with a command is deprecated: it runs as kind "command" '
            '(-a command --attacker-command CMD, or kind = "command" with command = [...])'
        )
    return kind, None


def require_tools_for(kind: str, command: list[str] | None = None) -> None:
    """The programs an attacker kind runs, checked before any lab is built (EnvironmentProblem
    naming the package to install)."""
    from closebench.lab.privileges import require_tools

    if kind in ("scapy", "volume", "syn-flood"):
        require_tools("nft")
    elif kind in ("curl", "command"):
        require_tools(command[0] if command else "curl")
    elif kind == "browser":
        from closebench.attackers.browser import require_browser

        require_browser()


# How the kernel attacker's policy runs: in closebench's own process, or on Locust's workers.
ENGINES = {
    "local": "in closebench's own process, from the lab's attacker host",
    "locust": "on Locust workers, each in an attacker host of its own (a machine each)",
}


class Attacker(Protocol):
    name: str

    def run(self, lab, target, policy, sink, cancel, source=None) -> dict: ...


def make_attacker_argv(kind: str, command: list[str] | None = None) -> list[str]:
    """The command line a command kind runs (with its placeholders)."""
    if kind == "browser":
        from closebench.attackers.browser import CHROMIUM

        return CHROMIUM
    from closebench.attackers.command import CURL

    return command or CURL


def make_attacker(
    kind: str,
    command: list[str] | None = None,
    label: str | None = None,
    engine: str = "local",
    confine=None,
    profile: str | None = None,
):
    """An attacker of `kind` (one of ATTACKERS); `command` is the command kind's (curl's own
    without one), confined (lab/confine.py) unless `confine` is None; `engine` "locust" runs
    the kernel kind on Locust (it must be prepared: locust/swarm.py)."""
    if engine == "locust" and kind == "kernel":
        from closebench.attackers.locust.swarm import LocustEngine

        return LocustEngine(label or "locust")
    if engine != "local":
        raise ValueError(f"the {engine} engine runs the kernel attacker only, not {kind!r}")
    if kind == "kernel":
        from closebench.attackers.kernel import KernelSpammer

        return KernelSpammer(label or kind)
    if kind == "scapy":
        from closebench.attackers.scapy_spammer import ScapySpammer

        return ScapySpammer()
    if kind == "volume":
        from closebench.attackers.volume import VolumeAttacker

        return VolumeAttacker()
    if kind == "syn-flood":
        from closebench.attackers.volume import SynFlood

        return SynFlood()
    if kind in ("curl", "command"):
        from closebench.attackers.command import CommandClient

        return CommandClient(command, label, confine)
    if kind == "browser":
        from closebench.attackers.browser import BrowserClient

        return BrowserClient(label)
    if kind == "bot":
        from closebench.attackers.bots import BotAttacker

        return BotAttacker(profile or "mirai", label)
    raise ValueError(f"unknown attacker {kind!r}; choose one of: {', '.join(ATTACKERS)}")

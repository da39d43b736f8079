"""Attackers: each runs a Policy against a Target from the attacker host, one Attempt a connection.

Every attacker has a `name` and a blocking `run(lab, target, policy, sink, cancel, source=None)`
that calls `sink(attempt)` for each finished connection, stops when the policy's bounds are reached
or `cancel` is set, and returns a dict of what the attack cost the attacker itself.

The kinds are one registry, KINDS: what each is for, what it needs installed, whether it runs a
command, and how one is made. The CLI, scenarios and trials read it instead of naming kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

# The kinds are imported when one is made, not here: the CLI and scenarios read the registry, and
# every packet attacker child imports this package, without scapy or the lab.
if TYPE_CHECKING:
    from closebench.attackers.policy import Policy, Target
    from closebench.core.outcomes import Attempt
    from closebench.lab import Lab
    from closebench.lab.confine import Confinement


class Attacker(Protocol):
    name: str

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | list[str] | None = None,
    ) -> dict: ...


@dataclass(frozen=True)
class Request:
    """What an attacker is made from, besides its kind (the fields a kind uses)."""

    command: list[str] | None = None  # a command kind's command line (None: its default)
    label: str | None = None
    confine: Confinement | None = None  # a command from a scenario file runs confined
    tool: str | None = None  # the tool kind: which profile (attackers/tools.py)
    args: list[str] | None = None  # the tool kind: its arguments (None: the profile's)
    profile: str | None = None  # the bot kind: which bot (attackers/bot_profiles.py)


@dataclass(frozen=True)
class AttackerKind:
    """One attacker kind: the one record the CLI, scenarios and trials dispatch on."""

    name: str
    description: str
    make: Callable[[Request], Attacker]
    # Checks what it runs is installed, before any lab is built (EnvironmentProblem naming the
    # package to install).
    require: Callable[[Request], None]
    # The command line it runs, with placeholders (command kinds: each connection the command
    # opens is an attempt, read from the attacker host's wire); None: it opens its own sockets.
    argv: Callable[[Request], list[str]] | None = None

    @property
    def runs_command(self) -> bool:
        return self.argv is not None


def _require(*tools: str) -> Callable[[Request], None]:
    def require(request: Request) -> None:
        from closebench.lab.privileges import require_tools

        require_tools(*tools)

    return require


def _kernel(request: Request) -> Attacker:
    from closebench.attackers.kernel import KernelSpammer

    return KernelSpammer(request.label or "kernel")


def _scapy(request: Request) -> Attacker:
    from closebench.attackers.scapy_spammer import ScapySpammer

    return ScapySpammer()


def _volume(request: Request) -> Attacker:
    from closebench.attackers.volume import VolumeAttacker

    return VolumeAttacker()


def _syn_flood(request: Request) -> Attacker:
    from closebench.attackers.volume import SynFlood

    return SynFlood()


def _curl(request: Request) -> Attacker:
    from closebench.attackers.command import CommandClient

    return CommandClient(request.command, request.label, request.confine)


def _curl_argv(request: Request) -> list[str]:
    from closebench.attackers.command import CURL

    return request.command or CURL


def _curl_require(request: Request) -> None:
    if not request.command:  # a user's own command is their business
        _require("curl")(request)


def _bot(request: Request) -> Attacker:
    from closebench.attackers.bots import BotAttacker

    return BotAttacker(request.profile or "mirai", request.label)


def _browser(request: Request) -> Attacker:
    from closebench.attackers.browser import BrowserClient

    return BrowserClient(request.label)


def _browser_argv(request: Request) -> list[str]:
    from closebench.attackers.browser import CHROMIUM

    return CHROMIUM


def _browser_require(request: Request) -> None:
    from closebench.attackers.browser import require_browser

    require_browser()


def _tool(request: Request) -> Attacker:
    from closebench.attackers.tools import ToolClient

    return ToolClient(request.tool or "", request.args, request.label, request.confine)


def _tool_argv(request: Request) -> list[str]:
    from closebench.attackers.tools import profile

    return profile(request.tool or "").argv(request.args)


def _tool_require(request: Request) -> None:
    from closebench.attackers.tools import profile

    profile(request.tool or "").require()


KINDS = {
    kind.name: kind
    for kind in (
        AttackerKind(
            "kernel",
            "asyncio kernel sockets: what an ordinary spam script experiences",
            _kernel,
            lambda request: None,
        ),
        AttackerKind(
            "scapy",
            "crafted packets, no kernel socket: the truth packet by packet",
            _scapy,
            _require("nft"),
        ),
        AttackerKind(
            "volume",
            "the same packet engine as a DoS tool: many addresses, no retransmission",
            _volume,
            _require("nft"),
        ),
        AttackerKind(
            "syn-flood",
            "the volume attacker sending SYNs only, its SYN-ACKs never answered",
            _syn_flood,
            _require("nft"),
        ),
        AttackerKind("curl", "curl itself: one request a run", _curl, _curl_require, _curl_argv),
        AttackerKind(
            "command",
            "any command (--attacker-command, `command = [...]`): each connection it opens",
            _curl,
            _curl_require,
            _curl_argv,
        ),
        AttackerKind(
            "browser",
            "headless Chromium, one page load per attempt slot",
            _browser,
            _browser_require,
            _browser_argv,
        ),
        AttackerKind(
            "bot",
            "a bot's timers from its source (profile: mirai, degreaser), on kernel sockets",
            _bot,
            lambda request: None,
        ),
        AttackerKind(
            "tool",
            "a real abuse tool by its profile (hydra, medusa, ncrack, nmap, masscan): tool:NAME",
            _tool,
            _tool_require,
            _tool_argv,
        ),
    )
}
# The attacker kinds, and what each is for: the one list the CLI and scenarios accept.
ATTACKERS = {name: kind.description for name, kind in KINDS.items()}
# Kinds that run a command: each connection the command opens is an attempt (closebench/wire/pcap.py
# reads them from the attacker host's wire), tied to its run.
COMMAND_KINDS = tuple(name for name, kind in KINDS.items() if kind.runs_command)
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


# How the kernel attacker's policy runs: in closebench's own process, or on Locust's workers.
ENGINES = {
    "local": "in closebench's own process, from the lab's attacker host",
    "locust": "on Locust workers, each in an attacker host of its own (a machine each)",
}


def kind_of(name: str) -> AttackerKind:
    kind = KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown attacker {name!r}; choose one of: {', '.join(KINDS)}")
    return kind


def require_tools_for(kind: str, request: Request | None = None) -> None:
    """The programs an attacker kind runs, checked before any lab is built (EnvironmentProblem
    naming the package to install)."""
    kind_of(kind).require(request or Request())


def make_attacker_argv(kind: str, request: Request | None = None) -> list[str]:
    """The command line a command kind runs (with its placeholders); [] for the other kinds."""
    argv = kind_of(kind).argv
    return [] if argv is None else argv(request or Request())


def make_attacker(kind: str, request: Request | None = None, engine: str = "local") -> Attacker:
    """An attacker of `kind` (one of KINDS), made from `request`; `engine` "locust" runs the
    kernel kind on Locust (it must be prepared: locust/swarm.py)."""
    request = request or Request()
    if engine == "locust" and kind == "kernel":
        from closebench.attackers.locust.swarm import LocustEngine

        return LocustEngine(request.label or "locust")
    if engine != "local":
        raise ValueError(f"the {engine} engine runs the kernel attacker only, not {kind!r}")
    return kind_of(kind).make(request)

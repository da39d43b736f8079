"""What `closebench attack` is told about its attacker and its server, checked before anything
starts: one line naming the problem and what to give instead."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from closebench.attackers import Request, command_kind, require_tools_for
from closebench.core.errors import UsageError


def attacker_input(
    args: argparse.Namespace, warn: Callable[[str], None]
) -> tuple[str, list[str] | None]:
    """The attacker kind to run and its command (None: not a command's), from -a,
    --attacker-command and --profile; the old spelling's warning goes to `warn`."""
    command = shlex.split(args.attacker_command) if args.attacker_command else None
    if command and args.attacker not in ("curl", "command"):
        raise UsageError(f"--attacker-command goes with -a command, not -a {args.attacker}")
    if args.attacker == "command" and not command:
        raise UsageError("-a command runs the command given with --attacker-command CMD")
    if (args.attacker == "bot") != bool(args.profile):
        raise UsageError("--profile (mirai, degreaser) goes with -a bot, and -a bot needs it")
    check_placeholders(args)
    kind, _, tool = args.attacker.partition(":")  # tool:NAME, a tool's profile
    kind, note = command_kind(kind, command)
    if not command:  # a user's command: their business
        require_tools_for(kind, Request(tool=tool or None))
    if note:
        warn(note)
    return kind, command


def tool_options(args: argparse.Namespace) -> list[str] | None:
    """--tool-args, split (None: the profile's own options)."""
    if args.tool_args and not args.attacker.startswith("tool:"):
        raise UsageError("--tool-args goes with --attacker tool:NAME")
    return shlex.split(args.tool_args) if args.tool_args else None


def default_slots(args: argparse.Namespace) -> int:
    """Connections in flight without --concurrency: a bot's slots (its profile's), else 1."""
    from closebench.attackers.bot_profiles import PROFILES

    return PROFILES[args.profile].slots if args.profile else 1


def one_server(args: argparse.Namespace) -> str:
    """Why `attack` has no server, or two, and what to give; a command after -- beside
    --strategy is most likely meant as the attacker."""

    if not args.server_command:
        return "give one --strategy, or a server command after --"
    typed = " ".join(args.server_command)
    return (
        f"give one --strategy, or a server command after --, not both: the command after -- "
        f"is the server; to attack with it, give -a command --attacker-command '{typed}'"
    )


def check_placeholders(args: argparse.Namespace) -> None:
    """A misspelt placeholder in a typed command is an error before anything starts."""
    from closebench.attackers import COMMAND_PLACEHOLDERS
    from closebench.core.placeholders import unknown_placeholder
    from closebench.defender.config import SERVER_PLACEHOLDERS

    if args.attacker_command:
        argv = shlex.split(args.attacker_command)
        if (problem := unknown_placeholder(argv, COMMAND_PLACEHOLDERS)) is not None:
            raise UsageError(f"--attacker-command: {problem}")
    if args.server_command:
        problem = unknown_placeholder(args.server_command, SERVER_PLACEHOLDERS)
        if problem is not None:
            raise UsageError(f"-- CMD: {problem}")

"""The command line's arguments: every command, its options and their checks (a bad value is one
argparse error, exit 2, before anything starts)."""

from __future__ import annotations

import argparse
import math

from closebench import __version__
from closebench.attackers import ATTACKERS
from closebench.attackers.bot_profiles import PROFILES as BOT_PROFILES
from closebench.cli.locust import (
    add_locust_arguments,
    add_locust_commands,
)
from closebench.cli.results import (
    add_check_parser,
    add_compare_parser,
)
from closebench.core.limits import MAX_SECONDS
from closebench.servers.strategies import STRATEGIES, parse_spec
from closebench.trials.placement import CPUS_FLAG_HELP


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):  # NaN passes every `value <= 0` check
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _not_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _seconds(text: str) -> float:
    """A time greater than 0, at most a day (a run must end)."""
    value = _positive(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_SECONDS:g} s (a day)")
    return value


def _delay(text: str) -> float:
    """A wait of 0 or more seconds, at most a day."""
    value = _not_negative(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_SECONDS:g} s (a day)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _attacker(text: str) -> str:
    """An attacker kind, or tool:NAME for a tool's profile."""
    kind, _, tool = text.partition(":")
    if kind not in ATTACKERS or (kind == "tool") != bool(tool):
        kinds = ", ".join(k for k in ATTACKERS if k != "tool")
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {kinds}, tool:NAME)"
        )
    if tool:
        from closebench.attackers.tool_profiles import PROFILES

        if tool not in PROFILES:
            raise argparse.ArgumentTypeError(
                f"unknown tool {tool!r}; the tool attacker knows: {', '.join(PROFILES)}"
            )
    return text


def _strategy(text: str):
    try:
        return parse_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="closebench",
        description="Measure what each way of getting rid of an abusive TCP client costs "
        "the server and the abuser.",
    )
    parser.add_argument("--version", action="version", version=f"closebench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = commands.add_parser(
        "probe",
        help="show what each close strategy puts on the abuser's wire",
        description="Start a strategy (or your own server: -- CMD) in a lab, send it one abusive "
        "request from the attacker host, and report what came back, from a packet capture.",
    )
    probe.add_argument(
        "-s",
        "--strategy",
        action="append",
        type=_strategy,
        metavar="NAME[:k=v,...]",
        help=f"strategy to probe, repeatable (default: all). One of: {', '.join(STRATEGIES)}",
    )
    probe.add_argument("--port", type=_port, default=8080, help="port the server listens on")
    probe.add_argument("--timeout", type=_seconds, default=10.0, help="client timeout, s")
    probe.add_argument("--path", default="/spam", help="request path the client asks for")
    probe.add_argument(
        "--listen-timeout",
        type=_seconds,
        default=10.0,
        help="how long the server may take to listen, s",
    )
    probe.add_argument(
        "--request-delay",
        type=_delay,
        default=0.0,
        metavar="S",
        help="wait S seconds after the handshake before sending the request",
    )
    probe.add_argument("--ipv6", action="store_true", help="probe over IPv6 instead of IPv4")
    probe.add_argument("--routed", action="store_true", help="put a router hop between the hosts")
    probe.add_argument("--jobs", type=_count, default=12, help="probes run at once (default 12)")
    probe.add_argument("--pcap-dir", metavar="DIR", help="keep the attacker-side pcaps here")
    probe.add_argument("--json", action="store_true", help="print a JSON document instead")
    probe.add_argument(
        "--kernel",
        action="store_true",
        help="print what this kernel can run (nftables expressions, TCP options...) and which "
        "strategies need each, then exit",
    )
    probe.add_argument("server_command", nargs="*", metavar="-- CMD", help="probe this command")

    attack = commands.add_parser(
        "attack",
        help="run one attacker against one strategy and summarise what it cost the attacker",
        description="Start a strategy (or your own server: -- CMD) in a lab and attack it from the "
        "attacker host with one attacker and its policy; a legitimate client runs beside it.",
    )
    attack.add_argument(
        "-s", "--strategy", type=_strategy, metavar="NAME[:k=v,...]", help="strategy to attack"
    )
    attack.add_argument(
        "-a",
        "--attacker",
        type=_attacker,
        default="kernel",
        metavar="KIND",
        help=f"attacker kind: {', '.join(k for k in ATTACKERS if k != 'tool')}, or tool:NAME "
        "(a real abuse tool: hydra, medusa, ncrack, nmap, nmap-sV, masscan)",
    )
    attack.add_argument(
        "--tool-args",
        metavar="ARGS",
        help="with --attacker tool:NAME: the tool's own options instead of its profile's "
        "(closebench adds the target, wordlists and output options)",
    )
    attack.add_argument(
        "--attacker-command",
        metavar="CMD",
        help="with -a command: the command to run; placeholders {url} {address} {port} "
        "{path} {timeout} {timeout_ms} {source} {scratch} (a fresh empty directory per run)",
    )
    attack.add_argument("--port", type=_port, default=8080, help="port the server listens on")
    attack.add_argument("--timeout", type=_seconds, default=10.0, help="attempt timeout T, s")
    attack.add_argument("--duration", type=_seconds, help="attack length, s (default 30)")
    attack.add_argument("--attempts", type=_count, help="stop after this many attempts")
    attack.add_argument(
        "--concurrency", type=_count, help="connections in flight (default 1; a bot: its slots)"
    )
    attack.add_argument(
        "--profile",
        choices=list(BOT_PROFILES),
        help="with -a bot: the bot whose timers from its source to run",
    )
    attack.add_argument("--rate", type=_positive, help="cap on attempts started per second")
    attack.add_argument(
        "--no-reconnect", action="store_true", help="one attempt per connection slot, then stop"
    )
    attack.add_argument(
        "--request-delay",
        type=_delay,
        default=0.0,
        metavar="S",
        help="wait S seconds after the handshake before sending the request",
    )
    attack.add_argument("--path", default="/spam", help="request path the attacker asks for")
    attack.add_argument(
        "--legit-rate",
        type=_not_negative,
        default=2.0,
        metavar="R",
        help="legitimate requests per second from another address (0: none)",
    )
    attack.add_argument("--ipv6", action="store_true", help="attack over IPv6")
    attack.add_argument("--routed", action="store_true", help="put a router hop in between")
    attack.add_argument("--json", action="store_true", help="print a JSON document instead")
    attack.add_argument("--records", metavar="FILE", help="write every attempt here (JSON lines)")
    attack.add_argument(
        "--out",
        metavar="DIR",
        help="write a run directory under DIR (summary.json, attempts, pcaps, report), as "
        "`closebench run` does, for check and compare (with --target: default reports)",
    )
    attack.add_argument("--label", help="the trial's name in the run directory and its report")
    attack.add_argument(
        "server_command",
        nargs="*",
        metavar="-- CMD",
        help="attack this command, run as typed ({port}: --port, {abuse_path}: the abuse path)",
    )
    add_locust_arguments(attack)

    run = commands.add_parser(
        "run",
        help="compare every strategy of a scenario and write a report",
        description="Run a scenario (default: seed) against every strategy it names, each in "
        "its own lab, and write reports/<run-id>/ (reports/latest points at it).",
    )
    run.add_argument(
        "scenario", nargs="?", help="a scenario file, or a shipped one by name (default: seed)"
    )
    run.add_argument("--out", default="reports", metavar="DIR", help="where runs are written")
    run.add_argument("--jobs", type=_count, help="trials at once (default: the scenario's)")
    run.add_argument("--cpus", metavar="D/A", help=CPUS_FLAG_HELP)
    run.add_argument(
        "--duration", type=_seconds, metavar="S", help="override the scenario's duration"
    )
    run.add_argument(
        "--repeat",
        type=_count,
        metavar="N",
        help="run every trial N times, interleaved (overrides the scenario's repetitions); "
        "compare and check pool them and keep their spread as the noise band",
    )
    run.add_argument(
        "--no-verify",
        action="store_true",
        help="skip checking every attempt record against the pcaps at the end",
    )
    verify = commands.add_parser(
        "verify",
        help="check a run's attempt records against its pcaps, read independently (dpkt)",
        description="Re-derive every attempt's outcome class and end time from the run's "
        "attacker-side pcaps with a second reader, join them to the records, and report the "
        "agreement. Exit status 1 when a class differs or |Δ end| p95 exceeds 2 ms.",
    )
    verify.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. reports/latest")
    verify.add_argument("--json", action="store_true", help="print a JSON document instead")
    export = commands.add_parser(
        "export",
        help="write a run's attempts (kept in Parquet) as JSON lines",
        description="Write every attempt record of a run directory, read from its attempts/ "
        "Parquet files, as JSON lines: one object a line, the attempt record with its trial's "
        "name and its derived times (hang_s, connect_wait_s, slot_s).",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. reports/latest")
    export.add_argument(
        "--jsonl", action="store_true", required=True, help="JSON lines (the one format for now)"
    )
    export.add_argument(
        "--out",
        metavar="FILE",
        help="where to write them (- for standard output; default: RUN_DIR/attempts.jsonl)",
    )
    scenarios = commands.add_parser(
        "scenarios",
        help="list the shipped scenarios, or print one (a start for your own)",
        description="List the scenarios shipped with closebench and what each compares; with a "
        "name, print that scenario's TOML (closebench scenarios seed > mine.toml).",
    )
    scenarios.add_argument("name", nargs="?", help="print this scenario's TOML")
    report = commands.add_parser(
        "report",
        help="rebuild a run's report (figures, index.html, summary.md) from its raw files",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. reports/latest")
    report.add_argument(
        "--samples",
        metavar="DIR",
        help="first merge the server's samples recorded by `closebench sample --out DIR` into "
        "the trials that have none (an attack with --target)",
    )
    add_compare_parser(commands)
    add_check_parser(commands)
    add_locust_commands(commands)
    _add_sample_command(commands)

    lab = commands.add_parser("lab", help="manage labs")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    lab_commands.add_parser("clean", help="remove anything left by older closebench versions")
    return parser


def _add_sample_command(commands) -> None:
    """The `sample` command's arguments (`commands`: the parser's subparsers)."""
    sample = commands.add_parser(
        "sample",
        help="sample a server process on its own machine, for `closebench report --samples`",
        description="Record what a server pays (fds, threads, memory, CPU, its kernel's TCP "
        "sockets) at a steady rate into DIR/samples.csv, with Unix times, until Ctrl-C, "
        "--duration or the process's end.",
    )
    sample.add_argument("--pid", type=int, required=True, help="the server's process id")
    sample.add_argument("--out", required=True, metavar="DIR", help="where samples.csv goes")
    sample.add_argument("--hz", type=float, default=10.0, help="samples per second (1-100)")
    sample.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")

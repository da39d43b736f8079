"""The `closebench` command line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from rich.console import Console

from harness import __version__
from harness.errors import ClosebenchError, UsageError
from harness.privileges import ensure_privileges, require_tools
from servers.strategies import STRATEGIES, parse_spec

PROBE_SCHEMA = "closebench.probe/1"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


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
    probe.add_argument("--timeout", type=_positive, default=10.0, help="client timeout, s")
    probe.add_argument("--path", default="/spam", help="request path the client asks for")
    probe.add_argument(
        "--listen-timeout",
        type=_positive,
        default=10.0,
        help="how long the server may take to listen, s",
    )
    probe.add_argument(
        "--request-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="wait S seconds after the handshake before sending the request",
    )
    probe.add_argument("--ipv6", action="store_true", help="probe over IPv6 instead of IPv4")
    probe.add_argument("--routed", action="store_true", help="put a router hop between the hosts")
    probe.add_argument("--jobs", type=int, default=12, help="probes run at once (default 12)")
    probe.add_argument("--pcap-dir", metavar="DIR", help="keep the attacker-side pcaps here")
    probe.add_argument("--json", action="store_true", help="print a JSON document instead")
    probe.add_argument("server_command", nargs="*", metavar="-- CMD", help="probe this command")

    lab = commands.add_parser("lab", help="manage labs")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    lab_commands.add_parser("clean", help="remove anything left by older closebench versions")
    return parser


def run_probe(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from harness.defender import ServerConfig
    from harness.probe import Probe, ProbeCase, default_cases
    from harness.render import print_probe

    require_tools("ip", "nsenter", "unshare", "sysctl", "tcpdump")
    family = 6 if args.ipv6 else 4
    if args.server_command and args.strategy:
        raise UsageError("give either --strategy or a command after --, not both")
    if args.pcap_dir:
        os.makedirs(args.pcap_dir, exist_ok=True)
    if args.server_command:
        servers = [ServerConfig(args.port, command=args.server_command)]
    elif args.strategy:
        servers = [ServerConfig(args.port, spec) for spec in args.strategy]
    if args.server_command or args.strategy:
        cases = [ProbeCase(s, args.routed, family, args.request_delay) for s in servers]
    else:
        cases = default_cases(args.port, family)
    probe = Probe(args.timeout, args.path, args.pcap_dir, args.listen_timeout)
    if not args.json and console.is_terminal:
        with console.status(f"probing {len(cases)} case(s), up to {args.timeout:g} s each..."):
            results = probe.run_all(cases, args.jobs)
    else:
        results = probe.run_all(cases, args.jobs)
    if args.json:
        document = {
            "schema": PROBE_SCHEMA,
            "closebench": __version__,
            "kernel": platform.release(),
            "client_timeout": args.timeout,
            "results": [result.to_dict() for result in results],
        }
        print(json.dumps(document, indent=2))
    else:
        print_probe(results, args.timeout, console)
    failed = [result for result in results if result.error]
    for result in failed:
        which = f"{result.case.label}: " if len(results) > 1 else ""
        errors.print(f"[bold red]closebench: error:[/] {which}{result.error}", highlight=False)
    return 1 if failed else 0


def run_lab_clean(console: Console) -> int:
    from harness.cleanup import clean

    for line in clean():
        console.print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    # Piped output keeps full rows rather than wrapping them at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        ensure_privileges(argv)
        if args.command == "probe":
            return run_probe(args, console, errors)
        if args.command == "lab":
            return run_lab_clean(console)
    except ClosebenchError as error:
        errors.print(f"[bold red]closebench: error:[/] {error}", highlight=False)
        return error.status
    except KeyboardInterrupt:
        errors.print("closebench: interrupted; the lab was removed")
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `closebench` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.attackers import ATTACKERS, require_tools_for
from harness.attackers.locust import require_locust
from harness.cli.locust import (
    LOCUST_UI_PORT,
    add_locust_arguments,
    add_locust_commands,
    check_locust_arguments,
    run_locust_command,
    target_attack,
)
from harness.core.background import Background, ctrl_c_sets, terminate_like_ctrl_c
from harness.core.errors import ClosebenchError, UsageError
from harness.defender.peers import require as require_peer
from harness.defender.peers import skip_missing
from harness.lab.privileges import ensure_privileges, require_tools
from harness.results.check import add_check_parser, run_check_command
from harness.results.compare import add_compare_parser, run_compare_command
from servers.strategies import STRATEGIES, parse_spec

PROBE_SCHEMA = "closebench.probe/1"
ATTACK_SCHEMA = "closebench.attack/1"
VERIFY_SCHEMA = "closebench.verify/1"
LAB_TOOLS = (
    "ip",
    "nsenter",
    "unshare",
    "sysctl",
    "tcpdump",
)  # what building and watching a lab runs


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


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
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
        type=_not_negative,
        default=0.0,
        metavar="S",
        help="wait S seconds after the handshake before sending the request",
    )
    probe.add_argument("--ipv6", action="store_true", help="probe over IPv6 instead of IPv4")
    probe.add_argument("--routed", action="store_true", help="put a router hop between the hosts")
    probe.add_argument("--jobs", type=_count, default=12, help="probes run at once (default 12)")
    probe.add_argument("--pcap-dir", metavar="DIR", help="keep the attacker-side pcaps here")
    probe.add_argument("--json", action="store_true", help="print a JSON document instead")
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
        "-a", "--attacker", choices=list(ATTACKERS), default="kernel", help="attacker kind"
    )
    attack.add_argument(
        "--attacker-command",
        metavar="CMD",
        help="with --attacker curl: run this instead of curl; placeholders {url} {address} {port} "
        "{path} {timeout} {timeout_ms} {source} {scratch} (a fresh empty directory per run)",
    )
    attack.add_argument("--port", type=_port, default=8080, help="port the server listens on")
    attack.add_argument("--timeout", type=_positive, default=10.0, help="attempt timeout T, s")
    attack.add_argument("--duration", type=_positive, help="attack length, s (default 30)")
    attack.add_argument("--attempts", type=_count, help="stop after this many attempts")
    attack.add_argument("--concurrency", type=_count, default=1, help="connections in flight")
    attack.add_argument("--rate", type=_positive, help="cap on attempts started per second")
    attack.add_argument(
        "--no-reconnect", action="store_true", help="one attempt per connection slot, then stop"
    )
    attack.add_argument("--request-delay", type=_not_negative, default=0.0, metavar="S")
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
    attack.add_argument("server_command", nargs="*", metavar="-- CMD", help="attack this command")
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
    run.add_argument(
        "--duration", type=_positive, metavar="S", help="override the scenario's duration"
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

    lab = commands.add_parser("lab", help="manage labs")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    lab_commands.add_parser("clean", help="remove anything left by older closebench versions")
    return parser


def run_probe(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from harness.cli.render import print_probe
    from harness.defender import ServerConfig
    from harness.trials.probe import Probe, ProbeCase, default_cases

    require_tools(*LAB_TOOLS)
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
    skipped = skip_missing(
        [case.server.spec for case in cases if case.server.spec],
        lambda message: print_warning(errors, message),
    )
    cases = [case for case in cases if not case.server.spec or case.server.spec.name not in skipped]
    probe = Probe(args.timeout, args.path, args.pcap_dir, args.listen_timeout)
    status = f"probing {len(cases)} case(s), up to {args.timeout:g} s each..."
    with (
        ctrl_c_sets(probe.cancel),
        console.status(status) if console.is_terminal else nullcontext(),
    ):
        results = probe.run_all(cases, args.jobs)
    if probe.cancel.is_set():
        errors.print("closebench: interrupted; the lab was removed")
        return 130
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
        print_error(errors, f"{which}{result.error}")
    return 1 if failed else 0


def run_attack_command(args: argparse.Namespace, console: Console, errors: Console) -> int:
    import shlex

    from harness.attackers.policy import Policy
    from harness.defender import ServerConfig
    from harness.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial

    if not args.target:
        require_tools(*LAB_TOOLS)
        if bool(args.server_command) == bool(args.strategy):
            raise UsageError("give one --strategy, or a server command after --")
        require_peer(args.strategy)
    if args.attacker != "curl" or not args.attacker_command:  # a user's command: their business
        require_tools_for(args.attacker)
    if args.attacker_command and args.attacker != "curl":
        raise UsageError("--attacker-command goes with --attacker curl")
    duration = args.duration if args.duration or args.attempts else 30.0
    policy = Policy(
        timeout=args.timeout,
        reconnect=not args.no_reconnect,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=duration,
        attempts=args.attempts,
        request_delay=args.request_delay,
    )
    attacker = AttackerSpec(
        kind=args.attacker,
        policy=policy,
        path=args.path,
        command=shlex.split(args.attacker_command) if args.attacker_command else None,
        engine=args.engine,
        workers=args.workers or 1,
    )
    run_directory = None
    if args.target:
        config, remote, run_directory = target_attack(args, attacker, errors)
        run = remote.run
    else:
        config = TrialConfig(
            server=ServerConfig(args.port, args.strategy, command=args.server_command),
            attackers=(attacker,),
            legit=LegitClient(rate=args.legit_rate) if args.legit_rate > 0 else None,
            family=6 if args.ipv6 else 4,
            routed=args.routed,
            locust_ui=LOCUST_UI_PORT if args.locust_ui else None,
            locust_csv=args.locust_csv,
        )
        run = run_trial
    if args.locust_ui:
        errors.print(
            f"closebench: Locust's web UI: http://127.0.0.1:{LOCUST_UI_PORT}/ while it runs"
        )
    show = not args.json and console.is_terminal
    result = _attack_with_progress(config, console, show, run)
    if args.records:
        from harness.results.records import write_records

        with open(args.records, "w") as records:
            write_records(records, result.attempts + result.legit_attempts)
    if args.json:
        print(json.dumps(attack_document(result), indent=2))
    else:
        from harness.cli.render import print_attack

        print_attack(result, console)
    if run_directory is not None:
        written = run_directory.write(config, result, lambda line: None)
        errors.print(f"closebench: run directory: {written}", highlight=False)
    if not result.complete:
        errors.print("closebench: interrupted; the figures cover the attack so far")
        return 130
    return 0


def attack_document(result) -> dict:
    """The `closebench attack --json` document (schema closebench.attack/1)."""
    config = result.config
    [spec] = config.attackers
    return {
        "schema": ATTACK_SCHEMA,
        "strategy": str(config.server.spec) if config.server.spec else None,
        "command": config.server.command or None,
        "attacker": spec.kind,
        "engine": spec.engine,
        "policy": asdict(spec.policy),
        "path": spec.path,
        "family": config.family,
        "routed": config.routed,
        "complete": result.complete,
        "summary": result.summaries[spec.name].to_dict(),
        "legit": result.legit.to_dict() if result.legit else None,
        "server_stats": result.server_stats,
    }


def _attack_with_progress(config, console: Console, show: bool, run):
    """Run the attack (`run(config, cancel, on_attempt)`, e.g. run_trial) in a worker thread, so
    Ctrl-C here can stop it and keep what it measured."""
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    cancel = threading.Event()
    count: list[int] = []  # one entry per attempt: list.append is atomic across threads
    policy = config.attackers[0].policy
    total = policy.duration or float(policy.attempts or 1)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[n]} attempts"),
    )
    with Progress(*columns, TimeRemainingColumn(), console=console, disable=not show) as progress:
        task = progress.add_task(config.name, total=total, n=0)
        started = time.monotonic()
        with ctrl_c_sets(cancel):
            worker = Background(lambda: run(config, cancel, lambda _: count.append(1)), "attack")
            while not worker.wait(0.2):
                done = time.monotonic() - started if policy.duration else len(count)
                progress.update(task, completed=min(done, total), n=len(count))
    return worker.result()


def run_scenario_command(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from rich.live import Live

    from harness.cli.render import print_run, print_wire_line, progress_table
    from harness.trials.runner import Runner
    from harness.trials.scenario import find_scenario, load_scenario

    path = find_scenario(args.scenario)
    scenario, text, digest = load_scenario(path)
    if args.duration:
        scenario = scenario.with_duration(args.duration)
    require_tools(*LAB_TOOLS)
    for attacker in scenario.attackers:
        if attacker.kind != "curl" or not attacker.command:
            require_tools_for(attacker.kind)
    if scenario.uses_locust:
        require_locust()
    skipped = skip_missing(
        [entry.spec for entry in scenario.strategies],
        lambda message: print_warning(errors, message),
    )
    if skipped:
        kept = [entry for entry in scenario.strategies if entry.spec.name not in skipped]
        scenario = scenario.model_copy(update={"strategies": kept})
    runner = Runner(scenario, text, digest, path, Path(args.out), verify=not args.no_verify)
    told = False
    with ctrl_c_sets(runner.cancel), Live(console=console, transient=True) as live:
        worker = Background(lambda: runner.run(args.jobs), "run")
        while not worker.wait(0.25):
            if console.is_terminal:
                live.update(progress_table(runner.progress))
            if runner.cancel.is_set() and not told:
                errors.print("closebench: stopping; keeping what was measured...")
                told = True
    result = worker.result()
    interrupted = runner.cancel.is_set()
    print_run(result, scenario, console)
    if result.wire_agreement:
        print_wire_line(result.wire_agreement, console)
    if result.report:
        console.print(f"report: {result.report}", highlight=False)
    for line in result.errors:
        print_error(errors, line)
    if interrupted and not result.stopped:  # Ctrl-C or SIGTERM; a full disk is a failed run
        return 130
    return 1 if result.errors else 0


def run_verify_command(args: argparse.Namespace, console: Console) -> int:
    from harness.cli.render import print_verification
    from harness.results.verify import verify_run

    agreement = verify_run(args.run_dir)
    if args.json:
        document = {
            "schema": VERIFY_SCHEMA,
            **agreement.to_dict(),
            "trials": {trial.trial: trial.to_dict() for trial in agreement.trials},
        }
        print(json.dumps(document, indent=2))
    else:
        print_verification(agreement, console)
    return 0 if agreement.ok else 1


def run_scenarios_command(args: argparse.Namespace, console: Console) -> int:
    from harness.cli.render import print_scenarios
    from harness.core.safe_files import read_text
    from harness.trials.scenario import SCENARIO_DIR, find_scenario, shipped_scenarios

    if args.name:
        sys.stdout.write(read_text(find_scenario(args.name), "scenario"))
        return 0
    print_scenarios(shipped_scenarios(), SCENARIO_DIR, console)
    return 0


def run_lab_clean(console: Console) -> int:
    from harness.lab.cleanup import clean

    for line in clean():
        console.print(line)
    return 0


def print_error(errors: Console, message: str) -> None:
    # Escaped: a message may hold brackets ([repair], [::1]) that rich would take for markup.
    errors.print(f"[bold red]closebench: error:[/] {escape(message)}", highlight=False)


def print_warning(errors: Console, message: str) -> None:
    errors.print(f"[yellow]closebench: warning:[/] {escape(message)}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    terminate_like_ctrl_c()
    args = build_parser().parse_args(argv)
    # Piped output keeps full rows rather than wrapping them at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        # These only read files (run directories, scenarios): no lab, no privileges.
        if args.command == "compare":
            return run_compare_command(args, console)
        if args.command == "check":
            return run_check_command(args, console)
        if args.command == "verify":  # reads a run directory and its pcaps
            return run_verify_command(args, console)
        if args.command == "scenarios":
            return run_scenarios_command(args, console)
        if args.command == "report":  # reads a run directory too
            from harness.results.report.prose import run_report_command

            if args.samples:
                from harness.trials.server_samples import merge_samples

                merged = merge_samples(Path(args.run_dir), Path(args.samples))
                if not merged:
                    raise UsageError(
                        f"{args.samples}: no sample falls in the time of a trial without samples "
                        f"of its own in {args.run_dir}"
                    )
                console.print(f"merged the server's samples into: {', '.join(merged)}")

            page = run_report_command(args.run_dir, lambda text: print_warning(errors, text))
            console.print(f"report: {page}", highlight=False)
            return 0
        # Outside any lab: a worker or the sampler on their machines, an attack on a server
        # elsewhere. They must not re-execute in a namespace of their own (ensure_privileges).
        if args.command in ("locust-worker", "sample"):
            return run_locust_command(args, console)
        if args.command == "attack":
            check_locust_arguments(args)  # bad input is told before privileges are sought
            if args.target:
                return run_attack_command(args, console, errors)
        ensure_privileges(argv)
        if args.command == "probe":
            return run_probe(args, console, errors)
        if args.command == "run":
            return run_scenario_command(args, console, errors)
        if args.command == "attack":
            return run_attack_command(args, console, errors)
        if args.command == "lab":
            return run_lab_clean(console)
    except ClosebenchError as error:
        print_error(errors, str(error))
        return error.status
    except KeyboardInterrupt:
        errors.print("closebench: interrupted; the lab was removed")
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

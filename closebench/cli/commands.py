"""The commands that build labs (probe, attack, run, lab clean), and those that read a scenario or
a run directory (scenarios, verify, report). Their JSON documents' schemas:
closebench/results/schema.py.

Each command imports the stages it needs when it runs, not at the top: `closebench --help`,
compare or check load no scapy, matplotlib or lab code (a second or so on a small machine)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from rich.console import Console

from closebench import __version__
from closebench.attackers import require_tools_for
from closebench.attackers.locust import require_locust
from closebench.attackers.tool_profiles import skip_missing as skip_missing_tools
from closebench.cli.attack_input import attacker_input, default_slots, one_server, tool_options
from closebench.cli.locust import (
    LOCUST_UI_PORT,
    target_attack,
)
from closebench.cli.output import print_error, print_warning
from closebench.core.background import Background, ctrl_c_sets
from closebench.core.errors import UsageError
from closebench.core.safe_files import SafeDirectory
from closebench.defender.peers import require as require_peer
from closebench.defender.peers import skip_missing
from closebench.lab.confine import describe
from closebench.lab.privileges import require_tools
from closebench.results.schema import ATTACK_SCHEMA, KERNEL_SCHEMA, PROBE_SCHEMA, VERIFY_SCHEMA
from closebench.trials.placement import resolve_placement

ATTACK_SAMPLE_HZ = 10.0  # attack --out: the defender's samples, as a scenario's default
LAB_TOOLS = (
    "ip",
    "nsenter",
    "unshare",
    "sysctl",
    "tcpdump",
)  # what building and watching a lab runs


def run_probe(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from closebench.cli.tables import print_probe
    from closebench.defender import ServerConfig
    from closebench.trials.probe import Probe, ProbeCase, default_cases

    if args.kernel:
        return print_kernel(args, console)
    require_tools(*LAB_TOOLS)
    family = 6 if args.ipv6 else 4
    if args.server_command and args.strategy:
        raise UsageError("give either --strategy or a command after --, not both")
    # --pcap-dir: opened once (refused where another user could change it), written through
    # its descriptor (closebench/core/safe_files.py).
    pcap_dir = (
        SafeDirectory(Path(args.pcap_dir), "give another --pcap-dir", create=True)
        if args.pcap_dir
        else None
    )
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
    from closebench.defender.capabilities import skip_unsupported

    unsupported = skip_unsupported(
        [(case.server.spec, False) for case in cases if case.server.spec],
        lambda message: print_warning(errors, message),
    )
    cases = [case for case in cases if str(case.server.spec) not in unsupported]
    anchor = str(pcap_dir.anchor) if pcap_dir else None
    probe = Probe(args.timeout, args.path, anchor, args.listen_timeout)
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


def print_kernel(args: argparse.Namespace, console: Console) -> int:
    """`closebench probe --kernel`: what this kernel can run, and which strategies need what."""
    from closebench.cli.tables import print_capabilities
    from closebench.defender.capabilities import probe

    findings = probe()
    if args.json:
        document = {
            "schema": KERNEL_SCHEMA,
            "closebench": __version__,
            "kernel": platform.release(),
            "capabilities": [finding.to_dict() for finding in findings.values()],
        }
        print(json.dumps(document, indent=2))
    else:
        print_capabilities(findings, platform.release(), console)
    return 0


def run_attack_command(args: argparse.Namespace, console: Console, errors: Console) -> int:

    from closebench.attackers.policy import Policy
    from closebench.defender import ServerConfig
    from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial

    if not args.target:
        require_tools(*LAB_TOOLS)
        if bool(args.server_command) == bool(args.strategy):
            raise UsageError(one_server(args))
        require_peer(args.strategy)
        if args.strategy:
            from closebench.defender.capabilities import require as require_kernel

            require_kernel(args.strategy)
    kind, command = attacker_input(args, lambda note: print_warning(errors, note))
    tool, tool_args = args.attacker.partition(":")[2] or None, tool_options(args)
    duration = args.duration if args.duration or args.attempts else 30.0
    policy = Policy(
        timeout=args.timeout,
        reconnect=not args.no_reconnect,
        concurrency=args.concurrency or default_slots(args),
        rate=args.rate,
        duration=duration,
        attempts=args.attempts,
        request_delay=args.request_delay,
    )
    attacker = AttackerSpec(
        kind=kind,
        tool=tool or None,
        args=tool_args,
        policy=policy,
        path=args.path,
        command=command,
        engine=args.engine,
        workers=args.workers or 1,
        profile=args.profile,
    )
    # Written after the attack: opened (and so checked) before it starts.
    records = _output_directory(args.records, "--records") if args.records else None
    if args.locust_csv:  # Locust's master writes them (closebench/attackers/locust/master.py)
        _output_directory(args.locust_csv, "--locust-csv").close()
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
            label=args.label,
            # A run directory has the defender's figures (peak_fds, cpu_seconds) and the pcap.
            sample_hz=ATTACK_SAMPLE_HZ if args.out else None,
        )
        run = run_trial
        if args.out:
            run_directory = _attack_run_directory(args, config)
            config = replace(config, pcap=run_directory.pcap_for(config.name))
        for who, argv in (("server", args.server_command), ("attacker", attacker.command)):
            if argv:  # typed here: run as typed (lab/confine.py)
                errors.print(
                    f"closebench: {who} `{' '.join(argv)}` runs {describe(None)}",
                    highlight=False,
                    markup=False,
                )
    if args.locust_ui:
        errors.print(
            f"closebench: Locust's web UI: http://127.0.0.1:{LOCUST_UI_PORT}/ while it runs"
        )
    show = not args.json and console.is_terminal
    result = _attack_with_progress(config, console, show, run)
    if args.records:
        from closebench.results.records import write_records

        assert records is not None
        with records, records.atomic(Path(args.records).name) as stream:
            write_records(stream, result.attempts + result.legit_attempts)
    if args.json:
        print(json.dumps(attack_document(result), indent=2))
    else:
        from closebench.cli.tables import print_attack

        print_attack(result, console)
    if run_directory is not None:
        written = run_directory.write(config, result, lambda line: None)
        errors.print(f"closebench: run directory: {written}", highlight=False)
    for fault in result.faults:  # a part crashed: nothing it shows is a measurement
        print_error(errors, str(fault))
    if result.faults:
        return 1
    if not result.complete:
        errors.print("closebench: interrupted; the figures cover the attack so far")
        return 130
    return 0


def _output_directory(path: str, option: str) -> SafeDirectory:
    """The directory a file given on the command line goes into, opened once and checked
    (closebench/core/safe_files.py), made when missing."""
    return SafeDirectory(Path(path).parent, f"give another {option}", create=True)


def attack_document(result) -> dict:
    """The `closebench attack --json` document (schema closebench.attack/1)."""
    config = result.config
    [spec] = config.attackers
    return {
        "schema": ATTACK_SCHEMA,
        "strategy": str(config.server.spec) if config.server.spec else None,
        "command": config.server.command or None,
        "attacker": spec.kind,
        "tool": spec.tool,
        "engine": spec.engine,
        "policy": asdict(spec.policy),
        "path": spec.path,
        "family": config.family,
        "routed": config.routed,
        "complete": result.complete,
        "faults": [fault.to_dict() for fault in result.faults],
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

    from closebench.cli.tables import print_run, print_wire_line, progress_table
    from closebench.trials.runner import Runner
    from closebench.trials.scenario import find_scenario, load_scenario
    from closebench.trials.scenario_commands import command_lines

    path = find_scenario(args.scenario)
    scenario, text, digest = load_scenario(path)
    if args.duration:
        scenario = scenario.with_duration(args.duration)
    if args.repeat:
        scenario = scenario.with_repetitions(args.repeat)
    require_tools(*LAB_TOOLS)
    for note in scenario.deprecations:
        print_warning(errors, f"{path}: {note}")
    for attacker in scenario.attackers:
        if attacker.kind != "tool" and not attacker.command:  # tools: skipped when missing
            require_tools_for(attacker.kind)
    if scenario.uses_locust:
        require_locust()
    skipped = skip_missing(
        [entry.spec for entry in scenario.strategies if entry.spec is not None],
        lambda message: print_warning(errors, message),
    )
    from closebench.defender.capabilities import skip_unsupported

    skipped |= skip_unsupported(
        [
            (entry.spec, entry.required)
            for entry in scenario.strategies
            if entry.spec is not None and entry.spec.name not in skipped
        ],
        lambda message: print_warning(errors, message),
    )
    warn = partial(print_warning, errors)
    skipped |= skip_missing_tools(scenario.tools_missing(), len(scenario.trials()), warn)
    out = Path(args.out)
    placement = resolve_placement(**scenario.cpus.model_dump(), flag=args.cpus)
    runner = Runner(
        scenario,
        text,
        digest,
        path,
        out,
        verify=not args.no_verify,
        skipped=skipped,
        placement=placement,
    )
    told = False
    # Who each command of the file runs as.
    for line in command_lines(scenario.strategies, scenario.attackers):
        errors.print(f"closebench: {line}", highlight=False, markup=False)
        runner.log(line)
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
    from closebench.cli.tables import print_verification
    from closebench.results.verify import verify_run

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


def run_export_command(args: argparse.Namespace, errors: Console) -> int:
    """`closebench export RUN --jsonl [--out FILE|-]`: reads a run directory, builds no lab."""
    from closebench.results.run_directory import export_attempts

    written, count = export_attempts(Path(args.run_dir), args.out)
    if written is not None:
        errors.print(f"closebench: {count} attempts written to {written}", highlight=False)
    return 0


def run_scenarios_command(args: argparse.Namespace, console: Console) -> int:
    from closebench.cli.tables import print_scenarios
    from closebench.core.safe_files import read_text
    from closebench.trials.scenario import SCENARIO_DIR, find_scenario, shipped_scenarios

    if args.name:
        sys.stdout.write(read_text(find_scenario(args.name), "scenario"))
        return 0
    print_scenarios(shipped_scenarios(), SCENARIO_DIR, console)
    return 0


def run_lab_clean(console: Console) -> int:
    from closebench.lab.cleanup import clean

    for line in clean():
        console.print(line)
    return 0


def run_report(args: argparse.Namespace, console: Console, errors: Console) -> int:
    """`closebench report RUN_DIR [--samples DIR]`: reads a run directory, builds no lab."""
    from closebench.results.report import run_report_command
    from closebench.trials.server_samples import merge_samples

    if args.samples:
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


def _attack_run_directory(args: argparse.Namespace, config):
    """`attack --out DIR`: the run directory, made before anything starts (a bad --out is an
    error that leaves nothing behind)."""
    from closebench.trials.attack_run import AttackRun

    return AttackRun(Path(args.out), args.label or "attack", _attack_toml(args, config))


def _attack_toml(args: argparse.Namespace, config) -> str:
    """What ran, as the scenario.toml of the run directory (the report shows it)."""
    [spec] = config.attackers
    policy = {k: v for k, v in asdict(spec.policy).items() if v is not None}
    server = (
        f"strategy = {json.dumps(str(config.server.spec))}"
        if config.server.spec
        else f"command = {json.dumps(config.server.command)}"
    )
    lines = [
        f"name = {json.dumps(config.name)}",
        f"description = {json.dumps('closebench attack: ' + ' '.join(sys.argv[1:]))}",
        f"family = {config.family}",
        "",
        "[server]",
        f"port = {config.server.port}",
        "",
        "[[strategies]]",
        server,
        f"label = {json.dumps(config.name)}",
        f"routed = {json.dumps(config.routed)}",
        "",
        "[[attackers]]",
        f"kind = {json.dumps(spec.kind)}",
        f"engine = {json.dumps(spec.engine)}",
        f"path = {json.dumps(spec.path)}",
        *(f"{key} = {json.dumps(value)}" for key, value in policy.items()),
    ]
    if spec.command:
        lines.append(f"command = {json.dumps(spec.command)}")
    tool = (("tool", spec.tool), ("args", spec.args))
    lines += [f"{key} = {json.dumps(value)}" for key, value in tool if value is not None]
    return "\n".join(lines) + "\n"

"""The command line of the Locust engine: `attack`'s Locust options and `--target`, and the
command `closebench locust-worker` (a worker on an attacking machine).

Nothing here imports Locust: without the extra, `--engine locust` is one clear error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from closebench.attackers import ENGINES
from closebench.attackers.locust import require_locust
from closebench.attackers.locust.settings import split_host_port
from closebench.core.errors import UsageError
from closebench.lab import MAX_ATTACKER_HOSTS

if TYPE_CHECKING:  # imported where used: the command line starts without them
    from closebench.trials.attack_run import AttackRun
    from closebench.trials.remote import TargetAttack
    from closebench.trials.trial import TrialConfig

LOCUST_UI_PORT = 8089  # Locust's own default
MAX_LAB_WORKERS = MAX_ATTACKER_HOSTS - 1  # the main attacker host runs the master
LOCUST_ONLY = ("workers", "locust_ui", "locust_csv", "target")
TARGET_ONLY = ("master_bind", "local_workers")


def host_port(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, for argparse."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (IPv6: [ADDRESS]:PORT)")
    return split_host_port(text)


def add_locust_arguments(attack: argparse.ArgumentParser) -> None:
    group = attack.add_argument_group(
        "the Locust engine (the optional extra closebench[locust])",
        "Run the kernel attacker's policy on Locust workers: each worker runs it as one spam "
        "script, in an attacker host of its own (its own address, a machine of its own).",
    )
    group.add_argument(
        "--engine",
        choices=list(ENGINES),
        default="local",
        help="local: in closebench's process (default); locust: on Locust workers",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"Locust workers (default 1; in the lab at most {MAX_LAB_WORKERS})",
    )
    group.add_argument(
        "--locust-ui",
        action="store_true",
        help=f"serve Locust's web UI at http://127.0.0.1:{LOCUST_UI_PORT}/ while it runs",
    )
    group.add_argument(
        "--locust-csv", metavar="PREFIX", help="write Locust's CSV files (PREFIX_stats.csv...)"
    )
    group.add_argument(
        "--target",
        type=host_port,
        metavar="HOST:PORT",
        help="attack a server outside the lab, one you operate (no lab: the attacker side only)",
    )
    group.add_argument(
        "--master-bind",
        type=host_port,
        metavar="HOST:PORT",
        help="with --target: where the master listens for workers (default: loopback)",
    )
    group.add_argument(
        "--local-workers",
        type=int,
        metavar="K",
        help="with --target: workers started here (default: all); the rest connect from other "
        "machines (closebench locust-worker --master HOST:PORT)",
    )


def check_locust_arguments(args: argparse.Namespace) -> None:
    """One UsageError for any Locust option that does not fit; the extra must be there."""
    if args.engine != "locust":
        given = [
            name for name in LOCUST_ONLY + TARGET_ONLY if getattr(args, name) not in (None, False)
        ]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} goes with --engine locust")
        return
    if args.attacker != "kernel":
        raise UsageError(
            f"--engine locust runs the kernel attacker's policy, not -a {args.attacker}: "
            "leave out -a or give -a kernel"
        )
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers {workers}: give at least 1 worker")
    if args.target:
        _check_target(args, workers)
    else:
        given = [name for name in TARGET_ONLY if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} goes with --target")
        if workers > MAX_LAB_WORKERS:
            raise UsageError(
                f"--workers {workers}: the lab hosts {MAX_LAB_WORKERS} workers at most (one "
                "attacker host each); for more, run workers on other machines against a server "
                "you operate (--target, closebench locust-worker)"
            )
    require_locust()


def _check_target(args: argparse.Namespace, workers: int) -> None:
    if args.routed:
        raise UsageError(
            "--target attacks a server outside the lab, and --routed puts a lab router in front "
            "of the lab's own server: give one of them"
        )
    if args.strategy or args.server_command:
        raise UsageError(
            "--target attacks a server already running elsewhere: give no --strategy or command"
        )
    local = workers if args.local_workers is None else args.local_workers
    if not 0 <= local <= workers:
        raise UsageError(f"--local-workers {local}: give 0 to --workers ({workers})")
    if local < workers and args.master_bind is None:
        raise UsageError(
            f"{workers - local} worker(s) are to connect from other machines: give "
            "--master-bind ADDRESS:PORT, an address of this machine they reach"
        )


def add_locust_commands(commands) -> None:
    worker = commands.add_parser(
        "locust-worker",
        help="run a Locust worker of closebench's on this machine (the many-machine recipe)",
        description="Connect to the master of `closebench attack --engine locust --target ... "
        "--master-bind HOST:PORT` and run its attack from this machine until the master ends it.",
    )
    worker.add_argument("--master", type=_master, metavar="HOST[:PORT]", help="the master")
    worker.add_argument("--name", help="this worker's name in the results (default: host name)")
    worker.add_argument(
        "--locustfile",
        action="store_true",
        help="print the path of the shipped locustfile (for `locust -f PATH --worker`) and exit",
    )


def _master(text: str) -> tuple[str, int]:
    return host_port(text if text.rpartition(":")[2].isdigit() else f"{text}:5557")


def run_locust_command(args: argparse.Namespace, console) -> int:
    require_locust()
    if args.locustfile:
        spec = find_spec("closebench.attackers.locust.locustfile")  # found, not imported
        assert spec is not None  # a module of this package
        print(spec.origin)
        return 0
    if args.master is None:
        raise UsageError("give --master HOST[:PORT], the address of the closebench master")
    host, port = args.master
    argv = [sys.executable, "-m", "closebench.attackers.locust.worker", "--master-host", host]
    argv += ["--master-port", str(port)] + (["--name", args.name] if args.name else [])
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # Locust patches the standard library: a fresh process


class TargetPlan(NamedTuple):
    """What `attack --target` runs: its trial, the attack on the server elsewhere, and the run
    directory it writes."""

    config: TrialConfig
    remote: TargetAttack
    run: AttackRun


def target_attack(args: argparse.Namespace, spec, errors) -> TargetPlan:
    """The plan of `attack --target` (bad input: UsageError before anything starts)."""
    from closebench.attackers.locust.swarm import Placement
    from closebench.defender import ServerConfig
    from closebench.trials.attack_run import AttackRun
    from closebench.trials.remote import (
        REMOTE_JOIN_TIMEOUT,
        TargetAttack,
        ThisMachine,
        check_bindable,
        free_local_port,
        resolve,
    )
    from closebench.trials.trial import TrialConfig

    host, port = args.target
    target = resolve(host, port, args.ipv6, spec.path)
    local = spec.workers if args.local_workers is None else args.local_workers
    if args.master_bind:
        bind = args.master_bind
        check_bindable(bind)
    else:
        loopback = "::1" if target.family == 6 else "127.0.0.1"
        bind = (loopback, free_local_port(loopback))
    wildcards = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # local workers reach those on loopback
    connect = (wildcards.get(bind[0], bind[0]), bind[1])
    machine = ThisMachine()
    hostname = socket.gethostname()
    names = [hostname if local == 1 else f"{hostname}-{i}" for i in range(1, local + 1)]
    placement = Placement(
        master=machine,
        bind=_joined(bind),
        connect=connect,
        workers=[(machine, name) for name in names],
        expected=spec.workers,
        web=f"127.0.0.1:{LOCUST_UI_PORT}" if args.locust_ui else None,
        join_timeout=REMOTE_JOIN_TIMEOUT if local < spec.workers else 30.0,
    )
    label = f"target {_joined((target.address, target.port))}"
    config = TrialConfig(
        server=ServerConfig(port), attackers=(spec,), legit=None, family=target.family, label=label
    )
    run = AttackRun(Path(args.out or "reports"), "target", _scenario_toml(label, spec))
    if local < spec.workers:
        errors.print(
            f"closebench: waiting up to {REMOTE_JOIN_TIMEOUT:g} s for {spec.workers - local} "
            f"worker(s): run `closebench locust-worker --master {_joined(bind)}` on each "
            "attacking machine"
        )
    return TargetPlan(config, TargetAttack(target, placement, args.locust_csv), run)


def _joined(host_port: tuple[str, int]) -> str:
    host, port = host_port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scenario_toml(label: str, spec) -> str:
    """What ran, as the scenario.toml of the run directory (the report shows it)."""
    policy = {k: v for k, v in vars(spec.policy).items() if v is not None}
    lines = [
        f"name = {json.dumps(label)}",
        f"description = {json.dumps('closebench attack --target: the attacker side only')}",
        f"duration = {json.dumps(spec.policy.duration)}" if spec.policy.duration else "",
        "",
        "[[attackers]]",
        'kind = "kernel"',
        'engine = "locust"',
        f"workers = {spec.workers}",
        f"path = {json.dumps(spec.path)}",
        *(f"{key} = {json.dumps(value)}" for key, value in policy.items() if key != "duration"),
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"

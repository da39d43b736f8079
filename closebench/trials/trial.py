"""One trial: one server in its own lab, attacked by one or more attackers, with legitimate
clients beside them, the defender sampled and the attacker's wire captured.

`closebench attack` runs one trial; `closebench run` runs one per strategy of a scenario.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from closebench.attackers import Request, kind_of, make_attacker, make_attacker_argv
from closebench.attackers.locust.swarm import lab_placement
from closebench.attackers.policy import Policy, Target
from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.faults import Fault, Faults
from closebench.core.file_names import safe_stem
from closebench.core.outcomes import LEGIT_CLIENT, Attempt
from closebench.core.summary import (
    AttackSummary,
    BanSummary,
    LegitSummary,
    columns_of,
    summarize_bans,
    summarize_legit,
)
from closebench.defender import Defender, ServerConfig, drop_layers, firewall, peers
from closebench.defender.metrics import DefenderCost, DefenderSampler, Sample, defender_cost
from closebench.lab import Lab, cpus
from closebench.lab.capture import Capture
from closebench.lab.confine import Confinement
from closebench.results.records import AttemptWriter, read_attempts
from closebench.servers.strategies import BAN_STRATEGIES
from closebench.trials import attacker_processes as engines
from closebench.trials.attacker_hosts import AttackerHostSampler
from closebench.trials.attacker_kinds import PACKET_KINDS
from closebench.trials.attempt_summaries import file_summaries, memory_summaries, overall_summary
from closebench.trials.harness_load import HarnessLoad, harness_load
from closebench.trials.legit_traffic import LegitClient, legit_source, legit_thread
from closebench.trials.part_faults import idle_attackers, server_faults
from closebench.wire.classify import reconcile
from closebench.wire.pcap import Endpoint

BAN_LAYERS = ("nft-ban", "xdp", "tc")  # the layers whose drops are a ban's (BanSummary)


@dataclass(frozen=True)
class AttackerSpec:
    kind: str = "kernel"
    policy: Policy = field(default_factory=Policy)
    path: str = "/spam"
    command: list[str] | None = None  # for the command kind: the command to run
    label: str | None = None
    addresses: int = 0  # kernel kind: spread its connection slots over this many addresses
    engine: str = "local"  # "locust": the kernel kind's policy on Locust workers (ENGINES)
    workers: int = 1  # Locust workers, each in an attacker host of its own
    # A command from a scenario file runs confined (lab/confine.py); None: as typed (the CLI's).
    confine: Confinement | None = None
    tool: str | None = None  # the tool kind: its profile (attackers/tools.py)
    args: list[str] | None = None  # the tool kind: its arguments (None: the profile's)
    # A packet attacker (scapy, volume): how many engines share its policy, each a process of its
    # own (trials/attacker_processes.py); the runner adds one when a step's engine set the pace.
    processes: int = 1
    profile: str | None = None  # the bot kind's (attackers/bot_profiles.py)

    @property
    def name(self) -> str:
        """Its label, or what it runs: a command's program (hydra, not "command"), else its kind."""
        program = os.path.basename(self.command[0]) if self.command else ""  # command kinds
        return self.label or program or self.profile or self.tool or self.kind

    @property
    def request(self) -> Request:
        return Request(self.command, self.label, self.confine, self.tool, self.args, self.profile)

    @property
    def binds_source(self) -> bool:
        """A command that takes the address to leave from ({source}, as curl --interface)."""
        return any("{source}" in part for part in make_attacker_argv(self.kind, self.request))

    @property
    def most_addresses(self) -> int:
        """The most addresses of its own it may need (see TrialConfig.address_plan)."""
        return self.policy.concurrency if self.binds_source else self.addresses

    @property
    def keeps_own_clock(self) -> bool:
        """Its records come from a kernel socket's API: the trial's capture gives them wire
        classes and times. (Command attackers read the wire already; packet attackers are on it.)"""
        return self.kind in ("kernel", "bot")

    @property
    def attacker_hosts(self) -> int:
        """The attacker hosts it needs besides the main one."""
        return self.workers if self.engine == "locust" else 0


@dataclass(frozen=True)
class TrialConfig:
    server: ServerConfig
    attackers: tuple[AttackerSpec, ...] = (AttackerSpec(),)
    legit: LegitClient | None = LegitClient()  # noqa: RUF009 (frozen: one default is safe)
    family: int = 4
    routed: bool = False
    sample_hz: float | None = None  # sample the defender at this rate; None: not at all
    pcap: str | None = None  # capture the attacker's wire into this file
    label: str | None = None
    duration: float | None = None  # the legitimate client runs at least this long
    locust_ui: int | None = None  # Locust engine: its web UI, relayed from 127.0.0.1:PORT
    locust_csv: str | None = None  # Locust engine: write Locust's CSV files with this prefix
    step: float | None = None  # a sweep's step: the value of its axis in this trial
    series: str | None = None  # a sweep: the trial's label without its step
    # Stream the attempts into this Parquet file (closebench/results/records.py) as they come,
    # instead of keeping them in TrialResult.attempts: a long trial's records do not fit in memory.
    attempts_file: str | None = None

    def __post_init__(self) -> None:
        # A command that cannot choose its source address (a browser) is told apart on the wire
        # by the attacker's main address alone: nothing else may send from it.
        plan = self.address_plan()
        engines.source_port_ranges(self.attackers, plan)  # packet attackers sharing ports: refused
        on_main = [spec.name for spec, extra in zip(self.attackers, plan, strict=True) if not extra]
        if self.legit is not None and self.legit.source == "attacker":
            on_main.append("the legitimate client (source = attacker)")
        for spec in self.attackers:
            if not kind_of(spec.kind).runs_command or spec.binds_source:
                continue
            if spec.policy.concurrency > 1:
                raise UsageError(
                    f"the {spec.name} attacker runs one command at a time (concurrency 1): its "
                    "connections are told apart by source address, and its command cannot "
                    "choose one (a command that takes {source} can)"
                )
            others = [name for name in on_main if name != spec.name]
            if others:
                raise UsageError(
                    f"the {spec.name} attacker cannot choose its source address, so it needs the "
                    f"attacker's main address to itself, which {', '.join(others)} also use(s): "
                    "give a kernel attacker `addresses`, or run them in separate scenarios"
                )

    def address_plan(self) -> list[int]:
        """How many addresses of its own each attacker gets (0: the attacker's main address).

        A botnet gets its `addresses`. A command that chooses its source (curl) is told apart on
        the wire by it: it keeps the main address (which the by-address strategies name) when it
        runs one command at a time and nothing else sends from there, else one address a slot.
        """
        fixed = [s for s in self.attackers if not s.binds_source and not s.addresses]
        main_taken = bool(fixed) or (self.legit is not None and self.legit.source == "attacker")
        plan = []
        for spec in self.attackers:
            if spec.binds_source and spec.policy.concurrency == 1 and not main_taken:
                plan.append(0)
                main_taken = True
            else:
                plan.append(spec.most_addresses)
        return plan

    @property
    def name(self) -> str:
        return self.label or self.server.label + (" (via router)" if self.routed else "")


@dataclass
class TrialResult:
    config: TrialConfig
    # Every attacker's attempts, in the order they ended, and the legitimate clients'; both empty
    # when they went to config.attempts_file instead.
    attempts: list[Attempt]
    legit_attempts: list[Attempt]
    summaries: dict[str, AttackSummary]  # per attacker name
    legit: LegitSummary | None
    samples: list[Sample]
    defender: DefenderCost | None
    sampler_overhead: float | None
    server_stats: dict
    server_log: str
    duration_s: float
    complete: bool  # False when interrupted, or when a part of the trial failed (`faults`)
    bans: BanSummary | None = None  # ban strategies only
    ban_log: list[dict] = field(
        default_factory=list
    )  # the server's bans (closebench/servers/bans.py)
    harness: HarnessLoad = field(default_factory=HarnessLoad)  # the attacking side's own load
    overall: AttackSummary | None = None  # every attacker together (from `attempts` if not given)
    # The parts that crashed (an attacker, the legitimate client, the server, a sampler) or made
    # no attempt: the trial measured nothing trustworthy, and fails.
    faults: list[Fault] = field(default_factory=list)
    layers: drop_layers.LayerReading = field(default_factory=drop_layers.LayerReading)
    # The packet attackers' processes each, and why that many (the runner's scaling); None: the
    # trial had no packet attacker.
    attacker_processes: int | None = None
    attacker_processes_reason: str | None = None

    def __post_init__(self) -> None:
        if self.overall is None:
            self.overall = overall_summary(
                self.summaries, columns_of(self.attempts), self.duration_s
            )


@dataclass
class AttackPhase:
    """What the attack phase of a trial gives back, before the trial is summarised."""

    attempts: list[Attempt]  # the attackers' records kept in memory (not the streamed ones)
    legit_attempts: list[Attempt]
    costs: dict[str, dict]  # each attacker's own cost (its run()'s), with its hosts' figures
    duration: float  # seconds from the attackers' start to the last one's end
    attack_end: float  # when the attackers ended (Unix time)
    legit_cost: dict  # the legitimate client's own cost (empty when it did not run)


def run_trial(
    config: TrialConfig,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> TrialResult:
    """Build a lab, start the server, run every attacker and legitimate client until done."""
    with tempfile.TemporaryDirectory(prefix="closebench-trial-") as scratch:
        return _run_trial(config, cancel or threading.Event(), on_attempt, scratch)


def _run_trial(config: TrialConfig, cancel, on_attempt, scratch: str) -> TrialResult:
    hosts = 1 + sum(spec.attacker_hosts for spec in config.attackers)
    faults = Faults()
    with Lab(routed=config.routed, attacker_hosts=hosts) as lab:
        # Extra address 0 is the legitimate client's; botnet addresses follow.
        plan = config.address_plan()
        if config.legit or sum(plan):
            lab.add_attacker_addresses(1 + sum(plan))
        server = config.server.with_attacker_rule(lab.attacker_ip(config.family))
        for spec, own in zip(config.attackers, _own_addresses(lab, config), strict=True):
            for address in own if kind_of(spec.kind).runs_command else ():  # by its address
                server = server.with_attacker_rule(address)
        ban_host = firewall.ban_host(lab, server.spec)
        defender = Defender(lab, server)
        writer = None
        capture = None
        layers = drop_layers.LayerReading()  # what each layer in front of the server dropped
        bpf_attach = defender.bpf.describe() if defender.bpf else None
        # Kernel-socket clients' records get the wire's classes and times: capture for them even
        # when no pcap is kept.
        own_clock = config.legit is not None or any(s.keeps_own_clock for s in config.attackers)
        pcap = config.pcap or (os.path.join(scratch, "trial.pcap") if own_clock else None)
        try:
            if pcap:
                bpf = f"tcp port {server.port} or icmp or icmp6"
                if not config.pcap and not any(s.keeps_own_clock for s in config.attackers):
                    # Only the legitimate client needs it: keep a flood out of the capture.
                    bpf = f"host {legit_source(lab, config.legit, config.family)} and ({bpf})"
                capture = Capture(*lab.attack_wire(), bpf, pcap)
            sampler = None
            if config.sample_hz:
                sampler = DefenderSampler(
                    lab.defender,
                    defender.server_pids,
                    config.sample_hz,
                    ban_host,
                    router=lab.router,
                    port=server.port,
                )
            if config.attempts_file:
                writer = AttemptWriter(config.attempts_file, config.name)
            placement = cpus.current() or cpus.Placement(*[cpus.machine_cpus()] * 2)
            before = cpus.snapshot(placement)
            try:
                result = _attack(lab, config, cancel, on_attempt, writer, faults)
                # Before anything stops: a reaped server's time would move to its parent's side.
                cpu_use = cpus.use_between(placement, before, cpus.snapshot(placement))
            except BaseException:
                if writer:  # what was written stays readable; the first error is the one told
                    with contextlib.suppress(ClosebenchError):
                        writer.close()
                raise
            samples = sampler.stop() if sampler else []
            if sampler is not None and sampler.error is not None:
                faults.add(Fault.of("the defender sampler", sampler.error))
            layers = drop_layers.read(lab, server.port, server.spec, defender.bpf)
        finally:
            if capture:
                capture.stop()
            server_stats = defender.stop()
            server_log = defender.log()
            for fault in server_faults(defender, server_stats):
                faults.add(fault)
            defender.close()
        target = Endpoint(lab.defender_ip(config.family), server.port)
    attempts, legit_attempts, costs = result.attempts, result.legit_attempts, result.costs
    duration, attack_end, legit_cost = result.duration, result.attack_end, result.legit_cost
    if own_clock and pcap:
        kernel = {spec.name for spec in config.attackers if spec.keeps_own_clock}
        timed = [a for a in attempts if a.attacker in kernel] + legit_attempts
        reconcile(timed, pcap, target)
    banning = bool(server.spec and server.spec.name in BAN_STRATEGIES)
    names = [spec.name for spec in config.attackers]
    if writer:  # the records kept back for the wire's times join the streamed ones
        writer.add_all(attempts)  # the kernel attackers' (the others went as they came)
        writer.add_all(legit_attempts)
        writer.close()
        summarised = file_summaries(writer.path, names, costs, duration)
        if banning or peers.peer_for(server.spec):  # their accounting reads the records
            attempts = [a for a in read_attempts(writer.path) if a.attacker != LEGIT_CLIENT]
    else:
        summarised = memory_summaries(attempts, names, costs, duration)
    summaries, overall = summarised.by_attacker, summarised.overall
    server_stats = peers.account(server.spec, server_stats, attempts)
    if "conn-cap" in layers.drops:
        server_stats["cap_refused_syns"] = layers.drops["conn-cap"]
    if bpf_attach is not None:  # summary.json's meta has the kernel version
        server_stats["bpf_attach"] = bpf_attach
    ban_log = server_stats.pop("ban_log", [])
    bans = None
    if banning:
        syns_dropped = next((layers.drops[k] for k in BAN_LAYERS if k in layers.drops), None)
        bans = summarize_bans(ban_log, attempts, legit_attempts, attack_end, syns_dropped)
        if ban_host is None and sampler is not None:  # blacklist: its bans are the server's own
            _bans_over_time(samples, ban_log, sampler.started_unix)
    if not cancel.is_set():
        for fault in idle_attackers(names, summaries, costs, faults.parts()):
            faults.add(fault)
    return TrialResult(
        config=config,
        attempts=[] if writer else attempts,
        legit_attempts=[] if writer else legit_attempts,
        summaries=summaries,
        overall=overall,
        legit=summarize_legit(legit_attempts) if config.legit else None,
        samples=samples,
        defender=defender_cost(samples),
        sampler_overhead=sampler.overhead if sampler else None,
        server_stats=server_stats,
        server_log=server_log,
        duration_s=duration,
        complete=not cancel.is_set() and not faults.all(),
        faults=faults.all(),
        bans=bans,
        ban_log=ban_log,
        layers=layers,
        harness=harness_load(engines.client_costs(costs, legit_cost), cpu_use),
    )


def _bans_over_time(samples: list[Sample], ban_log: list[dict], started_unix: float) -> None:
    """Fill each sample's bans_active from the server's ban log (bans it keeps itself)."""
    for sample in samples:
        t = started_unix + sample.t
        sample.bans_active = sum(
            b["t_effective"] is not None
            and b["t_effective"] <= t < b["t_effective"] + b["duration_s"]
            for b in ban_log
        )


def _attack(
    lab: Lab, config: TrialConfig, cancel, on_attempt, writer: AttemptWriter | None, faults: Faults
) -> AttackPhase:
    prepared: list = []  # Locust engines: started before the clock, their start-up not counted
    try:
        return _run_attackers(lab, config, cancel, on_attempt, prepared, writer, faults)
    finally:
        for engine in prepared:
            engine.close()


def _run_attackers(
    lab: Lab,
    config: TrialConfig,
    cancel,
    on_attempt,
    prepared: list,
    writer: AttemptWriter | None,
    faults: Faults,
) -> AttackPhase:
    attempts: list[Attempt] = []
    legit_attempts: list[Attempt] = []
    costs: dict[str, dict] = {}
    processes: dict[str, list[dict]] = {}  # a packet attacker run as several: each one's report
    lock = threading.Lock()

    def sink_for(spec: AttackerSpec) -> Callable[[Attempt], None]:
        # Streamed to the file unless the capture gives it its wire times after the attack.
        streamed = None if spec.keeps_own_clock else writer

        def sink(attempt: Attempt) -> None:
            attempt.attacker = spec.name  # one name per attacker entry, whatever its kind says
            if streamed is not None:
                streamed.add(attempt)
            else:
                with lock:
                    attempts.append(attempt)
            if on_attempt:
                on_attempt(attempt)

        return sink

    address = lab.defender_ip(config.family)
    threads = []
    more_hosts = iter(lab.more_attackers)
    ports = engines.source_port_ranges(config.attackers, config.address_plan())
    for spec, own, mine in zip(config.attackers, _own_addresses(lab, config), ports, strict=True):
        target = Target(address, config.server.port, config.family, spec.path)
        if spec.kind in PACKET_KINDS:  # on its own source ports, in one process or several
            reports = processes.setdefault(spec.name, [])
            threads += engines.process_threads(
                lab, spec, target, own, sink_for(spec), cancel, reports, faults, mine
            )
            continue
        attacker = make_attacker(spec.kind, spec.request, spec.engine)
        if spec.engine == "locust":
            prepared.append(attacker)
            hosts = [next(more_hosts) for _ in range(spec.workers)]
            _prepare_locust(attacker, lab, hosts, target, spec, config, cancel)

        def work(attacker=attacker, spec=spec, target=target, sources=own or None) -> None:
            sink = sink_for(spec)
            costs[spec.name] = attacker.run(lab, target, spec.policy, sink, cancel, sources)

        crash_safe = faults.guarded(f"the {spec.name} attacker", work)
        threads.append(threading.Thread(target=crash_safe, name=f"attacker-{spec.name}"))
    # Attackers run in threads of this one; cancel reaches them through the shared event.
    legit_stop = threading.Event()
    legit_cost: dict = {}
    home = Target(address, config.server.port, config.family, "/")
    legit = legit_thread(
        lab, config.legit, home, legit_attempts.append, legit_stop, cancel, legit_cost, faults
    )
    watcher = AttackerHostSampler(lab, faults)
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration = time.monotonic() - started
    for name, reports in processes.items():
        if reports:
            costs[name] = engines.merged_cost(reports)
    attack_end = time.time()
    if legit and config.duration:  # attackers that stopped early: the legitimate client goes on
        cancel.wait(max(0.0, started + config.duration - time.monotonic()))
    legit_stop.set()
    if legit:
        legit.join()
    host_cost = watcher.stop()
    for name in costs:
        costs[name] = {**costs[name], **host_cost}
    return AttackPhase(attempts, legit_attempts, costs, duration, attack_end, legit_cost)


def _prepare_locust(engine, lab: Lab, hosts: list, target: Target, spec, config, cancel) -> None:
    """Start a Locust engine's master and workers (one in each of `hosts`)."""
    csv = config.locust_csv
    if csv and sum(s.engine == "locust" for s in config.attackers) > 1:
        csv = f"{csv}-{safe_stem(spec.name, 'locust')}"
    placement = lab_placement(lab, hosts, config.family, config.locust_ui)
    engine.prepare(placement, target, spec.policy, cancel, csv)


def _own_addresses(lab: Lab, config: TrialConfig) -> list[list[str]]:
    """Each attacker's addresses of its own (none: it sends from the main address), after the
    legitimate client's extra address 0, in the order of the address plan."""
    found, first = [], 1
    for extra in config.address_plan():
        found.append(
            [lab.addressing.attacker_extra(config.family, i) for i in range(first, first + extra)]
        )
        first += extra
    return found

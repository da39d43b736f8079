"""The schema of summary.json, the one definition: its document name and its row, TrialRow.

The runner writes rows from it (closebench/trials/rows.py); every reader gets rows checked against
it (check_rows): a run directory may have been edited, cut short or written by another version. A
row that is no object or has no trial name is left out; a field of the wrong type (text for a
number, NaN, a list for the outcome counts) is dropped and the row marked failed with the reason,
since its other figures cannot be trusted either; a missing field takes the schema's default, as
rows of older versions lack the fields added since. Each problem is one line for the reader.

The names of the other documents closebench writes are here too. Fields are only ever added
within a schema version.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from functools import cache

# summary.json. /2: breaking points are brackets (status, held_up_to, inconclusive_from), rows
# carry cpu_use and cpu_foreign_reason, the document its `placement`. /1 runs still read.
# attacker_processes_reason of a step whose one packet engine process kept up.
ATTACKER_KEPT_UP = "1 process: it kept up"
SUMMARY_SCHEMA = "closebench.summary/2"
SUMMARY_SCHEMAS_READ = ("closebench.summary/1", SUMMARY_SCHEMA)
PROBE_SCHEMA = "closebench.probe/1"  # closebench probe --json
KERNEL_SCHEMA = "closebench.kernel/1"  # closebench probe --kernel --json
ATTACK_SCHEMA = "closebench.attack/1"  # closebench attack --json
VERIFY_SCHEMA = "closebench.verify/1"  # closebench verify --json


@dataclass
class TrialRow:
    """One row of summary.json: one trial (a strategy, maybe a repetition) of a run.

    Attacker figures cover every attacker of the trial together; `attackers` has them one by one.
    """

    trial: str
    strategy: str | None
    routed: bool
    complete: bool
    error: str | None
    duration_s: float | None
    attempts: int = 0
    attempts_per_s: float = 0.0
    hang_median_s: float | None = None  # every attempt: hang, or its wait to connect (median)
    hang_p95_s: float | None = None
    hang_max_s: float | None = None
    connect_wait_median_s: float | None = None
    connect_wait_p95_s: float | None = None
    slot_median_s: float | None = None
    slot_p95_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    attacker_seconds_wasted: float = 0.0  # the sum of every attempt's slot, every outcome
    connect_waits: int = 0  # attempts that never sent a request
    runs: int | None = None  # command attackers' runs (None: no command attacker)
    runs_per_s: float | None = None
    legit_requests: int = 0
    legit_success_rate: float | None = None
    legit_latency_median_s: float | None = None
    legit_latency_p95_s: float | None = None
    peak_fds: int | None = None
    fd_seconds: float | None = None
    cpu_seconds: float | None = None
    peak_threads: int | None = None
    peak_rss_mb: float | None = None
    peak_orphans: int | None = None
    peak_sockets: int | None = None
    retransmissions: int | None = None
    peak_bans_active: int | None = None  # bans in force at once (nft set size; blacklist: log)
    packets_sent: int | None = None  # by the defender's interfaces, every kind of packet
    cpu_ms_per_attempt: float | None = None  # the defender's CPU per attacker attempt
    peak_router_conntrack: int | None = None  # the router's tracked connections to the port
    peak_router_established: int | None = None  # ... of them ESTABLISHED (null: no router)
    wasted_per_fd_second: float | None = None  # None where the defender held no extra fd
    wasted_per_cpu_second: float | None = None
    sampler_overhead: float | None = None
    # The defender's kernel (/proc/net/sockstat and the TcpExt counters of /proc/net/netstat, read
    # in its namespace): sockets in use and TIME-WAIT at peak; TCP memory at peak, which the kernel
    # counts for the whole machine; the counters as deltas over the trial. None: not sampled.
    peak_tcp_inuse: int | None = None
    peak_time_wait: int | None = None
    peak_tcp_mem_pages: int | None = None
    peak_tcp_mem_bytes: int | None = None
    listen_overflows: int | None = None
    listen_drops: int | None = None
    aborts_on_memory: int | None = None
    aborts_on_timeout: int | None = None
    aborts_on_close: int | None = None
    aborts_on_data: int | None = None
    # EMFILE refusals (the server's count) or 5xx answers to the legitimate client, the larger
    server_errors: int | None = None
    # A sweep (the scenario's [sweep]): the value of its axis in this trial, and the trial's label
    # without it (the key of summary.json's breaking_points). None outside a sweep.
    step: float | None = None
    series: str | None = None
    # The attacking side's own load (trials/harness_load.py): when it, not the server, set the
    # pace, the trial is harness_limited (with the reason) and never a breaking point.
    harness_limited: bool = False
    harness_limited_reason: str | None = None
    harness_cpu_share: float | None = None  # the busiest attacker process or loop, of one core
    harness_loop_lag_p95_s: float | None = None  # the kernel clients' event loops, worst p95
    harness_receive_drops: int | None = None  # packets the packet engine's ring dropped
    harness_local_errors: int | None = None  # the attackers' own failures (EMFILE, ENOBUFS...)
    # Each packet attacker's processes in this step, and why that many (the runner adds one and
    # re-runs the step while one set the pace: trials/attacker_processes.py); None: no packet
    # attacker.
    attacker_processes: int | None = None
    attacker_processes_reason: str | None = None  # ATTACKER_KEPT_UP: one process was enough
    # Each side's CPUs over the attack (lab/cpus.py): {"placement": ..., "defender"/"attackers"
    # (or "both" when they share): {cpus, busy_share, own_share, foreign_share, softirq_share}}.
    # When something outside the run took a real share of a side's CPUs, why (the step is then
    # inconclusive, as a harness-limited one).
    cpu_use: dict = field(default_factory=dict)
    cpu_foreign_reason: str | None = None
    sysctl: dict[str, int] = field(default_factory=dict)  # [defender.sysctl] as set
    # Who ended the attempts (docs/explanation/outcomes.md): ClosedBy value -> attempts; those
    # closebench outlasted (it stopped their client) are left out of the hang figures.
    hang_q1_s: float | None = None  # the hang figures' quartiles (few attempts: see both)
    hang_q3_s: float | None = None
    # the union of the slots: concurrent ones counted once; None in runs from before the figure
    attacker_seconds_busy: float | None = None
    closed_by: dict[str, int] = field(default_factory=dict)
    outlasted: int = 0
    # The tool attackers' own figures (attackers[name].attacker_cost.tool has them per run): the
    # tools and their versions, their wall time over every run, their tries (credential pairs or
    # probes, as their output counts them) per second of it, and how their runs ended (finished,
    # gave up, stopped). None and empty: no tool attacker.
    tool_versions: dict[str, str] = field(default_factory=dict)
    tool_wall_s: float | None = None
    tool_tries: int | None = None
    tool_tries_per_s: float | None = None
    tool_ended: dict[str, int] = field(default_factory=dict)
    # What the abuser learned: the share of attempts that got any byte before the server closed,
    # the commonest first line they got (a banner, a status line) and how many got it.
    received_share: float | None = None
    common_excerpt: str | None = None
    common_excerpt_attempts: int = 0
    attackers: dict[str, dict] = field(default_factory=dict)
    server_stats: dict = field(default_factory=dict)
    # closebench verify: the trial's records against its pcap (results/verify.py); None: unchecked.
    wire_agreement: dict | None = None
    # Ban strategies only (BanSummary); None for the others.
    bans: int | None = None
    banned_addresses: int | None = None
    longest_ban_s: float | None = None
    time_to_ban_median_s: float | None = None
    time_to_ban_max_s: float | None = None
    attempts_before_ban: int | None = None
    attempts_after_ban: int | None = None
    attempts_per_s_after_ban: float | None = None
    syns_dropped: int | None = None
    legit_wrongly_refused: int | None = None
    # The layers in front of the server (defender/drop_layers.py), each from its own counter:
    # packets it dropped (xdp, tc, nft-ban, conn-cap) or took in the server's stead (synproxy:
    # SYNs it answered with a cookie, handshakes' ACKs, invalid packets). The defender's
    # conntrack for the port at the attack's end, and the kernel memory of those entries at
    # least (the slab's object size each); null: not tracked.
    drops_by_layer: dict[str, int] = field(default_factory=dict)
    conntrack_entries: int | None = None
    conntrack_bytes: int | None = None
    # The bans in force, {address, from, until} in Unix time: verify counts the SYNs the capture
    # shows in them against the xdp/tc counters.
    ban_windows: list[dict] = field(default_factory=list)
    # The defender's kernel cost (lab/cpus.py, /proc/stat): softirq seconds on the defender's
    # CPUs over the attack (machine-wide counters: every packet those CPUs handled); per packet a
    # layer dropped (µs), and the defender's CPU (its processes and that softirq) per blocked
    # attempt (ms): attempts after a ban, or refused / syn-timeout ones where a layer blocks.
    softirq_s: float | None = None
    cpu_us_per_drop: float | None = None
    blocked_attempts: int | None = None
    cpu_ms_per_blocked_attempt: float | None = None
    # The parts of the trial that crashed or made no attempt ({part, kind, message} each): the
    # row is then complete = false, its error says the first, and no figure of it is a measurement.
    faults: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check_breaking_points(raw: object, source: str = "summary.json") -> tuple[dict, list[str]]:
    """summary.json's `breaking_points` ({series: {axis, value, reason, steps_judged, status,
    held_up_to, inconclusive_from}}; absent outside a sweep; steps_judged and the bracket's
    fields may be missing, as they were added later), each entry that does not fit left out with
    one line saying so."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"{source}: breaking_points is not an object: left out"]
    kept, problems = {}, []
    for name, point in raw.items():
        fits = (
            isinstance(point, dict)
            and isinstance(point.get("axis"), str)
            and _fits(point.get("value"), float | None)
            and isinstance(point.get("reason"), str)
            and _fits(point.get("steps_judged"), int | None)
            and point.get("status") in (None, "broke", "held", "inconclusive")
            and _fits(point.get("held_up_to"), float | None)
            and _fits(point.get("inconclusive_from"), float | None)
        )
        if fits:
            kept[name] = point
        else:
            problems.append(f"{source}: breaking point of {name!r} is {point!r}: left out")
    return kept, problems


@dataclasses.dataclass
class CheckedRows:
    rows: list[dict]
    problems: list[str]


def check_rows(raw_rows: list, source: str = "summary.json") -> CheckedRows:
    checked = CheckedRows([], [])
    for number, raw in enumerate(raw_rows, 1):
        if not isinstance(raw, dict) or not isinstance(raw.get("trial"), str) or not raw["trial"]:
            checked.problems.append(f"{source}: row {number} has no trial name: left out")
            continue
        row, wrong = _checked_row(raw)
        for name in wrong:
            checked.problems.append(
                f"{source}: trial {row['trial']!r}: {name} is {raw[name]!r}, not "
                f"{_type_text(_hints()[name])}: the row is shown as failed"
            )
        if wrong and not row.get("error"):
            row["error"] = f"summary.json has a wrong {wrong[0]} for this trial"
            row["complete"] = False
        checked.rows.append(row)
    return checked


def _checked_row(raw: dict) -> tuple[dict, list[str]]:
    row = dict(raw)  # fields this version does not know are kept as they are
    wrong = []
    for row_field in dataclasses.fields(TrialRow):
        hint = _hints()[row_field.name]
        if row_field.name not in raw:
            row[row_field.name] = _default(row_field)
        elif not _fits(raw[row_field.name], hint):
            wrong.append(row_field.name)
            row[row_field.name] = _default(row_field) if _optional(hint) else _empty(row_field)
    return row, wrong


@cache
def _hints() -> dict[str, object]:
    return typing.get_type_hints(TrialRow)


def _default(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return False if _hints()[field.name] is bool else None


def _empty(field: dataclasses.Field) -> object:
    """A wrong value's stand-in where the schema allows no null: nothing measured."""
    hint = _hints()[field.name]
    if typing.get_origin(hint) is list:
        return []
    return {} if typing.get_origin(hint) is dict or hint is dict else None


def _optional(hint: object) -> bool:
    return type(None) in typing.get_args(hint)


def _fits(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        return hint is float or float(value).is_integer()
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return False
        arguments = typing.get_args(hint)
        return not arguments or all(
            isinstance(key, str) and _fits(item, arguments[1]) for key, item in value.items()
        )
    if origin is list:
        arguments = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(item, arguments[0]) for item in value)
    return True  # a kind of field this check does not know: taken as it is


def _type_text(hint: object) -> str:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)] if union else [hint]
    names: dict[object, str] = {
        int: "a whole number",
        float: "a number",
        str: "text",
        bool: "true or false",
    }
    text = " or ".join(names.get(arm, "an object") for arm in arms)
    return text + (" or null" if _optional(hint) else "")

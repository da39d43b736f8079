"""The numeric figures of a summary row, for comparing runs and checking them: which direction of
each is worse for the defender, and what change is too small to mean anything (its resolution).

Every numeric field of the row (closebench/results/schema.py TrialRow) is a figure; KNOWN_FIGURES
gives those it knows their direction, resolution and meaning. Shared by `closebench compare` and
`closebench check`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from closebench.results.schema import TrialRow

HIGHER = "higher"  # which direction of a figure is worse for the defender
LOWER = "lower"


@dataclass(frozen=True)
class Figure:
    """One numeric figure of a summary row."""

    name: str
    worse: str | None  # HIGHER, LOWER, or None: neither direction is a regression
    resolution: float  # changes up to this size are measurement noise, never a regression
    meaning: str
    null_is_unbounded: bool = False  # null means "infinitely good", not "not measured"
    relative: float = 0.0  # ...and so are changes up to this share of the base value

    def noise(self, base: float) -> float:
        """The largest change from `base` that is still measurement noise."""
        return max(self.resolution, self.relative * abs(base))

    def resolution_text(self) -> str:
        if not self.relative:
            return number(self.resolution)
        floor = f", at least {number(self.resolution)}" if self.resolution else ""
        return f"{self.relative:.0%} of the base value{floor}"


TAIL = 0.25  # s: the resolution of a timing tail (p95, max) on a loaded machine

KNOWN_FIGURES: tuple[Figure, ...] = (
    Figure("duration_s", None, 0.5, "seconds the trial's attackers ran"),
    # A loaded machine slows the attackers by a few percent (measured: docs/guides/ci.md).
    Figure("attempts", HIGHER, 2, "attempts of every attacker together", relative=0.05),
    Figure("attempts_per_s", HIGHER, 0.05, "attempts per second the abuser managed", relative=0.05),
    Figure("hang_median_s", LOWER, 0.05, "median s an attempt hung (or waited to connect)"),
    # Tails and extremes take a loaded machine's scheduling stalls (up to ~0.2 s seen).
    Figure("hang_p95_s", LOWER, TAIL, "95th percentile of the hang"),
    Figure("hang_max_s", LOWER, TAIL, "longest hang"),
    Figure("connect_wait_median_s", LOWER, 0.05, "median s from first SYN to established or end"),
    Figure("connect_wait_p95_s", LOWER, TAIL, "95th percentile of the connect wait"),
    Figure("slot_median_s", LOWER, 0.05, "median s of an attempt, first SYN to end"),
    Figure("slot_p95_s", LOWER, TAIL, "95th percentile of the slot"),
    Figure("attacker_seconds_wasted", LOWER, 1.0, "every attempt's slot, summed"),
    Figure("attacker_seconds_busy", LOWER, 1.0, "the union of the slots: time any was open"),
    Figure("hang_q1_s", LOWER, 0.05, "first quartile of the hang"),
    Figure("hang_q3_s", LOWER, 0.05, "third quartile of the hang"),
    Figure("outlasted", None, 2, "attempts still open when closebench stopped their client"),
    # What the abuser learned (no worse direction: a served abuser got what it asked).
    Figure("received_share", None, 0.05, "share of attempts that got any byte before the end"),
    Figure("common_excerpt_attempts", None, 2, "attempts that got the commonest first line"),
    Figure("connect_waits", None, 2, "attempts that never sent a request"),
    Figure("runs", HIGHER, 2, "command runs (curl, browser page loads)", relative=0.05),
    Figure("runs_per_s", HIGHER, 0.05, "command runs per second", relative=0.05),
    # A tool's progress: the more tries it gets through, the worse for the defender.
    Figure("tool_wall_s", None, 0.5, "the tool attackers' wall time over their runs"),
    Figure("tool_tries", HIGHER, 2, "the tools' tries, as they count them", relative=0.10),
    Figure("tool_tries_per_s", HIGHER, 0.5, "the tools' tries per second", relative=0.10),
    Figure("legit_requests", None, 2, "legitimate requests made"),
    Figure("legit_success_rate", LOWER, 0.0, "share of legitimate requests answered 200"),
    # A few requests per trial on a busy machine: tens of ms of jitter are normal.
    Figure("legit_latency_median_s", HIGHER, 0.01, "median legitimate latency, s"),
    Figure("legit_latency_p95_s", HIGHER, 0.05, "95th percentile legitimate latency, s"),
    Figure("peak_fds", HIGHER, 2, "defender fds at peak"),
    # A sampled integral: short-lived fds are caught at a sample more or less, more of them on a
    # loaded machine (0.2 to 3 fd-s seen for graceful over 30 unchanged runs).
    Figure("fd_seconds", HIGHER, 2.0, "fds above idle, integrated over time"),
    Figure("cpu_seconds", HIGHER, 0.05, "defender CPU seconds"),
    Figure("peak_threads", HIGHER, 1, "defender threads at peak"),
    Figure("peak_rss_mb", HIGHER, 2.0, "defender memory at peak, MB"),
    Figure("peak_orphans", HIGHER, 1, "orphan sockets at peak"),
    Figure("peak_sockets", HIGHER, 2, "defender kernel sockets at peak"),
    Figure("retransmissions", HIGHER, 2, "segments the defender retransmitted"),
    # Legitimate clients' packets count too: a few a second.
    Figure("packets_sent", HIGHER, 10, "packets the defender sent, every kind"),
    Figure("cpu_ms_per_attempt", HIGHER, 0.0, "defender CPU ms per attempt", relative=0.5),
    # Routed trials only (null without a router).
    Figure("peak_router_conntrack", HIGHER, 2, "connections the router tracked at peak"),
    Figure("peak_router_established", HIGHER, 2, "of them ESTABLISHED, at peak"),
    # Ratios inherit their inputs' noise; CPU time comes in 10 ms ticks, so a small
    # denominator swings its ratio widely.
    Figure("wasted_per_fd_second", LOWER, 0.0, "attacker s per defender fd-s", True, 0.2),
    Figure("wasted_per_cpu_second", LOWER, 0.0, "attacker s per defender CPU s", True, 0.5),
    Figure("sampler_overhead", None, 0.01, "the sampler's CPU, share of one core"),
    # The defender's kernel: sockstat (TCP memory is the whole machine's) and TcpExt deltas.
    Figure("peak_tcp_inuse", HIGHER, 2, "defender TCP sockets in use at peak (sockstat)"),
    Figure("peak_time_wait", HIGHER, 2, "defender TIME-WAIT sockets at peak (sockstat)"),
    Figure("peak_tcp_mem_pages", HIGHER, 0, "machine's TCP memory at peak, pages", relative=0.2),
    Figure("peak_tcp_mem_bytes", HIGHER, 0, "machine's TCP memory at peak, bytes", relative=0.2),
    Figure("listen_overflows", HIGHER, 0, "SYNs or ACKs met a full accept queue (TcpExt)"),
    Figure("listen_drops", HIGHER, 0, "connections dropped at the listener (TcpExt)"),
    Figure("aborts_on_memory", HIGHER, 0, "sockets killed: too many orphans or tcp_mem"),
    Figure("aborts_on_timeout", HIGHER, 0, "connections given up after retransmitting"),
    Figure("aborts_on_close", None, 0, "RSTs for a close with unread data"),
    Figure("aborts_on_data", None, 0, "RSTs for SO_LINGER 0 or data after close"),
    Figure("server_errors", HIGHER, 0, "EMFILE refusals or 5xx to the legitimate client"),
    # The harness's own load (a harness-limited trial says nothing about the server).
    Figure("harness_cpu_share", None, 0.05, "busiest attacker process or loop, share of a core"),
    Figure("harness_loop_lag_p95_s", None, 0.01, "kernel clients' event-loop lag, p95 s"),
    Figure("harness_receive_drops", None, 0, "packets the packet engine's ring dropped"),
    Figure("harness_local_errors", None, 0, "attackers' own failures (EMFILE, ENOBUFS...)"),
    Figure("attacker_processes", None, 0, "processes each packet attacker ran as"),
    # Ban strategies only (null for the others).
    Figure("peak_bans_active", HIGHER, 1, "bans in force at once"),
    Figure("time_to_ban_median_s", HIGHER, 0.05, "median s from first attempt to ban"),
    Figure("time_to_ban_max_s", HIGHER, 0.05, "longest s from first attempt to ban"),
    Figure("attempts_after_ban", HIGHER, 2, "attempts started while banned"),
    Figure("attempts_per_s_after_ban", HIGHER, 0.05, "attempts/s per banned address"),
    Figure("legit_wrongly_refused", HIGHER, 0, "legitimate requests refused by a ban"),
    # Counts that describe the bans rather than grade them: no worse direction.
    Figure("bans", None, 0, "bans put in force (an address banned twice counts twice)"),
    Figure("banned_addresses", None, 0, "addresses banned at least once"),
    Figure("longest_ban_s", None, 0, "the longest ban put in force, s"),
    Figure("attempts_before_ban", None, 0, "attempts started before their address's first ban"),
    Figure("syns_dropped", None, 0, "SYNs the ban firewall dropped or rejected (fw-*)"),
    Figure("step", None, 0, "a sweep's step: the value of its axis in this trial"),
    # The layers in front of the server and the defender's kernel cost (drops_by_layer: a dict).
    Figure("conntrack_entries", HIGHER, 2, "defender's tracked connections at the attack's end"),
    Figure("conntrack_bytes", HIGHER, 512, "their kernel memory at least, bytes"),
    # softirq time counts in 10 ms ticks, and other labs' packets on the same CPUs add to it.
    Figure("softirq_s", HIGHER, 0.05, "softirq s on the defender's CPUs over the attack"),
    Figure("cpu_us_per_drop", HIGHER, 0.0, "softirq µs per packet a layer dropped", relative=0.5),
    Figure("blocked_attempts", None, 0, "attempts blocked (after a ban, or refused/unanswered)"),
    Figure(
        "cpu_ms_per_blocked_attempt",
        HIGHER,
        0.0,
        "defender CPU ms (processes and softirq) per blocked attempt",
        relative=0.5,
    ),
)


def numeric_row_fields() -> list[str]:
    """The summary row's numeric fields, in schema order (booleans, dicts and text are not)."""
    hints = typing.get_type_hints(TrialRow)
    names = []
    for row_field in dataclasses.fields(TrialRow):
        kinds = set(typing.get_args(hints[row_field.name]) or [hints[row_field.name]])
        kinds.discard(type(None))
        if kinds and kinds <= {int, float}:
            names.append(row_field.name)
    return names


def row_figures() -> tuple[Figure, ...]:
    """Every numeric figure of the row: a new one is comparable and checkable at once, with no
    worse direction until it gets an entry in KNOWN_FIGURES."""
    known = {figure.name: figure for figure in KNOWN_FIGURES}
    return tuple(
        known.get(name) or Figure(name, None, 0.0, "no worse direction defined")
        for name in numeric_row_fields()
    )


FIGURES = row_figures()
FIGURE_BY_NAME = {figure.name: figure for figure in FIGURES}


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def outcomes_text(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in outcomes.items()) or "-"

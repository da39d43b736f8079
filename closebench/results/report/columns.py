"""The report's tables: which summary figures they show, under which headers, formatted how.

One definition for the HTML page and summary.md. Also the Locust engine's workers, one row per
worker, from the attacker's entry in summary.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from closebench.results.run_directory import TrialData, is_number


def fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


def whole(value: float) -> str:
    return f"{value:.0f}"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def millis(value: float) -> str:
    return f"{1000 * value:.1f}"


def outcome_counts(value: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in value.items() if count) or "none"


@dataclass(frozen=True)
class Column:
    key: str  # the summary.json row field
    header: str
    group: str
    show: Callable[[Any], str]  # takes the row's JSON value, whose type depends on the key
    missing: str = "-"  # shown for null
    note: Callable[[dict], str] | None = None  # added after the value, from the whole row

    def cell(self, row: dict) -> str:
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return self.missing
        return self.show(value) + (self.note(row) if self.note else "")


def outlasted_note(row: dict) -> str:
    """The attempts closebench outlasted, beside the outcome counts they are part of."""
    count = row.get("outlasted")
    return f" (outlasted {count})" if is_number(count) and count else ""


EXCERPT_SHOWN = 24  # characters of the commonest excerpt a table cell shows


def excerpt_note(row: dict) -> str:
    """The commonest first line the server sent, beside the share of attempts that got bytes."""
    text = row.get("common_excerpt")
    if not isinstance(text, str) or not text:
        return ""
    cut = text if len(text) <= EXCERPT_SHOWN else text[: EXCERPT_SHOWN - 1] + "…"
    return f' "{cut}"'


COLUMNS = (
    Column("attempts", "attempts", "attacker", whole),
    Column("attempts_per_s", "attempts/s", "attacker", fixed(2)),
    Column("hang_median_s", "hang median (s)", "attacker", fixed(3)),
    Column("hang_p95_s", "hang p95 (s)", "attacker", fixed(3)),
    Column("hang_max_s", "hang max (s)", "attacker", fixed(3)),
    Column("connect_wait_median_s", "connect wait median (s)", "attacker", fixed(3)),
    Column("slot_median_s", "slot median (s)", "attacker", fixed(3)),
    Column("outcomes", "outcomes", "attacker", outcome_counts, note=outlasted_note),
    Column("closed_by", "closed by", "attacker", outcome_counts),
    Column("attacker_seconds_wasted", "seconds wasted", "attacker", fixed(1)),
    Column("attacker_seconds_busy", "seconds busy (union)", "attacker", fixed(1)),
    # What the abuser learned before the server closed: a strategy that closes fast can still
    # tell it what it is (a banner, a status line).
    Column("received_share", "got bytes", "attacker", percent, note=excerpt_note),
    Column("legit_requests", "requests", "legitimate clients", whole),
    Column("legit_success_rate", "answered", "legitimate clients", percent),
    Column("legit_latency_median_s", "latency median (ms)", "legitimate clients", millis),
    Column("legit_latency_p95_s", "latency p95 (ms)", "legitimate clients", millis),
    Column("peak_fds", "peak fds", "defender", whole),
    Column("fd_seconds", "fd-s", "defender", fixed(1)),
    Column("cpu_seconds", "CPU s", "defender", fixed(2)),
    Column("peak_threads", "peak threads", "defender", whole),
    Column("peak_rss_mb", "peak RSS (MiB)", "defender", fixed(1)),
    Column("peak_orphans", "peak orphans", "defender", whole),
    Column("peak_sockets", "peak sockets", "defender", whole),
    Column("retransmissions", "retransmits", "defender", whole),
    Column("packets_sent", "packets sent", "defender", whole),
    Column("cpu_ms_per_attempt", "CPU ms per attempt", "defender", fixed(2)),
    Column("wasted_per_fd_second", "wasted s per fd-s", "asymmetry", fixed(2), "no fd held"),
    Column("wasted_per_cpu_second", "wasted s per CPU s", "asymmetry", fixed(1), "no CPU"),
    Column("sampler_overhead", "sampler CPU", "harness", percent),
    Column("harness_limited", "harness-limited", "harness", lambda v: "yes" if v else "no"),
    Column("harness_cpu_share", "attacker CPU (of a core)", "harness", percent),
    Column("harness_loop_lag_p95_s", "loop lag p95 (ms)", "harness", millis),
)
# Shown as a table of its own when some trial ran a tool attacker (its tool_wall_s is not null):
# the tool's figures, beside the attacker time they cost on the wire (union and sum).
TOOL_COLUMNS = (
    Column("tool_versions", "tool", "tool", lambda v: ", ".join(f"{k} {x}" for k, x in v.items())),
    Column("tool_wall_s", "tool time (s)", "tool", fixed(1)),
    Column("tool_tries", "tries", "tool", whole),
    Column("tool_tries_per_s", "tries/s", "tool", fixed(2)),
    Column("tool_ended", "runs ended", "tool", outcome_counts),
)
COLUMN_BY_KEY = {column.key: column for column in COLUMNS + TOOL_COLUMNS}
# Shown as a table of its own when the defender's kernel was sampled (/proc/net/sockstat and
# the TcpExt counters; TCP memory is the whole machine's).
KERNEL_COLUMNS = (
    Column("peak_tcp_inuse", "TCP in use at peak", "kernel", whole),
    Column("peak_time_wait", "TIME-WAIT at peak", "kernel", whole),
    Column(
        "peak_tcp_mem_bytes",
        "TCP memory at peak, machine (KiB)",
        "kernel",
        lambda v: f"{v / 1024:.0f}",
    ),
    Column("listen_overflows", "listen overflows", "kernel", whole),
    Column("listen_drops", "listen drops", "kernel", whole),
    Column("aborts_on_memory", "aborts on memory", "kernel", whole),
    Column("aborts_on_timeout", "aborts on timeout", "kernel", whole),
    Column("aborts_on_close", "RST on close (unread data)", "kernel", whole),
    Column("aborts_on_data", "RST on close (linger 0)", "kernel", whole),
    Column("server_errors", "server errors", "kernel", whole),
)
# Shown as a third table when some trial banned (its `bans` is not null).
BAN_COLUMNS = (
    Column("bans", "bans", "bans", whole),
    Column("banned_addresses", "addresses banned", "bans", whole),
    Column("time_to_ban_median_s", "time to ban (s)", "bans", fixed(3)),
    Column("attempts_before_ban", "attempts before ban", "bans", whole),
    Column("attempts_per_s_after_ban", "attempts/s after ban", "bans", fixed(2)),
    Column("syns_dropped", "SYNs dropped", "bans", whole),
    Column("peak_bans_active", "peak bans active", "bans", whole),
    Column("legit_wrongly_refused", "legit wrongly refused", "bans", whole),
)
# Shown as a table of its own when some trial ran across the lab's router.
ROUTER_COLUMNS = (
    Column("peak_router_conntrack", "tracked at peak", "router", whole),
    Column("peak_router_established", "established at peak", "router", whole),
)
# Shown as a table of its own when some layer stood in front of the server (drops_by_layer):
# what each dropped, conntrack, and the defender's kernel cost (drop_layers.py, lab/cpus.py).
LAYER_COLUMNS = (
    Column("drops_by_layer", "dropped, by layer", "layers", outcome_counts),
    Column("conntrack_entries", "conntrack entries", "layers", whole),
    Column("conntrack_bytes", "conntrack KiB", "layers", lambda v: f"{v / 1024:.1f}"),
    Column("softirq_s", "softirq s (defender CPUs)", "layers", fixed(2)),
    Column("cpu_us_per_drop", "softirq µs per drop", "layers", fixed(2)),
    Column("blocked_attempts", "blocked attempts", "layers", whole),
    Column("cpu_ms_per_blocked_attempt", "CPU ms per blocked attempt", "layers", fixed(3)),
)
# The HTML splits the table in two so that it fits a screen; summary.md keeps one.
TABLES = (
    ("The attacker and the legitimate clients", ("attacker", "legitimate clients")),
    ("The defender and the cost asymmetry", ("defender", "asymmetry", "harness")),
)


def column_groups(columns: list[Column]) -> list[tuple[str, int]]:
    """(group, number of columns) in order, for a table's grouped header."""
    groups: list[tuple[str, int]] = []
    for column in columns:
        if groups and groups[-1][0] == column.group:
            groups[-1] = (column.group, groups[-1][1] + 1)
        else:
            groups.append((column.group, 1))
    return groups


def html_tables(trials: list[TrialData], palette) -> list[dict]:
    tables = []
    banned = any(t.row.get("bans") is not None for t in trials)
    routed = any(t.row.get("peak_router_conntrack") is not None for t in trials)
    kernel = any(t.row.get("peak_tcp_inuse") is not None for t in trials)
    extra = ((("Bans", ("bans",)),) if banned else ()) + (
        (("The router's connection tracking", ("router",)),) if routed else ()
    )
    extra += (("The defender's kernel", ("kernel",)),) if kernel else ()
    layered = any(t.row.get("drops_by_layer") for t in trials)
    extra += (("Layers in front of the server and their kernel cost", ("layers",)),) * layered
    tools = any(t.row.get("tool_wall_s") is not None for t in trials)
    extra += (("The abuse tools", ("tool",)),) if tools else ()
    every = COLUMNS + BAN_COLUMNS + ROUTER_COLUMNS + KERNEL_COLUMNS + LAYER_COLUMNS + TOOL_COLUMNS
    for title, groups in TABLES + extra:
        columns = [c for c in every if c.group in groups]
        rows = [
            {
                "name": t.name,
                "color": palette.color(t.name),
                "error": t.row.get("error"),
                "cells": [(c.cell(t.row), c.key == "outcomes") for c in columns],
            }
            for t in trials
        ]
        tables.append(
            {"title": title, "columns": columns, "groups": column_groups(columns), "rows": rows}
        )
    return tables


WORKER_HEADERS = ("trial", "attacker", "worker", "addresses", "attempts", "attempts/s", "outcomes")


@dataclass(frozen=True)
class WorkerRow:
    trial: str
    attacker: str
    worker: str
    addresses: str
    attempts: str
    rate: str
    outcomes: str
    lost: str | None  # when and how the worker was lost, or None

    @property
    def cells(self) -> tuple[str, ...]:
        return (
            self.trial,
            self.attacker,
            self.worker,
            self.addresses,
            self.attempts,
            self.rate,
            self.outcomes,
        )


def worker_rows(trials: list[TrialData]) -> list[WorkerRow]:
    """Every Locust worker of every trial (attackers[name].attacker_cost.workers); entries a
    damaged summary.json made unreadable are left out."""
    rows = []
    for trial in trials:
        for name, attacker in (trial.row.get("attackers") or {}).items():
            cost = attacker.get("attacker_cost") if isinstance(attacker, dict) else None
            workers = cost.get("workers") if isinstance(cost, dict) else None
            for worker in workers if isinstance(workers, list) else []:
                row = _worker_row(trial.name, name, worker)
                if row is not None:
                    rows.append(row)
    return rows


def _worker_row(trial: str, attacker: str, worker: object) -> WorkerRow | None:
    if not isinstance(worker, dict) or not is_number(worker.get("attempts_per_s")):
        return None
    outcomes = worker.get("outcomes")
    lost = None
    if worker.get("lost"):
        when = worker.get("lost_s")
        lost = f"lost {when:.1f} s in: {worker['lost']}" if is_number(when) else worker["lost"]
    return WorkerRow(
        trial=trial,
        attacker=attacker,
        worker=str(worker.get("worker", "?")),
        addresses=", ".join(map(str, worker.get("addresses") or [])) or "-",
        attempts=str(worker.get("attempts", "-")),
        rate=fixed(2)(worker["attempts_per_s"]),
        outcomes=outcome_counts(outcomes if isinstance(outcomes, dict) else {}),
        lost=lost,
    )

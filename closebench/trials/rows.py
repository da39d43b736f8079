"""A trial's row of summary.json, made from its result: the attackers' figures together, the
legitimate clients', the defender's and the cost asymmetry."""

from __future__ import annotations

from closebench.defender.sysctl import for_trial
from closebench.results.schema import TrialRow
from closebench.trials.trial import TrialConfig, TrialResult


def trial_row(trial: TrialConfig, result: TrialResult) -> TrialRow:
    everything = result.overall
    assert everything is not None  # TrialResult.__post_init__ fills it in
    wasted = everything.attacker_seconds_wasted
    defender = result.defender
    row = TrialRow(
        trial=trial.name,
        strategy=strategy_name(trial),
        routed=trial.routed,
        complete=result.complete,
        error="; ".join(str(fault) for fault in result.faults) or None,
        duration_s=result.duration_s,
        attempts=everything.attempts,
        attempts_per_s=everything.attempts_per_s,
        hang_median_s=everything.hang_median_s,
        hang_p95_s=everything.hang_p95_s,
        hang_max_s=everything.hang_max_s,
        connect_wait_median_s=everything.connect_wait_median_s,
        connect_wait_p95_s=everything.connect_wait_p95_s,
        slot_median_s=everything.slot_median_s,
        slot_p95_s=everything.slot_p95_s,
        outcomes=everything.outcomes,
        attacker_seconds_wasted=wasted,
        connect_waits=everything.connect_waits,
        runs=everything.runs,
        runs_per_s=everything.runs_per_s,
        hang_q1_s=everything.hang_q1_s,
        hang_q3_s=everything.hang_q3_s,
        attacker_seconds_busy=everything.attacker_seconds_busy,
        closed_by=everything.closed_by,
        outlasted=everything.outlasted,
        received_share=everything.received_share,
        common_excerpt=everything.common_excerpt,
        common_excerpt_attempts=everything.common_excerpt_attempts,
        sampler_overhead=result.sampler_overhead,
        attackers={name: s.to_dict() for name, s in result.summaries.items()},
        server_stats=result.server_stats,
        server_errors=server_errors(result),
        step=trial.step,
        series=trial.series,
        sysctl=for_trial(trial.server.sysctl, trial.server.spec),  # syncookies=... included
        faults=[fault.to_dict() for fault in result.faults],
        attacker_processes=result.attacker_processes,
        attacker_processes_reason=result.attacker_processes_reason,
    )
    if result.legit:
        row.legit_requests = result.legit.requests
        row.legit_success_rate = result.legit.success_rate
        row.legit_latency_median_s = result.legit.latency_median_s
        row.legit_latency_p95_s = result.legit.latency_p95_s
    if defender:
        for name, value in defender_figures(defender, wasted, everything.attempts).items():
            setattr(row, name, value)
    for name, value in result.harness.row_fields().items():
        setattr(row, name, value)
    if result.bans:
        for name, value in result.bans.to_dict().items():
            setattr(row, name, value)
    for name, value in layer_figures(result, row).items():
        setattr(row, name, value)
    for name, value in tool_figures(result).items():
        setattr(row, name, value)
    return row


def layer_figures(result: TrialResult, row: TrialRow) -> dict:
    """What each layer in front of the server dropped, the bans' windows (for verify) and the
    defender's kernel cost: softirq on its CPUs, per packet dropped and per blocked attempt."""
    layers = result.layers
    figures: dict = {
        "drops_by_layer": dict(layers.drops),
        "conntrack_entries": layers.conntrack_entries,
        "conntrack_bytes": layers.conntrack_bytes,
        "ban_windows": ban_windows(result.ban_log),
    }
    side = row.cpu_use.get("defender") or row.cpu_use.get("both") or {}
    softirq = side.get("softirq_s") if isinstance(side, dict) else None
    if not isinstance(softirq, int | float):
        return figures
    figures["softirq_s"] = softirq
    figures["cpu_us_per_drop"] = ratio(1e6 * softirq, sum(layers.drops.values()))
    blocked = blocked_attempts(row, bool(layers.drops))
    figures["blocked_attempts"] = blocked
    if blocked is not None:
        spent = softirq + (row.cpu_seconds or 0.0)
        figures["cpu_ms_per_blocked_attempt"] = ratio(1000 * spent, blocked)
    return figures


def blocked_attempts(row: TrialRow, layered: bool) -> int | None:
    """Attempts a block met: those after their address's ban (a ban strategy), else, where a
    layer stands in front of the server, those refused or never answered; None: no block."""
    if row.attempts_after_ban is not None:
        return row.attempts_after_ban
    if layered:
        return row.outcomes.get("refused", 0) + row.outcomes.get("syn-timeout", 0)
    return None


def ban_windows(ban_log: list[dict]) -> list[dict]:
    """The bans put in force: {address, from, until} in Unix time."""
    return [
        {
            "address": ban["address"],
            "from": ban["t_effective"],
            "until": ban["t_effective"] + ban["duration_s"],
        }
        for ban in ban_log
        if ban.get("t_effective") is not None
    ]


def tool_figures(result: TrialResult) -> dict:
    """The row's tool fields, from every tool attacker's attacker_cost.tool (attackers/tools.py)."""
    tools = [
        s.attacker_cost["tool"] for s in result.summaries.values() if "tool" in s.attacker_cost
    ]
    if not tools:
        return {}
    wall = sum(tool["wall_s"] for tool in tools)
    tries = sum(tool["tries"] for tool in tools)
    ended: dict[str, int] = {}
    for tool in tools:
        for how, count in tool["ended"].items():
            ended[how] = ended.get(how, 0) + count
    return {
        "tool_versions": {tool["name"]: tool["version"] or "unknown" for tool in tools},
        "tool_wall_s": wall,
        "tool_tries": tries,
        "tool_tries_per_s": tries / wall if wall > 0 else None,
        "tool_ended": ended,
    }


def server_errors(result: TrialResult) -> int:
    """The server's EMFILE refusals (its own count; each answered 503), or, for a server that
    counts none (a peer, a command), the 5xx answers the legitimate client got: the larger."""
    refused = result.server_stats.get("refused_emfile")
    refused = refused if isinstance(refused, int) else 0
    legit_5xx = result.legit.server_errors if result.legit else 0
    return max(refused, legit_5xx)


def strategy_name(trial: TrialConfig) -> str | None:
    return str(trial.server.spec) if trial.server.spec else None


def defender_figures(defender, wasted: float, attempts: int) -> dict:
    """The summary row's defender fields (a metrics.DefenderCost), the cost asymmetry (the
    attacker's `wasted` seconds per defender fd-second and CPU second) and the defender's CPU per
    attempt."""
    return {
        **defender.to_dict(),
        "wasted_per_fd_second": ratio(wasted, defender.fd_seconds),
        "wasted_per_cpu_second": ratio(wasted, defender.cpu_seconds),
        "cpu_ms_per_attempt": ratio(1000 * defender.cpu_seconds, attempts),
    }


def ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator, or None when the denominator is nothing measurable."""
    if denominator is None or denominator <= 1e-9:
        return None
    return numerator / denominator

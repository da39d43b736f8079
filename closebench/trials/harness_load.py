"""The attacking side's own load in a trial: was the harness, not the server, the limit?

Each attacker reports what running it cost (its `attacker_cost`): the kernel clients (attackers
and the legitimate client, asyncio in the runner's threads) their thread's CPU share, how late
their event loop woke, and their own failures (no fd, no port); the packet engine (scapy, volume)
its process's CPU and the packets its receive ring dropped. A trial where one of them was
saturated measured the harness: it is marked harness_limited, with the reason, and never counts
as a breaking point (results/breaking_points.py).

The machine's own load (lab/cpus.py): when something outside the run took a real share of either
side's CPUs over the attack (FOREIGN_LIMIT), the step is inconclusive too (foreign_reason), as
the server and the attack both ran on what was left.

Not measured: SYN retransmissions the packet engine sent late (it keeps no per-timer lateness),
and the command, browser and Locust attackers' own load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from closebench.lab.cpus import CpuUse

# An event loop this late (p95) starts attempts late and times answers late by as much: a quarter
# of the default breaking latency (1 s). Lags below it are a shared machine's ordinary noise.
LAG_LIMIT_S = 0.25
CPU_LIMIT = 0.9  # a loop or process busy this share of one core sets the pace itself
# Work outside the run taking this share of a side's CPUs leaves the trial a machine it did not
# plan for: a quarter of the CPUs is more than a shared machine's background (a few percent).
FOREIGN_LIMIT = 0.25


@dataclass
class HarnessLoad:
    cpu_share: float | None = None  # the busiest attacker loop or process, of one core
    loop_lag_p95_s: float | None = None  # the latest kernel client's event loop, p95
    receive_drops: int | None = None  # packets the packet engine's ring dropped
    local_errors: int | None = None  # the clients' own failures that started no connection
    reasons: list[str] = field(default_factory=list)
    cpu_use: dict = field(default_factory=dict)  # each side's CPUs over the attack (CpuUse)
    foreign: str | None = None  # why the machine's own load made the trial inconclusive

    def add_cpu_use(self, use: CpuUse | None) -> None:
        if use is not None:
            self.cpu_use = use.to_dict()
            self.foreign = foreign_reason(use)

    @property
    def limited(self) -> bool:
        return bool(self.reasons)

    def row_fields(self) -> dict:
        """The summary row's harness_* fields."""
        return {
            "harness_limited": self.limited,
            "harness_limited_reason": "; ".join(self.reasons) or None,
            "harness_cpu_share": self.cpu_share,
            "harness_loop_lag_p95_s": self.loop_lag_p95_s,
            "harness_receive_drops": self.receive_drops,
            "harness_local_errors": self.local_errors,
            "cpu_use": self.cpu_use,
            "cpu_foreign_reason": self.foreign,
        }


def harness_load(costs: dict[str, dict], cpu_use: CpuUse | None = None) -> HarnessLoad:
    """From each client's cost ("the spammer attacker", "the legitimate client" -> its cost) and
    what each side's CPUs did over the attack."""
    load = HarnessLoad()
    for name, cost in costs.items():
        _one(load, name, cost)
    load.add_cpu_use(cpu_use)
    return load


def _one(load: HarnessLoad, name: str, cost: dict) -> None:
    share = cost.get("cpu_share")
    if share is None and "cpu_user_s" in cost and cost.get("elapsed_s"):  # the packet engine
        share = (cost["cpu_user_s"] + cost.get("cpu_system_s", 0.0)) / cost["elapsed_s"]
    if share is not None:
        load.cpu_share = max(load.cpu_share or 0.0, round(share, 3))
        if share >= CPU_LIMIT:
            load.reasons.append(f"{name} used {share:.0%} of a core")
    lag = cost.get("loop_lag_p95_s")
    if lag is not None:
        load.loop_lag_p95_s = max(load.loop_lag_p95_s or 0.0, lag)
        if lag > LAG_LIMIT_S:
            load.reasons.append(f"{name}'s event loop ran {lag:.2f} s late (p95)")
    drops = cost.get("receive_drops")
    if drops is not None:
        load.receive_drops = (load.receive_drops or 0) + drops
        if drops:
            load.reasons.append(f"{name}'s packet socket dropped {drops} packets")
    errors = cost.get("local_errors")
    if errors is not None:
        load.local_errors = (load.local_errors or 0) + errors
        if errors:
            kinds = ", ".join(sorted(cost.get("local_error_kinds") or {}))
            load.reasons.append(f"{name} failed {errors} times on its own side ({kinds})")


def foreign_reason(use: CpuUse | None) -> str | None:
    """Why something outside the run made the trial inconclusive (None: nothing did)."""
    if use is None:
        return None
    names = {"defender": "the defender's", "attackers": "the attackers'", "both": "the shared"}
    busy = [
        f"{share.foreign_share:.0%} of {names[side]} CPUs ({share.cpus})"
        for side, share in use.sides.items()
        if share.foreign_share >= FOREIGN_LIMIT
    ]
    if not busy:
        return None
    return "something outside the run used " + " and ".join(busy)

"""An attacker that keeps up: a packet attacker run as several processes, and when to add one.

A packet attacker (scapy, volume) is one engine in one process: when that process is saturated
(90% of a core, or packets its ring dropped) the step measured the harness, not the server. The
runner then re-runs the whole step with one process more (never changes a step while it runs),
each process its own engine on the attackers' CPUs with its share of the connections in flight,
of the rate and of the attempts, and its own slice of the source ports, until the step is not
harness-limited or there is a process per attacker CPU (more would only share a CPU), which the
step then states. The count and why are each row's `attacker_processes` and
`attacker_processes_reason`.

Packet attackers that send from one address share its source ports, each its own slice
(source_port_ranges), which its processes split again: every connection on the wire is one
attacker's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from closebench.attackers.packet.supervisor import PacketAttacker
from closebench.attackers.policy import Policy
from closebench.attackers.rst_filter import SOURCE_PORTS, PortRange
from closebench.attackers.scapy_spammer import ScapySpammer
from closebench.attackers.volume import VolumeAttacker
from closebench.core.errors import UsageError
from closebench.core.faults import Faults
from closebench.core.outcomes import Attempt
from closebench.lab import Lab
from closebench.results.schema import ATTACKER_KEPT_UP
from closebench.trials.attacker_kinds import PACKET_KINDS
from closebench.trials.harness_load import CPU_LIMIT

if TYPE_CHECKING:
    from closebench.attackers.policy import Target


class PacketSpec(Protocol):
    """What of a trial's AttackerSpec (trial.py, which imports this module) the processes need."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def processes(self) -> int: ...


# Counters of the packet engine's report that add up over processes; the rest is the first's.
LONGEST = ("elapsed_s", "starting_s")  # the processes ran side by side: the longest
SAME = ("sources",)  # every process sends from the same addresses


def split_policy(policy: Policy, processes: int) -> list[Policy]:
    """`policy` shared by `processes` engines: each its part of the concurrency, and of the rate
    and attempts in proportion (fewer parts when there are fewer slots than processes)."""
    count = max(1, min(processes, policy.concurrency))
    base, extra = divmod(policy.concurrency, count)
    parts = []
    for index in range(count):
        slots = base + (index < extra)
        share = slots / policy.concurrency
        parts.append(
            replace(
                policy,
                concurrency=slots,
                rate=None if policy.rate is None else policy.rate * share,
                attempts=None if policy.attempts is None else _part(policy.attempts, share),
            )
        )
    return parts


def _part(attempts: int, share: float) -> int:
    return max(1, round(attempts * share))


def split_ports(ports: PortRange, processes: int) -> list[PortRange]:
    """Disjoint slices of `ports`, one a process, as even as they come."""
    size, extra = divmod(len(ports), processes)
    slices, low = [], ports.low
    for index in range(processes):
        high = low + size + (index < extra) - 1
        slices.append(PortRange(low, high))
        low = high + 1
    return slices


def source_port_ranges(specs: Sequence[PacketSpec], plan: Sequence[int]) -> list[PortRange]:
    """Each attacker's source ports (`plan`: its addresses of its own, 0 for none). The packet
    attackers that send from the attacker's main address share SOURCE_PORTS, each its own
    slice: the capture tells their connections apart by address and port, and no one's nft rule
    drops the RSTs of another's. One with addresses of its own keeps them all. Raises
    UsageError when a slice has fewer ports than its attacker's connections in flight."""
    sharing = [i for i, spec in enumerate(specs) if spec.kind in PACKET_KINDS and not plan[i]]
    ranges = [SOURCE_PORTS] * len(specs)
    for index, ports in zip(sharing, split_ports(SOURCE_PORTS, max(1, len(sharing))), strict=False):
        ranges[index] = ports
        spec = specs[index]
        if len(sharing) > 1 and spec.policy.concurrency > len(ports):
            names = " and ".join(f"the {specs[i].name}" for i in sharing)
            raise UsageError(
                f"{names} attackers send from the attacker's main address, so each has its own "
                f"share of its source ports {SOURCE_PORTS}: the {spec.name} attacker's "
                f"concurrency {spec.policy.concurrency} needs more than its {len(ports)} "
                f"({ports}); give one of them `addresses`, or lower its concurrency"
            )
    return ranges


def packet_attacker(kind: str, ports: PortRange) -> PacketAttacker:
    """One engine of a packet attacker of `kind`, on its slice of the source ports."""
    if kind == "volume":
        return VolumeAttacker(ports=ports)
    return ScapySpammer(ports=ports)


def merged_cost(costs: list[dict]) -> dict:
    """One attacker's cost from its processes': counters summed, times the longest, and each
    process's own report under `processes` (the harness judges each: harness_load.py), in
    port order, as the processes were made."""
    if len(costs) == 1:
        return costs[0]
    costs = sorted(costs, key=lambda cost: str(cost.get("source_ports")))
    merged: dict = {}
    for cost in costs:
        for key, value in cost.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or key in SAME:
                merged.setdefault(key, value)
            elif key in LONGEST:
                merged[key] = max(merged.get(key, 0), value)
            else:
                merged[key] = round(merged.get(key, 0) + value, 3)
    for key in ("connections_per_s", "established_per_s"):  # rates of the whole
        if key in merged:
            merged[key] = round(sum(c.get(key, 0) for c in costs), 1)
    merged["processes"] = costs
    return merged


def each_process(name: str, cost: dict) -> dict[str, dict]:
    """An attacker's cost as the harness judges it: each process on its own when it ran several
    (a sum of CPU over processes is no one process's saturation)."""
    processes = cost.get("processes")
    if not isinstance(processes, list) or len(processes) < 2:
        return {name: cost}
    count = len(processes)
    return {
        f"{name} (process {index + 1} of {count})": each
        for index, each in enumerate(processes)
        if isinstance(each, dict)
    }


def process_threads(
    lab: Lab,
    spec: PacketSpec,
    target: Target,
    own: list[str],
    sink: Callable[[Attempt], None],
    cancel: threading.Event,
    reports: list[dict],
    faults: Faults,
    ports: PortRange = SOURCE_PORTS,
) -> list[threading.Thread]:
    """A packet attacker as spec.processes engines, each its own process with its part of the
    policy and its slice of the attacker's `ports`; each one's report appended to `reports`."""
    parts = split_policy(spec.policy, spec.processes)
    threads = []
    slices = split_ports(ports, len(parts))
    for index, (policy, ports) in enumerate(zip(parts, slices, strict=True)):
        attacker = packet_attacker(spec.kind, ports)

        def work(attacker=attacker, policy=policy) -> None:
            reports.append(attacker.run(lab, target, policy, sink, cancel, own or None))

        who = f"the {spec.name} attacker"
        if len(parts) > 1:
            who += f" (process {index + 1} of {len(parts)})"
        threads.append(threading.Thread(target=faults.guarded(who, work), name=f"attacker-{index}"))
    return threads


def client_costs(costs: dict[str, dict], legit_cost: dict) -> dict[str, dict]:
    """Each client's own cost, named as a reader would name it."""
    named = {
        label: each
        for name, cost in costs.items()
        for label, each in each_process(f"the {name} attacker", cost).items()
    }
    if legit_cost:
        named["the legitimate client"] = legit_cost
    return named


@dataclass(frozen=True)
class Scaling:
    """What a step ran with, and whether to run it again with more processes."""

    processes: int  # each packet attacker's processes, in this run of the step
    again: bool  # run the step again with processes + 1
    reason: str  # why this many (for the row), or why no more
    spent: str | None = None  # the attackers' CPUs are spent and the step still limited: why


def saturated_packet_attackers(kinds: dict[str, str], costs: dict[str, dict]) -> list[str]:
    """The packet attackers (name -> kind) one of whose processes set the pace."""
    found = []
    for name, kind in kinds.items():
        if kind not in PACKET_KINDS or name not in costs:
            continue
        if any(_saturated(cost) for cost in each_process(name, costs[name]).values()):
            found.append(f"the {name} attacker")
    return found


def _saturated(cost: dict) -> bool:
    elapsed = cost.get("elapsed_s")
    if elapsed:
        share = (cost.get("cpu_user_s", 0.0) + cost.get("cpu_system_s", 0.0)) / elapsed
        if share >= CPU_LIMIT:
            return True
    return bool(cost.get("receive_drops"))


def scaling(processes: int, saturated: list[str], attacker_cpus: int, earlier: str) -> Scaling:
    """After a run of a step whose packet attackers ran as `processes` processes each: again
    with one more while one of them was saturated and the attackers have a CPU for it.
    `earlier`: why the step's earlier runs had too few ("" for its first run)."""
    count = f"{processes} process{'es' if processes != 1 else ''}"
    if not saturated:
        return Scaling(processes, False, f"{count}: {earlier}" if earlier else ATTACKER_KEPT_UP)
    names = ", ".join(saturated)
    why = f"with {count} {names} set the pace"
    if processes < attacker_cpus:
        return Scaling(processes, True, f"{earlier}; {why}" if earlier else why)
    cpus = f"{attacker_cpus} CPU{'s' if attacker_cpus != 1 else ''}"
    spent = f"the attackers' CPUs are spent ({count} on {cpus})"
    return Scaling(processes, False, f"{count}: {spent}, {names} still set the pace", spent)

"""Which CPUs each side of a trial runs on, and what those CPUs did.

The defender (its server, peers and their threads) runs on one set of CPUs, the attackers, the
legitimate client, the capture and the runner's own threads on another, so that every cycle the
attack spends is not taken from the server under test. A machine with one CPU cannot split: both
sides share it, and the placement says so. The placement is process-wide (`use`): the runner sets
it once for a run, lab hosts pin what they spawn (`preexec`), the runner pins its own threads
(`pin_this_process`).

What the CPUs did comes from /proc/stat (each CPU's busy time, steal included) against the CPU
time of this run's own processes (the runner and every process below it, live ones and reaped
ones); the rest of the busy time is something outside the run's (another user's work, another
lab). A process counts for the side whose CPUs its affinity allows.

RPS (`rps_mask`): on a veth pair the receiver's softirq runs on the sender's CPU, so without
steering the defender's TCP work on the attack's packets is charged to the attackers' CPUs.
Receive packet steering on the defender's interface queues that work to the defender's CPUs.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SIDES = ("defender", "attackers")


@dataclass(frozen=True)
class Placement:
    """The CPUs of each side; `shared` when the machine has one CPU or the user chose none."""

    defender: tuple[int, ...]
    attackers: tuple[int, ...]

    @property
    def shared(self) -> bool:
        return self.defender == self.attackers

    def cpus(self, side: str) -> tuple[int, ...]:
        return self.defender if side == "defender" else self.attackers

    def text(self) -> str:
        defender, attackers = cpu_list(self.defender), cpu_list(self.attackers)
        if self.shared and len(self.defender) < 2:
            return f"the sides share one CPU ({defender}): this machine has no second to split"
        if self.shared:
            return f"both sides share CPU {defender} (no split asked)"
        return f"defender on CPU {defender}, attackers on CPU {attackers}"

    def to_dict(self) -> dict:
        return {
            "defender": cpu_list(self.defender),
            "attackers": cpu_list(self.attackers),
            "shared": self.shared,
            "text": self.text(),
        }


def machine_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (a container's cpuset, not the host's count)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def default_placement(cpus: tuple[int, ...] | None = None) -> Placement:
    """Half the CPUs (the lower ones) for the defender, the rest for the attacking side."""
    cpus = cpus or machine_cpus()
    if len(cpus) < 2:
        return Placement(cpus, cpus)
    half = len(cpus) // 2
    return Placement(cpus[:half], cpus[half:])


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'0-2,5' -> (0, 1, 2, 5); ValueError with the fault."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list (e.g. 0 or 0-1 or 0,2)")
        cpus.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cpus))


def cpu_list(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5'."""
    parts, start = [], None
    for index, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if index + 1 == len(cpus) or cpus[index + 1] != cpu + 1:
            parts.append(str(start) if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(parts)


def placement_from(defender: str | None, attackers: str | None) -> Placement:
    """A placement from CPU lists (either missing: the default split's); ValueError when a CPU is
    not this machine's or a side is empty."""
    default = default_placement()
    placed = Placement(
        parse_cpu_list(defender) if defender else default.defender,
        parse_cpu_list(attackers) if attackers else default.attackers,
    )
    allowed = set(machine_cpus())
    for side in SIDES:
        outside = sorted(set(placed.cpus(side)) - allowed)
        if outside:
            raise ValueError(
                f"{side} CPUs {cpu_list(tuple(outside))} are not this machine's "
                f"(it has {cpu_list(machine_cpus())})"
            )
    return placed


_current: Placement | None = None
_lock = threading.Lock()


def use(placement: Placement | None) -> None:
    """Set the placement every later spawn follows (None: no pinning)."""
    global _current
    with _lock:
        _current = placement


def current() -> Placement | None:
    return _current


def preexec(side: str) -> None:
    """In a child before exec: run on the side's CPUs (its threads and children inherit them)."""
    placement = _current
    if placement is not None:
        os.sched_setaffinity(0, placement.cpus(side))


def pin_this_process(cpus: tuple[int, ...]) -> dict[int, set[int]]:
    """Pin every thread of this process to `cpus` (threads made later inherit it from theirs);
    returns each thread's affinity before, for `restore`."""
    before = {}
    for tid in _threads():
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread ended meanwhile
            continue
    return before


def restore(before: dict[int, set[int]]) -> None:
    for tid, cpus in before.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            continue


def _threads() -> list[int]:
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def rps_mask(cpus: tuple[int, ...]) -> str:
    """The hex mask /sys/class/net/IF/queues/rx-N/rps_cpus takes."""
    return format(sum(1 << cpu for cpu in cpus), "x")


# --- what the CPUs did ------------------------------------------------------------------------


@dataclass
class CpuSnapshot:
    busy_s: dict[int, float]  # each CPU: user + nice + system + steal
    softirq_s: dict[int, float]
    own_s: dict[str, float]  # this run's processes, by side
    at: float


@dataclass
class SideUse:
    """One side's CPUs over a stretch of time, as shares of those CPUs' capacity."""

    cpus: str
    busy_share: float  # everything that ran on them
    own_share: float  # this run's processes on them
    foreign_share: float  # the rest: something outside this run
    softirq_share: float  # network work (ours, mostly: the labs' packets)
    softirq_s: float = 0.0  # the same in CPU seconds (10 ms ticks): the kernel's packet work

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CpuUse:
    placement: Placement
    elapsed_s: float
    sides: dict[str, SideUse] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "placement": self.placement.to_dict(),
            "elapsed_s": round(self.elapsed_s, 3),
            **{side: use.to_dict() for side, use in self.sides.items()},
        }


def proc_stat() -> tuple[dict[int, float], dict[int, float]]:
    """Each CPU's busy seconds (user, nice, system, steal) and softirq seconds since boot."""
    busy, softirq = {}, {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(v) for v in values]
            cpu = int(name[3:])
            # user nice system idle iowait irq softirq steal (guest is inside user)
            busy[cpu] = (ticks[0] + ticks[1] + ticks[2] + ticks[7]) / CLOCK_TICKS
            softirq[cpu] = ticks[6] / CLOCK_TICKS
    return busy, softirq


def own_cpu_seconds(placement: Placement, root: int | None = None) -> dict[str, float]:
    """CPU seconds of the process `root` (this one) and every process below it, by side: each
    process's own time plus its reaped children's."""
    root = root or os.getpid()
    stats = _all_stats()
    below = _descendants(root, stats)
    used = dict.fromkeys(SIDES, 0.0)
    for pid in [root, *below]:
        if pid not in stats:
            continue
        side = _side_of(pid, placement)
        used[side] += stats[pid][1]
    return used


def snapshot(placement: Placement) -> CpuSnapshot:
    busy, softirq = proc_stat()
    return CpuSnapshot(busy, softirq, own_cpu_seconds(placement), time.monotonic())


def use_between(placement: Placement, start: CpuSnapshot, end: CpuSnapshot) -> CpuUse:
    elapsed = max(end.at - start.at, 1e-6)
    result = CpuUse(placement, elapsed)
    sides = ("defender",) if placement.shared else SIDES
    own_total = {s: end.own_s[s] - start.own_s[s] for s in SIDES}
    for side in sides:
        cpus = placement.cpus(side)
        capacity = elapsed * len(cpus)
        busy = sum(end.busy_s.get(c, 0) - start.busy_s.get(c, 0) for c in cpus)
        softirq = sum(end.softirq_s.get(c, 0) - start.softirq_s.get(c, 0) for c in cpus)
        # Never below nothing: a process reaped outside the tree takes its time with it.
        own = max(sum(own_total.values()) if placement.shared else own_total[side], 0.0)
        name = "both" if placement.shared else side
        result.sides[name] = SideUse(
            cpu_list(cpus),
            _share(busy, capacity),
            _share(min(own, busy), capacity),
            _share(max(busy - own, 0.0), capacity),
            _share(softirq, capacity),
            round(softirq, 3),
        )
    return result


def _share(seconds: float, capacity: float) -> float:
    """Of the CPUs' capacity, at most all of it: /proc/stat's ticks and the clock round apart."""
    return round(min(seconds / capacity, 1.0), 3)


def _all_stats() -> dict[int, tuple[int, float]]:
    """{pid: (ppid, CPU seconds: utime + stime + cutime + cstime)} of every process readable."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:  # gone, or not ours to read
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        stats[int(entry)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return stats


def _descendants(root: int, stats: dict[int, tuple[int, float]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _side_of(pid: int, placement: Placement) -> str:
    if placement.shared:
        return "defender"
    try:
        allowed = os.sched_getaffinity(pid)
    except OSError:
        return "attackers"
    return "defender" if allowed <= set(placement.defender) else "attackers"

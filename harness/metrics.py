"""What the defender pays: its process (psutil) and its kernel's TCP sockets, sampled over time.

The fd count alone misses sockets the application closed but the kernel still keeps (an orphan
retransmitting its FIN, TIME-WAIT entries), so the socket table is sampled beside it. For the
fw-* strategies the nftables ban table is sampled too: bans in force and SYNs refused.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

from harness import firewall
from harness.errors import LabError
from harness.lab import Host
from harness.sockets import state_summary, tcp_counters

# Socket states reported as columns; the rest are summed into "other".
STATES = ("ESTABLISHED", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "TIME-WAIT")


@dataclass
class Sample:
    t: float  # seconds since the trial started
    fds: int
    threads: int
    rss_bytes: int
    cpu_s: float  # user + system CPU time of the server so far, its nft children's included
    sockets: dict[str, int] = field(default_factory=dict)  # by state, LISTEN excluded
    orphans: int = 0
    retrans_segs: int = 0  # the host's TCP RetransSegs counter
    bans_active: int = 0  # addresses banned (nft set elements; blacklist: the server's log)
    syns_dropped: int = 0  # SYNs the ban firewall dropped or rejected so far

    def row(self) -> dict:
        row = asdict(self)
        sockets = row.pop("sockets")
        bans = {name: row.pop(name) for name in ("bans_active", "syns_dropped")}
        for state in STATES:
            row[state.lower().replace("-", "_")] = sockets.get(state, 0)
        row["other_sockets"] = sum(v for k, v in sockets.items() if k not in STATES)
        return {**row, **bans}  # the columns added last stay last

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Sample:
        """A sample back from its samples.csv row (the states beyond STATES summed as one)."""
        column = {state: state.lower().replace("-", "_") for state in STATES}
        sockets = {state: int(row[name]) for state, name in column.items()}
        sockets["OTHER"] = int(row["other_sockets"])
        return cls(
            t=float(row["t"]),
            fds=int(row["fds"]),
            threads=int(row["threads"]),
            rss_bytes=int(row["rss_bytes"]),
            cpu_s=float(row["cpu_s"]),
            sockets=sockets,
            orphans=int(row["orphans"]),
            retrans_segs=int(row["retrans_segs"]),
            bans_active=int(row.get("bans_active") or 0),
            syns_dropped=int(row.get("syns_dropped") or 0),
        )


class DefenderSampler:
    """Samples a server process and its host at `hz` in a thread, until stop().

    `firewall`: the host holding a fw-* strategy's ban table, read at every sample.
    """

    def __init__(
        self, host: Host, pid: int, hz: float = 10.0, firewall: Host | None = None
    ) -> None:
        self.host = host
        self.firewall = firewall
        self.process = psutil.Process(pid)
        self.interval = 1.0 / hz
        self.samples: list[Sample] = []
        self.own_cpu_s = 0.0  # CPU the sampler itself spent (nft readings included): its overhead
        self.started = time.monotonic()
        self.started_unix = time.time()
        self._stop = threading.Event()
        # The first sample is taken here, before the attack starts: costs count from this idle
        # baseline, and a sampler thread starting late would fold the first held fds into it.
        first = self.take()
        self.samples += [first] if first else []
        self._thread = threading.Thread(target=self._loop, name="defender-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval
        self._stop.wait(self.interval)
        while not self._stop.is_set():
            before = time.thread_time()
            sample = self.take()
            self.own_cpu_s += time.thread_time() - before
            if sample is None:
                return  # the server is gone
            self.samples.append(sample)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def take(self) -> Sample | None:
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_times()
                sample = Sample(
                    t=time.monotonic() - self.started,
                    fds=self.process.num_fds(),
                    threads=self.process.num_threads(),
                    rss_bytes=self.process.memory_info().rss,
                    # Children count once reaped: the nft processes of a fw-* server.
                    cpu_s=cpu.user + cpu.system + cpu.children_user + cpu.children_system,
                )
        except psutil.NoSuchProcess:
            return None
        counts, sample.orphans = state_summary(self.host)
        sample.sockets = dict(counts)
        sample.retrans_segs = tcp_counters(self.host)["RetransSegs"]
        if self.firewall is not None:
            try:
                reading = firewall.read(self.firewall)
            except LabError:
                return sample  # the lab is going away; the trial reads the totals itself
            sample.bans_active, sample.syns_dropped = reading.bans_active, reading.syns_dropped
            self.own_cpu_s += reading.cpu_s
        return sample

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    @property
    def overhead(self) -> float:
        """The sampler's CPU as a share of one core over its run."""
        wall = time.monotonic() - self.started
        return self.own_cpu_s / wall if wall > 0 else 0.0


@dataclass
class DefenderCost:
    peak_fds: int
    fd_seconds: float  # fds held above the idle baseline, integrated over time
    cpu_seconds: float
    peak_threads: int
    peak_rss_mb: float
    peak_orphans: int
    peak_sockets: int  # kernel TCP sockets, LISTEN excluded
    retransmissions: int
    peak_bans_active: int = 0  # the most addresses banned at once

    def to_dict(self) -> dict:
        return asdict(self)


def defender_cost(samples: list[Sample]) -> DefenderCost | None:
    if not samples:
        return None
    baseline = samples[0].fds
    fd_seconds = sum(
        max(0, earlier.fds - baseline) * (later.t - earlier.t)
        for earlier, later in itertools.pairwise(samples)
    )
    return DefenderCost(
        peak_fds=max(s.fds for s in samples),
        fd_seconds=fd_seconds,
        cpu_seconds=samples[-1].cpu_s - samples[0].cpu_s,
        peak_threads=max(s.threads for s in samples),
        peak_rss_mb=max(s.rss_bytes for s in samples) / 2**20,
        peak_orphans=max(s.orphans for s in samples),
        peak_sockets=max(sum(s.sockets.values()) for s in samples),
        retransmissions=samples[-1].retrans_segs - samples[0].retrans_segs,
        peak_bans_active=max(s.bans_active for s in samples),
    )

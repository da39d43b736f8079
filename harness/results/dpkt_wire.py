"""A trial's pcap read again for `closebench verify`, apart from the code that wrote the records:
dpkt where harness/wire/ uses scapy, and its own reading of the outcome rules (verify.py's
docstring states them)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path

GAVE_UP_SHARE = 0.9  # a client closing this late into its timeout closed because of it
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


@dataclass(slots=True)
class WireConnection:
    client: tuple[str, int]
    server: tuple[str, int]
    packets: list[Packet] = field(default_factory=list)
    seen: set = field(default_factory=set)  # (seq, flags, length) of the client's segments

    @property
    def syn_t(self) -> float:
        return self.packets[0].t


def read_wire(path: Path) -> list[WireConnection]:
    """Every TCP connection in a pcap (Ethernet frames), opened by a SYN seen in it."""
    import dpkt

    connections: list[WireConnection] = []
    current: dict[tuple, WireConnection] = {}  # (client, server) -> its latest connection
    servers: set[tuple[str, int]] = set()
    with path.open("rb") as stream:
        reader = dpkt.pcap.Reader(stream)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise ValueError(f"link type {reader.datalink()}, expected Ethernet")
        for t, frame in reader:
            decoded = _decode(dpkt, frame)
            if decoded is None:
                continue
            src, dst, flags, seq, length, icmp = decoded
            if icmp:  # about a segment src -> dst of ours: the error comes towards the client
                key, outgoing = (src, dst), False
            elif flags & SYN and not flags & ACK:
                key, outgoing = (src, dst), True
                servers.add(dst)
            elif dst in servers:
                key, outgoing = (src, dst), True
            elif src in servers:
                key, outgoing = (dst, src), False
            else:
                continue
            packet = Packet(t, outgoing, flags, seq, length, icmp)
            connection = current.get(key)
            fresh_syn = outgoing and flags & SYN and not flags & ACK
            if fresh_syn and (connection is None or (seq, flags, 0) not in connection.seen):
                if connection is not None:
                    connection.seen = set()  # only the latest connection of a port needs it
                connection = WireConnection(*key)
                current[key] = connection
                connections.append(connection)
            if connection is None:
                continue  # mid-stream: its SYN was before the capture
            if outgoing:
                # A segment sent again (same sequence number, flags and length) is a retransmission.
                packet.retransmitted = (seq, flags, length) in connection.seen and bool(
                    length or flags & (SYN | FIN)
                )
                connection.seen.add((seq, flags, length))
            connection.packets.append(packet)
    for connection in current.values():
        connection.seen = set()
    return connections


def _decode(dpkt, frame: bytes):
    """(src, dst, flags, seq, payload length, is_icmp_error) of a TCP segment or of the segment an
    ICMP error quotes; None for anything else."""
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
        return None if quoted is None else (*quoted, 0, 0, 0, True)
    if not isinstance(segment, dpkt.tcp.TCP):
        return None
    src = (_address(ip.src), segment.sport)
    dst = (_address(ip.dst), segment.dport)
    length = payload_total - segment.off * 4
    return src, dst, segment.flags, segment.seq, max(length, 0), False


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


def read_outcome(connection: WireConnection, client_timeout: float) -> WireReading:
    """The class and end time of one connection, by the rules in this module's docstring."""
    established = requested = None
    sent_to = None  # the client's next sequence number (after everything it sent)
    pending: Packet | None = None  # the client's latest segment since the server last spoke
    for packet in connection.packets:
        if packet.outgoing:
            if established is not None and packet.length and requested is None:
                requested = packet.t
            if established is not None and packet.flags & (FIN | RST):
                started = requested if requested is not None else established
                if packet.t - started >= GAVE_UP_SHARE * client_timeout:
                    return WireReading("silent", packet.t)  # the client gave up
            end = (packet.seq + packet.length + bool(packet.flags & (SYN | FIN))) % SEQ_MOD
            if sent_to is None or 0 < (end - sent_to) % SEQ_MOD < SEQ_MOD // 2:
                sent_to = end
            pending = packet
            continue
        answered, pending = pending, None
        if packet.icmp:
            return WireReading("icmp", packet.t)
        if packet.flags & SYN and packet.flags & ACK and established is None:
            established = packet.t
        if packet.flags & RST:
            if established is None:
                return WireReading("refused", packet.t)
            reason = _answered(answered, sent_to)
            if reason == "FIN":
                return WireReading("silent", answered.t)
            if reason:
                return WireReading("silent", packet.t)
            return WireReading("rst", packet.t)
        if packet.flags & FIN:
            return WireReading("fin", packet.t)
    return WireReading("silent" if established is not None else "syn-timeout", None)


def _answered(segment: Packet | None, sent_to: int | None) -> str | None:
    if segment is None:
        return None
    if segment.flags & FIN:
        return "FIN"
    keepalive = segment.flags == ACK and segment.length <= 1
    if keepalive and sent_to is not None and segment.seq == (sent_to - 1) % SEQ_MOD:
        return "keepalive"
    if segment.retransmitted:
        return "retransmission"
    return None

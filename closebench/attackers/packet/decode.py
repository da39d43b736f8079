"""Received packets (from the IP header on) into what the engine reads: Segment or IcmpError.

The common segments (SYN-ACK, ACK, data, FIN, RST from the target to one of our ports, with no
IPv6 extension header) are read with struct, a few microseconds each. Everything else, ICMP
errors and odd flags first among them, is decoded by scapy, imported on the first such packet.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from closebench.attackers.packet.segments import (
    ACK,
    FIN,
    HEAD_BYTES,
    PSH,
    RST,
    SYN,
    IcmpError,
    Segment,
)

IPV4 = struct.Struct("!BxH2xHxB2x4s4s")  # version+ihl, total length, fragment, protocol, src, dst
IPV6 = struct.Struct("!4xHB1x16s16s")  # payload length, next header, src, dst
TCP_FIELDS = struct.Struct("!HHIIBBH")  # sport dport seq ack offset flags window
# The flag sets a server's TCP sends us in the normal course of things.
USUAL_FLAGS = frozenset({SYN | ACK, ACK, PSH | ACK, FIN | ACK, FIN | PSH | ACK, RST, RST | ACK})
PMTU_ICMP = {(4, 3, 4), (6, 2, 0)}  # "fragmentation needed" / "packet too big": not an error
MORE_FRAGMENTS_OR_OFFSET = 0x3FFF


class Decoder:
    """Reads packets for one attack: from `target`:`dport` to `sources` x `ports`."""

    def __init__(
        self, family: int, target: str, dport: int, sources: list[str], low: int, high: int
    ) -> None:
        self.family = family
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.target = socket.inet_pton(af, target)
        self.dport = dport
        self.sources = {socket.inet_pton(af, s): i for i, s in enumerate(sources)}
        self.low, self.high = low, high

    def decode(self, data: bytes, t: float) -> Segment | IcmpError | None:
        """The packet (from its IP header on) received at `t`; None if it is not for us."""
        if self.family == 4:
            vihl, total, fragment, protocol, source, dest = IPV4.unpack_from(data)
            if protocol != socket.IPPROTO_TCP or fragment & MORE_FRAGMENTS_OR_OFFSET:
                return self.unusual(data, t)
            start = (vihl & 0x0F) << 2
            length = total - start  # from the header: link-layer padding may follow
        else:
            length, next_header, source, dest = IPV6.unpack_from(data)
            if next_header != socket.IPPROTO_TCP:
                return self.unusual(data, t)
            start = 40
        src = self.sources.get(dest)
        if src is None or source != self.target:
            return None
        sport, dport, seq, ack, offset, flags, window = TCP_FIELDS.unpack_from(data, start)
        if sport != self.dport or not self.low <= dport <= self.high:
            return None
        if flags not in USUAL_FLAGS:
            return self.unusual(data, t)
        header = (offset >> 4) << 2
        payload = length - header
        if payload <= 0:
            return Segment(t, src, dport, seq, ack, flags, window=window)
        begin = start + header
        head = data[begin : begin + min(payload, HEAD_BYTES)]
        return Segment(t, src, dport, seq, ack, flags, payload, head, window=window)

    def unusual(self, data: bytes, t: float) -> Segment | IcmpError | None:
        """scapy's reading of a packet the fast path does not take."""
        from scapy.layers.inet import IP, TCP, TCPerror
        from scapy.layers.inet6 import IPv6

        ip = IP(data) if self.family == 4 else IPv6(data)
        src = self._source_index(ip.dst)
        if src is None:
            return None
        if ip.haslayer(TCPerror):
            return self._icmp(ip, t, src)
        if not ip.haslayer(TCP) or not self._same(ip.src, self.target):
            return None
        tcp = ip[TCP]
        if tcp.sport != self.dport or not self.low <= tcp.dport <= self.high:
            return None
        # From the headers: padding may follow the packet, or the wire may have cut it short.
        if self.family == 4:
            length = ip.len - ip.ihl * 4 - tcp.dataofs * 4
        else:  # the IPv6 payload, less the extension headers before the TCP header
            extensions = len(bytes(ip.payload)) - len(bytes(tcp))
            length = ip.plen - extensions - tcp.dataofs * 4
        length = max(0, length)
        head = bytes(tcp.payload)[: min(length, HEAD_BYTES)]
        flags = int(tcp.flags) & 0xFF
        odd = "" if flags in USUAL_FLAGS else str(tcp.flags)
        return Segment(t, src, tcp.dport, tcp.seq, tcp.ack, flags, length, head, odd, tcp.window)

    def _icmp(self, ip, t: float, src: int) -> IcmpError | None:
        from scapy.layers.inet import IPerror, TCPerror
        from scapy.layers.inet6 import IPerror6

        quoted = ip.getlayer(IPerror) or ip.getlayer(IPerror6)
        tcp = ip[TCPerror]
        ours = self._source_index(quoted.src) == src and self._same(quoted.dst, self.target)
        if not ours or tcp.dport != self.dport or not self.low <= tcp.sport <= self.high:
            return None
        icmp = ip.payload
        if (self.family, icmp.type, icmp.code) in PMTU_ICMP:
            return None
        what = f"icmp{'' if self.family == 4 else 'v6'} {icmp.type}/{icmp.code}"
        return IcmpError(t, src, tcp.sport, what, ip.src)

    def _source_index(self, address: str) -> int | None:
        return self.sources.get(ipaddress.ip_address(address).packed)

    @staticmethod
    def _same(address: str, packed: bytes) -> bool:
        return ipaddress.ip_address(address).packed == packed

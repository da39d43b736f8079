"""Packets built once with scapy in the runner, then patched per connection in the child.

A template keeps the IP header as is and the TCP header's constant part; sending one fills in
the source port, the sequence and acknowledgement numbers and the checksum. The checksum is the
one's-complement sum of the pseudo-header and segment with those fields at zero (`base`), plus
the fields themselves: no byte of the rest is read again. `write_into` patches a packet straight
into the sender's buffer (send_batch.py), so sending one makes no Python object of its own.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field, fields

from closebench.attackers.packet.segments import KIND_FLAGS, Kind, flag_names

WINDOW = 64240  # advertised receive window; no window scaling
MSS = {4: 1460, 6: 1440}
TTL = 64
TCP_HEADER = struct.Struct("!HHIIHHHH")  # sport dport seq ack offflags window checksum urgent


@dataclass(frozen=True)
class Template:
    head: bytes  # the IP header (for IPv4 the kernel fills the checksum, length and ID)
    dport: int
    offflags: int  # data offset and flags, the 16 bits after the acknowledgement number
    tail: bytes  # TCP options and payload
    base: int
    # Derived from the above (not in the JSON): the packet with the patched fields at zero,
    # where its TCP header starts, its length.
    whole: bytes = field(init=False, repr=False, compare=False)
    tcp_at: int = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        whole = self.head + bytes(TCP_HEADER.size) + self.tail
        object.__setattr__(self, "whole", whole)
        object.__setattr__(self, "tcp_at", len(self.head))
        object.__setattr__(self, "size", len(whole))

    def write_into(
        self, buffer: bytearray | memoryview, offset: int, sport: int, seq: int, ack: int
    ) -> int:
        """The packet, patched, written into `buffer` at `offset`; its length."""
        s = self.base + sport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        size = self.size
        buffer[offset : offset + size] = self.whole
        TCP_HEADER.pack_into(
            buffer,
            offset + self.tcp_at,
            sport,
            self.dport,
            seq,
            ack,
            self.offflags,
            WINDOW,
            ~s & 0xFFFF,
            0,
        )
        return size

    def packet(self, sport: int, seq: int, ack: int) -> bytes:
        buffer = bytearray(self.size)
        self.write_into(buffer, 0, sport, seq, ack)
        return bytes(buffer)

    def to_json(self) -> dict:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return {**record, "head": self.head.hex(), "tail": self.tail.hex()}

    @classmethod
    def from_json(cls, record: dict) -> Template:
        head, tail = bytes.fromhex(record["head"]), bytes.fromhex(record["tail"])
        return cls(**{**record, "head": head, "tail": tail})


def build(family: int, source: str, dst: str, dport: int, request: bytes) -> list[Template]:
    """One template per Kind, from `source` to `dst`:`dport`, built by scapy."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    ip: IP | IPv6
    if family == 4:
        ip = IP(src=source, dst=dst, id=0, flags="DF", ttl=TTL)
    else:
        ip = IPv6(src=source, dst=dst, hlim=TTL)
    templates = []
    for kind in Kind:
        options = [("MSS", MSS[family])] if kind is Kind.SYN else []
        flags = flag_names(KIND_FLAGS[kind])
        tcp = TCP(sport=0, dport=dport, seq=0, ack=0, flags=flags, window=WINDOW, options=options)
        payload = request if kind is Kind.REQUEST else b""
        templates.append(_template(bytes(ip / tcp / payload), family))
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

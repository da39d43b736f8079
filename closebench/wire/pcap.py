"""What one connection looked like on the wire: the packets of a pcap (scapy), by connection.

No lab and no root: a pcap written by closebench/lab/capture.py, or a file from elsewhere."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from closebench.core.addresses import canonical
from closebench.core.errors import LabError

HEAD_BYTES = 64  # payload bytes kept per packet: a status line or a banner (EXCERPT_BYTES)
LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Endpoint:
    address: str  # kept canonical: endpoints compare as addresses, not as texts
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", canonical(self.address))


@dataclass(frozen=True)
class WireEvent:
    """One packet of a connection (or an ICMP error about it), as the client's host saw it."""

    t: float
    direction: str  # "out": from the client; "in": towards the client
    what: str  # TCP flags such as "S", "SA", "PA", "FA", "R", or "icmp <type>/<code>"
    length: int  # TCP payload bytes
    ttl: int
    retransmission: bool = False
    head: bytes = field(default=b"", compare=False, repr=False)  # the payload's first bytes
    seq: int = field(default=-1, compare=False, repr=False)  # TCP sequence number; -1: ICMP
    window: int | None = None  # the TCP window advertised (None for ICMP)

    def to_dict(self) -> dict:
        return {
            "t": self.t,
            "direction": self.direction,
            "what": self.what,
            "length": self.length,
            "ttl": self.ttl,
            "retransmission": self.retransmission,
            "window": self.window,
        }


def connection_events(path: str, client: Endpoint, server: Endpoint) -> list[WireEvent]:
    """Every packet of the client<->server connection in a pcap, plus ICMP errors quoting it."""
    events: list[WireEvent] = []
    for endpoint, each in connections(path, server):
        if endpoint == client:
            events.extend(each)
    return events


def connections(
    path: str, server: Endpoint, clients: set[str] | None = None
) -> list[tuple[Endpoint, list[WireEvent]]]:
    """Every connection to `server` in a pcap, in the order their first packet was seen; only
    those from `clients` (addresses) when given.

    A new SYN from a client port already seen starts a new connection (a reused port).
    """
    book = ConnectionBook(server, clients)
    book.read(PcapFollower(path))
    return book.found


class ConnectionBook:
    """Connections to one server, built up packet by packet (from a whole pcap, or from one that
    is still being written); only those from `clients` (addresses) when given."""

    def __init__(self, server: Endpoint, clients: set[str] | None = None) -> None:
        self.server = server
        self.found: list[tuple[Endpoint, list[WireEvent]]] = []
        self._current: dict[Endpoint, tuple[list[WireEvent], set]] = {}
        self._clients = None if clients is None else {_packed(a) for a in clients}

    def read(self, follower: PcapFollower) -> list[tuple[Endpoint, list[WireEvent]]]:
        """Add the packets the follower has not read yet; returns the connections they started."""
        first_new = len(self.found)
        for t, frame in follower.frames():
            # Dissecting a packet costs scapy ~100 µs: skip other clients' (a flood) before that.
            if self._clients is not None and not self._clients & _frame_addresses(frame):
                continue
            decoded = _decode(t, frame, self.server)
            if decoded is not None:
                self._add(*decoded)
        return self.found[first_new:]

    def _add(self, client: Endpoint, event: WireEvent) -> None:
        events, seen = self._current.get(client, (None, set()))
        key = (event.direction, event.seq, event.what, event.length)
        fresh_syn = event.direction == "out" and event.what == "S" and key not in seen
        if events is None or fresh_syn:
            events, seen = [], set()
            self._current[client] = (events, seen)
            self.found.append((client, events))
        # A segment seen again with the same sequence number and flags is a retransmission.
        retransmitted = key in seen and (event.length > 0 or "F" in event.what or "S" in event.what)
        seen.add(key)
        events.append(replace(event, retransmission=retransmitted) if retransmitted else event)


READ_CHUNK = 1 << 22  # bytes of a pcap read at a time


class PcapFollower:
    """The frames of a pcap file, read as far as complete records go: reading again later returns
    what was written since (tcpdump -U writes whole packets, but may be caught mid-write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._record: struct.Struct | None = None
        self._scale = 1e-6  # microsecond timestamps; 1e-9 for the nanosecond format

    def frames(self) -> Iterator[tuple[float, bytes]]:
        try:
            stream = open(self.path, "rb")  # noqa: SIM115 (closed below, also when abandoned)
        except FileNotFoundError:
            return
        with stream:
            stream.seek(self._offset)
            pending = b""
            # A chunk at a time: a flood's capture is hundreds of megabytes.
            while chunk := stream.read(READ_CHUNK):
                data, position = pending + chunk, 0
                if self._record is None:
                    if len(data) < 24:
                        pending = data
                        continue
                    self._parse_header(data[:24])
                    position = self._offset = 24
                record = self._record
                assert record is not None
                while position + record.size <= len(data):
                    seconds, fraction, captured, _ = record.unpack_from(data, position)
                    end = position + record.size + captured
                    if end > len(data):
                        break
                    frame = data[position + record.size : end]
                    self._offset += end - position
                    position = end
                    yield seconds + fraction * self._scale, frame
                pending = data[position:]

    def _parse_header(self, header: bytes) -> None:
        magic = header[:4]
        formats = {
            b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
            b"\xa1\xb2\xc3\xd4": (">", 1e-6),
            b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
            b"\xa1\xb2\x3c\x4d": (">", 1e-9),
        }
        if magic not in formats:
            raise LabError(f"{self.path} is not a pcap file (pcapng is not read here)")
        order, self._scale = formats[magic]
        linktype = struct.unpack(order + "I", header[20:24])[0]
        if linktype != LINKTYPE_ETHERNET:
            raise LabError(f"{self.path}: link type {linktype}, expected Ethernet (1)")
        self._record = struct.Struct(order + "IIII")


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _frame_addresses(frame: bytes) -> set[bytes]:
    """The source and destination addresses of an Ethernet frame's IPv4 or IPv6 header."""
    kind = frame[12:14]
    if kind == b"\x08\x00":
        return {frame[26:30], frame[30:34]}
    if kind == b"\x86\xdd":
        return {frame[22:38], frame[38:54]}
    return set()


def _decode(t: float, frame: bytes, server: Endpoint) -> tuple[Endpoint, WireEvent] | None:
    """(client, event) for a frame to or from `server`, ICMP errors about it included."""
    from scapy.layers.inet import IP, TCP, IPerror, TCPerror
    from scapy.layers.inet6 import IPerror6, IPv6
    from scapy.layers.l2 import Ether

    packet = Ether(frame)
    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    if ip is None:
        return None
    ttl = ip.ttl if isinstance(ip, IP) else ip.hlim
    if packet.haslayer(TCPerror):
        # An ICMP(v6) error quoting one of our segments: the ICMP header follows the IP one.
        quoted = packet.getlayer(IPerror) or packet.getlayer(IPerror6)
        if quoted is None:  # not seen: scapy finds TCPerror only inside IPerror(6)
            return None
        tcp = packet[TCPerror]
        if Endpoint(quoted.dst, tcp.dport) != server:
            return None
        icmp = ip.payload
        what = f"icmp{'' if isinstance(ip, IP) else 'v6'} {icmp.type}/{icmp.code}"
        return Endpoint(quoted.src, tcp.sport), WireEvent(t, "in", what, 0, ttl)
    if not packet.haslayer(TCP):
        return None
    tcp = packet[TCP]
    payload = bytes(tcp.payload)
    if Endpoint(ip.dst, tcp.dport) == server:
        client, direction = Endpoint(ip.src, tcp.sport), "out"
    elif Endpoint(ip.src, tcp.sport) == server:
        client, direction = Endpoint(ip.dst, tcp.dport), "in"
    else:
        return None
    # The IP header says how long the segment was: the capture's snap length cuts payloads, and
    # Ethernet pads a short frame (a bare RST in 60 bytes) with bytes that are not payload.
    length = _tcp_payload_length(ip, tcp, len(payload))
    head = payload[: min(length, HEAD_BYTES)]
    return client, WireEvent(
        t, direction, str(tcp.flags), length, ttl, head=head, seq=tcp.seq, window=tcp.window
    )


def _tcp_payload_length(ip, tcp, captured: int) -> int:
    """The TCP payload's length by the IP header (IPv6: no extension headers in the lab's
    traffic), whatever the frame carried after it; what was captured only where the header
    says 0 (a segment captured before the NIC split it: TSO)."""
    from scapy.layers.inet import IP

    total = ip.len - 4 * ip.ihl if isinstance(ip, IP) else ip.plen
    return max(0, total - 4 * tcp.dataofs) if total else captured

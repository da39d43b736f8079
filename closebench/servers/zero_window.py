"""A stateless zero-window tarpit, in the spirit of LaBrea and xtables-addons' TARPIT.

The kernel's TCP never sees an abusive source's packets to the server's port: an nftables rule in
the server's network namespace (`ruleset()`) drops them at prerouting. A packet socket still gets
them, since packet taps run before netfilter, and the tarpit answers from a raw socket:

- a SYN gets a SYN-ACK that advertises a zero window: the client's connect() succeeds, and the
  request it then writes stays in its send buffer;
- a window probe gets an ACK that keeps the window at zero. A sender whose probes are answered
  waits for ever (RFC 1122 4.2.2.17), until its application gives up;
- nothing else is answered.

No state is kept per connection, so the server holds no fd and no kernel socket for a trapped
client. Like a SYN cookie, our initial sequence number is the client's plus a keyed hash of the
connection's addresses and ports; a later segment's acknowledgement number then tells which
client sequence number the handshake began with, and so whether the segment is a probe.

The packet logic (`Responder`) is pure; `ZeroWindowTarpit` adds the sockets and the kernel filter.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
from dataclasses import asdict, dataclass, field

import dpkt

TABLE = "closebench_zero_window"
COUNTER = "steered"  # packets the table took away from the kernel's TCP
MSS = 1460
TTL = 64
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_HOST = 0  # addressed to this host (not one of our own outgoing packets)
RECV_BATCH = 64  # packets read per readiness event, so the listeners are not starved
RCVBUF = 4 * 2**20  # room for a burst of SYNs while the event loop is busy elsewhere
MASK32 = 0xFFFFFFFF

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TarpitError(Exception):
    """A problem that stops the tarpit from starting; the message says how to fix it."""


# --- the packets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """What the tarpit needs of one TCP segment: its addresses, numbers and flags."""

    family: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: int  # bytes of data

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def parse(packet: bytes) -> Segment | None:
    """The TCP segment in an IPv4 or IPv6 packet, or None for anything else."""
    if not packet:
        return None
    try:
        if packet[0] >> 4 == 4:
            ip = dpkt.ip.IP(packet)
            family, proto, inet = 4, ip.p, socket.AF_INET
        elif packet[0] >> 4 == 6:
            ip = dpkt.ip6.IP6(packet)
            family, proto, inet = 6, ip.nxt, socket.AF_INET6
        else:
            return None
    except (dpkt.UnpackError, struct.error):
        return None
    tcp = ip.data
    if proto != dpkt.ip.IP_PROTO_TCP or not isinstance(tcp, dpkt.tcp.TCP):
        return None
    return Segment(
        family=family,
        src=socket.inet_ntop(inet, ip.src),
        dst=socket.inet_ntop(inet, ip.dst),
        sport=tcp.sport,
        dport=tcp.dport,
        seq=tcp.seq,
        ack=tcp.ack,
        flags=tcp.flags,
        payload=len(tcp.data),
    )


def build(
    segment: Segment, seq: int, ack: int, flags: int, options: bytes = b"", hops: int = TTL
) -> bytes:
    """An IP packet answering `segment` (addresses and ports swapped), window zero."""
    tcp = dpkt.tcp.TCP(
        sport=segment.dport,
        dport=segment.sport,
        seq=seq & MASK32,
        ack=ack & MASK32,
        flags=flags,
        win=0,
        opts=options,
    )
    tcp.off = (dpkt.tcp.TCP.__hdr_len__ + len(options)) // 4
    inet = socket.AF_INET if segment.family == 4 else socket.AF_INET6
    src, dst = socket.inet_pton(inet, segment.dst), socket.inet_pton(inet, segment.src)
    if segment.family == 4:
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=hops, data=tcp)
    else:
        ip = dpkt.ip6.IP6(
            src=src, dst=dst, nxt=dpkt.ip.IP_PROTO_TCP, hlim=hops, plen=len(tcp), data=tcp
        )
    return bytes(ip)  # dpkt fills in the lengths and checksums


MSS_OPTION = struct.pack("!BBH", dpkt.tcp.TCP_OPT_MSS, 4, MSS)


@dataclass
class Counters:
    packets_in: int = 0  # segments from trapped sources that reached the tarpit
    syn_acks: int = 0  # SYNs answered: connections trapped (a retransmitted SYN counts again)
    probe_acks: int = 0  # window probes answered
    ignored: int = 0  # segments that needed no answer (the handshake's ACK, RSTs, strays)
    send_errors: int = 0

    @property
    def packets_out(self) -> int:
        return self.syn_acks + self.probe_acks


class Responder:
    """Decides the answer to each segment, from the segment alone."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or os.urandom(16)

    def offset(self, segment: Segment) -> int:
        """Our sequence number minus the client's, for this connection: a keyed hash of it."""
        key = f"{segment.src} {segment.sport} {segment.dst} {segment.dport}".encode()
        digest = hashlib.blake2s(key, key=self.secret, digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def answer(self, segment: Segment) -> bytes | None:
        """The packet to send back, or None."""
        syn, ack = segment.has(dpkt.tcp.TH_SYN), segment.has(dpkt.tcp.TH_ACK)
        if segment.has(dpkt.tcp.TH_RST):
            return None
        if syn and not ack:
            ours = segment.seq + self.offset(segment)
            flags = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
            return build(segment, ours, segment.seq + 1, flags, MSS_OPTION)
        if syn or not ack:
            return None
        # Every segment of a trapped connection acknowledges our SYN: ack = our ISN + 1.
        client_isn = (segment.ack - 1 - self.offset(segment)) & MASK32
        after_syn = (segment.seq - client_isn) & MASK32
        # Linux probes a zero window with an empty segment one byte below its next one (the
        # SYN's); other stacks push a byte of data, or their FIN, at the next one. The
        # handshake's own ACK (empty, at the next one) needs no answer.
        probe = after_syn == 0 or (
            after_syn == 1 and (segment.payload or segment.has(dpkt.tcp.TH_FIN))
        )
        if not probe:
            return None
        # Acknowledge the SYN and nothing more, with the window still zero.
        return build(segment, segment.ack, client_isn + 1, dpkt.tcp.TH_ACK)


# --- the kernel side --------------------------------------------------------------------------


def ruleset(port: int, sources: list[str]) -> str:
    """The nftables table that keeps `sources`' packets to `port` from the kernel's TCP.

    Priority raw: before connection tracking, so the kernel keeps nothing for them either.
    """
    networks = [ipaddress.ip_network(source, strict=False) for source in sources]
    lines = []
    for version, match in ((4, "ip saddr"), (6, "ip6 saddr")):
        chosen = ", ".join(str(n) for n in networks if n.version == version)
        if chosen:
            lines.append(
                f"        {match} {{ {chosen} }} tcp dport {port} counter name {COUNTER} drop"
            )
    return (
        f"table inet {TABLE} {{\n"
        f"    counter {COUNTER} {{ }}\n"
        "    chain steer {\n"
        "        type filter hook prerouting priority raw; policy accept;\n"
        + "\n".join(lines)
        + "\n    }\n}\n"
    )


def filter_expression(port: int, sources: list[IPNetwork]) -> str:
    """The pcap filter for the packet socket: the trapped sources' TCP segments to `port`."""
    nets = " or ".join(f"src net {network}" for network in sources)
    return f"tcp dst port {port} and ({nets})"


def compile_filter(expression: str) -> list[tuple[int, int, int, int]]:
    """Classic BPF for `expression` on raw IP packets, compiled by tcpdump (libpcap)."""
    if shutil.which("tcpdump") is None:
        raise TarpitError(
            "strategy zero-window compiles its packet filter with tcpdump, which is not "
            "installed: install it (apt-get install tcpdump)"
        )
    result = subprocess.run(
        ["tcpdump", "-y", "RAW", "-ddd", expression], capture_output=True, text=True, timeout=10
    )
    if result.returncode != 0:
        raise TarpitError(f"tcpdump cannot compile the filter {expression!r}: {result.stderr}")
    count, *lines = result.stdout.split("\n")
    program = [tuple(int(word) for word in line.split()) for line in lines if line.strip()]
    if len(program) != int(count):
        raise TarpitError(f"tcpdump gave {len(program)} BPF instructions, not {count}")
    return program  # type: ignore[return-value]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    # struct sock_fprog: the instruction count, then a pointer to the instructions.
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _discard_queued(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(65535)


def check_steering() -> None:
    """The steering table must be in place, or the kernel would answer the SYNs too."""
    if shutil.which("nft") is None:
        raise TarpitError(
            "strategy zero-window needs nft: install nftables (apt-get install nftables)"
        )
    result = subprocess.run(
        ["nft", "list", "table", "inet", TABLE], capture_output=True, text=True, timeout=10
    )
    if result.returncode != 0:
        problem = result.stderr.strip().splitlines()[:1] or ["not found"]
        raise TarpitError(
            f"no nftables table inet {TABLE} in this network namespace ({problem[0]}): without "
            "it the kernel answers the trapped sources too; load it first (closebench does: "
            "closebench/defender/steering.py, from closebench/servers/zero_window.py ruleset())"
        )


@dataclass
class ZeroWindowTarpit:
    """The packet socket, the raw sockets and the responder; driven by the server's event loop."""

    port: int
    sources: tuple[IPNetwork, ...]
    responder: Responder = field(default_factory=Responder)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._receiver: socket.socket | None = None
        self._senders: dict[int, socket.socket] = {}

    def open(self) -> None:
        """Check the steering table, open the sockets; TarpitError says what is missing."""
        if not self.sources:
            raise TarpitError("strategy zero-window traps sources by address: give --abuse-source")
        check_steering()
        program = compile_filter(filter_expression(self.port, list(self.sources)))
        try:
            receiver = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise TarpitError(
                "strategy zero-window needs CAP_NET_RAW for its packet and raw sockets: run as "
                "root, or without sudo under `unshare -Urnm`"
            ) from None
        try:
            attach_filter(receiver, program)
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            receiver.setblocking(False)
            _discard_queued(receiver)  # what arrived before the filter was attached
            for family, inet in ((4, socket.AF_INET), (6, socket.AF_INET6)):
                # IPPROTO_RAW: we write the IP header too (IP_HDRINCL), and it receives nothing.
                self._senders[family] = socket.socket(inet, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except OSError as error:
            receiver.close()
            self.close()
            raise TarpitError(f"strategy zero-window cannot open its sockets: {error}") from None
        self._receiver = receiver

    def fileno(self) -> int:
        if self._receiver is None:
            raise RuntimeError("the tarpit is not open")
        return self._receiver.fileno()

    def on_readable(self) -> None:
        """Answer what has arrived (at most RECV_BATCH packets, then back to the loop)."""
        assert self._receiver is not None
        for _ in range(RECV_BATCH):
            try:
                packet, address = self._receiver.recvfrom(65535)
            except BlockingIOError:
                return
            if address[2] != PACKET_HOST:
                continue
            self.handle(packet)

    def handle(self, packet: bytes) -> None:
        segment = parse(packet)
        if segment is None:
            return
        self.counters.packets_in += 1
        reply = self.responder.answer(segment)
        if reply is None:
            self.counters.ignored += 1
            return
        try:
            self._senders[segment.family].sendto(reply, (segment.src, 0))
        except OSError:
            self.counters.send_errors += 1
            return
        if segment.has(dpkt.tcp.TH_SYN):
            self.counters.syn_acks += 1
        else:
            self.counters.probe_acks += 1

    def close(self) -> None:
        for sock in [self._receiver, *self._senders.values()]:
            if sock is not None:
                sock.close()
        self._receiver = None
        self._senders.clear()

    def stats(self) -> dict[str, int]:
        return {**asdict(self.counters), "packets_out": self.counters.packets_out}

"""The wire in production: a raw socket out, a packet socket with a BPF program in.

Out, an IPPROTO_RAW socket: we write whole IP packets (the templates), marked with MARK so that
the runner's nft rule lets our own RSTs pass. In, an AF_PACKET socket on the attacker's interface:
it gets its copy of each packet before the host's firewall and TCP, with the kernel's receive
time, and only what the BPF program (compiled by the runner, libpcap through scapy) lets through:
the server's segments to our ports, and ICMP errors.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct

from harness.attackers.packet.decode import Decoder
from harness.attackers.packet.segments import IcmpError, Kind, Segment
from harness.attackers.packet.templates import Template

MARK = 0x5CA9  # fwmark on our packets: the runner's nft rule spares our RSTs
IFNAME = "eth0"  # the attacker host's link towards the defender (or the router)
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # the kernel's receive time of each packet, as a timespec
SOL_PACKET = 263
PACKET_STATISTICS = 6
RX_BUFFER = 32 << 20
RECV_SIZE = 2048  # more than the lab's MTU; only headers and a payload's first bytes are read
RECV_BATCH = 256  # packets read per call, so that timers and starts get their turn
TIMESPEC = struct.Struct("qq")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)


class RawWire:
    """Sends templates patched per connection; receives this attack's packets, decoded."""

    def __init__(
        self,
        family: int,
        dst: str,
        templates: list[list[Template]],
        bpf: list[list[int]],
        decoder: Decoder,
        ifname: str = IFNAME,
    ) -> None:
        self.templates = templates  # per source address, per Kind
        self.decode = decoder.decode
        self.packets_sent = self.bytes_sent = self.packets_received = self.packets_ignored = 0
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.tx = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
            self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self.tx.connect((dst, 0))
            self.rx = _receiver(family, bpf, ifname)
        except BaseException:
            self.tx.close()
            raise

    def fileno(self) -> int:
        return self.rx.fileno()

    def close(self) -> None:
        self.tx.close()
        self.rx.close()

    def send(self, kind: Kind, src: int, port: int, seq: int, ack: int) -> None:
        packet = self.templates[src][kind].packet(port, seq, ack)
        self.tx.send(packet)  # OSError (ENOBUFS, no route) goes to the engine: a lost packet
        self.packets_sent += 1
        self.bytes_sent += len(packet)

    def receive(self) -> list[Segment | IcmpError]:
        """What arrived since the last call (at most RECV_BATCH packets); never blocks."""
        found = []
        recvmsg, decode, timespec = self.rx.recvmsg, self.decode, TIMESPEC.unpack_from
        received = 0
        while received < RECV_BATCH:
            try:
                data, ancillary, _, _ = recvmsg(RECV_SIZE, ANCILLARY)
            except BlockingIOError:
                break
            received += 1
            # The one control message asked for: SO_TIMESTAMPNS, the kernel's receive time.
            seconds, nanoseconds = timespec(ancillary[0][2])
            item = decode(data, seconds + nanoseconds * 1e-9)
            if item is not None:
                found.append(item)
        self.packets_received += received
        self.packets_ignored += received - len(found)
        return found

    def stats(self) -> dict:
        drops = None
        with contextlib.suppress(OSError):
            _, drops = struct.unpack("II", self.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return {
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "packets_received": self.packets_received,
            "packets_ignored": self.packets_ignored,
            "receive_drops": drops,
        }


def _receiver(family: int, bpf: list[list[int]], ifname: str) -> socket.socket:
    """An AF_PACKET socket that only ever queues what the BPF program lets through."""
    # Protocol 0 queues nothing until bind(), which comes after the filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        insns = b"".join(struct.pack("HBBI", *insn) for insn in bpf)
        program = ctypes.create_string_buffer(insns)
        fprog = struct.pack("HP", len(bpf), ctypes.addressof(program))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RX_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, ETH_P_IP if family == 4 else ETH_P_IPV6))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reply_filter(
    family: int, target: str, dport: int, sources: list[str], ports: str, bare_acks: bool
) -> str:
    """tcpdump syntax for what the engine must see, from the IP header on (DLT_RAW).

    The server's segments to our ports (without its bare ACKs unless `bare_acks`: an engine that
    does not retransmit has nothing to learn from them) and ICMP errors. libpcap cannot index TCP
    headers over IPv6, so there the offsets are written out for a TCP header right after the
    IPv6 header, which is all a server sends.
    """
    if family == 4:
        tcp = "ip and tcp"
        ends = "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0"
        payload = "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)"
        icmp = "icmp and (icmp[0] == 3 or icmp[0] == 11)"
    else:
        tcp = "ip6 and ip6[6] == 6"
        ends = "ip6[53] & 0x07 != 0"
        payload = "ip6[4:2] - ((ip6[52] & 0xf0) >> 2)"
        icmp = "icmp6 and (ip6[40] == 1 or ip6[40] == 3)"
    replies = f"{tcp} and src host {target} and src port {dport} and dst portrange {ports}"
    if not bare_acks:
        replies += f" and ({ends} or {payload} != 0)"
    ours = " or ".join(f"dst host {s}" for s in sources)
    return f"(({replies}) or ({icmp})) and ({ours})"


def compile_bpf(expression: str) -> list[list[int]]:
    """[code, jt, jf, k] instructions for SO_ATTACH_FILTER, for packets from the IP header on."""
    from scapy.arch.common import compile_filter, free_filter
    from scapy.data import DLT_RAW

    program = compile_filter(expression, None, DLT_RAW)
    try:
        return [
            [i.code, i.jt, i.jf, i.k & 0xFFFFFFFF]
            for i in (program.bf_insns[n] for n in range(program.bf_len))
        ]
    finally:
        free_filter(program)

"""The wire in production: a raw socket out, a packet socket with a BPF program in.

Out, an IPPROTO_RAW socket: we write whole IP packets (the templates), marked with MARK so that
the runner's nft rule lets our own RSTs pass, BATCH of them per system call (send_batch.py): the
loop flushes what waits before it sleeps, and hands the engine the sends that failed.

In, an AF_PACKET socket on the attacker's interface: it gets its copy of each packet before the
host's firewall and TCP, and only what the BPF program (compiled by the runner, libpcap through
scapy) lets through: the server's segments to our ports, and ICMP errors. The kernel writes
them, each with its receive time, into a ring shared with us (TPACKET_V2), so reading one costs
no system call: recvmsg() would cost two (Python asks the kernel for the interface's name to
build the sender's address).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import socket
import struct

from closebench.attackers.packet.connection import LostSend
from closebench.attackers.packet.decode import Decoder
from closebench.attackers.packet.segments import IcmpError, Kind, Segment
from closebench.attackers.packet.send_batch import BATCH, SendBatch
from closebench.attackers.packet.templates import Template

MARK = 0x5CA9  # fwmark on our packets: the runner's nft rule spares our RSTs
IFNAME = "eth0"  # the attacker host's link towards the defender (or the router)
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V2 = 1
TP_STATUS_USER = 1  # the frame is ours to read; 0 (TP_STATUS_KERNEL) hands it back
FRAME_SIZE = 1024  # a frame's header, then the packet, cut short if longer (lengths are read
FRAMES_PER_BLOCK = 128  # from the IP and TCP headers, and only a payload's start is kept)
BLOCKS = 128  # 16384 frames, 16 MiB
RECV_BATCH = 256  # packets read per call, so that timers and starts get their turn
# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec (then vlan fields, padding)
FRAME_HEADER = struct.Struct("IIIHHII")


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
        batch: int = BATCH,
    ) -> None:
        self.templates = templates  # per source address, per Kind
        self.decode = decoder.decode
        self.packets_received = self.packets_ignored = 0
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
        self.ring = mmap.mmap(self.rx.fileno(), FRAME_SIZE * FRAMES_PER_BLOCK * BLOCKS)
        self.frames = [n * FRAME_SIZE for n in range(FRAMES_PER_BLOCK * BLOCKS)]
        self.next_frame = 0
        largest = max(t.size for per_source in templates for t in per_source)
        self.batch = SendBatch(self.tx.fileno(), largest, batch)
        self.lost: list[LostSend] = []  # failed sends of batches flushed because they were full

    def fileno(self) -> int:
        return self.rx.fileno()

    def close(self) -> None:
        self.ring.close()
        self.tx.close()
        self.rx.close()

    def send(self, kind: Kind, src: int, port: int, seq: int, ack: int) -> None:
        """Queued: it goes out at the next flush (at the latest when BATCH packets wait)."""
        if self.batch.put(self.templates[src][kind], kind, src, port, seq, ack):
            self.lost += self.batch.flush()

    def flush(self) -> list[LostSend]:
        """Send what waits; every send that failed since the last flush (a lost packet)."""
        lost = self.lost + self.batch.flush() if self.lost else self.batch.flush()
        self.lost = []
        return lost

    def receive(self) -> list[Segment | IcmpError]:
        """What arrived since the last call (at most RECV_BATCH packets); never blocks."""
        found = []
        ring, frames, decode, header = self.ring, self.frames, self.decode, FRAME_HEADER
        index, count = self.next_frame, len(frames)
        received = 0
        while received < RECV_BATCH:
            frame = frames[index]
            if not ring[frame] & TP_STATUS_USER:
                break
            _, _, snaplen, _, net, seconds, nanoseconds = header.unpack_from(ring, frame)
            data = ring[frame + net : frame + net + snaplen]
            ring[frame : frame + 4] = b"\0\0\0\0"  # the frame goes back to the kernel
            index = (index + 1) % count
            received += 1
            item = decode(data, seconds + nanoseconds * 1e-9)
            if item is not None:
                found.append(item)
        self.next_frame = index
        self.packets_received += received
        self.packets_ignored += received - len(found)
        return found

    def stats(self) -> dict:
        drops = None
        with contextlib.suppress(OSError):
            _, drops = struct.unpack("II", self.rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return {
            "packets_sent": self.batch.packets_sent,
            "bytes_sent": self.batch.bytes_sent,
            "packets_received": self.packets_received,
            "packets_ignored": self.packets_ignored,
            "receive_drops": drops,
        }


def _receiver(family: int, bpf: list[list[int]], ifname: str) -> socket.socket:
    """An AF_PACKET socket with a receive ring, that only ever queues what the BPF lets through."""
    # Protocol 0 queues nothing until bind(), which comes after the filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        insns = b"".join(struct.pack("HBBI", *insn) for insn in bpf)
        program = ctypes.create_string_buffer(insns)
        fprog = struct.pack("HP", len(bpf), ctypes.addressof(program))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        block = FRAME_SIZE * FRAMES_PER_BLOCK
        request = struct.pack("IIII", block, BLOCKS, FRAME_SIZE, FRAMES_PER_BLOCK * BLOCKS)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
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

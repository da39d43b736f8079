"""A host's kernel TCP sockets, read from its /proc/net files: states, orphans, retransmissions.

These see what the fd count cannot: a socket the application has closed but the kernel still keeps
(an orphan retransmitting its FIN, a TIME-WAIT entry).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Protocol


class Host(Protocol):
    """What these readers need of a host: its /proc/net files (a lab Host, or a process's own
    network namespace: cli/sample.py)."""

    def proc_net(self, name: str) -> str: ...


# include/net/tcp_states.h
TCP_STATES = {
    0x01: "ESTABLISHED",
    0x02: "SYN-SENT",
    0x03: "SYN-RECV",
    0x04: "FIN-WAIT-1",
    0x05: "FIN-WAIT-2",
    0x06: "TIME-WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE-WAIT",
    0x09: "LAST-ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
    0x0C: "NEW-SYN-RECV",
}

# /proc/net/sockstat's orphan count is machine-wide, not per namespace: orphans are counted here
# from the per-namespace socket table instead (sockstat's inuse and tw are per namespace).
ORPHAN_STATES = frozenset({"FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "LAST-ACK"})


@dataclass(frozen=True)
class TcpSocket:
    state: str
    local: tuple[str, int]
    remote: tuple[str, int]
    retransmits: int  # unanswered retransmissions of the current segment
    inode: int  # 0 once no file refers to the socket

    @property
    def orphan(self) -> bool:
        """Closed by the application, still kept by the kernel (e.g. retransmitting its FIN)."""
        return self.inode == 0 and self.state in ORPHAN_STATES


def _address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp* prints each 32-bit word in host byte order.
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f"!{len(words)}I", *words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    address = ipaddress.ip_address(socket.inet_ntop(family, packed))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port, 16)


def tcp_sockets(host: Host) -> list[TcpSocket]:
    found = []
    for table in ("tcp", "tcp6"):
        for line in host.proc_net(table).splitlines()[1:]:
            fields = line.split()
            found.append(
                TcpSocket(
                    state=TCP_STATES.get(int(fields[3], 16), fields[3]),
                    local=_address(fields[1]),
                    remote=_address(fields[2]),
                    retransmits=int(fields[6], 16),
                    inode=int(fields[9]),
                )
            )
    return found


def state_summary(host: Host) -> tuple[Counter[str], int]:
    """Sockets by state (LISTEN left out) and the orphan count, without decoding addresses:
    cheap enough to sample ten times a second."""
    counts: Counter[str] = Counter()
    orphans = 0
    for table in ("tcp", "tcp6"):
        for line in host.proc_net(table).splitlines()[1:]:
            fields = line.split(maxsplit=10)
            state = TCP_STATES.get(int(fields[3], 16), fields[3])
            if state == "LISTEN":
                continue
            counts[state] += 1
            orphans += fields[9] == "0" and state in ORPHAN_STATES
    return counts, orphans


def tcp_counters(host: Host) -> dict[str, int]:
    """The Tcp counters of /proc/net/snmp (RetransSegs, OutRsts, ActiveOpens...)."""
    lines = [line.split() for line in host.proc_net("snmp").splitlines() if line.startswith("Tcp:")]
    names, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}


def sockstat(host: Host) -> dict[str, int]:
    """The TCP line of /proc/net/sockstat: inuse and tw are the namespace's own; orphan, alloc and
    mem (in pages) the kernel keeps for the whole machine."""
    for line in host.proc_net("sockstat").splitlines():
        if line.startswith("TCP:"):
            words = line.split()[1:]
            return {name: int(value) for name, value in zip(words[::2], words[1::2], strict=True)}
    return {}


def tcp_ext_counters(host: Host) -> dict[str, int]:
    """The TcpExt counters of /proc/net/netstat (ListenOverflows, TCPAbortOnMemory...), the
    namespace's own."""
    lines = [line.split() for line in host.proc_net("netstat").splitlines()]
    pairs = [(n, v) for n, v in zip(lines[::2], lines[1::2], strict=False) if n[0] == "TcpExt:"]
    if not pairs:
        return {}
    names, values = pairs[0]
    return {name: int(value) for name, value in zip(names[1:], values[1:], strict=True)}

"""The scapy spammer: a client that crafts every segment itself and holds no kernel socket.

It sends the SYN, waits for the SYN-ACK, sends the request with the ACK, and watches each packet
that comes back, so it sees the truth: every byte, the FIN, a retransmitted FIN, the RST, an ICMP
error, or nothing at all. It behaves as a kernel client would: it retransmits its SYN, its
request and its FIN until acknowledged, answers what it has no connection for with RST, and when
its own timeout ends an attempt it aborts (RST), so the server keeps nothing of it. The packet
work is the shared engine's (closebench/attackers/packet/), in a child in the attacker host.

The attacker's kernel knows nothing of these connections and would answer each SYN-ACK with RST.
An nft table in the attacker host drops the server's segments to the spammer's source ports
before the kernel's TCP sees them, and RSTs from those ports, which lie outside the kernel's
ephemeral range so kernel-socket clients in the same host are unaffected; the spammer's own
RSTs carry a mark (MARK) that lets them pass.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from closebench.attackers import rst_filter
from closebench.attackers.packet.connection import Profile
from closebench.attackers.packet.raw_sockets import MARK
from closebench.attackers.packet.segments import Kind
from closebench.attackers.packet.supervisor import PacketAttacker
from closebench.attackers.policy import Target
from closebench.attackers.rst_filter import SOURCE_PORTS, PortRange

if TYPE_CHECKING:
    from closebench.lab import Host

TABLE_PREFIX = "closebench_scapy"

_table_numbers = itertools.count()


class ScapySpammer(PacketAttacker):
    """Runs `policy` against `target` with hand-made packets, one Attempt a connection."""

    name = "scapy"
    who = "scapy spammer"
    profile = Profile(give_up=Kind.RST_ACK, retransmits=True)
    tools = ("nft", "sysctl")

    def __init__(self, label: str = "scapy", ports: PortRange = SOURCE_PORTS) -> None:
        super().__init__(label, ports=ports)

    def prepare(self, host: Host) -> None:
        rst_filter.keep_ephemeral_ports_apart(host, self.ports, "the scapy spammer")

    def table_name(self, host: Host) -> str:
        return f"{TABLE_PREFIX}_{os.getpid()}_{next(_table_numbers)}"  # several may run at once

    def rules(self, table: str, target: Target, sources: list[str]) -> str:
        source = sources[0] if len(sources) == 1 else None
        return rst_filter_rules(table, target, source, self.ports)


def rst_filter_rules(table: str, target: Target, source: str | None, ports: PortRange) -> str:
    """Drop the kernel's RSTs from `source`'s `ports`; ours carry MARK and pass.

    The target's segments to those ports are dropped before the kernel's TCP sees them (the
    spammer's packet socket has had its copy): it has nothing to say to them but RST, and not
    saying it is the cheaper way to keep it quiet.
    """
    replies = (target.address, target.port)
    return rst_filter.rules(
        table, target.family, ports, source=source, spare_mark=MARK, replies_from=replies
    )

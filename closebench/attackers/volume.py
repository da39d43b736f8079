"""The volume attacker: full TCP handshakes and requests from raw sockets, for DoS scenarios.

It is what a DoS tool does: packets prebuilt once with scapy, patched per connection and sent on
a raw socket, from one or many source addresses, tens of thousands of connections a second. It
runs the same engine as the scapy spammer (closebench/attackers/packet/), so it classifies every
attempt as fully (retransmissions, ICMP errors, duplicate FINs seen), but it is no polite client:
it never sends its request or FIN again (so the server's bare ACKs stay in the kernel, filtered
out before Python sees them), and when its timeout ends an attempt it closes with a FIN.

    runner (run())                               child (python -m closebench.attackers.packet)
      nft: drop the attacker kernel's RSTs         raw socket: SYN, ACK+request, FIN
        and the server's segments to our ports     AF_PACKET socket + BPF: only the
      spawns the child in the attacker host          defender's replies to our ports
      config (templates, BPF) -> child stdin       records -> stdout, batched lines

The ports (61000-65535 by default) lie outside the kernel's ephemeral range, so kernel-socket
clients in the same host are untouched by the nft rules (see rst_filter.py; it refuses to run if
the ranges overlap).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from closebench.attackers import rst_filter
from closebench.attackers.packet.connection import Profile
from closebench.attackers.packet.raw_sockets import MARK
from closebench.attackers.packet.segments import Kind
from closebench.attackers.packet.supervisor import PacketAttacker
from closebench.attackers.policy import Target
from closebench.attackers.rst_filter import SOURCE_PORTS, PortRange
from closebench.core.errors import LabError, UsageError

if TYPE_CHECKING:
    from closebench.lab import Host

NFT_TABLE = "closebench_volume"  # the prefix of each engine's table
_table_numbers = itertools.count()
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"  # also governs IPv6


class VolumeAttacker(PacketAttacker):
    """Runs `policy` against `target` from raw sockets in the attacker host, one Attempt each.

    `sources`: addresses of the attacker host to send from (each brings its own 4536 ports); add
    them first with `lab.add_attacker_addresses(n)`. Default: run()'s `source`, else the
    attacker's main address.
    """

    name = "volume"
    who = "volume attacker"
    profile = Profile(give_up=Kind.FIN, retransmits=False)

    def __init__(
        self,
        label: str = "volume",
        sources: Sequence[str] | None = None,
        ports: PortRange = SOURCE_PORTS,
    ) -> None:
        if ports.low < 1024:
            raise UsageError(f"bad volume port range {ports}")
        super().__init__(label, sources, ports)

    def prepare(self, host: Host) -> None:
        with host.entered(), open(EPHEMERAL_RANGE) as f:  # the host's own, as it is per netns
            ephemeral = PortRange.parse(f.read())
        if ephemeral.overlaps(self.ports):
            raise LabError(
                f"{self.who}: source ports {self.ports} overlap the attacker host's ephemeral "
                f"range {ephemeral}: kernel clients there would lose their RSTs"
            )

    def table_name(self, host: Host) -> str:
        # Several engines may run in one host, each on its own ports or addresses (a trial
        # gives them: trials/attacker_processes.py): each its own table, removed by its own end.
        return f"{NFT_TABLE}_{os.getpid()}_{next(_table_numbers)}"

    def rules(self, table: str, target: Target, sources: list[str]) -> str:
        # The target's segments to our ports are dropped before the attacker kernel's TCP sees
        # them (the AF_PACKET socket has had its copy), and any RST from our ports to the target
        # that still gets out is dropped too, unless it is our own (MARK).
        return rst_filter.rules(
            table,
            target.family,
            self.ports,
            peer=target.address,
            spare_mark=MARK,
            replies_from=(target.address, target.port),
        )

"""The attacker kernel's RSTs, kept out of the connections of an attacker that has no socket.

The packet attackers (scapy_spammer, volume) craft every segment themselves: the attacker host's
kernel knows no socket for their connections and would answer each SYN-ACK with an RST. An nft
table in the attacker host drops those RSTs, for the attacker's own source ports only. The ports
lie outside the kernel's ephemeral range, so kernel-socket clients in the same host keep theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from closebench.core.errors import LabError, UsageError

if TYPE_CHECKING:  # the attackers' children import this module too: keep their start light
    from closebench.lab import Host

EPHEMERAL_SYSCTL = "net.ipv4.ip_local_port_range"  # also governs IPv6


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 65535:
            raise UsageError(f"bad port range {self.low}-{self.high}")

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def overlaps(self, other: PortRange) -> bool:
        return self.low <= other.high and other.low <= self.high

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """Read `61000-65535`, or sysctl's `32768<tab>60999`."""
        low, high = re.split(r"[\s-]+", text.strip())
        return cls(int(low), int(high))


SOURCE_PORTS = PortRange(61000, 65535)  # above Linux's default ephemeral range 32768-60999


def keep_ephemeral_ports_apart(host: Host, ports: PortRange, who: str) -> PortRange:
    """Shrink the host's ephemeral range if it overlaps `ports`; return the range in force.

    Otherwise a kernel-socket client could be given one of our ports and lose its RSTs to our rule.
    """
    ephemeral = PortRange.parse(host.run(["sysctl", "-n", EPHEMERAL_SYSCTL]).strip())
    if not ephemeral.overlaps(ports):
        return ephemeral
    if ephemeral.low < ports.low:
        ephemeral = PortRange(ephemeral.low, ports.low - 1)
    elif ephemeral.high > ports.high:
        ephemeral = PortRange(ports.high + 1, ephemeral.high)
    else:
        raise LabError(
            f"the attacker host's ephemeral ports ({ephemeral}) cover {who}'s "
            f"source ports ({ports}); give it a range outside them"
        )
    host.run(["sysctl", "-q", "-w", f"{EPHEMERAL_SYSCTL}={ephemeral.low} {ephemeral.high}"])
    return ephemeral


def rules(
    table: str,
    family: int,
    ports: PortRange,
    *,
    source: str | None = None,
    peer: str | None = None,
    spare_mark: int | None = None,
    replies_from: tuple[str, int] | None = None,
) -> str:
    """The nft table that drops the RSTs the host sends from `ports`.

    Only those from `source` and to `peer` when given; never those carrying the fwmark
    `spare_mark` (the attacker's own). `replies_from` (address, port): also drop that peer's
    segments to `ports` before the kernel's TCP sees them (a packet socket has had its copy).
    """
    ip = "ip" if family == 4 else "ip6"
    scope = "".join(
        f"{ip} {field} {address} "
        for field, address in (("saddr", source), ("daddr", peer))
        if address is not None
    )
    spare = f"meta mark != {spare_mark:#x} " if spare_mark is not None else ""
    chains = ""
    if replies_from is not None:
        address, port = replies_from
        chains += (
            "  chain in {\n"
            "    type filter hook prerouting priority 0; policy accept;\n"
            f"    {ip} saddr {address} tcp sport {port} tcp dport {ports} drop\n"
            "  }\n"
        )
    chains += (
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    {scope}tcp sport {ports} tcp flags & rst == rst {spare}drop\n"
        "  }\n"
    )
    return f"table inet {table} {{\n{chains}}}\n"


@contextmanager
def installed(host: Host, table: str, ruleset: str) -> Iterator[None]:
    """Load `ruleset` (the table `table`, see rules()) into the host; remove the table after."""
    host.run(["nft", "-f", "-"], stdin=ruleset)
    try:
        yield
    finally:
        remove(host, table)


def remove(host: Host, table: str) -> None:
    try:
        host.run(["nft", "delete", "table", "inet", table])
    except LabError:
        if host.keeper.alive():  # a closed lab took the table with it: nothing to do
            raise


def present(host: Host, table: str) -> bool:
    """Whether the host has an inet table named `table` (or one whose name begins so)."""
    return f"table inet {table}" in host.run(["nft", "list", "tables"])

"""The lab router's connection tracking: what a stateful device between the attacker and the
defender (a NAT, a firewall) remembers of each connection.

The router tracks connections because its nftables table uses `ct` (closebench/lab/topology.py);
its table is read from /proc/PID/net/nf_conntrack, one line per tracked connection, as the
router's namespace sees it. A connection the defender ended silently stays ESTABLISHED there for
days (the kernel's default nf_conntrack_tcp_timeout_established is five days); one it ended with
an RST the router saw go by is CLOSE for ten seconds and then forgotten, whether or not the RST
reached the client.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from closebench.lab.hosts import Host


@dataclass(frozen=True)
class ConntrackReading:
    entries: int  # tracked TCP connections to the port, in any state
    by_state: dict[str, int]  # ESTABLISHED, CLOSE, TIME_WAIT, FIN_WAIT...

    @property
    def established(self) -> int:
        return self.by_state.get("ESTABLISHED", 0)


def read(host: Host, port: int) -> ConntrackReading:
    """The host's tracked TCP connections whose original destination port is `port`."""
    with open(f"/proc/{host.pid}/net/nf_conntrack") as table:
        return parse(table.read(), port)


def parse(text: str, port: int) -> ConntrackReading:
    states: Counter[str] = Counter()
    wanted = f"dport={port}"
    for line in text.splitlines():
        # ipv4 2 tcp 6 431999 ESTABLISHED src=... dst=... sport=... dport=8080 src=... (reply)
        fields = line.split()
        if len(fields) < 6 or fields[2] != "tcp":
            continue
        original = next((f for f in fields[6:] if f.startswith("dport=")), None)
        if original == wanted:
            states[fields[5]] += 1
    return ConntrackReading(sum(states.values()), dict(states))

"""synproxy: nftables' SYN proxy in front of the server, in the defender host.

A client's SYN is not tracked and never reaches the server's TCP: the kernel answers it with a
SYN cookie on the server's behalf, and only a client that completes the handshake (its ACK
carries a valid cookie) is handed on, with a fresh handshake to the server. So SYNs that never
finish (a SYN flood) cost neither a request socket nor a conntrack entry. As the nftables wiki has
it, conntrack must not pick up connections it did not see start (nf_conntrack_tcp_loose = 0, set
in the defender's namespace only) and invalid packets are dropped. The counter `synproxied`
counts the packets the SYN proxy answered (SYNs and the ACKs that complete a handshake).
"""

from __future__ import annotations

import json

from closebench.core.errors import LabError
from closebench.lab import Host
from closebench.lab.privileges import require_tools

STRATEGY = "synproxy"
TABLE = "closebench_synproxy"
COUNTER = "synproxied"
LOOSE = "net.netfilter.nf_conntrack_tcp_loose"


def ruleset(port: int) -> str:
    return (
        f"table inet {TABLE} {{\n"
        f"    counter {COUNTER} {{ }}\n"
        f"    chain raw {{\n"
        f"        type filter hook prerouting priority raw; policy accept;\n"
        f"        tcp dport {port} tcp flags & (syn | ack) == syn notrack\n"
        f"    }}\n"
        f"    chain gate {{\n"
        f"        type filter hook input priority filter - 10; policy accept;\n"
        f'        tcp dport {port} ct state invalid,untracked counter name "{COUNTER}" '
        f"synproxy mss 1460 wscale 7 timestamp sack-perm\n"
        f"        tcp dport {port} ct state invalid drop\n"
        f"    }}\n"
        f"}}\n"
    )


def install(host: Host, port: int) -> None:
    """The SYN proxy table in `host`, with conntrack's loose pick-up off there."""
    require_tools("nft")
    try:
        host.run(["sysctl", "-q", "-w", f"{LOOSE}=0"])
        host.run(["nft", "-f", "-"], stdin=ruleset(port))
    except LabError as error:
        raise LabError(f"cannot install the SYN proxy table inet {TABLE}: {error}") from None


def proxied(host: Host) -> int:
    """Packets the SYN proxy answered so far in `host`."""
    text = host.run(["nft", "-j", "list", "counter", "inet", TABLE, COUNTER])
    for item in json.loads(text).get("nftables", []):
        if "counter" in item and item["counter"].get("name") == COUNTER:
            return int(item["counter"].get("packets", 0))
    raise LabError(f"no counter {COUNTER} in the table inet {TABLE}")

"""conn-cap: an nftables table in the defender host that refuses a source address's connections
beyond `count` at once (`ct count over N`, nft_connlimit), with an RST (verdict=reject) or by
dropping the SYN (verdict=drop).

The count is conntrack's: connections of that address the kernel still tracks, closed ones
(TIME_WAIT, CLOSE) not counted. Each address gets its own count in a dynamic set, one per family.
The table lives in the lab's defender namespace and goes with it; the host's firewall is never
touched. Its counter `capped` counts the refused SYNs, retransmissions included.
"""

from __future__ import annotations

import json

from closebench.core.errors import LabError
from closebench.lab import Host
from closebench.lab.privileges import require_tools
from closebench.servers.strategies import StrategySpec

STRATEGY = "conn-cap"
TABLE = "closebench_cap"
COUNTER = "capped"
VERDICTS = {"reject": "reject with tcp reset", "drop": "drop"}


def ruleset(port: int, count: int, verdict: str) -> str:
    """The table: a new connection (a SYN without ACK) to `port` from an address that already
    has `count` tracked connections meets `verdict`."""
    rules = "".join(
        f"        tcp dport {port} tcp flags & (syn | ack) == syn ct state new "
        f"add @cap{family} {{ {match} saddr ct count over {count} }} "
        f'counter name "{COUNTER}" {VERDICTS[verdict]}\n'
        for family, match in ((4, "ip"), (6, "ip6"))
    )
    return (
        f"table inet {TABLE} {{\n"
        f"    set cap4 {{ type ipv4_addr; size 65535; flags dynamic; }}\n"
        f"    set cap6 {{ type ipv6_addr; size 65535; flags dynamic; }}\n"
        f"    counter {COUNTER} {{ }}\n"
        f"    chain gate {{\n"
        f"        type filter hook input priority filter - 10; policy accept;\n"
        f"{rules}"
        f"    }}\n"
        f"}}\n"
    )


def install(host: Host, port: int, spec: StrategySpec) -> None:
    """Create the cap table in `host`; a missing nft or a refused ruleset is one clear error."""
    require_tools("nft")
    text = ruleset(port, int(spec.options["count"]), str(spec.options["verdict"]))  # type: ignore[call-overload]
    try:
        host.run(["nft", "-f", "-"], stdin=text)
    except LabError as error:
        raise LabError(f"cannot install the connection cap table inet {TABLE}: {error}") from None


def refused(host: Host) -> int:
    """SYNs the cap refused so far in `host`, retransmissions included."""
    text = host.run(["nft", "-j", "list", "counter", "inet", TABLE, COUNTER])
    return parse_refused(text)


def parse_refused(text: str) -> int:
    for item in json.loads(text).get("nftables", []):
        if "counter" in item and item["counter"].get("name") == COUNTER:
            return int(item["counter"].get("packets", 0))
    raise LabError(f"no counter {COUNTER} in the table inet {TABLE}")

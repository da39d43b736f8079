"""Which attacker a scenario gets when it names none: the cheapest that does the job.

A reconnecting spammer is the packet engine (kind "scapy": crafted packets from one process,
retransmitting as a kernel client does, no kernel socket, no event loop): measured on one lab it
made about twice the kernel spammer's attempts a second on the same CPU (docs/guides/sweeps.md).
The kernel attacker stays the default where the packet engine cannot do the job: an attacker
that does not reconnect (one connection a slot, cheap either way), runs on Locust, spreads its
slots over `addresses` (a botnet), or holds more connections at once than the packet engine has
source ports for (4536 per address).
"""

from __future__ import annotations

from closebench.attackers.rst_filter import SOURCE_PORTS

PACKET_KINDS = ("scapy", "volume")  # the packet engine's kinds (closebench/attackers/packet/)
ADDRESSED_KINDS = ("kernel", *PACKET_KINDS)  # the kinds `addresses` spreads over addresses
CHEAPEST = "scapy"


def default_kind(entry: object, sweep: dict | None) -> object:
    """The raw [[attackers]] table with its kind filled in when the file names none (anything
    malformed is left as it is, for the schema to name)."""
    if not isinstance(entry, dict) or "kind" in entry:
        return entry
    return {**entry, "kind": CHEAPEST if _packet_engine_fits(entry, sweep) else "kernel"}


def _packet_engine_fits(entry: dict, sweep: dict | None) -> bool:
    if entry.get("reconnect", True) is not True or entry.get("engine", "local") != "local":
        return False
    if "addresses" in entry or "command" in entry:
        return False
    axis = sweep.get("axis") if sweep else None
    if axis == "addresses":
        return False
    concurrency = [entry.get("concurrency", 1)]
    if axis == "concurrency" and sweep is not None and isinstance(sweep.get("steps"), list):
        concurrency += sweep["steps"]
    numbers = [c for c in concurrency if isinstance(c, int | float)]
    return len(numbers) == len(concurrency) and max(numbers) <= len(SOURCE_PORTS)

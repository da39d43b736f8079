"""The nftables table of the fw-* strategies in a lab host: made before the server starts, read
while it runs.

The table (closebench/servers/bans.py `ruleset()`) lives in the defender host (`where=local`, hook
input) or in the router in front of it (`where=router`, hook forward). Either way it is inside a lab
network namespace and goes with it: the host's own firewall is never touched. For `where=router` the
server is given the router's namespace (`--ban-netns /proc/PID/ns/net`) and its ban thread enters
it: in the lab that stands for the defender asking a firewall further out to ban, without the
network round trip a real one would cost.

Reading the table (set sizes, SYN counters) is part of the defender's metrics
(closebench/defender/metrics.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, replace

from closebench.core.errors import LabError, UsageError
from closebench.defender import conn_cap, synproxy
from closebench.defender.config import ServerConfig
from closebench.lab import Host, Lab
from closebench.lab.privileges import require_tools
from closebench.servers.bans import COUNTERS, SETS, TABLE, ruleset
from closebench.servers.strategies import StrategySpec

FIREWALL_STRATEGIES = ("fw-drop", "fw-reject")


def ban_host(lab: Lab, spec: StrategySpec | None) -> Host | None:
    """The lab host whose firewall enforces the bans of `spec`; None if it bans no other way."""
    if spec is None or spec.name not in FIREWALL_STRATEGIES:
        return None
    if spec.options["where"] != "router":
        return lab.defender
    if lab.router is None:
        raise UsageError(
            f"{spec} bans on the router, and this lab has none: run it routed "
            "(routed = true in a scenario, --routed on the command line)"
        )
    return lab.router


def install(host: Host, port: int) -> None:
    """Create the ban table in `host`; a missing nft or a refused ruleset is a clear error."""
    require_tools("nft")
    hook = "forward" if host.role == "router" else "input"
    try:
        host.run(["nft", "-f", "-"], stdin=ruleset(port, hook))
    except LabError as error:
        raise LabError(f"cannot install the ban table inet {TABLE}: {error}") from None


def prepare(lab: Lab, config: ServerConfig) -> ServerConfig:
    """Install the ban table a fw-* server needs (or conn-cap's, or synproxy's table); return
    its config, told where the table is."""
    if config.spec is not None and config.spec.name == conn_cap.STRATEGY:
        conn_cap.install(lab.defender, config.port, config.spec)
        return config
    if config.spec is not None and config.spec.name == synproxy.STRATEGY:
        synproxy.install(lab.defender, config.port)
        return config
    host = ban_host(lab, config.spec)
    if host is None:
        return config
    install(host, config.port)
    if host is lab.defender:
        return config
    return replace(config, ban_netns=f"/proc/{host.pid}/ns/net")


@dataclass
class FirewallReading:
    bans_active: int  # elements in the ban sets (the kernel drops expired ones at once)
    syns_dropped: int  # SYN packets dropped or rejected so far, retransmissions included
    cpu_s: float  # what this reading cost: the nft process's CPU


def read(host: Host) -> FirewallReading:
    """The ban sets' sizes and the SYN counters of `host`, from one `nft -j list table`."""
    with host.entered():  # the nft child is made by this thread, so it starts in the host
        process = subprocess.Popen(
            ["nft", "-j", "list", "table", "inet", TABLE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    with process:
        out = process.stdout.read() if process.stdout else b""
        err = process.stderr.read() if process.stderr else b""
        # wait4, not wait: its rusage is the reading's cost, charged to the sampler.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        problem = err.decode(errors="replace").strip() or f"exit status {process.returncode}"
        raise LabError(f"{host.role}: cannot read the ban table inet {TABLE}: {problem}")
    return parse(out.decode(), usage.ru_utime + usage.ru_stime)


def parse(text: str, cpu_s: float = 0.0) -> FirewallReading:
    sets, counters = set(SETS.values()), set(COUNTERS.values())
    active = dropped = 0
    for item in json.loads(text).get("nftables", []):
        if "set" in item and item["set"].get("name") in sets:
            active += len(item["set"].get("elem", []))
        elif "counter" in item and item["counter"].get("name") in counters:
            dropped += int(item["counter"].get("packets", 0))
    return FirewallReading(active, dropped, cpu_s)

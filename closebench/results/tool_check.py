"""A tool attacker's own count of its tries, checked against the wire (part of `verify`).

A tool says what it did (attackers/tools.py: attacker_cost.tool): its tries and its wall time.
The pcap says it too, in its own way: a scanner's try is a connection (its probe), a
brute-forcer's is a request the server answered or closed on (a pair it learnt the verdict of; a
request met with silence taught it nothing). The two rates, tries per second of the tool's wall
time, must agree within TOLERANCE (or within one try, where tries are few).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

TOLERANCE = 0.10  # the tool's tries/s and the wire's, relative to the larger
# What a try is on the wire, by what the tool counts (tool_profiles.ToolProfile.tries_are).
ON_WIRE = {
    "credential pairs": "answered",
    "credential pairs (its probes)": "answered",
    "port probes": "connections",
    "port probes (SYNs)": "connections",
}


@dataclass(frozen=True)
class ToolProgress:
    tool: str
    tries: int  # as the tool counted them
    wire: int  # as the pcap shows them
    wall_s: float
    agrees: bool

    def to_dict(self) -> dict:
        return asdict(self)


def tool_figures(rows: object) -> dict[str, dict]:
    """The one tool's figures of each trial that ran one tool attacker alone (summary rows)."""
    found: dict[str, dict] = {}
    for row in rows if isinstance(rows, list) else []:
        attackers = row.get("attackers") if isinstance(row, dict) else None
        if not isinstance(attackers, dict) or len(attackers) != 1:
            continue
        [attacker] = attackers.values()
        cost = attacker.get("attacker_cost") if isinstance(attacker, dict) else None
        tool = cost.get("tool") if isinstance(cost, dict) else None
        if isinstance(tool, dict) and tool.get("tries_are") in ON_WIRE:
            found[row["trial"]] = tool
    return found


def check_tool(tool: dict, connections: int, answered: int) -> ToolProgress | None:
    """The tool's tries against the wire's; None where its figures are unreadable."""
    tries, wall = tool.get("tries"), tool.get("wall_s")
    if not isinstance(tries, int) or not isinstance(wall, int | float) or not math.isfinite(wall):
        return None
    wire = connections if ON_WIRE[tool["tries_are"]] == "connections" else answered
    agrees = abs(tries - wire) <= max(1.0, TOLERANCE * max(tries, wire))
    return ToolProgress(str(tool.get("name")), tries, wire, float(wall), agrees)


def check_tools(agreement, rows: object):
    """Each trial of a verify.RunAgreement that ran one tool: its own count of tries against
    the wire's (from the summary `rows`); the agreement, checked."""
    tools = tool_figures(rows)
    for trial in agreement.trials:
        if trial.trial in tools:
            trial.tool = check_tool(tools[trial.trial], trial.wire_connections, trial.wire_answered)
    return agreement

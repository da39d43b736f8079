"""The runner's side of a packet attacker: nft rule in, child out, its lines into Attempts.

PacketAttacker.run() checks the tools and the policy, lets the kind prepare the attacker host,
installs the kind's nft table (see rst_filter.py) for as long as the child runs, relays each
attempt to the sink and returns the child's counters. The kinds (scapy_spammer.py, volume.py)
say which sources, which rule and which Profile.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from closebench.attackers import rst_filter
from closebench.attackers.child import Child
from closebench.attackers.packet.child_config import ChildConfig
from closebench.attackers.packet.child_output import Relay
from closebench.attackers.packet.connection import Profile
from closebench.attackers.policy import Policy, Target
from closebench.attackers.rst_filter import SOURCE_PORTS, PortRange
from closebench.core.errors import UsageError
from closebench.core.outcomes import Attempt
from closebench.lab.privileges import require_tools

if TYPE_CHECKING:
    from closebench.lab import Host, Lab

STARTUP_GRACE = 10.0  # seconds the child gets to start before a stop may kill it unheard
CHILD = [sys.executable, "-m", "closebench.attackers.packet"]


class PacketAttacker:
    """Runs `policy` against `target` with crafted packets from the attacker host."""

    name = "packet"
    who = "packet attacker"  # in messages
    profile = Profile()
    tools: tuple[str, ...] = ("nft",)

    def __init__(
        self, label: str, sources: Sequence[str] | None = None, ports: PortRange = SOURCE_PORTS
    ) -> None:
        self.label = label
        self.sources = list(sources or [])
        self.ports = ports
        self.table: str | None = None  # the nft table of the latest run (removed when it ends)
        self.child: Child | None = None  # the latest run's child (reaped by run())

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | Sequence[str] | None = None,
    ) -> dict:
        """`source`: the address to send from, or several; default: the kind's own sources."""
        require_tools(*self.tools)
        sources = self._sources(lab, target, source)
        slots = len(self.ports) * len(sources)
        if policy.concurrency > slots:
            raise UsageError(
                f"the {self.who}'s concurrency {policy.concurrency} needs more source ports than "
                f"the {slots} of {len(sources)} address(es) x ports {self.ports}: "
                "add attacker addresses"
            )
        host = lab.attacker
        self.prepare(host)
        self.table = self.table_name(host)
        config = ChildConfig.build(target, policy, sources, self.ports, self.profile, time.time())
        relay = Relay(sink, self.label, config)
        with rst_filter.installed(host, self.table, self.rules(self.table, target, sources)):
            self.child = Child(
                host, CHILD, stdin=config.to_json().encode() + b"\n", startup_grace=STARTUP_GRACE
            )
            self.child.run(relay, cancel, deadline=hard_deadline(policy))
        if relay.result is None and relay.error is None and cancel.is_set():
            return {"connections_ended": relay.relayed, "complete": False}  # killed while stopping
        return self.child.result(relay, self.who)

    def _sources(self, lab: Lab, target: Target, source: str | Sequence[str] | None) -> list[str]:
        if isinstance(source, str):
            return [source]
        return list(source or self.sources) or [lab.attacker_ip(target.family)]

    # --- what each kind says

    def prepare(self, host: Host) -> None:
        """Make the attacker host fit for the attack (its ephemeral ports), or say why not."""

    def table_name(self, host: Host) -> str:
        raise NotImplementedError

    def rules(self, table: str, target: Target, sources: list[str]) -> str:
        raise NotImplementedError


def hard_deadline(policy: Policy) -> float:
    """When the runner stops the child whatever it says: the bounds plus the longest attempt."""
    if policy.duration is None:
        return float("inf")
    longest = 2 * policy.timeout + policy.request_delay
    return time.monotonic() + policy.duration + longest + 5.0

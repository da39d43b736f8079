"""The legitimate client of a trial: a steady, low-rate kernel client beside the attackers,
whose requests measure what the strategy costs everyone else."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Policy, Target
from closebench.core.faults import Faults
from closebench.core.outcomes import LEGIT_CLIENT, Attempt
from closebench.lab import Lab

LEGIT_HORIZON = 86400.0  # legitimate clients stop with the attack; this only bounds the loop


@dataclass(frozen=True)
class LegitClient:
    """A steady, low-rate client asking for `/` from its own address.

    `source = "attacker"` gives it the attacker's main address instead (an address reassigned
    from an abuser to someone else); `start` is when it starts, in seconds into the trial.
    """

    rate: float = 2.0
    timeout: float = 5.0
    start: float = 0.0
    source: str = "own"  # "own" or "attacker"


def legit_thread(
    lab: Lab,
    legit: LegitClient | None,
    target: Target,
    sink: Callable[[Attempt], None],
    stop: threading.Event,
    cancel: threading.Event,
    cost: dict,
    faults: Faults,
) -> threading.Thread | None:
    """The legitimate client until `stop`; its requests in flight then still end, and count
    (Ctrl-C, `cancel`, abandons them)."""
    if not legit:
        return None
    policy = Policy(timeout=legit.timeout, rate=legit.rate, duration=LEGIT_HORIZON)
    source = legit_source(lab, legit, target.family)

    def run() -> None:
        if not stop.wait(legit.start):
            client = KernelSpammer(LEGIT_CLIENT)
            cost.update(client.run(lab, target, policy, sink, cancel, source, stop))

    thread = threading.Thread(
        target=faults.guarded("the legitimate client", run), name=LEGIT_CLIENT
    )
    thread.start()
    return thread


def legit_source(lab: Lab, legit: LegitClient | None, family: int) -> str:
    """The address it sends from: the attacker host's extra address 0, or its main one."""
    if legit is not None and legit.source == "attacker":
        return lab.attacker_ip(family)
    return lab.addressing.attacker_extra(family, 0)

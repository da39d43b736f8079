"""A run's CPU placement (lab/cpus.py) from the scenario's [cpus] and the CLI's --cpus (the
warning when two runs' placements differ is results/placements.py).

--cpus DEFENDER/ATTACKERS (e.g. 0/1, 0-1/2-3) or --cpus shared overrides [cpus]. On a 1-CPU
machine the sides share the CPU whatever was asked, and the placement says so.
"""

from __future__ import annotations

from closebench.core.errors import UsageError
from closebench.lab import cpus
from closebench.lab.cpus import Placement

CPUS_FLAG_HELP = "each side's CPUs: DEFENDER/ATTACKERS (e.g. 0/1) or 'shared' (default: halves)"


def resolve_placement(
    defender: str | None = None,
    attackers: str | None = None,
    split: bool = True,
    flag: str | None = None,
) -> Placement:
    """The run's placement; UsageError (one line) when a CPU list is bad or not this machine's."""
    if flag is not None:
        defender, attackers, split = _parse_flag(flag)
    machine = cpus.machine_cpus()
    if not split or len(machine) < 2:
        return Placement(machine, machine)
    try:
        placed = cpus.placement_from(defender, attackers)
    except ValueError as error:
        raise UsageError(f"cpus: {error}; give this machine's CPUs (see nproc)") from None
    if set(placed.defender) & set(placed.attackers):
        raise UsageError(
            f"cpus: the defender ({cpus.cpu_list(placed.defender)}) and the attackers "
            f"({cpus.cpu_list(placed.attackers)}) overlap; give disjoint CPU lists or 'shared'"
        )
    return placed


def _parse_flag(flag: str) -> tuple[str | None, str | None, bool]:
    if flag.strip() == "shared":
        return None, None, False
    defender, slash, attackers = flag.partition("/")
    if not slash or not defender or not attackers:
        raise UsageError(f"--cpus {flag!r}: give DEFENDER/ATTACKERS CPU lists (e.g. 0/1) or shared")
    for text in (defender, attackers):
        try:
            cpus.parse_cpu_list(text)
        except ValueError as error:
            raise UsageError(f"--cpus: {error}") from None
    return defender, attackers, True

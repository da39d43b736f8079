"""Faults of a trial found once it ends: the server's crashes, and attackers that were meant to
attack but made no attempt (a trial's threads report their own crashes: core/faults.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closebench.core.faults import Fault
from closebench.core.summary import AttackSummary

if TYPE_CHECKING:
    from closebench.defender import Defender


def server_faults(defender: Defender, stats: dict) -> list[Fault]:
    """The server's own crashes: a thread that died of an exception (the reference server counts
    them), or a process that exited by itself while the trial ran."""
    found = []
    crashes = stats.get("thread_crashes")
    if isinstance(crashes, int) and crashes > 0:
        first = str(stats.get("thread_crash") or "an exception")
        found.append(
            Fault("the server", "ThreadCrash", f"{crashes} thread(s) died; the first: {first}")
        )
    for name, status in defender.exited_early():
        found.append(Fault(f"the server ({name})", "Exited", f"exited during the trial ({status})"))
    return found


def idle_attackers(
    names: list[str], summaries: dict[str, AttackSummary], costs: dict, failed: set[str]
) -> list[Fault]:
    """An attacker meant to attack that made no attempt measured nothing: an error, with what
    its own errors say (EMFILE under a small `ulimit -n`...)."""
    found = []
    for name in names:
        part = f"the {name} attacker"
        summary = summaries.get(name)
        if part in failed or summary is None or summary.attempts > 0:
            continue
        kinds = costs.get(name, {}).get("local_error_kinds") or {}
        why = ", ".join(f"{count} x {kind}" for kind, count in sorted(kinds.items()))
        # A command's runs that connected nowhere: what they printed.
        said = costs.get(name, {}).get("errors_without_connection") or {}
        why = why or "; ".join(f"{count} x {line!r}" for line, count in said.items())
        reason = f"its own errors: {why}" if why else "see run.log and the server's log"
        found.append(
            Fault(part, "NoAttempts", f"made no attempt in {summary.duration_s:.1f} s ({reason})")
        )
    return found

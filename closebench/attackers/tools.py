"""The tool attacker: a real abuse tool (hydra, medusa, ncrack, nmap, masscan) run by its profile.

A CommandClient whose command line is the profile's (attackers/tool_profiles.py): each connection
the tool opens is an attempt, read from the attacker host's wire. What is the tool's own: each
run goes on until the tool ends it or the attack ends (closebench stops it then, SIGTERM to its
whole process group); its working directory, where it leaves restore files, is the run's scratch
directory, deleted after the run; and its figures, per run, are its wall time, its tries (as its
output counts them) and how it ended: finished, gave up (with its message), or stopped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from closebench.attackers.command import CommandClient, Run
from closebench.attackers.policy import Policy, Target
from closebench.attackers.tool_profiles import (
    FINISHED,
    GAVE_UP,
    STOPPED,
    WORDLISTS,
    ToolReading,
    profile,
    version,
)
from closebench.core.errors import UsageError
from closebench.lab import Lab
from closebench.lab.confine import Confinement


class ToolClient(CommandClient):
    name = "tool"
    runs_until_attack_ends = True
    run_in_scratch = True

    def __init__(
        self,
        tool: str,
        args: list[str] | None = None,
        label: str | None = None,
        confine: Confinement | None = None,
    ) -> None:
        self.profile = profile(tool)
        self.args = list(self.profile.defaults if args is None else args)
        if confine is not None and not confine.privileged:  # what the tool itself needs
            confine = replace(
                confine, capabilities=tuple({*confine.capabilities, *self.profile.capabilities})
            )
        super().__init__(self.profile.argv(self.args), label or self.profile.name, confine)
        self._lab_values: dict[str, str] = {}

    def run(self, lab: Lab, target, policy, sink, cancel, source=None) -> dict:
        if target.family == 6:  # nmap wants -6, hydra and masscan other target forms
            raise UsageError(f"the {self.profile.name} tool attacker aims at IPv4 only")
        self._lab_values = {
            "users": str(WORDLISTS / "users.txt"),
            "passwords": str(WORDLISTS / "passwords.txt"),
            "interface": "eth0",
            "router_mac": lab.next_hop_mac() if "{router_mac}" in self.argv else "",
        }
        return super().run(lab, target, policy, sink, cancel, source)

    def values(self, target: Target, policy: Policy, source: str, scratch: str) -> dict[str, str]:
        return {**super().values(target, policy, source, scratch), **self._lab_values}

    def client_timeout(self, policy: Policy) -> float:
        """The tool's own wait for a connection, from its arguments (inf: it has none)."""
        return self.profile.wait(self.args)

    def error_text(self, status: int, stdout: str, stderr: str) -> str:
        reading = self.profile.read(stdout, stderr, status)
        done = f"{reading.tries} {self.profile.tries_are} tried, {reading.successes} found"
        said = stderr.strip().splitlines()[-1:] or [""]
        if said[0].startswith("(stopped:"):  # closebench's note (command.py): not its give-up
            return f"{said[0].strip('()')}; {done}"
        return reading.gave_up or done

    def ended(self, run: Run) -> str:
        if run.stopped_at is not None:  # its exit status then is the signal's
            return STOPPED
        reading = self.profile.read(run.stdout, run.stderr, run.status)
        return GAVE_UP if reading.gave_up else FINISHED

    def reading(self, run: Run) -> ToolReading:
        """What the run said it did; a stopped run's tries still in flight are not made."""
        said = self.profile.read(run.stdout, run.stderr, run.status)
        if run.stopped_at is None:
            return said
        return replace(said, tries=max(0, said.tries - said.in_flight), in_flight=0)

    def cost(self, runs: list[Run], connected: set[int]) -> dict:
        """The command's cost, and the tool's own figures (summary.json's attacker_cost.tool)."""
        readings = [self.reading(run) for run in runs]
        walls = [run.ended - run.started for run in runs]
        ends = [self.ended(run) for run in runs]
        wall, tries = sum(walls), sum(r.tries for r in readings)
        tool = {
            "name": self.profile.name,
            "program": self.profile.program,
            "version": version(self.profile.name),
            "args": self.args,
            "tries_are": self.profile.tries_are,
            "wait_s": _finite(self.profile.wait(self.args)),
            "wall_s": wall,
            "tries": tries,
            "successes": sum(r.successes for r in readings),
            "tries_per_s": tries / wall if wall > 0 else None,
            "ended": dict(Counter(ends)),
            "runs": [
                {
                    "run": run.number,
                    "wall_s": spent,
                    "tries": reading.tries,
                    "successes": reading.successes,
                    "ended": end,
                    "message": run.error,
                }
                for run, spent, reading, end in zip(runs, walls, readings, ends, strict=True)
            ],
        }
        return {**super().cost(runs, connected), "tool": tool}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None

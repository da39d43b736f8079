"""The commands a scenario file may name (a strategy entry's server, a command attacker's)
and the powers granted to them: none by default (closebench/lab/confine.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from closebench.lab.confine import Confinement, capability_problem, describe


class Commanded(BaseModel):
    """A command from the file, and the powers granted to it (lab/confine.py): none by default."""

    # As scenario.Strict's: its subclasses are tables of the scenario file.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    command: list[str] | None = None
    capabilities: list[str] = Field(default_factory=list)
    privileged: bool = False

    @field_validator("command")
    @classmethod
    def whole_words(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(part for part in value)):
            raise ValueError("a command is a non-empty list of non-empty strings")
        return value

    @field_validator("capabilities")
    @classmethod
    def known_capabilities(cls, values: list[str]) -> list[str]:
        for name in values:
            if (problem := capability_problem(name)) is not None:
                raise ValueError(problem)
        return values

    @model_validator(mode="after")
    def powers_need_a_command(self) -> Commanded:
        if self.command is None and (self.capabilities or self.privileged):
            raise ValueError("capabilities and privileged go with a command")
        return self

    @property
    def confinement(self) -> Confinement | None:
        """How the command runs: confined, with what it was granted (None: no command)."""
        if self.command is None:
            return None
        return Confinement(tuple(self.capabilities), self.privileged)


def command_lines(strategies: Iterable, attackers: Iterable) -> list[str]:
    """One line per command of a scenario's strategy entries and attackers: what it is and as
    whom it runs."""
    lines = []
    for entry in strategies:
        if entry.command is not None:
            argv = " ".join(entry.command)
            lines.append(f"server {entry.name} `{argv}` runs {describe(entry.confinement)}")
    for attacker in attackers:
        if attacker.command is not None:
            name = attacker.label or os.path.basename(attacker.command[0]) or attacker.kind
            argv = " ".join(attacker.command)
            lines.append(f"attacker {name} `{argv}` runs {describe(attacker.confinement)}")
    return lines

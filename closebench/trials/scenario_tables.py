"""The small tables of a scenario file ([legit], [server], [defender], [sweep], [cpus]) and the
types every table shares: strict (a wrong type is an error, never coerced) and bounded (a run must
end: core/limits.py). The scenario itself, its strategies and attackers: scenario.py."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from closebench.core.limits import MAX_BACKLOG, MAX_LABEL, MAX_NOFILE, MAX_SCENARIO_SECONDS
from closebench.defender import DEFAULT_ABUSE_PATH, sysctl
from closebench.lab.cpus import parse_cpu_list
from closebench.trials.scenario_checks import abuse_path_problem

Positive = Annotated[float, Field(gt=0)]
# A time of the scenario (a timeout, a delay, a start): a run must end (core/limits.py).
Seconds = Annotated[float, Field(gt=0, le=MAX_SCENARIO_SECONDS)]
Wait = Annotated[float, Field(ge=0, le=MAX_SCENARIO_SECONDS)]
Label = Annotated[str, Field(max_length=MAX_LABEL)]


class Strict(BaseModel):
    # allow_inf_nan: TOML has `nan` and `inf`, and a bound such as `gt=0` lets NaN through.
    # strict: a wrong type is an error, not coerced (`concurrency = "10"`, `routed = 1`).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class LegitEntry(Strict):
    rate: Annotated[float, Field(gt=0, le=1e6)] = 2.0
    timeout: Seconds = 5.0
    start: Wait = 0.0  # seconds into the trial (before the scenario's end: see Scenario)
    source: Literal["own", "attacker"] = "own"  # "attacker": the attackers' main address


class ServerEntry(Strict):
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    nofile: Annotated[int, Field(ge=64, le=MAX_NOFILE)] | None = None
    backlog: Annotated[int, Field(ge=1, le=MAX_BACKLOG)] = 1024
    abuse_path: str = DEFAULT_ABUSE_PATH
    # USER:PASSWORD: the reference server's abuse path asks for HTTP basic auth, so a
    # brute-forcer's try is one credential pair (a wrong one is the abuse).
    basic_auth: Annotated[str, Field(pattern=r"^[^:\s]+:\S+$", max_length=128)] | None = None

    @field_validator("abuse_path")
    @classmethod
    def abuse_regex(cls, value: str) -> str:
        if (problem := abuse_path_problem(value)) is not None:
            raise ValueError(problem)
        return value


class DefenderEntry(Strict):
    """The defender host itself: its kernel's TCP knobs (set in its namespace only)."""

    sysctl: dict[str, int] = Field(default_factory=dict)

    @field_validator("sysctl", mode="before")
    @classmethod
    def allowed_knobs(cls, values: object) -> object:
        if isinstance(values, dict):
            for name, value in values.items():
                if (problem := sysctl.problem(name, value)) is not None:
                    raise ValueError(f"{name}: {problem}")
        return values


SWEEP_AXES = ("concurrency", "rate", "addresses")
MAX_SWEEP_STEPS = 12


class SweepEntry(Strict):
    """One attack parameter stepped through a list of values: a trial per strategy and step.

    The step replaces that parameter in every attacker; a strategy breaks at the first step where
    the legitimate client's success falls below `break_legit_success`, its p95 latency exceeds
    `break_latency_s`, or the server errs more than `break_server_errors` times (EMFILE refusals,
    5xx answers to the legitimate client).
    """

    axis: Literal[SWEEP_AXES]  # type: ignore[valid-type]
    steps: list[Positive] = Field(min_length=1, max_length=MAX_SWEEP_STEPS)
    break_legit_success: Annotated[float, Field(ge=0, le=1)] = 0.99
    break_latency_s: Positive = 1.0
    break_server_errors: Annotated[int, Field(ge=0)] = 0

    @field_validator("steps")
    @classmethod
    def ascending(cls, values: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError(f"steps must be sorted ascending, each once: {values}")
        return values

    @model_validator(mode="after")
    def whole_counts(self) -> SweepEntry:
        if self.axis != "rate" and not all(float(step).is_integer() for step in self.steps):
            raise ValueError(f"{self.axis} steps are whole numbers: {self.steps}")
        return self

    def value(self, step: float) -> float | int:
        return step if self.axis == "rate" else int(step)


class CpusEntry(Strict):
    """Which CPUs each side runs on (lab/cpus.py): CPU lists such as "0" or "0-1,3"; a side
    left out takes the default split's (the lower half for the defender); split = false puts
    both sides on every CPU, as a 1-CPU machine must."""

    defender: str | None = None
    attackers: str | None = None
    split: bool = True

    @field_validator("defender", "attackers")
    @classmethod
    def cpu_list(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpu_list(value)  # ValueError: the line says what a CPU list looks like
        return value

"""Scenario files: what `closebench run` compares, declared in TOML and validated on load.

One schema (the pydantic models below) is the whole definition: an unknown key, a wrong type, an
unknown strategy or an impossible value is an error naming the file, the key and what is allowed,
and nothing starts. It is over 500 lines: that one schema (every table's model, and how a scenario
becomes its trials) reads as one definition; its checks on raw data live in scenario_checks.py.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from closebench.attackers import ATTACKERS, COMMAND_PLACEHOLDERS, ENGINES, command_kind
from closebench.attackers.bot_profiles import PROFILES as BOT_PROFILES
from closebench.attackers.policy import Policy
from closebench.core.errors import UsageError
from closebench.core.input_files import parse_toml
from closebench.core.limits import (
    MAX_ATTACKERS,
    MAX_DESCRIPTION,
    MAX_PATH,
    MAX_SCENARIO_SECONDS,
    MAX_STRATEGIES,
    MAX_TRIALS,
)
from closebench.core.placeholders import unknown_placeholder
from closebench.core.safe_files import read_text
from closebench.defender import ServerConfig
from closebench.defender.config import SERVER_PLACEHOLDERS
from closebench.lab import MAX_ATTACKER_HOSTS, MAX_EXTRA_ADDRESSES
from closebench.lab.confine import Confinement
from closebench.servers.strategies import StrategySpec, parse_spec
from closebench.trials.attacker_kinds import ADDRESSED_KINDS, default_kind
from closebench.trials.scenario_checks import tool_entry_problem, tools_missing, trial_count
from closebench.trials.scenario_commands import Commanded
from closebench.trials.scenario_tables import (
    CpusEntry,
    DefenderEntry,
    Label,
    LegitEntry,
    Seconds,
    ServerEntry,
    Strict,
    SweepEntry,
    Wait,
)
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig

# Inside the package, so that an installed wheel has them; a checkout's top-level scenarios/ is a
# symbolic link to this folder (one copy, nothing to keep in sync).
SCENARIO_DIR = Path(str(resources.files("closebench.trials").joinpath("scenarios")))
EXPECT_DIR = SCENARIO_DIR / "expect"  # the shipped gates: expectations for shipped scenarios


def find_expectations(name_or_path: str) -> str:
    """A path as given, or a shipped scenario's gate by name (`ci`: expect/ci.toml)."""
    shipped = EXPECT_DIR / f"{name_or_path}.toml"
    if not Path(name_or_path).exists() and "/" not in name_or_path and shipped.is_file():
        return str(shipped)
    return name_or_path


DEFAULT_SCENARIO = "seed"


class StrategyEntry(Commanded):
    """One strategy to compare: its spec (or your own server's command), and where it runs."""

    strategy: Label | None = None
    routed: bool = False
    label: Label | None = None
    # With CI set, a kernel that cannot run it fails the run instead of skipping its row.
    required: bool = False

    @field_validator("strategy")
    @classmethod
    def known_strategy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(parse_spec(value))  # ValueError names the strategies and options allowed

    @model_validator(mode="after")
    def strategy_or_command(self) -> StrategyEntry:
        if (self.strategy is None) == (self.command is None):
            raise ValueError("give a strategy or a command (your own server), one of them")
        if self.command is not None:
            if self.label is None:
                raise ValueError("a command needs a label (its trial's name)")
            if (problem := unknown_placeholder(self.command, SERVER_PLACEHOLDERS)) is not None:
                raise ValueError(problem)
        return self

    @field_validator("label")
    @classmethod
    def printable_label(cls, value: str | None) -> str | None:
        # A label names files, log lines and table rows: one visible line.
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("a label is one line of visible text")
        return value

    @model_validator(mode="after")
    def router_bans_need_a_router(self) -> StrategyEntry:
        spec = self.spec
        if spec is not None and spec.options.get("where") == "router" and not self.routed:
            raise ValueError(f"{self.strategy} bans on the router: give it routed = true")
        return self

    @property
    def spec(self) -> StrategySpec | None:
        return parse_spec(self.strategy) if self.strategy is not None else None

    @property
    def name(self) -> str:
        return self.label or str(self.strategy) + (" (via router)" if self.routed else "")


class AttackerEntry(Commanded):
    kind: Literal[tuple(ATTACKERS)] = "kernel"  # type: ignore[valid-type]
    label: Label | None = None
    timeout: Seconds = 10.0
    reconnect: bool = True
    concurrency: Annotated[int, Field(ge=1, le=20000)] = 1
    rate: Annotated[float, Field(gt=0, le=1e6)] | None = None
    attempts: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    request_delay: Wait = 0.0
    path: Annotated[str, Field(min_length=1, max_length=MAX_PATH)] = "/spam"
    command: list[str] | None = None
    tool: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # kind = "tool"
    args: Annotated[list[str], Field(max_length=256)] | None = None  # the tool's own options
    # A botnet: spread the connection slots over this many addresses of the attacker host.
    addresses: Annotated[int, Field(ge=1, le=MAX_EXTRA_ADDRESSES - 1)] | None = None
    duration: Seconds | None = None  # this attacker stops sooner than the scenario
    engine: Literal[tuple(ENGINES)] = "local"  # type: ignore[valid-type]
    workers: Annotated[int, Field(ge=1, le=MAX_ATTACKER_HOSTS - 1)] | None = None  # Locust's
    profile: Literal[tuple(BOT_PROFILES)] | None = None  # type: ignore[valid-type]  # bot kind

    @model_validator(mode="before")
    @classmethod
    def bot_slots(cls, data: object) -> object:
        """A bot's connection slots are its profile's unless the file says (`concurrency`)."""
        if isinstance(data, dict) and data.get("kind") == "bot" and "concurrency" not in data:
            profile = BOT_PROFILES.get(str(data.get("profile")))
            if profile is not None:
                return {**data, "concurrency": profile.slots}
        return data

    @field_validator("path")
    @classmethod
    def request_path(cls, value: str) -> str:
        if not value.startswith("/") or not value.isprintable() or " " in value:
            raise ValueError(
                "a request path starts with / and is one line of visible text without spaces "
                "(no NUL, tab or newline)"
            )
        return value

    @model_validator(mode="after")
    def addresses_need_kernel(self) -> AttackerEntry:
        if self.addresses is not None and self.kind not in ADDRESSED_KINDS:
            kinds = ", ".join(f'"{kind}"' for kind in ADDRESSED_KINDS)
            raise ValueError(f"addresses goes with kind = {kinds}, not {self.kind!r}")
        if self.command is not None and self.kind not in ("command", "curl"):
            raise ValueError(f'command goes with kind = "command", not {self.kind!r}')
        if self.command is None and self.kind == "command":
            raise ValueError('kind = "command" needs command = [...], the command to run')
        if (problem := tool_entry_problem(self.kind, self.tool, self.args)) is not None:
            raise ValueError(problem)
        problem = unknown_placeholder(self.command or [], COMMAND_PLACEHOLDERS)
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def bots_have_a_profile(self) -> AttackerEntry:
        if self.kind == "bot" and self.profile is None:
            raise ValueError(f'kind = "bot" needs a profile: one of {", ".join(BOT_PROFILES)}')
        if self.kind != "bot" and self.profile is not None:
            raise ValueError(f'profile goes with kind = "bot", not {self.kind!r}')
        return self

    @model_validator(mode="after")
    def locust_runs_the_kernel_policy(self) -> AttackerEntry:
        if self.engine == "locust" and self.kind != "kernel":
            raise ValueError(f'engine = "locust" runs kind = "kernel", not {self.kind!r}')
        if self.engine == "locust" and self.addresses is not None:
            raise ValueError('addresses goes with engine = "local": a Locust worker is a machine')
        if self.workers is not None and self.engine != "locust":
            raise ValueError('workers goes with engine = "locust"')
        return self

    @property
    def confinement(self) -> Confinement | None:
        """A tool from the file runs confined too, with what its profile needs (tools.py)."""
        if self.kind == "tool":
            return Confinement(tuple(self.capabilities), self.privileged)
        return super().confinement

    def spec(self, duration: float) -> AttackerSpec:
        policy = Policy(
            timeout=self.timeout,
            reconnect=self.reconnect,
            concurrency=self.concurrency,
            rate=self.rate,
            duration=min(self.duration, duration) if self.duration else duration,
            attempts=self.attempts,
            request_delay=self.request_delay,
        )
        return AttackerSpec(
            command_kind(self.kind, self.command)[0],
            policy,
            self.path,
            self.command,
            self.label,
            self.addresses or 0,
            self.engine,
            self.workers or 1,
            self.confinement,
            profile=self.profile,
            tool=self.tool,
            args=self.args,
        )


class Scenario(Strict):
    name: Label
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""
    duration: Annotated[float, Field(gt=0, le=MAX_SCENARIO_SECONDS)] = 30.0
    repetitions: Annotated[int, Field(ge=1, le=100)] = 1
    seed: int = 1
    sample_hz: Annotated[float, Field(ge=1, le=100)] = 10.0
    family: Literal[4, 6] = 4
    parallel: Annotated[int, Field(ge=1, le=32)] | None = None
    server: ServerEntry = ServerEntry()
    strategies: list[StrategyEntry] = Field(min_length=1, max_length=MAX_STRATEGIES)
    attackers: list[AttackerEntry] = Field(min_length=1, max_length=MAX_ATTACKERS)
    legit: LegitEntry | None = LegitEntry()
    defender: DefenderEntry = DefenderEntry()
    sweep: SweepEntry | None = None
    cpus: CpusEntry = CpusEntry()
    # Each attacker in trials of its own: one trial per strategy and attacker ("STRATEGY /
    # ATTACKER"), e.g. one abuse tool at a time, as tools that cannot choose their source address
    # need the attacker's address to themselves.
    attackers_apart: bool = False

    @model_validator(mode="before")
    @classmethod
    def cheapest_attackers(cls, data: object) -> object:
        """An attacker whose kind the file does not name gets the cheapest that does its job
        (attacker_kinds.default_kind): the packet engine for a reconnecting spammer."""
        if isinstance(data, dict) and isinstance(data.get("attackers"), list):
            sweep = data.get("sweep")
            data = {
                **data,
                "attackers": [
                    default_kind(entry, sweep if isinstance(sweep, dict) else None)
                    for entry in data["attackers"]
                ],
            }
        return data

    @model_validator(mode="before")
    @classmethod
    def trials_fit(cls, data: object) -> object:
        """The number of trials, counted from the raw file before anything is built: a small
        file must not ask for 60,000 labs."""
        if isinstance(data, dict):
            count = trial_count(data)
            if count > MAX_TRIALS:
                raise ValueError(
                    f"the scenario asks for {count:,} trials (strategies x repetitions x sweep "
                    f"steps); at most {MAX_TRIALS:,} a run: split it into several scenarios"
                )
        return data

    @model_validator(mode="before")
    @classmethod
    def legit_false_is_none(cls, data: object) -> object:
        """`legit = false`: no legitimate client (the table omitted runs one, at its defaults)."""
        if isinstance(data, dict) and data.get("legit") is False:
            return {**data, "legit": None}
        return data

    @model_validator(mode="after")
    def legit_starts_in_time(self) -> Scenario:
        if self.legit is not None and self.legit.start >= self.duration:
            raise ValueError(
                f"legit.start = {self.legit.start:g} s is not before the scenario's end "
                f"(duration = {self.duration:g} s): the legitimate client would never run"
            )
        return self

    @field_validator("strategies", mode="before")
    @classmethod
    def plain_names(cls, values: object) -> object:
        """`"repair:read_first=false"` is short for `{strategy = "repair:read_first=false"}`."""
        if isinstance(values, list):
            return [{"strategy": v} if isinstance(v, str) else v for v in values]
        return values

    @field_validator("strategies")
    @classmethod
    def each_once(cls, values: list[StrategyEntry]) -> list[StrategyEntry]:
        names = [v.name for v in values]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"each strategy once (give a label to repeat one): {duplicates}")
        return values

    @field_validator("attackers")
    @classmethod
    def addresses_fit(cls, values: list[AttackerEntry]) -> list[AttackerEntry]:
        total = sum(v.spec(1.0).most_addresses for v in values)
        if total > MAX_EXTRA_ADDRESSES - 1:  # one extra address is the legitimate client's
            raise ValueError(
                f"the attackers ask for {total} addresses together; at most "
                f"{MAX_EXTRA_ADDRESSES - 1}"
            )
        return values

    @field_validator("attackers")
    @classmethod
    def workers_fit(cls, values: list[AttackerEntry]) -> list[AttackerEntry]:
        total = sum(v.workers or 1 for v in values if v.engine == "locust")
        if total > MAX_ATTACKER_HOSTS - 1:  # the main attacker host runs the masters
            raise ValueError(
                f"the Locust attackers ask for {total} workers together; the lab hosts "
                f"{MAX_ATTACKER_HOSTS - 1} at most (one attacker host each)"
            )
        return values

    @model_validator(mode="after")
    def sweep_fits_the_attackers(self) -> Scenario:
        """Every attacker must take every step (addresses: kernel attackers only)."""
        if self.sweep is None:
            return self
        for step in self.sweep.steps:
            where = f"sweep step {self.sweep.axis} = {step:g} does not fit the attackers"
            try:
                attackers = self.attackers_at(step)
            except ValidationError as error:
                problems = "; ".join(_explain(e) for e in error.errors())
                raise ValueError(f"{where}: {problems}") from None
            total = sum(a.spec(1.0).most_addresses for a in attackers)
            if total > MAX_EXTRA_ADDRESSES - 1:
                raise ValueError(f"{where}: {total} addresses; at most {MAX_EXTRA_ADDRESSES - 1}")
        return self

    def attackers_at(self, step: float | None) -> list[AttackerEntry]:
        """The attackers with the sweep's axis set to `step` (as they are for None)."""
        if self.sweep is None or step is None:
            return list(self.attackers)
        update = {self.sweep.axis: self.sweep.value(step)}
        return [AttackerEntry.model_validate({**a.model_dump(), **update}) for a in self.attackers]

    def steps(self) -> list[float | None]:
        return list(self.sweep.steps) if self.sweep else [None]

    @property
    def deprecations(self) -> list[str]:
        """One line for each old spelling the file uses (each said once)."""
        notes = (command_kind(a.kind, a.command)[1] for a in self.attackers)
        return list(dict.fromkeys(note for note in notes if note))

    @property
    def uses_locust(self) -> bool:
        return any(a.engine == "locust" for a in self.attackers)

    def with_duration(self, duration: float) -> Scenario:
        """The scenario run for `duration` seconds (--duration), checked like the file's."""
        try:
            return Scenario.model_validate({**self.model_dump(), "duration": duration})
        except ValidationError as error:
            problems = "; ".join(e["msg"] for e in error.errors())
            raise UsageError(f"--duration {duration:g}: {problems}") from None

    def with_repetitions(self, repetitions: int) -> Scenario:
        """The scenario repeated `repetitions` times (--repeat), interleaved as the file's are."""
        try:
            return Scenario.model_validate({**self.model_dump(), "repetitions": repetitions})
        except ValidationError as error:
            problems = "; ".join(e["msg"] for e in error.errors())
            raise UsageError(f"--repeat {repetitions}: {problems}") from None

    def trials(self) -> list[TrialConfig]:
        """One trial per strategy (per repetition, per sweep step), in the scenario's order: a
        strategy's steps follow each other (the runner runs them one after another)."""
        trials = []
        for repetition in range(self.repetitions):
            for entry in self.strategies:
                for alone in self.attacker_groups():
                    for step in self.steps():
                        trials.append(self._trial(entry, repetition, step, alone))
        return trials

    def attacker_groups(self) -> list[int | None]:
        """Which attacker each trial of a strategy runs (its index), or None: all of them."""
        return list(range(len(self.attackers))) if self.attackers_apart else [None]

    def tools_missing(self) -> dict[str, str]:
        """The trials whose tool is not installed (scenario_checks.tools_missing)."""
        return tools_missing(self.trials())

    def _trial(
        self, entry: StrategyEntry, repetition: int, step: float | None, alone: int | None = None
    ) -> TrialConfig:
        again = f" #{repetition + 1}" if self.repetitions > 1 else ""
        label = entry.name
        attackers = self.attackers_at(step)
        if alone is not None:
            attackers = [attackers[alone]]
            label += f" / {attackers[0].spec(self.duration).name}"
        series = label if self.sweep else None
        if self.sweep and step is not None:
            label += f" @ {self.sweep.axis} {step:g}"
        server = ServerConfig(
            self.server.port,
            entry.spec,
            abuse_path=self.server.abuse_path,
            nofile=self.server.nofile,
            backlog=self.server.backlog,
            sysctl=tuple(self.defender.sysctl.items()),
            command=list(entry.command or []),
            confine=entry.confinement,
            name=entry.label if entry.command else None,
            basic_auth=self.server.basic_auth,
        )
        return TrialConfig(
            server=server,
            attackers=tuple(a.spec(self.duration) for a in attackers),
            legit=LegitClient(
                self.legit.rate, self.legit.timeout, self.legit.start, self.legit.source
            )
            if self.legit
            else None,
            family=self.family,
            routed=entry.routed,
            sample_hz=self.sample_hz,
            label=label + again,
            duration=self.duration,
            step=None if step is None or self.sweep is None else self.sweep.value(step),
            series=None if series is None else series + again,
        )


def find_scenario(name_or_path: str | None) -> Path:
    """A path as given, or a shipped scenario by name (`seed`, `fd-exhaustion`...)."""
    if not name_or_path:
        name_or_path = DEFAULT_SCENARIO
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UsageError(f"no scenario file {path}")
        return path
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise UsageError(f"no scenario {name_or_path!r}: give a .toml file or one of: {known}")
    return shipped


def shipped_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every shipped scenario, in name order."""
    found = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        scenario, _, _ = load_scenario(path)
        found.append((path.stem, scenario.description))
    return found


def load_scenario(path: Path) -> tuple[Scenario, str, str]:
    """The validated scenario, its text and its sha256; UsageError on any problem."""
    text = read_text(path, "scenario")
    data = parse_toml(text, path)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise UsageError(f"{path}: " + "; ".join(_explain(e) for e in error.errors())) from None
    try:
        scenario.trials()  # what only a whole trial can check: attackers sharing an address
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None
    return scenario, text, hashlib.sha256(text.encode()).hexdigest()


def _explain(error: ErrorDetails) -> str:
    """One pydantic error as `key: problem`, with the allowed keys for an unknown one."""
    location = [str(part) for part in error["loc"]]
    key = ".".join(location) or "(top level)"
    if error["type"] == "extra_forbidden":
        model = _model_at(location[:-1])
        allowed = ", ".join(model.model_fields) if model else "see docs/guides/scenarios.md"
        return f"unknown key {key!r}; allowed here: {allowed}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"].endswith("_type"):  # a wrong type: say what was given (strict, no coercion)
        given = repr(error.get("input"))
        given = given if len(given) <= 40 else given[:37] + "..."
        message += f", not {type(error.get('input')).__name__} {given}"
    return f"key {key!r}: {message}"


def _model_at(location: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Scenario
    for part in location:
        if part.isdigit() or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        nested: dict[str, type[BaseModel]] = {
            "server": ServerEntry,
            "defender": DefenderEntry,
            "sweep": SweepEntry,
            "cpus": CpusEntry,
            "attackers": AttackerEntry,
            "legit": LegitEntry,
            "strategies": StrategyEntry,
        }
        model = nested.get(part)
    return model

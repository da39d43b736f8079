"""`closebench check RUN --expect FILE`: a run's figures against expectations written in TOML.

    baseline = "reports/last-good"   # optional: every trial of this run, on the noise model
    max_regression_pct = 0           # optional: a worse change allowed beyond the noise

    [repair]                         # a trial, a series, a strategy spec, its base name, or "*"
    outcome = "silent"               # every attempt ended silent
    wire_agreement = true            # its records agree with the pcaps (closebench verify)
    hang_median_s_min = 5
    peak_fds_max = 50

    [never]                          # a sweep: a series (a strategy's steps), or a strategy
    breaking_point_max = 400         # it broke at a step of at most 400
    [repair]
    holds = true                     # it held at every step (breaking point null)
                                     # an inconclusive bracket fails holds and breaking_point_*

Figures are judged on the noise model `compare` shares (results/noise.py): a ratio under its
floor is "not judged" (neither a pass nor a failure), a bound is not crossed by float error.
`closebench check --suggest-bounds RUN...` writes such a file from unchanged runs (bounds.py).

Exit status: 0 when every expectation holds, 1 when one fails (a trial a table names that is
missing from the run too), 2 on bad input (UsageError).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from closebench.core.errors import UsageError
from closebench.core.input_files import parse_toml
from closebench.core.outcomes import Outcome
from closebench.core.safe_files import read_text
from closebench.results import noise
from closebench.results.breaking_points import bracket_holds, bracket_text, bracket_within
from closebench.results.run_directory import RunData, is_number
from closebench.results.summary_figures import (
    FIGURE_BY_NAME,
    FIGURES,
    number,
    outcomes_text,
)
from closebench.results.verify import agreement_text

ALL_TRIALS = "*"
DEFAULT_MAX_REGRESSION_PCT = 0.0  # beyond the noise model (results/noise.py), by default none
OUTCOMES = [outcome.value for outcome in Outcome]
ALIASES = {
    "legit_success_min": "legit_success_rate_min",
    "legit_success_max": "legit_success_rate_max",
}
TOP_LEVEL_KEYS = ("baseline", "max_regression_pct", "regression_figures")
TABLE_KEYS = (
    "outcome",
    "outcomes_only",
    "dominant_outcome",
    "wire_agreement",
    "max_regression_pct",
    "regression_figures",
    "holds",
    "breaking_point_min",
    "breaking_point_max",
)
DIRECTED = [figure.name for figure in FIGURES if figure.worse]
# What each key means: the docs' reference page is written from these (docs/reference_pages.py),
# and a key without one fails tests/test_docs.py.
KEY_DESCRIPTIONS = {
    "baseline": "a run directory to compare with, relative to the expectation file: a trial "
    "missing, a new outcome class, a figure worse beyond the noise or a moved breaking point "
    "fails (the noise model: docs/guides/ci.md)",
    "max_regression_pct": "how many percent worse than the baseline a figure may get on top of "
    "the noise (default 0); a trial's own table wins over its strategy's, which wins over `\"*\"` "
    "and the top level",
    "regression_figures": "which figures the baseline comparison covers (default: every figure "
    "with a worse direction)",
    "outcome": "every attempt of the trial (all attackers together) ended with this outcome. "
    "Strict: one `rst` among 300 `silent` fails; a trial with no attempts fails",
    "outcomes_only": "a list: every attempt ended with one of these (and there was at least one)",
    "dominant_outcome": "more attempts ended with this outcome than with any other (a tie fails)",
    "wire_agreement": "`true`: the trial's records agree with its pcap, as `closebench run` "
    "verified them (a run made with `--no-verify` fails it); `false`: they disagree",
    "holds": "a sweep series: `true`, it held at every step (its breaking point is null); "
    "`false`, it broke at some step. A run that is not a sweep fails it",
    "breaking_point_min": "a sweep series broke at a step of at least this value (held at every "
    "step counts as above any step: it holds)",
    "breaking_point_max": "a sweep series broke at a step of at most this value (held at every "
    "step fails it)",
}


@dataclass(frozen=True)
class Bound:
    figure: str
    limit: str  # "min" or "max"
    value: float


@dataclass
class TrialExpectation:
    """One table of the expectation file."""

    name: str
    bounds: list[Bound] = field(default_factory=list)
    outcome: str | None = None
    outcomes_only: list[str] | None = None
    dominant_outcome: str | None = None
    wire_agreement: bool | None = None  # True: the records must agree with the wire
    max_regression_pct: float | None = None
    regression_figures: list[str] | None = None
    holds: bool | None = None  # a sweep: True, it held at every step; False, it broke
    breaking_point: list[Bound] = field(default_factory=list)  # figure "breaking_point"

    @property
    def about_breaking_points(self) -> bool:
        return self.holds is not None or bool(self.breaking_point)

    @property
    def about_rows(self) -> bool:
        return (
            any((self.bounds, self.outcome, self.outcomes_only, self.dominant_outcome))
            or self.wire_agreement is not None
        )


@dataclass
class Expectations:
    source: Path
    tables: list[TrialExpectation]
    baseline: Path | None = None
    max_regression_pct: float = DEFAULT_MAX_REGRESSION_PCT
    regression_figures: list[str] = field(default_factory=lambda: list(DIRECTED))
    regression_limits_given: bool = False  # a limit with no baseline would silently never apply


@dataclass
class Verdict:
    """One expectation against one trial: what was expected, what the run had. A verdict that
    is not judged (results/noise.py: a ratio under its floor) is neither a pass nor a failure:
    `ok` is True so that it fails nothing, `judged` False and `actual` says why."""

    trial: str
    figure: str
    expected: str
    actual: str
    ok: bool
    judged: bool = True

    @property
    def state(self) -> str:
        if not self.judged:
            return "not judged"
        return "ok" if self.ok else "FAIL"


# Reading and validating the file: every problem is a UsageError naming the key.


def load_expectations(path: str | Path) -> Expectations:
    path = Path(path)
    data = parse_toml(read_text(path, "expectations"), path)
    return parse_expectations(data, path)


def parse_expectations(data: dict, source: Path) -> Expectations:
    expectations = Expectations(source, [])
    for key, value in data.items():
        if isinstance(value, dict):
            expectations.tables.append(_table(key, value, source))
        elif key == "baseline":
            if not isinstance(value, str) or not value:
                raise UsageError(f"{source}: `baseline` must be a run directory (a string)")
            expectations.baseline = (source.parent / value).resolve()
        elif key == "max_regression_pct":
            expectations.max_regression_pct = _percentage(value, key, source)
        elif key == "regression_figures":
            expectations.regression_figures = _directed_figures(value, key, source)
        else:
            raise UsageError(
                f"{source}: unknown top-level key {key!r}{_suggest(key, TOP_LEVEL_KEYS)}; allowed: "
                f'{", ".join(TOP_LEVEL_KEYS)}, and one table per trial, strategy or "*"'
            )
    expectations.regression_limits_given = bool(
        {"max_regression_pct", "regression_figures"} & set(data)
    )
    return expectations


def _table(name: str, table: dict, source: Path) -> TrialExpectation:
    expectation = TrialExpectation(name)
    # No brackets in messages: the terminal would read `[repair]` as markup and hide it.
    where = f"{source}: table {name!r}:"
    for key, value in table.items():
        figure_key = ALIASES.get(key, key)
        if key in ("outcome", "dominant_outcome"):
            setattr(expectation, key, _outcome(value, f"{where} {key}"))
        elif key == "outcomes_only":
            if not isinstance(value, list) or not value:
                raise UsageError(f"{where} outcomes_only must be a non-empty list of outcomes")
            expectation.outcomes_only = [_outcome(v, f"{where} outcomes_only") for v in value]
        elif key == "wire_agreement":
            if not isinstance(value, bool):
                raise UsageError(f"{where} wire_agreement must be true or false, not {value!r}")
            expectation.wire_agreement = value
        elif key == "holds":
            if not isinstance(value, bool):
                raise UsageError(f"{where} holds must be true or false, not {value!r}")
            expectation.holds = value
        elif key in ("breaking_point_min", "breaking_point_max"):
            if not is_number(value):
                raise UsageError(f"{where} {key} must be a number (a step), not {value!r}")
            expectation.breaking_point.append(Bound("breaking_point", key[-3:], float(value)))
        elif key == "max_regression_pct":
            expectation.max_regression_pct = _percentage(value, f"table {name!r}: {key}", source)
        elif key == "regression_figures":
            expectation.regression_figures = _directed_figures(
                value, f"table {name!r}: {key}", source
            )
        elif figure_key.endswith(("_min", "_max")) and figure_key[:-4] in FIGURE_BY_NAME:
            if not is_number(value):
                raise UsageError(f"{where} {key} must be a number, not {value!r}")
            expectation.bounds.append(Bound(figure_key[:-4], figure_key[-3:], float(value)))
        else:
            raise UsageError(
                f"{where} unknown key {key!r}{_suggest(key, allowed_table_keys())}; "
                f"allowed: {', '.join(allowed_table_keys())}"
            )
    return expectation


def allowed_table_keys() -> list[str]:
    bounds = [f"{figure.name}_{limit}" for figure in FIGURES for limit in ("min", "max")]
    return [*TABLE_KEYS, *ALIASES, *bounds]


def _outcome(value: object, where: str) -> str:
    if value not in OUTCOMES:
        raise UsageError(f"{where}: {value!r} is not an outcome; one of: {', '.join(OUTCOMES)}")
    return str(value)


def _percentage(value: object, key: str, source: Path) -> float:
    if not is_number(value) or value < 0:
        raise UsageError(f"{source}: {key} must be a number of percent, 0 or more")
    return float(value)


def _directed_figures(value: object, key: str, source: Path) -> list[str]:
    if not isinstance(value, list) or not all(v in DIRECTED for v in value):
        raise UsageError(
            f"{source}: {key} must be a list of figures that have a worse direction: "
            f"{', '.join(DIRECTED)}"
        )
    return list(value)


def _suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _quoted(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'


# Checking a run.


def base_name(strategy: object) -> str:
    """`repair` of `repair:read_first=false`."""
    return str(strategy or "").split(":", 1)[0]


def matching_trials(run: RunData, name: str) -> list[dict]:
    """The rows a table names, in this order: a trial (its repetitions too), a sweep series, a
    strategy's full spec, its base name (`repair` covers `repair:read_first=false`); "*" all.
    Empty when none: the caller reports the trial missing."""
    if name == ALL_TRIALS:
        return list(run.rows)
    by_trial = run.groups().get(name)
    if by_trial:
        return by_trial
    for key in ("series", "strategy"):
        found = [row for row in run.rows if row.get(key) == name]
        if found:
            return found
    return [row for row in run.rows if base_name(row.get("strategy")) == name]


def missing(run: RunData, name: str) -> Verdict:
    known = ", ".join(_quoted(group) for group in run.groups()) or "none"
    return Verdict(
        name,
        "trial",
        "in the run",
        f"missing: no trial, series or strategy {name!r}; its trials: {known}",
        False,
    )


def check_row(row: dict, table: TrialExpectation) -> list[Verdict]:
    trial = row["trial"]
    if row.get("error") or not row.get("complete", True):
        actual = f"error: {row['error']}" if row.get("error") else "interrupted"
        return [Verdict(trial, "trial", "a completed trial", actual, False)]
    verdicts = [check_bound(trial, row.get(bound.figure), bound, row) for bound in table.bounds]
    outcomes = {name: count for name, count in (row.get("outcomes") or {}).items() if count}
    seen = outcomes_text(outcomes) if outcomes else "no attempts"
    if table.outcome:
        ok = set(outcomes) == {table.outcome}
        verdicts.append(Verdict(trial, "outcome", f"every attempt {table.outcome}", seen, ok))
    if table.outcomes_only:
        ok = bool(outcomes) and set(outcomes) <= set(table.outcomes_only)
        expected = f"only {' or '.join(table.outcomes_only)}"
        verdicts.append(Verdict(trial, "outcomes_only", expected, seen, ok))
    if table.dominant_outcome:
        counts = sorted(outcomes.values(), reverse=True)
        top = outcomes.get(table.dominant_outcome, 0)
        ok = top > 0 and top == counts[0] and (len(counts) == 1 or counts[1] < top)
        expected = f"more {table.dominant_outcome} than any other outcome"
        verdicts.append(Verdict(trial, "dominant_outcome", expected, seen, ok))
    if table.wire_agreement is not None:
        verdicts.append(check_wire(trial, row.get("wire_agreement"), table.wire_agreement))
    return verdicts


def matching_series(run: RunData, name: str) -> list[str]:
    """The sweep series a table names: one by its name, a strategy's, or "*" every one."""
    points = run.breaking_points
    if name == ALL_TRIALS or name in points:
        return list(points) if name == ALL_TRIALS else [name]
    series = {row.get("series") for row in run.rows if row.get("strategy") == name}
    found = [s for s in points if s in series]
    if not found and run.sweep is not None:
        known = ", ".join(_quoted(s) for s in points) or "none"
        raise UsageError(
            f"no sweep series or strategy {name!r} in run {run.name}; its series: {known}"
        )
    return found


def check_breaking_points(run: RunData, table: TrialExpectation) -> list[Verdict]:
    if run.sweep is None:
        return [Verdict(table.name, "breaking_point", "a sweep", "not a sweep (no [sweep])", False)]
    verdicts = []
    for series in matching_series(run, table.name):
        point = run.breaking_points[series]
        actual = f"{bracket_text(point)}: {point['reason']}"  # an inconclusive one says why
        if table.holds is not None:
            expected = "holds at every step" if table.holds else "breaks at some step"
            verdicts.append(
                Verdict(series, "holds", expected, actual, bracket_holds(point, table.holds))
            )
        for bound in table.breaking_point:
            sign = ">=" if bound.limit == "min" else "<="
            ok = bracket_within(point, bound.limit, bound.value)
            expected = f"{sign} {number(bound.value)}"
            verdicts.append(Verdict(series, "breaking_point", expected, actual, ok))
    return verdicts


def check_wire(trial: str, figures: object, expected: bool) -> Verdict:
    """The trial's records against its pcap, as `closebench run` verified them."""
    if not isinstance(figures, dict):
        return Verdict(trial, "wire_agreement", _wire_expected(expected), "not verified", False)
    actual = ("agree: " if figures.get("ok") else "DISAGREE: ") + agreement_text(figures)
    ok = bool(figures.get("ok")) == expected
    return Verdict(trial, "wire_agreement", _wire_expected(expected), actual, ok)


def _wire_expected(expected: bool) -> str:
    return "records agree with the wire" if expected else "records disagree with the wire"


def check_bound(trial: str, value: object, bound: Bound, row: dict | None = None) -> Verdict:
    figure = FIGURE_BY_NAME[bound.figure]
    sign = ">=" if bound.limit == "min" else "<="
    expected = f"{sign} {number(bound.value)}"
    if value is None and figure.null_is_unbounded:
        # The defender paid nothing measurable: the ratio has no bound, so any minimum holds.
        return Verdict(trial, bound.figure, expected, "unbounded (null)", bound.limit == "min")
    if not is_number(value):
        return Verdict(trial, bound.figure, expected, "not measured (null)", False)
    why = noise.not_judged_reason(figure, row or {})
    if why:
        return Verdict(trial, bound.figure, expected, f"{number(value)}: {why}", True, False)
    beyond = value - bound.value if bound.limit == "max" else bound.value - value
    ok = not noise.outside(beyond, 0.0, bound.value)  # float error at the edge is no failure
    return Verdict(trial, bound.figure, expected, number(float(value)), ok)

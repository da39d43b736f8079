"""`closebench check RUN --expect FILE`: a run's figures against expectations written in TOML.

    baseline = "reports/last-good"   # optional: compare every shared trial with this run
    max_regression_pct = 20

    [repair]                         # a trial name, or a strategy (all its trials), or "*"
    outcome = "silent"               # every attempt ended silent
    wire_agreement = true            # its records agree with the pcaps (closebench verify)
    hang_median_s_min = 5
    peak_fds_max = 50

    [never]                          # a sweep: a series (a strategy's steps), or a strategy
    breaking_point_max = 400         # it broke at a step of at most 400
    [repair]
    holds = true                     # it held at every step (breaking point null)
                                     # an inconclusive bracket fails holds and breaking_point_*

Exit status: 0 when every expectation holds, 1 when one fails, 2 on bad input (UsageError).
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closebench.core.errors import UsageError
from closebench.core.outcomes import Outcome
from closebench.core.safe_files import read_text
from closebench.results.breaking_points import bracket_holds, bracket_text, bracket_within
from closebench.results.compare import common_trials, mean, values
from closebench.results.placements import placement_warning
from closebench.results.run_directory import RunData, load_summary
from closebench.results.summary_figures import (
    FIGURE_BY_NAME,
    FIGURES,
    HIGHER,
    number,
    outcomes_text,
)
from closebench.results.verify import agreement_text

ALL_TRIALS = "*"
DEFAULT_MAX_REGRESSION_PCT = 20.0
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
    "baseline": "a run directory to compare with, relative to the expectation file",
    "max_regression_pct": "how many percent worse than the baseline a figure may get (default "
    "20); a trial's own table wins over its strategy's, which wins over `\"*\"` and the top level",
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
    """One expectation against one trial: what was expected, what the run had."""

    trial: str
    figure: str
    expected: str
    actual: str
    ok: bool


# Reading and validating the file: every problem is a UsageError naming the key.


def load_expectations(path: str | Path) -> Expectations:
    path = Path(path)
    text = read_text(path, "expectations")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
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
            if not _is_number(value):
                raise UsageError(f"{where} {key} must be a number (a step), not {value!r}")
            expectation.breaking_point.append(Bound("breaking_point", key[-3:], float(value)))
        elif key == "max_regression_pct":
            expectation.max_regression_pct = _percentage(value, f"table {name!r}: {key}", source)
        elif key == "regression_figures":
            expectation.regression_figures = _directed_figures(
                value, f"table {name!r}: {key}", source
            )
        elif figure_key.endswith(("_min", "_max")) and figure_key[:-4] in FIGURE_BY_NAME:
            if not _is_number(value):
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
    if not _is_number(value) or value < 0:
        raise UsageError(f"{source}: {key} must be a number of percent, 0 or more")
    return float(value)


def _directed_figures(value: object, key: str, source: Path) -> list[str]:
    if not isinstance(value, list) or not all(v in DIRECTED for v in value):
        raise UsageError(
            f"{source}: {key} must be a list of figures that have a worse direction: "
            f"{', '.join(DIRECTED)}"
        )
    return list(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _quoted(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'


# Checking a run.


def matching_trials(run: RunData, name: str) -> list[dict]:
    """The rows a table names: a trial (its repetitions too), else a strategy's trials; "*" all."""
    if name == ALL_TRIALS:
        return list(run.rows)
    by_trial = run.groups().get(name)
    if by_trial:
        return by_trial
    by_series = [row for row in run.rows if row.get("series") == name]
    if by_series:
        return by_series
    by_strategy = [row for row in run.rows if row.get("strategy") == name]
    if by_strategy:
        return by_strategy
    known = ", ".join(_quoted(group) for group in run.groups())
    raise UsageError(f"no trial or strategy {name!r} in run {run.name}; its trials: {known}")


def check_run(run: RunData, expectations: Expectations, baseline: RunData | None) -> list[Verdict]:
    verdicts = [Verdict("run", "complete", "true", str(run.complete).lower(), run.complete)]
    for table in expectations.tables:
        if table.about_rows or not table.about_breaking_points:
            for row in matching_trials(run, table.name):
                verdicts += check_row(row, table)
        if table.about_breaking_points:
            verdicts += check_breaking_points(run, table)
    if baseline is not None:
        verdicts += check_regressions(run, baseline, expectations)
    return verdicts


def check_row(row: dict, table: TrialExpectation) -> list[Verdict]:
    trial = row["trial"]
    if row.get("error") or not row.get("complete", True):
        actual = f"error: {row['error']}" if row.get("error") else "interrupted"
        return [Verdict(trial, "trial", "a completed trial", actual, False)]
    verdicts = [check_bound(trial, row.get(bound.figure), bound) for bound in table.bounds]
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


def check_bound(trial: str, value: object, bound: Bound) -> Verdict:
    figure = FIGURE_BY_NAME[bound.figure]
    sign = ">=" if bound.limit == "min" else "<="
    expected = f"{sign} {number(bound.value)}"
    if value is None and figure.null_is_unbounded:
        # The defender paid nothing measurable: the ratio has no bound, so any minimum holds.
        return Verdict(trial, bound.figure, expected, "unbounded (null)", bound.limit == "min")
    if not _is_number(value):
        return Verdict(trial, bound.figure, expected, "not measured (null)", False)
    ok = value >= bound.value if bound.limit == "min" else value <= bound.value
    return Verdict(trial, bound.figure, expected, number(float(value)), ok)


def check_regressions(run: RunData, baseline: RunData, expectations: Expectations) -> list[Verdict]:
    """Each shared trial's figures against the baseline's, in each figure's worse direction."""
    groups, base_groups = run.groups(), baseline.groups()
    shared = common_trials(run, baseline)
    verdicts = []
    for name in shared:
        limit, figures = _regression_settings(name, groups[name], expectations)
        for figure_name in figures:
            verdict = regression(name, figure_name, base_groups[name], groups[name], limit)
            if verdict:
                verdicts.append(verdict)
    return verdicts


def _regression_settings(
    group: str, rows: list[dict], expectations: Expectations
) -> tuple[float, list[str]]:
    """The most specific table's limits: the trial's own, then its strategy's, then "*"."""
    strategy = rows[0].get("strategy")
    ranked = {group: 0, strategy: 1, ALL_TRIALS: 2}
    tables = sorted(
        (t for t in expectations.tables if t.name in ranked), key=lambda t: ranked[t.name]
    )
    limit = next(
        (t.max_regression_pct for t in tables if t.max_regression_pct is not None),
        expectations.max_regression_pct,
    )
    figures = next(
        (t.regression_figures for t in tables if t.regression_figures is not None),
        expectations.regression_figures,
    )
    return limit, figures


def regression(
    trial: str, figure_name: str, before_rows: list[dict], after_rows: list[dict], limit: float
) -> Verdict | None:
    """None when either run lacks the figure (null, failed trial): nothing to compare."""
    figure = FIGURE_BY_NAME[figure_name]
    before, after = mean(values(before_rows, figure_name)), mean(values(after_rows, figure_name))
    if before is None or after is None:
        return None
    worse_by = after - before if figure.worse == HIGHER else before - after
    # From nothing, any worsening is unbounded: only the figure's resolution can excuse it.
    unbounded = math.inf if worse_by > 0 else 0.0
    pct = 100 * worse_by / abs(before) if before != 0 else unbounded
    ok = pct <= limit or abs(after - before) <= figure.noise(before)
    direction = "higher" if figure.worse == HIGHER else "lower"
    expected = f"at most {number(limit)}% {direction} than baseline {number(before)}"
    if math.isinf(pct):
        shown_pct = "worse, from 0"
    else:
        shown_pct = f"{abs(pct):.1f}% {'worse' if pct > 0 else 'better'}" if pct else "no change"
    return Verdict(
        trial, f"{figure_name} vs baseline", expected, f"{number(after)} ({shown_pct})", ok
    )


def run_check(
    run_path: str,
    expect_path: str,
    baseline_path: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Verdict]:
    """Load everything (UsageError on bad input; `warn` of damaged rows), then check."""
    expectations = load_expectations(expect_path)
    run = load_summary(run_path, warn)
    if baseline_path:
        expectations.baseline = Path(baseline_path)
    if expectations.baseline is None and expectations.regression_limits_given:
        raise UsageError(
            f"{expectations.source}: max_regression_pct/regression_figures need a baseline: "
            'add baseline = "RUN_DIR" or give --baseline'
        )
    if not expectations.tables and expectations.baseline is None:
        raise UsageError(
            f"{expectations.source}: no expectations: add a table per trial or a baseline"
        )
    baseline = load_summary(expectations.baseline, warn) if expectations.baseline else None
    # A: the baseline, B: the run checked.
    moved_cpus = (
        placement_warning(baseline.placement, run.placement) if baseline is not None else None
    )
    if moved_cpus is not None and warn is not None:
        warn(moved_cpus)
    return check_run(run, expectations, baseline)


def print_verdicts(verdicts: list[Verdict], run: str, console: Console, verbose: bool) -> None:
    failed = [v for v in verdicts if not v.ok]
    shown = verdicts if verbose else failed
    if shown:
        table = Table(show_edge=False)
        for column in ("", "trial", "figure", "expected", "actual"):
            table.add_column(column)
        for verdict in shown:
            mark = "[green]ok[/]" if verdict.ok else "[bold red]FAIL[/]"
            cells = (verdict.trial, verdict.figure, verdict.expected, verdict.actual)
            table.add_row(mark, *(escape(cell) for cell in cells))  # names are not markup
        console.print(table)
    if failed:
        console.print(
            f"closebench check: {len(failed)} of {len(verdicts)} expectations failed for "
            f"{escape(run)}",
            highlight=False,
        )
    else:
        console.print(
            f"closebench check: all {len(verdicts)} expectations hold for {escape(run)}",
            highlight=False,
        )

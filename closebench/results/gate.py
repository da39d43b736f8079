"""The gate: `closebench check RUN --expect FILE` run end to end. The expectations' own rules
(bounds, outcomes, the wire, breaking points) are check.py; here, a run against a `baseline` run on
the noise model (results/noise.py): a trial missing, a new outcome class above the noise, a figure
worse beyond the noise, a breaking point moved. And the verdicts printed, the verdict line first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closebench.core.errors import UsageError
from closebench.results import noise
from closebench.results.check import (
    ALL_TRIALS,
    Expectations,
    Verdict,
    base_name,
    check_breaking_points,
    check_row,
    load_expectations,
    matching_trials,
    missing,
)
from closebench.results.compare import (
    BreakingPointMove,
    common_trials,
    mean,
    summed_outcomes,
    values,
)
from closebench.results.placements import placement_warning
from closebench.results.run_directory import RunData, load_summary
from closebench.results.summary_figures import FIGURE_BY_NAME, HIGHER, number, outcomes_text


def check_run(run: RunData, expectations: Expectations, baseline: RunData | None) -> list[Verdict]:
    verdicts = [Verdict("run", "complete", "true", str(run.complete).lower(), run.complete)]
    for table in expectations.tables:
        if table.about_rows or not table.about_breaking_points:
            rows = matching_trials(run, table.name)
            if not rows:
                verdicts.append(missing(run, table.name))
            for row in rows:
                verdicts += check_row(row, table)
        if table.about_breaking_points:
            verdicts += check_breaking_points(run, table)
    if baseline is not None:
        verdicts += check_regressions(run, baseline, expectations)
    return verdicts


def check_regressions(run: RunData, baseline: RunData, expectations: Expectations) -> list[Verdict]:
    """Each baseline trial against the run: missing, its outcome classes, its figures in their
    worse direction (results/noise.py), and each sweep series' breaking point."""
    groups, base_groups = run.groups(), baseline.groups()
    verdicts = [
        Verdict(name, "trial", f"in the run (as in baseline {baseline.name})", "missing", False)
        for name in base_groups
        if name not in groups
    ]
    for name in common_trials(run, baseline):
        verdicts += outcome_shares(name, base_groups[name], groups[name])
        limit, figures = _regression_settings(name, groups[name], expectations)
        for figure_name in figures:
            verdict = regression(name, figure_name, base_groups[name], groups[name], limit)
            if verdict:
                verdicts.append(verdict)
    verdicts += breaking_point_moves(run, baseline)
    return verdicts


def outcome_shares(trial: str, before_rows: list[dict], after_rows: list[dict]) -> list[Verdict]:
    """A class new to the trial, above the noise (results/noise.py), fails."""
    new = noise.new_outcome_classes(before_rows, after_rows)
    return [
        Verdict(
            trial,
            "outcome classes",
            f"the baseline's only ({outcomes_text(summed_outcomes(before_rows))})",
            f"new class {name}: {share:.0%} of attempts "
            f"({outcomes_text(summed_outcomes(after_rows))})",
            False,
        )
        for name, share in sorted(new.items())
    ]


def breaking_point_moves(run: RunData, baseline: RunData) -> list[Verdict]:
    verdicts = []
    for series, before in baseline.breaking_points.items():
        after = run.breaking_points.get(series)
        if after is None:
            continue
        move = BreakingPointMove(series, before, after)
        if move.verdict != "same":
            verdicts.append(
                Verdict(
                    series,
                    "breaking_point",
                    f"as baseline: {move.text(before)}",
                    f"{move.verdict}: {move.text(after)} ({after.get('reason', '')})",
                    False,
                )
            )
    return verdicts


def _regression_settings(
    group: str, rows: list[dict], expectations: Expectations
) -> tuple[float, list[str]]:
    """The most specific table's limits: the trial's own, then its strategy's, then "*"."""
    strategy = rows[0].get("strategy")
    ranked = {group: 0, strategy: 1, base_name(strategy): 2, ALL_TRIALS: 3}
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
    """The figure against the baseline's on the noise model (results/noise.py); a worse change
    inside `limit` percent is allowed too. None when neither run measured it (null)."""
    figure = FIGURE_BY_NAME[figure_name]
    judgement = noise.judge(figure, before_rows, after_rows)
    before, after = mean(values(before_rows, figure_name)), mean(values(after_rows, figure_name))
    allowance = f" or {number(limit)}%" if limit else ""
    if judgement.verdict == "not judged":
        if before is None and after is None:
            return None
        expected = f"baseline {number(before)} within the noise"
        return Verdict(trial, f"{figure_name} vs baseline", expected, judgement.reason, True, False)
    expected = f"baseline {number(before)} ± {number(judgement.width)}{allowance}"
    if judgement.verdict == "same" and before is None:
        return None  # null on both sides: nothing measured, nothing to judge
    worse_by = 0.0 if before is None or after is None else after - before
    worse_by = worse_by if figure.worse == HIGHER else -worse_by
    pct = 100 * worse_by / abs(before) if before else math.inf
    ok = judgement.verdict != "worse" or pct <= limit
    shown = f"{judgement.verdict} beyond the noise" if judgement.moved else "within the noise"
    return Verdict(trial, f"{figure_name} vs baseline", expected, f"{number(after)} ({shown})", ok)


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
    # A: the baseline, B: the run checked. Other CPUs make other figures: say so.
    moved_cpus = (
        placement_warning(baseline.placement, run.placement) if baseline is not None else None
    )
    if moved_cpus is not None and warn is not None:
        warn(moved_cpus)
    return check_run(run, expectations, baseline)


def print_verdicts(verdicts: list[Verdict], run: str, console: Console, verbose: bool) -> None:
    """The verdict line first (PASS or FAIL with a count), then the failures (every verdict with
    `verbose`), then how many were not judged."""
    failed = [v for v in verdicts if not v.ok]
    not_judged = [v for v in verdicts if not v.judged]
    judged = len(verdicts) - len(not_judged)
    if failed:
        console.print(
            f"[bold red]FAIL[/]: {len(failed)} of {judged} expectations failed for {escape(run)}",
            highlight=False,
        )
    else:
        console.print(
            f"[bold green]PASS[/]: all {judged} expectations hold for {escape(run)}",
            highlight=False,
        )
    shown = verdicts if verbose else failed
    if shown:
        table = Table(show_edge=False)
        for column in ("", "trial", "figure", "expected", "actual"):
            table.add_column(column)
        marks = {"ok": "[green]ok[/]", "FAIL": "[bold red]FAIL[/]", "not judged": "[yellow]n/j[/]"}
        for verdict in shown:
            cells = (verdict.trial, verdict.figure, verdict.expected, verdict.actual)
            table.add_row(marks[verdict.state], *(escape(cell) for cell in cells))
        console.print(table)
    if not_judged:
        console.print(
            f"{len(not_judged)} not judged (n/j: a figure under its floor at this run's length)"
            + ("" if verbose else ": --verbose lists them with the reason"),
            highlight=False,
        )

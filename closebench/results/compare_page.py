"""`closebench compare` shown: the terminal table and the HTML page show the same cells (the page is
templates/compare.html.j2)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closebench.core.safe_files import SafeDirectory
from closebench.results.compare import Comparison, FigureChange, GroupComparison, wire_state
from closebench.results.noise import K_SPREAD
from closebench.results.pages import environment
from closebench.results.placements import placement_warning
from closebench.results.summary_figures import number, outcomes_text


class Line(NamedTuple):
    """One line of a trial's comparison."""

    figure: str
    before: str  # run A's value
    after: str  # run B's
    change: str
    verdict: str  # worse, better, changed, same or ""
    meaning: str  # what the figure is, its worse direction and resolution


class Flagged(NamedTuple):
    """A change outside the noise, as the page lists it."""

    verdict: str
    trial: str
    figure: str
    before: str
    after: str
    note: str


def special_lines(group: GroupComparison) -> list[Line]:
    """The lines that are not numbers: the outcome classes and the agreement with the wire."""
    return [
        Line(
            "outcomes",
            outcomes_text(group.outcomes_before),
            outcomes_text(group.outcomes_after),
            "",
            "changed" if group.outcome_classes_changed else "",
            "outcome classes seen",
        ),
        Line(
            "wire_agreement",
            wire_state(group.before),
            wire_state(group.after),
            "",
            group.wire_verdict,
            "the records against the pcaps (closebench verify): ok, flagged, - not verified",
        ),
    ]


def side_text(numbers: list[float]) -> str:
    """A run's value: the mean, with the min..max range when there are repetitions."""
    if not numbers:
        return "-"
    if len(numbers) == 1:
        return number(numbers[0])
    return f"{number(statistics.fmean(numbers))} [{number(min(numbers))}..{number(max(numbers))}]"


def change_text(change: FigureChange) -> str:
    if not change.measured:
        return "n/a"
    if change.verdict == "same":
        return "="
    pct = change.change_pct
    relative = "from 0" if pct is None or math.isinf(pct) else f"{pct:+.1f}%"
    return f"{change.change:+.4g} ({relative})"


def shown(change: FigureChange) -> bool:
    return bool(change.before or change.after)  # hide figures neither run measured


def noise_note(comparison: Comparison) -> str:
    reps = {len(g.before) for g in comparison.groups} | {len(g.after) for g in comparison.groups}
    if reps == {1}:
        return (
            "one repetition per trial: changes are judged against the figures' resolutions only; "
            "`closebench run --repeat 3` gives A a measured spread"
        )
    return (
        "A and B show the mean [min..max] over repetitions; beyond the noise: B's range lies "
        f"further from A's than max(both resolutions, {K_SPREAD:g} x A's spread)"
    )


VERDICT_STYLE = {"worse": "bold red", "better": "green", "changed": "yellow", "same": "dim"}


def print_comparison(
    comparison: Comparison, console: Console, every_row: bool = False, fail_on: str = "worse"
) -> None:
    """The verdict line first, then what fails the gate (one line each), then the figures that
    moved beyond the noise (every figure with `every_row`), the trial on every row."""
    verdict = comparison.verdict_line(fail_on)
    style = "bold green" if verdict == "PASS" else "bold red"
    console.print(f"[{style}]{escape(verdict)}[/]", highlight=False)
    for line in comparison.regressions(fail_on):
        console.print(f"  {escape(line)}", highlight=False)
    a, b = comparison.run_a, comparison.run_b
    table = Table(title=escape(f"A = {a.name}, B = {b.name}"), show_edge=False)
    for column in ("trial", "figure", "A", "B", "change", "verdict"):
        table.add_column(column, justify="right" if column in ("A", "B", "change") else "left")
    kinds = ("worse", "better", "changed") if fail_on == "changed" else ("worse",)
    for group in comparison.groups:
        for figure, before, after, delta, verdict in group_lines(group, every_row, kinds):
            style = VERDICT_STYLE.get(verdict, "")
            table.add_row(
                escape(group.trial),  # trial names are not markup
                figure,
                escape(before),
                escape(after),
                f"[{style}]{delta}[/]" if style else delta,
                f"[{style}]{verdict}[/]" if style else verdict,
            )
    if table.row_count:
        console.print(table)
    if comparison.breaking_points and (
        every_row or any(move.verdict != "same" for move in comparison.breaking_points)
    ):
        print_breaking_points(comparison, console)
    for line in comparison_notes(comparison, every_row):
        console.print(escape(line), highlight=False)


def group_lines(
    group: GroupComparison, every_row: bool, kinds: tuple[str, ...] = ("worse",)
) -> list[tuple[str, str, str, str, str]]:
    """A trial's rows: every figure either run measured, or only those that moved beyond the
    noise in a way the gate counts (`kinds`: worse; with --fail-on changed, any way)."""
    outcomes, wire = (line[:5] for line in special_lines(group))
    lines = [outcomes, wire]
    for change in group.changes:
        if shown(change):
            lines.append(
                (
                    change.figure.name,
                    side_text(change.before),
                    side_text(change.after),
                    change_text(change),
                    change.verdict,
                )
            )
    if every_row:
        return lines
    return [line for line in lines if line[4] in kinds]


def print_breaking_points(comparison: Comparison, console: Console) -> None:
    table = Table(title="breaking points (the sweep)")
    for column in ("series", "A", "B", "verdict"):
        table.add_column(column)
    for move in comparison.breaking_points:
        style = VERDICT_STYLE.get(move.verdict, "")
        table.add_row(
            escape(move.series),
            escape(move.text(move.before)),
            escape(move.text(move.after)),
            f"[{style}]{move.verdict}[/]" if style else move.verdict,
        )
    console.print(table)


def comparison_notes(comparison: Comparison, every_row: bool = True) -> list[str]:
    a, b = comparison.run_a, comparison.run_b
    notes = [noise_note(comparison)]
    not_judged = comparison.not_judged()
    if not_judged:
        if every_row:
            notes += [
                f"not judged: {trial}: {change.figure.name}: {change.judgement.reason}"
                for trial, change in not_judged
            ]
        else:
            notes.append(
                f"{len(not_judged)} figure(s) not judged (under their floor): --all lists them"
            )
    if (moved_cpus := placement_warning(a.placement, b.placement)) is not None:
        notes.append(moved_cpus)
    if a.meta.get("scenario_name") != b.meta.get("scenario_name"):
        notes.append(
            f"note: different scenarios (A: {a.meta.get('scenario_name')}, "
            f"B: {b.meta.get('scenario_name')})"
        )
    if comparison.only_b:
        notes.append(f"only in B: {', '.join(comparison.only_b)}")
    for run, label in ((a, "A"), (b, "B")):
        if not run.complete:
            notes.append(f"run {label} ({run.name}) is incomplete")
    notes += [error for group in comparison.groups for error in group.errors()]
    for run, label in ((a, "A"), (b, "B")):
        disagree = [name for name, rows in run.groups().items() if wire_state(rows) == "flagged"]
        if disagree:
            notes.append(f"run {label}'s records disagree with the wire: {', '.join(disagree)}")
    flagged = comparison.flagged()
    worse = sum(change.verdict == "worse" for _, change in flagged)
    notes.append(
        f"{len(flagged)} change(s) outside the noise, {worse} of them worse for the defender"
        + ("" if every_row else " (--all shows every row)")
    )
    return notes


def default_html_path(comparison: Comparison) -> Path:
    """./compare-<A>-<B>.html: never inside a run it reads (it may be read-only, or root's)."""

    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)

    return Path(f"compare-{safe(comparison.run_a.name)}-{safe(comparison.run_b.name)}.html")


COMPARE_SCHEMA = "closebench.compare/1"


def comparison_json(comparison: Comparison, every_row: bool, fail_on: str) -> dict:
    """The comparison as a versioned document (`--json`): the verdict, what fails, the figures
    that moved (every figure with `every_row`), and those not judged with the reason."""
    figures = [
        {
            "trial": group.trial,
            "figure": change.figure.name,
            "a": change.before,
            "b": change.after,
            "verdict": change.verdict or "within noise",
            "noise": change.judgement.width,
            "reason": change.judgement.reason or None,
        }
        for group in comparison.groups
        for change in group.changes
        if shown(change) and (every_row or change.outside_noise)
    ]
    return {
        "schema": COMPARE_SCHEMA,
        "run_a": comparison.run_a.name,
        "run_b": comparison.run_b.name,
        "fail_on": fail_on,
        "verdict": "pass" if not comparison.regressions(fail_on) else "fail",
        "verdict_line": comparison.verdict_line(fail_on),
        "regressions": comparison.regressions(fail_on),
        "only_a": comparison.only_a,
        "only_b": comparison.only_b,
        "outcome_classes_new": {
            group.trial: group.new_classes for group in comparison.groups if group.new_classes
        },
        "breaking_points": [
            {"series": m.series, "a": m.before, "b": m.after, "verdict": m.verdict}
            for m in comparison.breaking_points
        ],
        "figures": figures,
        "not_judged": [
            {"trial": trial, "figure": change.figure.name, "reason": change.judgement.reason}
            for trial, change in comparison.not_judged()
        ],
    }


def render_html(comparison: Comparison) -> str:
    """A self-contained page (templates/compare.html.j2): inline CSS, no script, nothing fetched."""
    a, b = comparison.run_a, comparison.run_b
    groups = [
        {
            "trial": group.trial,
            "lines": special_lines(group)
            + [
                Line(
                    c.figure.name,
                    side_text(c.before),
                    side_text(c.after),
                    change_text(c),
                    c.verdict,
                    f"{c.figure.meaning}; worse: {c.figure.worse or 'neither'}; "
                    f"resolution {c.figure.resolution_text()}",
                )
                for c in group.changes
                if shown(c)
            ],
        }
        for group in comparison.groups
    ]
    flagged = (
        [
            Flagged(
                "changed",
                group.trial,
                "outcomes",
                outcomes_text(group.outcomes_before),
                outcomes_text(group.outcomes_after),
                "outcome classes changed",
            )
            for group in comparison.groups
            if group.outcome_classes_changed
        ]
        + [
            Flagged("missing", name, "trial", "present", "missing", "missing from B")
            for name in comparison.only_a
        ]
        + [
            Flagged(
                move.verdict,
                move.series,
                "breaking point",
                move.text(move.before),
                move.text(move.after),
                f"{move.verdict}: {move.after['reason']}",
            )
            for move in comparison.breaking_points
            if move.verdict != "same"
        ]
        + [
            Flagged(
                c.verdict,
                trial,
                c.figure.name,
                side_text(c.before),
                side_text(c.after),
                f"{change_text(c)}, {c.verdict}",
            )
            for trial, c in comparison.flagged()
        ]
    )
    return (
        environment()
        .get_template("compare.html.j2")
        .render(
            title=f"closebench compare: {a.name} → {b.name}",
            run_a=a,
            run_b=b,
            flagged=flagged,
            notes=comparison_notes(comparison),
            groups=groups,
        )
    )


def write_html(comparison: Comparison, path: Path) -> Path:
    # Its directory opened once (made when missing; refused where another user could change
    # it), the page renamed into place through it: a link planted at the page's name (RUN_B came
    # from elsewhere) is replaced, never followed.
    fix = "give --html FILE in a writable place"
    with SafeDirectory(path.parent, fix, create=True) as directory:
        return directory.write(path.name, render_html(comparison))

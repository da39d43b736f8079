"""`closebench compare`: what changed between two runs, figure by figure, against the noise.

Trials are matched by name; the repetitions of a trial (`name #k`) form one group. Each figure is
judged on the noise model `check` uses too (results/noise.py): worse, better or changed beyond the
noise, within it, or not judged (a ratio under its floor) with the reason. `regressions()` lists
what fails the gate, one line each (a missing trial, a new outcome class, a moved breaking point,
a figure worse beyond the noise); the table and the page are compare_page.py.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from closebench.core.errors import UsageError
from closebench.results.breaking_points import bracket_text, moved_points
from closebench.results.noise import NOT_THE_SERVERS, Judgement, judge, new_outcome_classes
from closebench.results.run_directory import RunData
from closebench.results.summary_figures import FIGURES, Figure


def values(rows: list[dict], figure: str) -> list[float]:
    """The figure across repetitions, leaving out failed trials and nulls."""
    found = []
    for row in rows:
        value = row.get(figure)
        if (
            row.get("error") is None
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            found.append(float(value))
    return found


def mean(numbers: list[float]) -> float | None:
    return statistics.fmean(numbers) if numbers else None


def wire_state(rows: list[dict]) -> str:
    """'ok' when every repetition's records agree with the wire, 'flagged' when one does not,
    '-' when they were not verified."""
    checked = [row["wire_agreement"] for row in rows if isinstance(row.get("wire_agreement"), dict)]
    if not checked:
        return "-"
    return "ok" if all(w.get("ok") for w in checked) else "flagged"


def summed_outcomes(rows: list[dict]) -> dict[str, int]:
    total: dict[str, int] = {}
    for row in rows:
        for outcome, count in (row.get("outcomes") or {}).items():
            total[outcome] = total.get(outcome, 0) + count
    return total


@dataclass
class FigureChange:
    """One figure of one trial group, before (run A) and after (run B), judged on the noise
    model (results/noise.py)."""

    figure: Figure
    before: list[float]
    after: list[float]
    judgement: Judgement = field(default_factory=lambda: Judgement("same"))

    @property
    def measured(self) -> bool:
        return bool(self.before and self.after)

    @property
    def change(self) -> float | None:
        if not self.measured:
            return None
        return statistics.fmean(self.after) - statistics.fmean(self.before)

    @property
    def change_pct(self) -> float | None:
        change = self.change  # None when not measured
        if change is None:
            return None
        base = statistics.fmean(self.before)
        if base == 0:
            return None if change == 0 else math.copysign(math.inf, change)
        return 100 * change / abs(base)

    @property
    def outside_noise(self) -> bool:
        return self.judgement.moved

    @property
    def verdict(self) -> str:
        """'worse', 'better', 'changed' (outside the noise), 'same' (equal), '' (within the
        noise) or 'not judged' (the judgement's reason says why)."""
        if self.judgement.verdict == "not judged":
            return "not judged" if (self.before or self.after) else ""
        if self.judgement.moved:
            return self.judgement.verdict
        change = self.change  # None when not measured
        if change is not None and math.isclose(change, 0.0, abs_tol=1e-9):
            return "same"  # float sums (0.11 - 0.1 - 0.01) are not a change
        return ""


@dataclass
class GroupComparison:
    trial: str
    before: list[dict]
    after: list[dict]
    changes: list[FigureChange]

    @property
    def outcomes_before(self) -> dict[str, int]:
        return summed_outcomes(self.before)

    @property
    def outcomes_after(self) -> dict[str, int]:
        return summed_outcomes(self.after)

    @property
    def outcome_classes_changed(self) -> bool:
        """A class B has and A never had, above the noise (a count of one)."""
        return bool(self.new_classes)

    @property
    def new_classes(self) -> dict[str, float]:
        return new_outcome_classes(self.before, self.after)

    @property
    def wire_verdict(self) -> str:
        """How the records' agreement with the wire changed: 'worse' when B's disagree and A's
        did not, 'better' the other way round, '' otherwise."""
        before, after = wire_state(self.before), wire_state(self.after)
        if "flagged" in (before, after) and before != after and "-" not in (before, after):
            return "worse" if after == "flagged" else "better"
        return ""

    def errors(self) -> list[str]:
        return [
            f"{side}: {row['trial']}: {row['error']}"
            for side, rows in (("A", self.before), ("B", self.after))
            for row in rows
            if row.get("error")
        ]


@dataclass(frozen=True)
class BreakingPointMove:
    """A sweep series' breaking point in both runs (results/breaking_points.py)."""

    series: str
    before: dict  # {axis, value, reason}; value None: it held at every step
    after: dict

    @property
    def verdict(self) -> str:
        """'worse' (it broke at a lower step, or broke where it held), 'better', 'same', or
        'inconclusive' (either run could not tell)."""
        return moved_points(self.before, self.after)

    @staticmethod
    def text(point: dict) -> str:
        return bracket_text(point)


@dataclass
class Comparison:
    run_a: RunData
    run_b: RunData
    groups: list[GroupComparison]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    breaking_points: list[BreakingPointMove] = field(default_factory=list)  # series in both

    def flagged(self) -> list[tuple[str, FigureChange]]:
        return [
            (group.trial, change)
            for group in self.groups
            for change in group.changes
            if change.verdict in ("worse", "better", "changed")
        ]

    def not_judged(self) -> list[tuple[str, FigureChange]]:
        return [
            (group.trial, change)
            for group in self.groups
            for change in group.changes
            if change.verdict == "not judged" and change.figure.worse
        ]

    def regressions(self, fail_on: str = "worse") -> list[str]:
        """One line per regression: a trial only in A, a new outcome class, a breaking point
        moved, records that disagree with the wire where A's agreed, a figure worse beyond the
        noise; with fail_on "changed", any figure outside the noise and trials only in B too."""
        kinds = ("worse", "better", "changed") if fail_on == "changed" else ("worse",)
        lines = [f"{name}: missing from B" for name in self.only_a]
        if fail_on == "changed":
            lines += [f"{name}: new in B" for name in self.only_b]
        for group in self.groups:
            for name, share in sorted(group.new_classes.items()):
                lines.append(f"{group.trial}: outcome class {name} new, {share:.0%} of attempts")
            if group.wire_verdict in kinds:
                lines.append(f"{group.trial}: wire agreement {group.wire_verdict}")
        for move in self.breaking_points:
            if move.verdict != "same":  # a step is no measurement noise: any move counts
                lines.append(
                    f"{move.series}: breaking point {move.text(move.before)} -> "
                    f"{move.text(move.after)} ({move.verdict})"
                )
        for trial, change in self.flagged():
            if change.verdict in kinds and change.figure.name not in NOT_THE_SERVERS:
                lines.append(f"{trial}: {change.figure.name} {change.verdict} beyond the noise")
        return lines

    def verdict_line(self, fail_on: str = "worse") -> str:
        found = self.regressions(fail_on)
        if not found:
            return "PASS"
        figures = sum(" beyond the noise" in line for line in found)
        others = len(found) - figures
        word = "worse" if fail_on == "worse" else "changed"
        parts = [f"{figures} figure{'s' * (figures != 1)} {word} beyond noise"] if figures else []
        if others:
            parts.append(f"{others} other regression{'s' * (others != 1)}")
        return "FAIL: " + ", ".join(parts)


def common_trials(run: RunData, other: RunData) -> list[str]:
    """The trials (repetitions grouped) `run` shares with `other`, in `run`'s order;
    UsageError when they share none."""
    groups, other_groups = run.groups(), other.groups()
    common = [name for name in groups if name in other_groups]
    if not common:
        raise UsageError(
            f"runs {other.name} and {run.name} have no trial in common "
            f"({other.name}: {', '.join(other_groups) or 'none'}; "
            f"{run.name}: {', '.join(groups) or 'none'})"
        )
    return common


def compare_runs(run_a: RunData, run_b: RunData) -> Comparison:
    """Every figure of every trial the two runs share; UsageError when they share none."""
    groups_a, groups_b = run_a.groups(), run_b.groups()
    common = common_trials(run_b, run_a)
    compared = []
    for name in common:
        before, after = groups_a[name], groups_b[name]
        changes = [
            FigureChange(
                figure,
                values(before, figure.name),
                values(after, figure.name),
                judge(figure, before, after),
            )
            for figure in FIGURES
        ]
        compared.append(GroupComparison(name, before, after, changes))
    return Comparison(
        run_a,
        run_b,
        compared,
        only_a=[name for name in groups_a if name not in groups_b],
        only_b=[name for name in groups_b if name not in groups_a],
        breaking_points=[
            BreakingPointMove(series, point, run_b.breaking_points[series])
            for series, point in run_a.breaking_points.items()
            if series in run_b.breaking_points
        ],
    )


# Presentation: the terminal table and the HTML page show the same cells.


# The command line: `closebench compare RUN_A RUN_B`.

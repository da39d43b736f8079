"""`closebench compare`: what changed between two runs, figure by figure, against the noise.

Trials are matched by name; the repetitions of a trial (`name #k`) form one group whose spread is
the noise band. A change is flagged when the gap between the two runs' ranges is wider than the
figure's resolution (an absolute size, or a share of the base value for the noisy cost ratios), so
one-repetition runs are still compared at that resolution. The figures, their worse direction and
their resolution are closebench/results/summary_figures.py; the table and the page compare_page.py.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from closebench.core.errors import UsageError
from closebench.results.breaking_points import bracket_text, moved_points
from closebench.results.run_directory import RunData
from closebench.results.summary_figures import FIGURES, HIGHER, Figure


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
    """One figure of one trial group, before (run A) and after (run B)."""

    figure: Figure
    before: list[float]
    after: list[float]

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
        if not self.measured:
            return None
        base = statistics.fmean(self.before)
        if base == 0:
            return None if self.change == 0 else math.copysign(math.inf, self.change)
        return 100 * self.change / abs(base)

    @property
    def gap(self) -> float:
        """How far apart the two runs' min..max ranges are (0 when they overlap)."""
        if not self.measured:
            return 0.0
        return max(0.0, min(self.after) - max(self.before), min(self.before) - max(self.after))

    @property
    def outside_noise(self) -> bool:
        if not self.measured:
            return False
        return self.gap > self.figure.noise(statistics.fmean(self.before)) + 1e-12

    @property
    def verdict(self) -> str:
        """'worse', 'better', 'changed' (outside the noise), 'same' or '' (within it)."""
        if not self.measured:
            return ""
        if math.isclose(self.change, 0.0, abs_tol=1e-9) and self.gap == 0:
            return "same"  # float sums (0.11 - 0.1 - 0.01) are not a change
        if not self.outside_noise:
            return ""
        if self.figure.worse is None:
            return "changed"
        worse = self.change > 0 if self.figure.worse == HIGHER else self.change < 0
        return "worse" if worse else "better"


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
        return set(self.outcomes_before) != set(self.outcomes_after)

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
            FigureChange(figure, values(before, figure.name), values(after, figure.name))
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

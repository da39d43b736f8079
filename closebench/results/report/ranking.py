"""Which trial wins on each axis the reader cares about, within the noise, and which trials are
worth a look (undominated; the quietest among those that slow the attacker most)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from closebench.results.report.columns import percent
from closebench.results.run_directory import TrialData, is_number

FD_NOISE = 1.0  # fd-seconds below this are a transient fd, not a held socket


@dataclass(frozen=True)
class Axis:
    key: str
    label: str
    lower_is_better: bool
    show: Callable[[float], str]
    absolute: float = 0.0  # differences up to this (or `relative` of the best) are a tie
    relative: float = 0.0

    def ties(self, value: float, best: float) -> bool:
        return abs(value - best) <= max(self.absolute, self.relative * abs(best)) + 1e-12


AXES = (
    Axis("attempts_per_s", "fewest attacker attempts/s", True, "{:.2f}/s".format, 0.0, 0.1),
    Axis("hang_median_s", "longest attacker hang", False, "{:.2f} s median".format, 0.05, 0.1),
    Axis("fd_seconds", "fewest defender fd-seconds", True, "{:.1f} fd-s".format, FD_NOISE),
    Axis("cpu_seconds", "least defender CPU", True, "{:.2f} CPU s".format, 0.02, 0.1),
    Axis("peak_threads", "fewest defender threads", True, "{:.0f} at peak".format),
    Axis("peak_orphans", "fewest orphan sockets", True, "{:.0f} at peak".format),
    Axis("legit_success_rate", "most legitimate requests answered", False, percent, 0.01),
)


@dataclass
class AxisResult:
    axis: Axis
    winners: list[str]
    best: str  # the winners' value, shown
    losers: list[str]  # the worst trials
    worst: str
    all_tied: bool


def axis_results(trials: list[TrialData]) -> list[AxisResult]:
    results = []
    for axis in AXES:
        values = {
            t.name: t.row[axis.key] for t in trials if t.ok and is_number(t.row.get(axis.key))
        }
        if not values:
            continue
        pick = min if axis.lower_is_better else max
        best, worst = pick(values.values()), (max if axis.lower_is_better else min)(values.values())
        winners = [name for name, value in values.items() if axis.ties(value, best)]
        losers = [n for n, v in values.items() if axis.ties(v, worst) and n not in winners]
        results.append(
            AxisResult(
                axis,
                winners,
                axis.show(best),
                losers,
                axis.show(worst),
                axis.ties(worst, best) or not losers,
            )
        )
    return results


def _better(axis: Axis, a: float, b: float) -> bool:
    """a is better than b beyond noise."""
    if axis.ties(a, b):
        return False
    return a < b if axis.lower_is_better else a > b


def undominated(trials: list[TrialData]) -> list[str]:
    """Trials no other trial beats on one axis without being worse on any."""
    ok = [t for t in trials if t.ok]

    def dominates(a: TrialData, b: TrialData) -> bool:
        shared = [x for x in AXES if is_number(a.row.get(x.key)) and is_number(b.row.get(x.key))]
        better = any(_better(x, a.row[x.key], b.row[x.key]) for x in shared)
        worse = any(_better(x, b.row[x.key], a.row[x.key]) for x in shared)
        return better and not worse

    return [b.name for b in ok if not any(dominates(a, b) for a in ok if a is not b)]


# What the defender cares about most first: the service staying up, then what it holds.
COST_PRIORITY = ("legit_success_rate", "fd_seconds", "peak_orphans", "cpu_seconds", "peak_threads")


def best_silencer(trials: list[TrialData], results: list[AxisResult]) -> tuple[list[str], str]:
    """Among the trials that slow the attacker most, those cheapest for the defender: keep the
    best on each cost in COST_PRIORITY in turn (ties within noise stay)."""
    rate = next((r for r in results if r.axis.key == "attempts_per_s"), None)
    if rate is None:
        return [], ""
    candidates = [t for t in trials if t.name in rate.winners]
    axes = {axis.key: axis for axis in AXES}
    for key in COST_PRIORITY:
        axis = axes[key]
        values = [t.row[key] for t in candidates if is_number(t.row.get(key))]
        if not values:
            continue
        best = min(values) if axis.lower_is_better else max(values)
        candidates = [
            t for t in candidates if not is_number(t.row.get(key)) or axis.ties(t.row[key], best)
        ]
    return [t.name for t in candidates], rate.best

"""The noise model `compare` and `check` share: when does a figure's change mean something?

A figure is measured with a resolution (summary_figures.Figure: a CPU tick for CPU time, the
sampler's period for sampled figures, a count of one for counts, a share of the value for the
machine-wide ones). A ratio inherits its inputs' resolutions (`ratio_resolution`), and below a
floor of its denominator (a few CPU ticks, a few attempts) it is not judged at all: one tick more
or less would swing it by half.

The decision rule (`judge`): the base's values (one per repetition, or one per run for bounds made
from N runs) give a band [min, max]; the other side is outside the noise when its range lies
further from the band than the width

    width = max(resolution of the base + resolution of the other side, K x (max - min of the base))

so an unchanged figure passes unless it moves by more than K times what the base's own
repetitions already showed, and never for less than its resolution. K = 1 (measured false alarms:
docs/guides/ci.md). Values within 1e-9 (relative) of the edge are inside: 1.000000000000002 is not
above 0.9999999999999996 (floating-point sums are not changes).

A figure is "not judged" (never a pass, never a failure) when one side has no value, or its
denominator is under the floor; the reason says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from closebench.results.run_directory import is_number
from closebench.results.summary_figures import FIGURE_BY_NAME, HIGHER, Figure

# The machine's TCP memory is every process's, other jobs on a CI runner included: a change there
# is reported ("changed"), never a regression of the defender.
MACHINE_WIDE = frozenset({"peak_tcp_mem_pages", "peak_tcp_mem_bytes"})
# Figures of the machine or of the harness itself, not of the server: reported, never counted by
# a gate (`compare --fail-on changed` included).
NOT_THE_SERVERS = MACHINE_WIDE | {
    "sampler_overhead",
    "harness_cpu_share",
    "harness_loop_lag_p95_s",
    "harness_receive_drops",
    "harness_local_errors",
    "attacker_processes",
    "duration_s",
}
K_SPREAD = 1.0  # the band is widened by K times the base's own spread (min..max)
EDGE = 1e-9  # relative tolerance at the band's edge: float error is not a change


@dataclass(frozen=True)
class Ratio:
    """A figure that is numerator x scale / denominator, not judged below `floor` of the
    denominator."""

    numerator: str
    denominator: str
    scale: float
    floor: float
    floor_text: str


RATIOS: dict[str, Ratio] = {
    # CPU time counts in 10 ms ticks: with few attempts, one tick is a large share per attempt.
    "cpu_ms_per_attempt": Ratio("cpu_seconds", "attempts", 1000.0, 10, "10 attempts"),
    # Under 10 CPU ticks, one tick more or less moves the ratio by 10% or more.
    "wasted_per_cpu_second": Ratio(
        "attacker_seconds_wasted", "cpu_seconds", 1.0, 0.1, "0.1 CPU s (10 ticks)"
    ),
    "wasted_per_fd_second": Ratio("attacker_seconds_wasted", "fd_seconds", 1.0, 5.0, "5 fd-s"),
}


# A share of a count: one of them more or less is its resolution (not judged under 10 of them).
SHARES: dict[str, str] = {"legit_success_rate": "legit_requests"}
SHARE_FLOOR = 10


def not_judged_reason(figure: Figure, row: dict) -> str | None:
    """Why this row's value of `figure` cannot be judged, or None when it can."""
    ratio = RATIOS.get(figure.name)
    if ratio is not None:
        denominator, floor, floor_text = ratio.denominator, ratio.floor, ratio.floor_text
    elif figure.name in SHARES:
        denominator, floor, floor_text = SHARES[figure.name], SHARE_FLOOR, f"{SHARE_FLOOR}"
    else:
        return None
    value = row.get(denominator)
    if is_number(value) and value < floor:
        return f"{denominator} {value:.4g} is under the floor of {floor_text}"
    return None


def resolution(figure: Figure, row: dict | None, value: float) -> float:
    """The figure's resolution at `value` (a ratio's from its inputs in `row`)."""
    ratio = RATIOS.get(figure.name)
    if ratio is not None and row is not None:
        return ratio_resolution(ratio, row, value)
    count = row.get(SHARES[figure.name]) if row is not None and figure.name in SHARES else None
    if is_number(count) and count > 0:
        return max(figure.noise(value), 1.0 / count)
    return figure.noise(value)


def ratio_resolution(ratio: Ratio, row: dict, value: float) -> float:
    """r = s n / d moves by s dn / d + r dd / d when n and d move by their resolutions."""
    numerator = FIGURE_BY_NAME[ratio.numerator]
    denominator = FIGURE_BY_NAME[ratio.denominator]
    d = row.get(ratio.denominator)
    n = row.get(ratio.numerator)
    if not is_number(d) or d <= 0 or not is_number(n):
        return math.inf
    dn, dd = numerator.noise(n), denominator.noise(d)
    return ratio.scale * dn / d + abs(value) * dd / d


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a figure's values and the rows they came from."""

    values: list[float]
    rows: list[dict]

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def spread(self) -> float:
        return self.high - self.low

    def resolution(self, figure: Figure) -> float:
        """The largest resolution over the side's rows (its coarsest measurement)."""
        pairs = zip(self.rows, self.values, strict=True)
        return max(resolution(figure, row, value) for row, value in pairs)


def side(figure: Figure, rows: list[dict]) -> tuple[Side | None, str | None]:
    """The figure's judgeable values in `rows` (no failed trials, no nulls), or the reason why
    none can be judged."""
    kept_rows, kept = [], []
    reason = None
    for row in rows:
        value = row.get(figure.name)
        if row.get("error") is not None or not is_number(value):
            continue
        why = not_judged_reason(figure, row)
        if why:
            reason = reason or why
            continue
        kept_rows.append(row)
        kept.append(float(value))
    if not kept:
        return None, reason or "not measured"
    return Side(kept, kept_rows), None


@dataclass(frozen=True)
class Judgement:
    """A figure judged against a base: 'worse', 'better', 'changed' (outside the noise, no worse
    direction), 'same' (inside it) or 'not judged' (with the reason)."""

    verdict: str
    width: float = 0.0  # the noise band's half-width around the base's range
    gap: float = 0.0  # how far the other side lies outside the base's range
    reason: str = ""

    @property
    def moved(self) -> bool:
        return self.verdict in ("worse", "better", "changed")


def width(figure: Figure, base: Side, other: Side | None = None) -> float:
    """How far outside the base's range a value must lie to be outside the noise."""
    resolutions = base.resolution(figure) + (other.resolution(figure) if other else 0.0)
    return max(resolutions, K_SPREAD * base.spread)


def outside(gap: float, band: float, scale: float) -> bool:
    return gap > band + EDGE * max(1.0, abs(scale))


def judge(figure: Figure, base_rows: list[dict], other_rows: list[dict]) -> Judgement:
    """The figure in `other_rows` against `base_rows` (each one row per repetition or run)."""
    base, why_base = side(figure, base_rows)
    other, why_other = side(figure, other_rows)
    if base is None or other is None:
        if why_base == "not measured" and why_other == "not measured":
            return Judgement("same")  # null on both sides (unbounded, or not this kind of trial)
        reason = why_other if why_base == "not measured" else why_base
        return Judgement("not judged", reason=reason or "")
    band = width(figure, base, other)
    gap = max(0.0, other.low - base.high, base.low - other.high)
    if not outside(gap, band, max(base.high, other.high, key=abs)):
        return Judgement("same", band, gap)
    if figure.worse is None or figure.name in MACHINE_WIDE:
        return Judgement("changed", band, gap)
    higher = other.low > base.high
    return Judgement("worse" if higher == (figure.worse == HIGHER) else "better", band, gap)


@dataclass(frozen=True)
class Bound:
    """An absolute bound on a figure's worse side, from N runs' rows (check --suggest-bounds)."""

    value: float | None  # None: the figure cannot be judged in those runs
    margin: float  # how far it lies beyond the runs' worst value
    reason: str  # why that margin, or why no bound


def bound(figure: Figure, rows: list[dict]) -> Bound:
    """The bound on the figure's worse side those runs give, or why there is none."""
    found, why = side(figure, rows)
    if found is None:
        return Bound(None, 0.0, why or "not measured")
    if len(found.values) < len(rows):
        return Bound(None, 0.0, f"judged in {len(found.values)} of {len(rows)} runs only")
    # Two measurements' resolutions, as `judge` uses between a base and another run.
    resolution_part = 2 * found.resolution(figure)
    margin = max(resolution_part, K_SPREAD * found.spread)
    reason = (
        f"{K_SPREAD:g} x the spread {found.spread:.4g} of {len(found.values)} runs"
        if K_SPREAD * found.spread >= resolution_part
        else f"twice the resolution {found.resolution(figure):.4g}"
    )
    value = found.high + margin if figure.worse == HIGHER else found.low - margin
    return Bound(value, margin, reason)


def class_shares(rows: list[dict]) -> list[tuple[dict[str, float], int]]:
    """Each repetition's outcome classes as shares of its attempts, with its attempt count."""
    found = []
    for row in rows:
        counts = {k: v for k, v in (row.get("outcomes") or {}).items() if v}
        total = sum(counts.values())
        if row.get("error") is None and total:
            found.append(({k: v / total for k, v in counts.items()}, total))
    return found


def new_outcome_classes(before_rows: list[dict], after_rows: list[dict]) -> dict[str, float]:
    """The classes `after_rows` has and `before_rows` never had, whose share is above the
    noise: one attempt on each side (a count of one is the resolution of a share). Each with
    its largest share."""
    before, after = class_shares(before_rows), class_shares(after_rows)
    if not before or not after:
        return {}
    seen = {name for share, _ in before for name in share}
    resolution = 1 / min(n for _, n in before) + 1 / min(n for _, n in after)
    found: dict[str, float] = {}
    for share, _ in after:
        for name, part in share.items():
            if name not in seen and outside(part, resolution, 1.0):
                found[name] = max(part, found.get(name, 0.0))
    return found

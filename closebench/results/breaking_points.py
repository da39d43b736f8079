"""Breaking points of a sweep: for each series (a strategy's trials over the sweep's steps), a
bracket: "held up to 100, broke by 400", "held up to 100, inconclusive from 400", or "held".

A step breaks when the legitimate client's success falls below the threshold, its p95 latency
exceeds one, or the server errs more often than allowed (EMFILE refusals, 5xx answers: the row's
server_errors). A step is not judged when its trial failed or was interrupted, when the harness
set its pace (harness_limited: trials/harness_load.py), or when something outside the run took a
real share of either side's CPUs (cpu_foreign_reason: lab/cpus.py), whatever the server did: a
late attacker holds a read-first server's fds, so even the server's own errors can be the
harness's. The status is `broke` when a judged step broke, `inconclusive` when steps above the
last one that held were not judged (or none was judged), `held` otherwise; the reason names the
steps not judged and why.

Computed from summary rows (dicts, as summary.json holds them) by the runner when it writes a
run; the readers take summary.json's `breaking_points` as written (summary/1 points, which have
no status or bracket, are read through status_of and bracket_text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from closebench.results.run_directory import is_number


@dataclass(frozen=True)
class Thresholds:
    """A scenario's [sweep] thresholds (closebench/trials/scenario.py SweepEntry)."""

    legit_success: float = 0.99
    latency_s: float = 1.0
    server_errors: int = 0


BROKE, HELD, INCONCLUSIVE = "broke", "held", "inconclusive"


@dataclass(frozen=True)
class BreakingPoint:
    """A bracket: the service held up to `held_up_to` and broke by `value` (status broke), held
    at every step (held), or could not be told from `inconclusive_from` on (inconclusive)."""

    axis: str
    value: float | None  # the first step judged that broke; None unless status is broke
    reason: str
    steps_judged: int  # steps that measured the server (not failed, interrupted, or limited)
    status: str = HELD
    held_up_to: float | None = None  # the highest step judged, below `value`, that held
    inconclusive_from: float | None = None  # the first step above held_up_to not judged

    def to_dict(self) -> dict:
        return asdict(self)


def step_problems(row: dict, thresholds: Thresholds) -> list[str]:
    """Why the service counts as broken in this trial (empty: it held)."""
    return client_problems(row, thresholds) + server_problems(row, thresholds)


def client_problems(row: dict, thresholds: Thresholds) -> list[str]:
    """What the legitimate client saw: too few answers, too slow."""
    problems = []
    success = row.get("legit_success_rate")
    if is_number(success) and success < thresholds.legit_success:
        problems.append(
            f"legitimate success {success:.1%} < {thresholds.legit_success:.1%} "
            f"({row.get('legit_requests', 0)} requests)"
        )
    latency = row.get("legit_latency_p95_s")
    if is_number(latency) and latency > thresholds.latency_s:
        problems.append(f"legitimate p95 latency {latency:.2f} s > {thresholds.latency_s:g} s")
    return problems


def server_problems(row: dict, thresholds: Thresholds) -> list[str]:
    """What the server did itself: refusals for want of fds, 5xx answers."""
    errors = row.get("server_errors")
    if is_number(errors) and errors > thresholds.server_errors:
        return [f"{errors} server errors (EMFILE refusals, 5xx) > {thresholds.server_errors}"]
    return []


def not_judged(row: dict) -> str | None:
    """Why a trial cannot tell whether the server broke, or None when it can: it failed, was
    interrupted, the harness set its pace (trials/harness_load.py), or something outside the run
    took a real share of either side's CPUs (lab/cpus.py). Whatever the server did then: a slow
    attacker that connects and sends its request late holds a read-first server's fds, so even
    the server's own errors may be the harness's."""
    if row.get("error"):
        return f"failed ({row['error']})"
    if not row.get("complete", True):
        return "interrupted"
    if row.get("harness_limited"):
        return f"harness-limited ({row.get('harness_limited_reason') or 'no reason recorded'})"
    if row.get("cpu_foreign_reason"):
        return f"machine busy ({row['cpu_foreign_reason']})"
    return None


def breaking_points(rows: list[dict], axis: str, thresholds: Thresholds) -> dict[str, dict]:
    """{series: BreakingPoint as a dict}, series in the order of the rows, steps ascending."""
    series: dict[str, list[dict]] = {}
    for row in rows:
        if isinstance(row.get("series"), str) and is_number(row.get("step")):
            series.setdefault(row["series"], []).append(row)
    return {
        name: series_breaking_point(
            sorted(members, key=lambda r: r["step"]), axis, thresholds
        ).to_dict()
        for name, members in series.items()
    }


def series_breaking_point(rows: list[dict], axis: str, thresholds: Thresholds) -> BreakingPoint:
    """The bracket from the steps in ascending order: the first step judged that broke, the
    highest one judged below it that held, and the first step between them not judged."""
    unjudged: list[tuple[float, str]] = []
    held: list[float] = []
    broke: tuple[float, str] | None = None
    for row in rows:
        step = row["step"]
        if (why_not := not_judged(row)) is not None:
            unjudged.append((step, why_not))
            continue
        if problems := step_problems(row, thresholds):
            broke = (step, "; ".join(problems))
            break
        held.append(step)
    judged = len(held) + (broke is not None)
    held_up_to = max(held) if held else None
    # Steps not judged that lie above the last step known to hold: there the bracket is blind.
    blind = [(s, why) for s, why in unjudged if held_up_to is None or s > held_up_to]
    inconclusive_from = blind[0][0] if blind else None
    # The reason says why; the bracket itself is in the fields (bracket_text words them).
    if broke is not None:
        status, value = BROKE, broke[0]
        reason = f"{axis} {value:g}: {broke[1]}"
        if blind:
            reason += f"; not judged: {_listed(axis, blind)}"
    elif blind or not held:
        status, value = INCONCLUSIVE, None
        reason = _listed(axis, blind) if blind else "no steps"
    else:
        status, value = HELD, None
        steps = ", ".join(f"{row['step']:g}" for row in rows)
        reason = f"held at every step{' judged' if unjudged else ''} ({axis} {steps})"
    below = [(s, why) for s, why in unjudged if (s, why) not in blind]
    if below:
        reason += f"; not counted below: {_listed(axis, below)}"
    return BreakingPoint(axis, value, reason, judged, status, held_up_to, inconclusive_from)


def _listed(axis: str, steps: list[tuple[float, str]]) -> str:
    return "; ".join(f"{axis} {step:g} {why}" for step, why in steps)


def status_of(point: dict) -> str:
    """A breaking point's status; summary/1 points have none: read from value and steps_judged."""
    if point.get("status") in (BROKE, HELD, INCONCLUSIVE):
        return point["status"]
    if point.get("value") is not None:
        return BROKE
    return INCONCLUSIVE if point.get("steps_judged") == 0 else HELD


def bracket_text(point: dict) -> str:
    """'held up to 100, broke by 400', 'held', 'held up to 100, inconclusive from 400'."""
    status, axis = status_of(point), point.get("axis", "")
    held_up_to = point.get("held_up_to")
    if status == HELD:
        return "held at every step"
    prefix = "no step held" if held_up_to is None else f"held up to {held_up_to:g}"
    if status == BROKE:
        if held_up_to is None and "held_up_to" not in point:  # summary/1: no bracket kept
            return f"broke at {axis} {point['value']:g}"
        return f"{prefix}, broke by {axis} {point['value']:g}"
    start = point.get("inconclusive_from")
    return f"{prefix}, inconclusive" + (f" from {axis} {start:g}" if start is not None else "")


def bracket_holds(point: dict, holds: bool) -> bool:
    """check's `holds`: true passes on `held` only, false on `broke` only; an inconclusive
    bracket passes neither (the run could not tell)."""
    status = status_of(point)
    return status != INCONCLUSIVE and (status == HELD) == holds


def bracket_within(point: dict, limit: str, bound: float) -> bool:
    """check's breaking_point_min / _max (limit "min" / "max"): a break at a step of at least /
    at most `bound`; held throughout is above any step (every min passes, no max); an
    inconclusive bracket passes neither."""
    status = status_of(point)
    if status == BROKE:
        return point["value"] >= bound if limit == "min" else point["value"] <= bound
    return status == HELD and limit == "min"


def moved(before: float | None, after: float | None) -> str:
    """How a breaking point moved from run A to run B: 'worse' (it broke at a lower step, or
    broke where it held), 'better', 'same'."""
    if before == after:
        return "same"
    if after is None:
        return "better"
    if before is None:
        return "worse"
    return "worse" if after < before else "better"


def moved_points(before: dict, after: dict) -> str:
    """As moved, on whole points: 'inconclusive' when either run could not tell."""
    statuses = (status_of(before), status_of(after))
    if INCONCLUSIVE in statuses:
        return "same" if before.get("reason") == after.get("reason") else "inconclusive"
    return moved(before.get("value"), after.get("value"))

"""Breaking points of a sweep: for each series (a strategy's trials over the sweep's steps), the
first step at which the service broke, and why.

A step breaks when the legitimate client's success falls below the threshold, its p95 latency
exceeds one, or the server errs more often than allowed (EMFILE refusals, 5xx answers: the row's
server_errors). A trial that failed or was interrupted says nothing about the server. A trial the
harness itself limited (harness_limited: a saturated client starts attempts late and times answers
late, so its legitimate success and latency may be its own) is never a breaking point on those;
the server's own errors still count, since no client can make the server refuse for want of fds
under a lighter load than the step's. Steps not judged are named in the reason.

Computed from summary rows (dicts, as summary.json holds them) by the runner when it writes a
run; the readers take summary.json's `breaking_points` as written.
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


@dataclass(frozen=True)
class BreakingPoint:
    axis: str
    value: float | None  # the first step that broke; None: held at every step judged
    reason: str
    steps_judged: int  # steps that measured the server (not failed, interrupted, or limited)

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
    """Why a trial cannot tell whether the server broke, or None when it can."""
    if row.get("error"):
        return f"failed ({row['error']})"
    if not row.get("complete", True):
        return "interrupted"
    return None


def limited(row: dict) -> str | None:
    """Why the harness, not the server, may have set a trial's figures (None: it did not)."""
    if row.get("harness_limited"):
        return row.get("harness_limited_reason") or "no reason recorded"
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
    skipped: list[str] = []
    judged = 0
    for row in rows:
        step = row["step"]
        why_not = not_judged(row)
        if why_not:
            skipped.append(f"{axis} {step:g} {why_not}")
            continue
        problems = step_problems(row, thresholds)
        if (why_limited := limited(row)) is not None:
            # Only the server's own errors: the client's figures may be the harness's.
            problems = server_problems(row, thresholds)
            if not problems:
                skipped.append(f"{axis} {step:g} harness-limited ({why_limited})")
                continue
            problems.append(f"harness-limited too: {why_limited}")
        judged += 1
        if problems:
            reason = "; ".join(problems)
            if skipped:
                reason += f"; not counted: {'; '.join(skipped)}"
            return BreakingPoint(axis, step, reason, judged)
    steps = ", ".join(f"{row['step']:g}" for row in rows)
    reason = f"held at every step ({axis} {steps})"
    if skipped:
        # Null either way; the reason says whether any step measured the server at all.
        held = "held at every step measured" if judged else "no step measured the server"
        reason = f"{held}; not counted: {'; '.join(skipped)}"
    return BreakingPoint(axis, None, reason, judged)


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

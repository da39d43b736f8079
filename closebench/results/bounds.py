"""`closebench check --suggest-bounds RUN...`: expectations written from N unchanged runs.

Each trial present in every run gets a table: the outcome classes it showed, its records' agreement
with the wire, and an absolute bound on the worse side of every directed figure it measured, at
the edge of the noise model's band (results/noise.py `bound`: the runs' worst value widened by
max(twice the resolution, K x the runs' spread)). The margin and its reason are TOML comments; a
figure that cannot be judged in those runs (a ratio under its floor) is a comment saying why.
Machine-wide figures (TCP memory is the whole machine's, not the defender's) get no bound.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from closebench.core.errors import UsageError
from closebench.results import noise
from closebench.results.run_directory import RunData
from closebench.results.summary_figures import FIGURES, HIGHER

DIRECTED = [f for f in FIGURES if f.worse and f.name not in noise.MACHINE_WIDE]


def outward(value: float, upward: bool) -> float:
    """`value` rounded to 4 significant digits, away from the runs' values (never inside)."""
    if value == 0 or not math.isfinite(value):
        return value
    step = 10 ** (math.floor(math.log10(abs(value))) - 3)
    rounded = (math.ceil if upward else math.floor)(value / step) * step
    return float(f"{rounded:.6g}")


def quoted(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'


def shared_trials(runs: list[RunData]) -> list[str]:
    names = list(runs[0].groups())
    common = [n for n in names if all(n in run.groups() for run in runs[1:])]
    if not common:
        raise UsageError("the runs given to --suggest-bounds share no trial")
    return common


def trial_table(name: str, rows: list[dict]) -> list[str]:
    lines = [f"[{quoted(name)}]"]
    failed = [row["trial"] for row in rows if row.get("error") or not row.get("complete", True)]
    if failed:
        return [*lines, f"# not bounded: a trial failed or was interrupted ({', '.join(failed)})"]
    classes = sorted({k for row in rows for k, v in (row.get("outcomes") or {}).items() if v})
    if classes:
        lines.append(f"outcomes_only = [{', '.join(f'{c!r}' for c in classes)}]".replace("'", '"'))
    wire = [row.get("wire_agreement") for row in rows]
    if all(isinstance(w, dict) and w.get("ok") for w in wire):
        lines.append("wire_agreement = true")
    for figure in DIRECTED:
        if all(row.get(figure.name) is None for row in rows):
            continue  # not this kind of trial (routed, bans...)
        found = noise.bound(figure, rows)
        limit = "max" if figure.worse == HIGHER else "min"
        if found.value is None:
            lines.append(f"# {figure.name}: not bounded: {found.reason}")
            continue
        if figure.worse != HIGHER and found.value <= 0:
            continue  # no figure here goes below zero: the bound would always hold
        value = outward(found.value, figure.worse == HIGHER)
        lines.append(
            f"{figure.name}_{limit} = {value!r}  # margin {found.margin:.4g}: {found.reason}"
        )
    return lines


def suggest_bounds(runs: list[RunData]) -> str:
    """The expectations file (TOML text) for the trials every run has."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"# Made by `closebench check --suggest-bounds` on {when} from {len(runs)} runs:",
        *(f"#   {run.name} ({run.meta.get('scenario_name', '?')})" for run in runs),
        f"# Each bound: the runs' worst value, widened by max(twice the figure's resolution, "
        f"{noise.K_SPREAD:g} x the runs' spread) (docs/guides/ci.md, the noise model).",
        "# Regenerate when a default that moves these figures changes.",
        "",
    ]
    body: list[str] = []
    for name in shared_trials(runs):
        rows = [row for run in runs for row in run.groups()[name]]
        body += [*trial_table(name, rows), ""]
    return "\n".join(header + body)

"""`closebench compare`: what changed between two runs, figure by figure, against the noise.

Trials are matched by name; the repetitions of a trial (`name #k`) form one group whose spread is
the noise band. A change is flagged when the gap between the two runs' ranges is wider than the
figure's resolution (an absolute size, or a share of the base value for the noisy cost ratios), so
one-repetition runs are still compared at that resolution.

Also the home of the summary figures themselves (which direction is worse for the defender, what
change is too small to mean anything), shared with `closebench check`.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import statistics
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.core.errors import ClosebenchError, UsageError
from harness.core.safe_files import SafeDirectory
from harness.core.summary import TrialRow
from harness.results.schema import check_rows

SUMMARY_SCHEMA = "closebench.summary/1"  # the schema harness.trials.runner writes
HIGHER, LOWER = "higher", "lower"  # which direction of a figure is worse for the defender
REPETITION = re.compile(r"^(?P<name>.*) #(?P<k>\d+)$")


@dataclass(frozen=True)
class Figure:
    """One numeric figure of a summary row."""

    name: str
    worse: str | None  # HIGHER, LOWER, or None: neither direction is a regression
    resolution: float  # changes up to this size are measurement noise, never a regression
    meaning: str
    null_is_unbounded: bool = False  # null means "infinitely good", not "not measured"
    relative: float = 0.0  # ...and so are changes up to this share of the base value

    def noise(self, base: float) -> float:
        """The largest change from `base` that is still measurement noise."""
        return max(self.resolution, self.relative * abs(base))

    def resolution_text(self) -> str:
        if not self.relative:
            return number(self.resolution)
        floor = f", at least {number(self.resolution)}" if self.resolution else ""
        return f"{self.relative:.0%} of the base value{floor}"


KNOWN_FIGURES: tuple[Figure, ...] = (
    Figure("duration_s", None, 0.5, "seconds the trial's attackers ran"),
    Figure("attempts", HIGHER, 2, "attempts of every attacker together"),
    Figure("attempts_per_s", HIGHER, 0.05, "attempts per second the abuser managed"),
    Figure("hang_median_s", LOWER, 0.05, "median s an attempt hung (or waited to connect)"),
    Figure("hang_p95_s", LOWER, 0.05, "95th percentile of the hang"),
    Figure("hang_max_s", LOWER, 0.05, "longest hang"),
    Figure("connect_wait_median_s", LOWER, 0.05, "median s from first SYN to established or end"),
    Figure("connect_wait_p95_s", LOWER, 0.05, "95th percentile of the connect wait"),
    Figure("slot_median_s", LOWER, 0.05, "median s of an attempt, first SYN to end"),
    Figure("slot_p95_s", LOWER, 0.05, "95th percentile of the slot"),
    Figure("attacker_seconds_wasted", LOWER, 1.0, "every attempt's slot, summed"),
    Figure("connect_waits", None, 2, "attempts that never sent a request"),
    Figure("runs", HIGHER, 2, "command runs (curl, browser page loads)"),
    Figure("runs_per_s", HIGHER, 0.05, "command runs per second"),
    Figure("legit_requests", None, 2, "legitimate requests made"),
    Figure("legit_success_rate", LOWER, 0.0, "share of legitimate requests answered 200"),
    # A few requests per trial on a busy machine: tens of ms of jitter are normal.
    Figure("legit_latency_median_s", HIGHER, 0.01, "median legitimate latency, s"),
    Figure("legit_latency_p95_s", HIGHER, 0.05, "95th percentile legitimate latency, s"),
    Figure("peak_fds", HIGHER, 2, "defender fds at peak"),
    Figure("fd_seconds", HIGHER, 1.0, "fds above idle, integrated over time"),
    Figure("cpu_seconds", HIGHER, 0.05, "defender CPU seconds"),
    Figure("peak_threads", HIGHER, 1, "defender threads at peak"),
    Figure("peak_rss_mb", HIGHER, 2.0, "defender memory at peak, MB"),
    Figure("peak_orphans", HIGHER, 1, "orphan sockets at peak"),
    Figure("peak_sockets", HIGHER, 2, "defender kernel sockets at peak"),
    Figure("retransmissions", HIGHER, 2, "segments the defender retransmitted"),
    # Legitimate clients' packets count too: a few a second.
    Figure("packets_sent", HIGHER, 10, "packets the defender sent, every kind"),
    Figure("cpu_ms_per_attempt", HIGHER, 0.0, "defender CPU ms per attempt", relative=0.5),
    # Routed trials only (null without a router).
    Figure("peak_router_conntrack", HIGHER, 2, "connections the router tracked at peak"),
    Figure("peak_router_established", HIGHER, 2, "of them ESTABLISHED, at peak"),
    # Ratios inherit their inputs' noise; CPU time comes in 10 ms ticks, so a small
    # denominator swings its ratio widely.
    Figure("wasted_per_fd_second", LOWER, 0.0, "attacker s per defender fd-s", True, 0.2),
    Figure("wasted_per_cpu_second", LOWER, 0.0, "attacker s per defender CPU s", True, 0.5),
    Figure("sampler_overhead", None, 0.01, "the sampler's CPU, share of one core"),
    # Ban strategies only (null for the others).
    Figure("peak_bans_active", HIGHER, 1, "bans in force at once"),
    Figure("time_to_ban_median_s", HIGHER, 0.05, "median s from first attempt to ban"),
    Figure("time_to_ban_max_s", HIGHER, 0.05, "longest s from first attempt to ban"),
    Figure("attempts_after_ban", HIGHER, 2, "attempts started while banned"),
    Figure("attempts_per_s_after_ban", HIGHER, 0.05, "attempts/s per banned address"),
    Figure("legit_wrongly_refused", HIGHER, 0, "legitimate requests refused by a ban"),
)


def numeric_row_fields() -> list[str]:
    """The summary row's numeric fields, in schema order (booleans, dicts and text are not)."""
    hints = typing.get_type_hints(TrialRow)
    names = []
    for row_field in dataclasses.fields(TrialRow):
        kinds = set(typing.get_args(hints[row_field.name]) or [hints[row_field.name]])
        kinds.discard(type(None))
        if kinds and kinds <= {int, float}:
            names.append(row_field.name)
    return names


def row_figures() -> tuple[Figure, ...]:
    """Every numeric figure of the row: a new one is comparable and checkable at once, with no
    worse direction until it gets an entry in KNOWN_FIGURES."""
    known = {figure.name: figure for figure in KNOWN_FIGURES}
    return tuple(
        known.get(name) or Figure(name, None, 0.0, "no worse direction defined")
        for name in numeric_row_fields()
    )


FIGURES = row_figures()
FIGURE_BY_NAME = {figure.name: figure for figure in FIGURES}


@dataclass
class RunSummary:
    """A run directory's summary.json, read and checked."""

    directory: Path
    meta: dict
    complete: bool
    rows: list[dict]

    @property
    def name(self) -> str:
        return self.directory.resolve().name  # reports/latest names the run it points at

    def groups(self) -> dict[str, list[dict]]:
        """Rows by trial name, repetitions (`name #k`) together, in the run's order."""
        grouped: dict[str, list[dict]] = {}
        for row in self.rows:
            grouped.setdefault(group_name(row["trial"]), []).append(row)
        return grouped


def group_name(trial: str) -> str:
    match = REPETITION.match(trial)
    return match["name"] if match else trial


def load_run(path: str | Path, warn: Callable[[str], None] | None = None) -> RunSummary:
    """A run directory (or its summary.json); UsageError naming the problem otherwise. Rows
    that are damaged are left out or marked failed (harness/results/schema.py), told to `warn`."""
    path = Path(path)
    directory = path.parent if path.name == "summary.json" and path.is_file() else path
    summary = directory / "summary.json"
    if not directory.is_dir():
        raise UsageError(f"no run directory {path}: give a directory that `closebench run` wrote")
    if not summary.is_file():
        raise UsageError(
            f"{directory} is not a run directory: it has no summary.json "
            "(`closebench run` writes them under reports/<run-id>/)"
        )
    try:
        document = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8
        raise UsageError(f"cannot read {summary}: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != SUMMARY_SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise UsageError(f"{summary}: schema {found!r}, expected {SUMMARY_SCHEMA!r}")
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise UsageError(f"{summary}: `rows` must be a list of trial rows")
    checked = check_rows(rows, str(summary))
    for problem in checked.problems:
        if warn:
            warn(problem)
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    return RunSummary(directory, meta, document.get("complete") is True, checked.rows)


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

    def special_lines(self) -> list[tuple[str, str, str, str, str, str]]:
        """The lines that are not numbers: (figure, A, B, change, verdict, meaning)."""
        return [
            (
                "outcomes",
                outcomes_text(self.outcomes_before),
                outcomes_text(self.outcomes_after),
                "",
                "changed" if self.outcome_classes_changed else "",
                "outcome classes seen",
            ),
            (
                "wire_agreement",
                wire_state(self.before),
                wire_state(self.after),
                "",
                self.wire_verdict,
                "the records against the pcaps (closebench verify): ok, flagged, - not verified",
            ),
        ]

    def errors(self) -> list[str]:
        return [
            f"{side}: {row['trial']}: {row['error']}"
            for side, rows in (("A", self.before), ("B", self.after))
            for row in rows
            if row.get("error")
        ]


@dataclass
class Comparison:
    run_a: RunSummary
    run_b: RunSummary
    groups: list[GroupComparison]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def flagged(self) -> list[tuple[str, FigureChange]]:
        return [
            (group.trial, change)
            for group in self.groups
            for change in group.changes
            if change.verdict in ("worse", "better", "changed")
        ]


def common_trials(run: RunSummary, other: RunSummary) -> list[str]:
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


def compare_runs(run_a: RunSummary, run_b: RunSummary) -> Comparison:
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
    )


# Presentation: the terminal table and the HTML page show the same cells.


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


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


def outcomes_text(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in outcomes.items()) or "-"


def shown(change: FigureChange) -> bool:
    return bool(change.before or change.after)  # hide figures neither run measured


def noise_note(comparison: Comparison) -> str:
    reps = {len(g.before) for g in comparison.groups} | {len(g.after) for g in comparison.groups}
    if reps == {1}:
        return (
            "one repetition per trial: changes are flagged against each figure's resolution only; "
            "run the scenario with repetitions = 3 or more for a measured noise band"
        )
    return (
        "A and B show the mean [min..max] over repetitions; a change is flagged when the two "
        "ranges are further apart than the figure's resolution"
    )


VERDICT_STYLE = {"worse": "bold red", "better": "green", "changed": "yellow", "same": "dim"}


def print_comparison(comparison: Comparison, console: Console, only_flagged: bool = False) -> None:
    a, b = comparison.run_a, comparison.run_b
    table = Table(title=escape(f"closebench compare: A = {a.name}, B = {b.name}"))
    for column in ("trial", "figure", "A", "B", "change", "verdict"):
        table.add_column(column, justify="right" if column in ("A", "B", "change") else "left")
    for group in comparison.groups:
        outcomes, wire = (line[:5] for line in group.special_lines())
        lines = [outcomes] + ([wire] if wire[4] or not only_flagged else [])
        for change in group.changes:
            if not shown(change) or (only_flagged and not change.outside_noise):
                continue
            lines.append(
                (
                    change.figure.name,
                    side_text(change.before),
                    side_text(change.after),
                    change_text(change),
                    change.verdict,
                )
            )
        if only_flagged and not any(line[4] for line in lines):
            continue
        for index, (figure, before, after, delta, verdict) in enumerate(lines):
            style = VERDICT_STYLE.get(verdict, "")
            table.add_row(
                escape(group.trial) if index == 0 else "",  # trial names are not markup
                figure,
                escape(before),
                escape(after),
                f"[{style}]{delta}[/]" if style else delta,
                f"[{style}]{verdict}[/]" if style else verdict,
            )
        table.add_section()
    console.print(table)
    for line in comparison_notes(comparison):
        console.print(escape(line), highlight=False)


def comparison_notes(comparison: Comparison) -> list[str]:
    a, b = comparison.run_a, comparison.run_b
    notes = [noise_note(comparison)]
    if a.meta.get("scenario_name") != b.meta.get("scenario_name"):
        notes.append(
            f"note: different scenarios (A: {a.meta.get('scenario_name')}, "
            f"B: {b.meta.get('scenario_name')})"
        )
    if comparison.only_a:
        notes.append(f"only in A: {', '.join(comparison.only_a)}")
    if comparison.only_b:
        notes.append(f"only in B: {', '.join(comparison.only_b)}")
    for run, label in ((a, "A"), (b, "B")):
        if not run.complete:
            notes.append(f"run {label} ({run.name}) is incomplete")
    notes += [error for group in comparison.groups for error in group.errors()]
    switched = [group.trial for group in comparison.groups if group.outcome_classes_changed]
    if switched:
        notes.append(f"outcome classes changed: {', '.join(switched)}")
    for run, label in ((a, "A"), (b, "B")):
        disagree = [name for name, rows in run.groups().items() if wire_state(rows) == "flagged"]
        if disagree:
            notes.append(f"run {label}'s records disagree with the wire: {', '.join(disagree)}")
    flagged = comparison.flagged()
    worse = sum(change.verdict == "worse" for _, change in flagged)
    notes.append(
        f"{len(flagged)} change(s) outside the noise, {worse} of them worse for the defender"
    )
    return notes


def default_html_path(comparison: Comparison) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", comparison.run_a.name)
    return comparison.run_b.directory / f"compare-{safe}.html"


def render_html(comparison: Comparison) -> str:
    """A self-contained page (inline CSS, no scripts, nothing fetched)."""
    a, b = comparison.run_a, comparison.run_b
    e = html.escape
    rows = []
    for group in comparison.groups:
        cells = group.special_lines()
        cells += [
            (
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
        ]
        for index, (figure, before, after, delta, verdict, title) in enumerate(cells):
            trial = f'<th rowspan="{len(cells)}">{e(group.trial)}</th>' if index == 0 else ""
            rows.append(
                f'<tr class="{e(verdict)}">{trial}<td title="{e(title)}">{e(figure)}</td>'
                f'<td class="n">{e(before)}</td><td class="n">{e(after)}</td>'
                f'<td class="n">{e(delta)}</td><td>{e(verdict)}</td></tr>'
            )
    flagged = "".join(
        f'<li class="changed">{e(group.trial)}: outcomes {e(outcomes_text(group.outcomes_before))} '
        f"&rarr; {e(outcomes_text(group.outcomes_after))} (outcome classes changed)</li>"
        for group in comparison.groups
        if group.outcome_classes_changed
    ) + "".join(
        f'<li class="{e(c.verdict)}">{e(trial)}: {e(c.figure.name)} {e(side_text(c.before))} '
        f"&rarr; {e(side_text(c.after))} ({e(change_text(c))}, {e(c.verdict)})</li>"
        for trial, c in comparison.flagged()
    )
    notes = "".join(f"<li>{e(note)}</li>" for note in comparison_notes(comparison))
    return PAGE.format(
        title=e(f"closebench compare: {a.name} → {b.name}"),
        a=_run_line(a),
        b=_run_line(b),
        flagged=f"<ul>{flagged}</ul>" if flagged else "<p>No change outside the noise.</p>",
        notes=notes,
        rows="\n".join(rows),
    )


def _run_line(run: RunSummary) -> str:
    meta = run.meta
    parts = [
        f"<b>{html.escape(run.name)}</b>",
        f"scenario {html.escape(str(meta.get('scenario_name', '?')))}",
        f"started {html.escape(str(meta.get('started', '?')))}",
        f"kernel {html.escape(str(meta.get('kernel', '?')))}",
        f"{html.escape(str(meta.get('cpus', '?')))} CPUs",
    ]
    if not run.complete:
        parts.append("<b>incomplete</b>")
    return ", ".join(parts)


def write_html(comparison: Comparison, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ClosebenchError(f"cannot write the page {path}: {error.strerror}") from None
    # Renamed into place: a link planted at the page's name (RUN_B came from elsewhere) is
    # replaced, never followed.
    with SafeDirectory(path.parent, "give --html FILE in a writable place") as directory:
        return directory.write(path.name, render_html(comparison))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }}
th[rowspan] {{ vertical-align: top; background: #f6f6f6; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.worse {{ color: #b00020; font-weight: bold; }}
.better {{ color: #1b7a1b; }}
.changed {{ color: #946200; }}
.same {{ color: #888; }}
</style></head>
<body>
<h1>{title}</h1>
<p>A: {a}<br>B: {b}</p>
<h2>Changes outside the noise</h2>
{flagged}
<ul>{notes}</ul>
<h2>Every figure</h2>
<table>
<thead><tr><th>trial</th><th>figure</th><th>A</th><th>B</th><th>change</th><th>verdict</th></tr>
</thead>
<tbody>
{rows}
</tbody></table>
<p>Worse means worse for the defender: e.g. more attempts/s for the abuser, shorter hangs, more
fds, CPU or memory, fewer legitimate requests served. Hover a figure for what it is.</p>
</body></html>
"""


# The command line: `closebench compare RUN_A RUN_B`.


def add_compare_parser(commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="show how every summary figure changed between two runs",
        description="Compare two run directories trial by trial (repetitions `name #k` give the "
        "noise band), print the changes and write them as a self-contained HTML page.",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="the earlier run directory (the base)")
    compare.add_argument("run_b", metavar="RUN_B", help="the later run directory")
    compare.add_argument(
        "--html", metavar="FILE", help="write the page here (default: RUN_B/compare-<A>.html)"
    )
    compare.add_argument(
        "--only-flagged",
        action="store_true",
        help="print only the changes outside the noise (the page has every figure)",
    )


def warn_on_stderr(problem: str) -> None:
    Console(stderr=True, soft_wrap=True).print(
        f"[yellow]closebench: warning:[/] {escape(problem)}", highlight=False
    )


def run_compare_command(args, console: Console) -> int:
    run_a, run_b = load_run(args.run_a, warn_on_stderr), load_run(args.run_b, warn_on_stderr)
    comparison = compare_runs(run_a, run_b)
    print_comparison(comparison, console, args.only_flagged)
    page = write_html(comparison, Path(args.html) if args.html else default_html_path(comparison))
    console.print(f"page: {escape(str(page))}", highlight=False)
    return 0

"""Human-readable views of results, for a terminal. Each table's columns (or, for the attack's,
its rows) are defined once; the run table's come from the report's (results/report/columns.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from closebench.core.outcomes import Attempt, Outcome
from closebench.core.summary import AttackSummary
from closebench.defender.capabilities import Finding, needed_by
from closebench.defender.peers.notes import claim_text
from closebench.results.breaking_points import (
    BROKE,
    HELD,
    INCONCLUSIVE,
    bracket_text,
    status_of,
)
from closebench.results.placements import cpu_use_text
from closebench.results.report.columns import COLUMN_BY_KEY
from closebench.results.verify import RunAgreement, agreement_text
from closebench.trials.probe import ProbeResult
from closebench.trials.runner import RunOutcome, TrialProgress
from closebench.trials.scenario import Scenario
from closebench.trials.trial import TrialResult
from closebench.wire.classify import split_at_client_end
from closebench.wire.pcap import WireEvent

OUTCOME_STYLE = {
    Outcome.FIN: "yellow",
    Outcome.RST: "yellow",
    Outcome.REFUSED: "cyan",
    Outcome.ICMP: "cyan",
    Outcome.SYN_TIMEOUT: "green",
    Outcome.SILENT: "bold green",
}


def _describe(events: list[WireEvent], since: float | None) -> list[str]:
    parts: list[str] = []
    retransmitted = shut = 0
    for event in events:
        if event.direction != "in" or (since is not None and event.t < since):
            continue
        if event.retransmission:
            retransmitted += 1
            continue
        if event.what == "A" and event.window == 0 and not event.length:
            shut += 1  # a zero-window tarpit answering the client's window probes
            continue
        offset = f" +{event.t - since:.3f} s" if since is not None else ""
        if event.what.startswith("icmp"):
            parts.append(f"{event.what}{offset}")
        elif "R" in event.what:
            parts.append(f"RST{offset}")
        elif "F" in event.what:
            parts.append(f"{f'data {event.length} B + ' if event.length else ''}FIN{offset}")
        elif event.length:
            parts.append(f"data {event.length} B{offset}")
    if len(parts) > 4:
        parts = [*parts[:3], f"… ({len(parts)} in all)"]
    if retransmitted:
        parts.append(f"{retransmitted} retransmitted")
    if shut:
        parts.append(f"{shut} ACK{'s' if shut > 1 else ''} keeping the window at 0")
    return parts


def wire_summary(timeline: list[WireEvent], since: float | None, client_timeout: float) -> str:
    """What came back after the request, e.g. 'data 40 B +0.001 s, FIN +0.001 s', and what came
    only once the client had given up."""
    waiting, after = split_at_client_end(timeline, client_timeout)
    text = ", ".join(_describe(waiting, since)) or "nothing"
    late = _describe(after, since)
    return text + (f" [dim](after the client gave up: {', '.join(late)})[/]" if late else "")


@dataclass(frozen=True)
class ProbeColumn:
    """A column of the probe table: its header, its cell for a probe that ran, and what it reads
    for one that could not run (its error goes under the table)."""

    header: str
    cell: Callable[[ProbeResult, Attempt], str]
    justify: JustifyMethod = "left"
    failed: str = ""


# The probe table's columns after the strategy's, defined once.
PROBE_COLUMNS = (
    ProbeColumn(
        "outcome",
        lambda r, a: f"[{OUTCOME_STYLE[a.outcome]}]{a.outcome}[/]",
        failed="[bold red]error[/]",
    ),
    ProbeColumn("data first", lambda r, a: "yes" if a.data_first else "no"),
    ProbeColumn(
        "client waited", lambda r, a: "-" if a.hang_s is None else f"{a.hang_s:.2f} s", "right"
    ),
    ProbeColumn(
        "after the request, from the server",
        lambda r, a: wire_summary(r.timeline, a.t_request, a.client_timeout),
        failed="[red]see below[/]",
    ),
    ProbeColumn("defender kept", lambda r, a: ", ".join(r.defender_sockets) or "no socket"),
)


def probe_table(results: list[ProbeResult], timeout: float) -> Table:
    table = Table(title=f"What the abuser's wire saw (client timeout {timeout:g} s)")
    table.add_column("strategy")
    for column in PROBE_COLUMNS:
        table.add_column(column.header, justify=column.justify)
    for result in results:
        attempt = result.attempt
        if result.error or attempt is None:
            table.add_row(result.case.label, *(column.failed for column in PROBE_COLUMNS))
        else:
            table.add_row(result.case.label, *(c.cell(result, attempt) for c in PROBE_COLUMNS))
    return table


def print_probe(results: list[ProbeResult], timeout: float, console: Console) -> None:
    console.print(probe_table(results, timeout))
    seen = {r.attempt.outcome for r in results if r.attempt}
    for outcome in Outcome:
        if outcome in seen:
            console.print(f"  [bold]{outcome}[/]: {outcome.explanation}")
    for result in results:
        claims = result.server_stats.get("claims") or []
        attempt = result.attempt
        for claim in claims:
            if attempt and (claim["host"], claim["port"]) == (attempt.src, attempt.sport):
                console.print(
                    f"  {escape(result.case.label)}: its log says it held the client "
                    f"{claim['seconds']:.2f} s (from accept to its first failed write, or its exit)"
                )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _tool_text(tool: dict) -> str:
    rate = "-" if tool["tries_per_s"] is None else f"{tool['tries_per_s']:.2f}"
    ended = ", ".join(f"{how} {count}" for how, count in tool["ended"].items()) or "no run"
    return (
        f"{tool['version'] or 'version unknown'}: {tool['tries']} {tool['tries_are']} tried in "
        f"{tool['wall_s']:.1f} s ({rate}/s), {tool['successes']} found; runs: {ended}"
    )


def _runs_text(s: AttackSummary) -> str | None:
    if s.runs is None:
        return None
    per_run = s.attempts / s.runs if s.runs else 0.0
    return f"{s.runs} ({s.runs_per_s:.2f}/s), {per_run:.1f} connections per run"


def _hangs_text(s: AttackSummary) -> str:
    hangs = (s.hang_median_s, s.hang_p95_s, s.hang_max_s)
    waits = f" ({s.connect_waits} never sent a request: their wait to connect)"
    return " / ".join(_seconds(h) for h in hangs) + (waits if s.connect_waits else "")


def _outcomes_text(s: AttackSummary) -> str:
    styled = (f"[{OUTCOME_STYLE[Outcome(name)]}]{name}[/] {n}" for name, n in s.outcomes.items())
    return ", ".join(styled) or "none"


def _runs_without_connection(s: AttackSummary) -> str | None:
    errors = s.attacker_cost.get("errors_without_connection")
    if not errors:
        return None
    without = s.attacker_cost.get("runs_without_connection", 0)
    said = "; ".join(f"{escape(line)} ({count}x)" for line, count in errors.items())
    return f"[red]{without}[/]: {said}"


def _server_said(s: AttackSummary) -> str | None:
    if not s.common_excerpt:
        return None
    return f"{escape(repr(s.common_excerpt))} ({s.common_excerpt_attempts} attempts)"


def _peak_open_fds(s: AttackSummary) -> str | None:
    cost = s.attacker_cost
    return str(cost["peak_open_sockets"]) if "peak_open_sockets" in cost else None


@dataclass(frozen=True)
class AttackFigure:
    """A row of the attack table: its label, and its value from the attacker's summary (None:
    the row is not shown)."""

    label: str
    value: Callable[[AttackSummary], str | None]


# The attack table's figures of the attacker, defined once; attempts/s as the report shows it.
ATTACK_FIGURES = (
    AttackFigure("attempts", lambda s: f"{s.attempts} in {s.duration_s:.1f} s"),
    AttackFigure("attempts/s", lambda s: COLUMN_BY_KEY["attempts_per_s"].cell(s.to_dict())),
    AttackFigure("command runs", _runs_text),
    AttackFigure("runs without a connection", _runs_without_connection),
    AttackFigure("hang median / p95 / max", _hangs_text),
    AttackFigure(
        "hang quartiles",
        lambda s: (
            f"{_seconds(s.hang_q1_s)} / {_seconds(s.hang_q3_s)}"
            + (f" ({s.outlasted} outlasted: left out)" if s.outlasted else "")
        ),
    ),
    AttackFigure(
        "connect wait / slot median",
        lambda s: f"{_seconds(s.connect_wait_median_s)} / {_seconds(s.slot_median_s)}",
    ),
    AttackFigure(
        "attacker seconds wasted",
        lambda s: (
            f"{s.attacker_seconds_wasted:.1f} s per connection summed, "
            f"{s.attacker_seconds_busy:.1f} s with a connection open"
        ),
    ),
    AttackFigure("outcomes", _outcomes_text),
    AttackFigure(
        "closed by",
        lambda s: ", ".join(f"{name} {n}" for name, n in s.closed_by.items() if n) or "none",
    ),
    AttackFigure("response data first", lambda s: f"{s.data_first} attempts"),
    AttackFigure("the server said", _server_said),
    AttackFigure("attacker peak open fds", _peak_open_fds),
    AttackFigure(
        "attacker peak kernel sockets",
        lambda s: str(s.attacker_cost.get("peak_kernel_sockets", "-")),
    ),
)


def print_attack(result: TrialResult, console: Console) -> None:
    config = result.config
    [spec] = config.attackers
    summary = result.summaries[spec.name]
    engine = f" on {spec.workers} Locust worker(s)" if spec.engine == "locust" else ""
    title = f"{spec.name} attacker{engine} vs {config.name}"
    table = Table(title=title + ("" if result.complete else " (interrupted)"), show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    for figure in ATTACK_FIGURES:
        if (value := figure.value(summary)) is not None:
            table.add_row(figure.label, value)
    if tool := summary.attacker_cost.get("tool"):  # the tool attacker's own (attackers/tools.py)
        table.add_row(f"{escape(tool['name'])} (the tool)", escape(_tool_text(tool)))
    for worker in summary.attacker_cost.get("workers", []):  # the Locust engine's
        table.add_row(f"Locust worker {escape(worker['worker'])}", _worker_text(worker))
    if result.legit:
        legit = result.legit
        rate = "-" if legit.success_rate is None else f"{legit.success_rate:.1%}"
        table.add_row(
            "legitimate client",
            f"{legit.succeeded}/{legit.requests} served ({rate}), latency median "
            f"{_seconds(legit.latency_median_s)}",
        )
    if result.server_stats:
        stats = ", ".join(
            f"{k} {_number(v) if isinstance(v, float) else v}"
            for k, v in result.server_stats.items()
            if k != "strategy" and not isinstance(v, dict | list)
        )
        table.add_row("server counters", stats)
    if result.harness.limited:
        reasons = "; ".join(result.harness.reasons)
        table.add_row("harness-limited", f"[yellow]{escape(reasons)}[/]")
    if config.server.spec and (claim := claim_text(result.server_stats, config.server.spec)):
        table.add_row("its own claim", claim)
    console.print(table)


def _worker_text(worker: dict) -> str:
    outcomes = ", ".join(f"{name} {count}" for name, count in worker["outcomes"].items())
    text = f"{', '.join(worker['addresses']) or 'no address'}: {worker['attempts']} attempts, "
    text += f"{worker['attempts_per_s']:.2f}/s, {outcomes or 'no outcome'}"
    if worker["lost"]:
        text += f"; [red]lost {worker['lost_s']:.1f} s in ({escape(worker['lost'])})[/]"
    return text


def progress_table(progress: list[TrialProgress]) -> Table:
    table = Table(title="closebench run", show_edge=False)
    for column in ("trial", "state", "elapsed", "attempts"):
        table.add_column(column)
    for trial in progress:
        done = min(trial.elapsed(), trial.duration)
        bar = "#" * int(20 * done / trial.duration) if trial.duration else ""
        table.add_row(
            trial.name,
            trial.state,
            f"{bar:<20} {trial.elapsed():5.1f} s" if trial.started else "",
            str(trial.attempts),
        )
    return table


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# The run table's figures, drawn with the report's one column definition (header, format, what
# a null reads as), so the terminal and the page cannot disagree on a figure.
RUN_COLUMNS = (
    "attempts_per_s",
    "hang_median_s",
    "outcomes",
    "attacker_seconds_wasted",
    "legit_success_rate",
    "peak_fds",
    "fd_seconds",
    "cpu_seconds",
    "peak_orphans",
    "wasted_per_fd_second",
)


# Added when some trial ran a tool attacker: its own time, progress and how its runs ended.
RUN_TOOL_COLUMNS = ("tool_wall_s", "tool_tries_per_s", "tool_ended", "attacker_seconds_busy")


def print_run(result: RunOutcome, scenario: Scenario, console: Console) -> None:
    table = Table(title=f"{scenario.name}: {scenario.description}")
    keys: tuple[str, ...] = RUN_COLUMNS
    if any(row.tool_wall_s is not None for row in result.rows):
        keys += RUN_TOOL_COLUMNS
    columns = [COLUMN_BY_KEY[key] for key in keys]
    table.add_column("strategy", no_wrap=True)
    for column in columns:
        words = column.key in ("outcomes", "tool_ended")
        table.add_column(
            column.header,
            justify="left" if words else "right",
            overflow="fold" if words else "ellipsis",
        )
    console_notes: list[str] = []
    for row in result.rows:
        if row.error:  # the row says so; the error, often long, goes under the table whole
            word = "skipped" if row.error.startswith("skipped:") else "error"
            table.add_row(row.trial, f"[red]{word}[/]", *[""] * (len(columns) - 1))
            console_notes.append(f"{escape(row.trial)}: [red]{escape(row.error)}[/]")
            continue
        cells = row.to_dict()
        table.add_row(row.trial, *(escape(column.cell(cells)) for column in columns))
        if (row.attacker_processes or 1) > 1:
            why = escape(row.attacker_processes_reason or "")
            console_notes.append(f"{escape(row.trial)}: packet attacker processes: {why}")
        if row.harness_limited:
            reason = escape(row.harness_limited_reason or "")
            console_notes.append(f"{escape(row.trial)}: [yellow]harness-limited[/]: {reason}")
    console.print(table)
    for note in console_notes:
        console.print(note, highlight=False)
    measured = next((row.cpu_use for row in result.rows if row.cpu_use), None)
    if cpu_text := cpu_use_text(measured):
        console.print(f"CPUs: {escape(cpu_text.split('; ')[0])}", highlight=False)
    for row in result.rows:
        if row.cpu_foreign_reason:
            reason = escape(row.cpu_foreign_reason)
            console.print(
                f"{escape(row.trial)}: [yellow]machine busy[/]: {reason}", highlight=False
            )
    if result.breaking_points:
        print_breaking_points(result.breaking_points, console)
    state = "complete" if result.complete else "[yellow]incomplete[/]"
    console.print(f"run {state}: {result.directory} (summary.json, attempts/, samples.csv, pcaps/)")


def print_breaking_points(points: dict[str, dict], console: Console) -> None:
    """One line per sweep series: its bracket, and why (results/breaking_points.py)."""
    colors = {BROKE: "bold red", HELD: "green", INCONCLUSIVE: "yellow"}
    for series, point in points.items():
        color = colors[status_of(point)]
        where = f"[{color}]{escape(bracket_text(point))}[/]"  # the reason says why
        console.print(f"breaking point: {escape(series)}: {where}: {escape(point['reason'])}")


def print_wire_line(totals: dict, console: Console) -> None:
    verdict = "[green]agree[/]" if totals.get("ok") else "[bold red]DISAGREE[/]"
    console.print(f"records against the wire: {verdict}: {escape(agreement_text(totals))}")


def print_verification(agreement: RunAgreement, console: Console) -> None:
    table = Table(title="closebench verify: attempt records against the pcaps (read with dpkt)")
    columns = (
        "trial",
        "joined",
        "class mismatches",
        "|Δ end| median ms",
        "p95 ms",
        "max ms",
        "ends not on wire",
        "not on wire",
        "unrecorded",
        "verdict",
    )
    _add_columns(table, columns, left=("trial", "verdict"))
    for trial in agreement.trials:
        figures = trial.to_dict()
        if trial.error:
            table.add_row(escape(trial.trial), f"[red]{escape(trial.error)}[/]", *[""] * 7, "-")
            continue
        table.add_row(
            escape(trial.trial),
            f"{trial.joined}/{trial.records}",
            str(figures["class_mismatches"]),
            *(_millis(figures[key]) for key in ("end_delta_median_s", "end_delta_p95_s")),
            _millis(figures["end_delta_max_s"]),
            str(trial.ends_not_on_wire),
            str(trial.missing_on_wire),
            str(trial.missing_in_records),
            "[green]ok[/]" if trial.ok else "[bold red]FLAGGED[/]",
        )
    console.print(table)
    for trial in agreement.trials:
        for mismatch in trial.mismatches[:5]:
            console.print(f"  {escape(trial.trial)}: {escape(mismatch.describe())}")
        if len(trial.mismatches) > 5:
            console.print(f"  {escape(trial.trial)}: ... {len(trial.mismatches) - 5} more")
    print_wire_line(agreement.to_dict(), console)


def _add_columns(table: Table, columns: tuple[str, ...], left: tuple[str, ...]) -> None:
    """Numbers to the right, words (those named in `left`) to the left."""
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")


def _millis(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.2f}"


def print_scenarios(scenarios: list[tuple[str, str]], folder: Path, console: Console) -> None:
    table = Table(box=None, pad_edge=False)
    table.add_column("scenario")
    table.add_column("what it compares")
    for name, description in scenarios:
        table.add_row(name, escape(description))
    console.print(table)
    console.print(
        f"run one: closebench run NAME (shipped in {escape(str(folder))})", highlight=False
    )
    console.print("start your own from one: closebench scenarios NAME > mine.toml", highlight=False)


def print_capabilities(findings: dict[str, Finding], kernel: str, console: Console) -> None:
    """`closebench probe --kernel`: each capability, whether this kernel has it, who needs it."""
    table = Table(title=f"what this kernel ({escape(kernel)}) can run")
    _add_columns(
        table,
        ("capability", "available", "needed by", "why not"),
        ("capability", "needed by", "why not"),
    )
    for finding in findings.values():
        available = "[green]yes[/]" if finding.available else "[red]no[/]"
        needed = escape(", ".join(needed_by(finding.name)))
        table.add_row(finding.name, available, needed, escape(finding.detail))
    console.print(table)

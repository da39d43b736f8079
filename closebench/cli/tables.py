"""Human-readable views of results, for a terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closebench.core.outcomes import Outcome
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


def probe_table(results: list[ProbeResult], timeout: float) -> Table:
    table = Table(title=f"What the abuser's wire saw (client timeout {timeout:g} s)")
    table.add_column("strategy")
    table.add_column("outcome")
    table.add_column("data first")
    table.add_column("client waited", justify="right")
    table.add_column("after the request, from the server")
    table.add_column("defender kept")
    for result in results:
        attempt = result.attempt
        if result.error or attempt is None:
            table.add_row(result.case.label, "[bold red]error[/]", "", "", "[red]see below[/]", "")
            continue
        style = OUTCOME_STYLE[attempt.outcome]
        hang = f"{attempt.hang_s:.2f} s" if attempt.hang_s is not None else "-"
        table.add_row(
            result.case.label,
            f"[{style}]{attempt.outcome}[/]",
            "yes" if attempt.data_first else "no",
            hang,
            wire_summary(result.timeline, attempt.t_request, attempt.client_timeout),
            ", ".join(result.defender_sockets) or "no socket",
        )
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


def print_attack(result: TrialResult, console: Console) -> None:
    config = result.config
    [spec] = config.attackers
    summary = result.summaries[spec.name]
    engine = f" on {spec.workers} Locust worker(s)" if spec.engine == "locust" else ""
    title = f"{spec.name} attacker{engine} vs {config.name}"
    table = Table(title=title + ("" if result.complete else " (interrupted)"), show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    table.add_row("attempts", f"{summary.attempts} in {summary.duration_s:.1f} s")
    table.add_row("attempts/s", f"{summary.attempts_per_s:.2f}")
    if summary.runs is not None:
        per_run = summary.attempts / summary.runs if summary.runs else 0.0
        table.add_row(
            "command runs",
            f"{summary.runs} ({summary.runs_per_s:.2f}/s), {per_run:.1f} connections per run",
        )
    if errors := summary.attacker_cost.get("errors_without_connection"):
        without = summary.attacker_cost.get("runs_without_connection", 0)
        said = "; ".join(f"{escape(line)} ({count}x)" for line, count in errors.items())
        table.add_row("runs without a connection", f"[red]{without}[/]: {said}")
    hangs = (summary.hang_median_s, summary.hang_p95_s, summary.hang_max_s)
    waits = f" ({summary.connect_waits} never sent a request: their wait to connect)"
    table.add_row(
        "hang median / p95 / max",
        " / ".join(_seconds(h) for h in hangs) + (waits if summary.connect_waits else ""),
    )
    table.add_row(
        "hang quartiles",
        f"{_seconds(summary.hang_q1_s)} / {_seconds(summary.hang_q3_s)}"
        + (f" ({summary.outlasted} outlasted: left out)" if summary.outlasted else ""),
    )
    table.add_row(
        "connect wait / slot median",
        f"{_seconds(summary.connect_wait_median_s)} / {_seconds(summary.slot_median_s)}",
    )
    table.add_row(
        "attacker seconds wasted",
        f"{summary.attacker_seconds_wasted:.1f} s per connection summed, "
        f"{summary.attacker_seconds_busy:.1f} s with a connection open",
    )
    outcomes = ", ".join(
        f"[{OUTCOME_STYLE[Outcome(name)]}]{name}[/] {count}"
        for name, count in summary.outcomes.items()
    )
    table.add_row("outcomes", outcomes or "none")
    closers = ", ".join(f"{name} {count}" for name, count in summary.closed_by.items() if count)
    table.add_row("closed by", closers or "none")
    table.add_row("response data first", f"{summary.data_first} attempts")
    if summary.common_excerpt:
        table.add_row(
            "the server said",
            f"{escape(repr(summary.common_excerpt))} ({summary.common_excerpt_attempts} attempts)",
        )
    cost = summary.attacker_cost
    if "tool" in cost:  # the tool attacker's own figures (attackers/tools.py)
        table.add_row(
            f"{escape(cost['tool']['name'])} (the tool)", escape(_tool_text(cost["tool"]))
        )
    if "peak_open_sockets" in cost:
        table.add_row("attacker peak open fds", str(cost["peak_open_sockets"]))
    table.add_row("attacker peak kernel sockets", str(cost.get("peak_kernel_sockets", "-")))
    for worker in cost.get("workers", []):  # the Locust engine's
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

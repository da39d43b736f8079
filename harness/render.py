"""Human-readable views of results, for a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.capture import WireEvent, split_at_client_end
from harness.outcomes import Outcome
from harness.probe import ProbeResult

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
    retransmitted = 0
    for event in events:
        if event.direction != "in" or (since is not None and event.t < since):
            continue
        if event.retransmission:
            retransmitted += 1
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
    return parts


def wire_summary(timeline: list[WireEvent], since: float | None) -> str:
    """What came back after the request, e.g. 'data 40 B +0.001 s, FIN +0.001 s', and what came
    only once the client had given up."""
    waiting, after = split_at_client_end(timeline)
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
    for result in results:
        attempt = result.attempt
        if result.error or attempt is None:
            table.add_row(result.case.label, "[bold red]error[/]", "", "", "[red]see below[/]")
            continue
        style = OUTCOME_STYLE[attempt.outcome]
        hang = f"{attempt.hang_s:.2f} s" if attempt.hang_s is not None else "-"
        table.add_row(
            result.case.label,
            f"[{style}]{attempt.outcome}[/]",
            "yes" if attempt.data_first else "no",
            hang,
            wire_summary(result.timeline, attempt.t_request),
        )
    return table


def print_probe(results: list[ProbeResult], timeout: float, console: Console) -> None:
    console.print(probe_table(results, timeout))
    seen = {r.attempt.outcome for r in results if r.attempt}
    for outcome in Outcome:
        if outcome in seen:
            console.print(f"  [bold]{outcome}[/]: {outcome.explanation}")

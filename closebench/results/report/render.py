"""The report of a run: figures, a self-contained index.html and a summary.md.

Built from the run directory's raw files alone (closebench/results/run_directory.py), so `closebench
report RUN_DIR` can rebuild it at any time, also for an interrupted run or one whose trials failed.
The page is templates/report.html.j2 (Jinja); summary.md is written here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from closebench import __version__
from closebench.core.safe_files import SafeDirectory
from closebench.results.figures import render_all
from closebench.results.figures.palette import Palette
from closebench.results.pages import environment
from closebench.results.report.columns import COLUMNS, WORKER_HEADERS, html_tables, worker_rows
from closebench.results.report.prose import (
    breaking_rows,
    breaking_rule,
    read_trial,
    run_notes,
    wire_agreement,
)
from closebench.results.report.ranking import axis_results, best_silencer, undominated
from closebench.results.run_directory import RAW_FILES, SUMMARY_FILE, RunData, load_run


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: list
    problems: list[str]  # raw files missing or partly unreadable: shown on the page too


def build_report(directory: Path, opened: SafeDirectory | None = None) -> ReportFiles:
    """Rebuild figures/, index.html and summary.md of a run directory from its raw files.

    Written without following any link in the run directory (closebench/core/safe_files.py): a run
    directory from elsewhere may have `index.html` or `figures` pointing outside it.
    """
    fix = "copy the run directory somewhere writable and run `closebench report` on the copy"
    # Opened once (refused where another user could change it), read and written through it.
    directory = Path(directory)
    if directory.name == SUMMARY_FILE and directory.is_file():
        directory = directory.parent
    if opened is None and not directory.is_dir():
        load_run(directory)  # its one line: not a run directory
    out = opened or SafeDirectory(directory, fix)
    try:
        run = load_run(out.anchor)
        with out.subdirectory("figures") as figure_directory:
            figures = render_all(run, figure_directory)
        context = _context(run, figures)
        page = environment().get_template("report.html.j2").render(context)
        html = out.write("index.html", page)
        markdown = out.write("summary.md", summary_markdown(context))
    finally:
        if opened is None:
            out.close()
    return ReportFiles(html, markdown, figures, run.problems)


def _context(run: RunData, figures: list) -> dict:
    palette = Palette([t.name for t in run.trials])
    results = axis_results(run.trials)
    best, best_rate = best_silencer(run.trials, results)
    return {
        "version": __version__,
        "run": run,
        "meta": run.meta,
        "title": f"closebench: {run.meta.get('scenario_name') or run.directory.name}",
        "description": run.scenario.get("description", ""),
        "tables": html_tables(run.trials, palette),
        "workers": worker_rows(run.trials),
        "worker_headers": WORKER_HEADERS,
        "rows": [
            {
                "name": t.name,
                "color": palette.color(t.name),
                "error": t.row.get("error"),
                "cells": [c.cell(t.row) for c in COLUMNS],
            }
            for t in run.trials
        ],
        "axes": results,
        "breaking": breaking_rows(run, palette),
        "breaking_rule": breaking_rule(run),
        "undominated": undominated(run.trials),
        "best": best,
        "best_rate": best_rate,
        "readings": [read_trial(t, run, results) for t in run.trials],
        "notes": run_notes(run),
        "wire": wire_agreement(run),
        "figures": [_embedded(f) for f in figures],
        "raw": _raw_links(run.directory),
        "environment": _environment_rows(run.meta),
    }


def _embedded(figure) -> dict:
    svg = figure.svg_text
    return {
        "name": figure.name,
        "title": figure.title,
        "caption": figure.caption,
        "src": "data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
        "png": f"figures/{figure.png.name}",
        "svg": f"figures/{figure.svg.name}",
    }


def _raw_links(directory: Path) -> list[tuple[str, str]]:
    links = [(name, name) for name in (*RAW_FILES, "summary.md") if (directory / name).exists()]
    folders = (("attempts", "*.parquet"), ("pcaps", "*.pcap"), ("locust", "*.csv"))
    for folder, pattern in folders:  # locust: Locust's CSVs
        if (directory / folder).is_dir():
            found = sorted((directory / folder).glob(pattern))
            links += [(f"{folder}/{p.name}", f"{folder}/{p.name}") for p in found]
    return links


def _environment_rows(meta: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in meta.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
        rows.append((key, _plain(value)))
    return rows


def _plain(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _markdown_table(table: dict) -> list[str]:
    """One of the page's tables (columns.html_tables) as markdown lines."""
    columns = table["columns"]
    lines = ["| trial | " + " | ".join(_md(c.header) for c in columns) + " |"]
    lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
    for row in table["rows"]:
        cells = [_md(cell) for cell, _ in row["cells"]]
        lines.append(f"| {_md(row['name'])} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(context: dict) -> str:
    """The summary table and the winners, as GitHub markdown for a pull request."""
    meta = context["meta"]
    state = "complete" if context["run"].complete else "**incomplete**"
    lines = [
        f"## {_md(context['title'])}",
        "",
        f"Run {_md(meta.get('run_id', '?'))}, {state}, closebench "
        f"{_md(meta.get('closebench', '?'))}, kernel {_md(meta.get('kernel', '?'))}.",
        "",
        "| trial | " + " | ".join(_md(c.header) for c in COLUMNS) + " |",
        "| --- | " + " | ".join(":---" if c.key == "outcomes" else "---:" for c in COLUMNS) + " |",
    ]
    for row in context["rows"]:
        cells: Sequence[str] = [_md(f"error: {row['error']}")] + [""] * (len(COLUMNS) - 1)
        if not row["error"]:
            cells = [_md(cell) for cell in row["cells"]]
        lines.append(f"| {_md(row['name'])} | " + " | ".join(cells) + " |")
    for table in context["tables"]:  # the layers in front of the server, where some stood
        if table["columns"] and table["columns"][0].group == "layers":
            lines += ["", *_markdown_table(table)]
    if context["workers"]:
        lines += ["", "| " + " | ".join(context["worker_headers"]) + " | lost |"]
        lines.append("| --- " * (len(context["worker_headers"]) + 1) + "|")
        for worker in context["workers"]:
            cells = [_md(cell) for cell in (*worker.cells, worker.lost or "")]
            lines.append("| " + " | ".join(cells) + " |")
    if context["breaking"]:
        lines += ["", _md(context["breaking_rule"]), "", "| strategy | status | bracket | why |"]
        lines.append("| --- | --- | --- | :--- |")
        for point in context["breaking"]:
            cells = (point["series"], point["status"], point["where"], point["reason"])
            lines.append("| " + " | ".join(_md(cell) for cell in cells) + " |")
    lines.append("")
    for result in context["axes"]:
        who = "all alike" if result.all_tied else ", ".join(result.winners)
        lines.append(f"- {result.axis.label}: {_md(who)} ({_md(result.best)})")
    lines += [f"- note: {_md(note)}" for note in context["notes"]]
    wire = context["wire"]
    if wire is not None:
        verdict = "records agree with the wire" if wire.ok else "**records DISAGREE with the wire**"
        verdict = verdict if wire.verified else "records not verified against the wire"
        lines.append(f"- {verdict} (closebench verify): {_md(wire.sentence)}")
        lines += [f"  - {_md(name)}: {_md(text)}" for name, ok, text in wire.rows if not ok]
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    """Text safe in a markdown table cell: no formatting, no HTML, no column breaks."""
    escaped = "".join("\\" + c if c in "\\`*_[]<>|#" else c for c in str(text))
    return " ".join(escaped.split())


def run_report_command(directory: str, warn: Callable[[str], None]) -> Path:
    """`closebench report RUN_DIR`: rebuild the report, `warn` of each unreadable part of the
    run (the page says it too); returns the path of index.html."""
    files = build_report(Path(directory))
    for problem in files.problems:
        warn(problem)
    return files.html


def build_run_report(
    directory: Path, log: Callable[[str], None], opened: SafeDirectory | None = None
) -> Path | None:
    """For `closebench run`: build the report (into `opened`, the run directory as the run
    opened it); a failure is logged and never loses the run, whose raw files are already
    written (`closebench report` can retry)."""
    try:
        html = build_report(directory, opened).html
    except Exception as error:
        log(f"report: failed: {type(error).__name__}: {error}")
        return None
    log(f"report: {html.name}, summary.md, figures/")
    return html

"""A sweep's figures: each strategy's figures against the load (the sweep's steps), one line per
series, its breaking point marked. Log x axes when the steps span two decades or more.

A step not judged (harness-limited, trials/harness_load.py, or on CPUs something outside the run
kept busy, lab/cpus.py) is drawn hollow: it is inconclusive. A series that broke has its first
broken step crossed; one inconclusive from a step has a dotted line from that step on."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from closebench.results.figures.drawing import is_num, legend, new_figure, no_data
from closebench.results.figures.palette import Palette
from closebench.results.run_directory import RunData

DEFENDER_PANELS = (  # summary row figure, label, scale
    ("peak_fds", "open file descriptors at peak", 1.0),
    ("peak_threads", "threads at peak", 1.0),
    ("peak_rss_mb", "resident memory at peak (MiB)", 1.0),
    ("cpu_seconds", "CPU time (s)", 1.0),
    ("peak_tcp_mem_bytes", "TCP memory at peak, whole machine (MiB)", 1 / 2**20),
    ("peak_orphans", "orphan sockets at peak", 1.0),
)
ATTACKER_PANELS = (
    ("attempts_per_s", "attacker attempts per second", 1.0),
    ("hang_median_s", "attacker hang, median (s)", 1.0),
)
LEGIT_PANELS = (
    ("legit_success_rate", "legitimate requests answered 200 (%)", 100.0),
    ("legit_latency_p95_s", "legitimate latency, p95 (s)", 1.0),
)


def series_rows(run: RunData) -> dict[str, list[dict]]:
    """The measured rows of each series, steps ascending."""
    found: dict[str, list[dict]] = {}
    for row in run.rows:
        if isinstance(row.get("series"), str) and is_num(row.get("step")) and not row.get("error"):
            found.setdefault(row["series"], []).append(row)
    return {name: sorted(rows, key=lambda r: r["step"]) for name, rows in found.items()}


def _axis_label(run: RunData) -> str:
    sweep = run.sweep or {}
    return f"{sweep.get('axis', 'step')} (the sweep's step)"


def _log_x(run: RunData) -> bool:
    steps = [s for s in (run.sweep or {}).get("steps", []) if is_num(s) and s > 0]
    return len(steps) > 1 and max(steps) / min(steps) >= 100


def _panels(run: RunData, palette: Palette, panels, size, threshold_for=None) -> Figure:
    cols = 3 if len(panels) > 4 else 2
    rows_n = -(-len(panels) // cols)
    figure, axes = new_figure(rows_n, cols, size)
    series = series_rows(run)
    points = run.breaking_points
    for ax, (column, label, scale) in zip(axes.flat, panels, strict=False):
        for name, rows in series.items():
            _line(ax, rows, column, scale, palette(name))
            point = points.get(name, {})
            if point.get("value") is not None and column.startswith("legit"):
                _mark_break(ax, rows, column, scale, point["value"], palette(name).color)
            if point.get("inconclusive_from") is not None and column.startswith("legit"):
                ax.axvline(point["inconclusive_from"], color=palette(name).color, ls=":", lw=1)
        if threshold_for and (limit := threshold_for(column)) is not None:
            ax.axhline(limit, color="0.3", linestyle=":", linewidth=1)
        if not series:
            no_data(ax)
        if _log_x(run):
            ax.set_xscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(_axis_label(run), fontsize=9)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    handles = [
        Line2D([], [], color=palette(n).color, marker=palette(n).marker, label=n) for n in series
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            fillstyle="none",
            ls="none",
            label="inconclusive step (harness-limited or machine busy)",
        )
    )
    if any(p.get("value") is not None for p in points.values()):
        handles.append(
            Line2D([], [], color="0.1", marker="X", ms=10, ls="none", label="breaking point")
        )
    legend(figure, handles)
    return figure


def _line(ax: Axes, rows: list[dict], column: str, scale: float, style) -> None:
    measured = [
        (
            r["step"],
            r[column] * scale,
            bool(r.get("harness_limited") or r.get("cpu_foreign_reason")),
        )
        for r in rows
        if is_num(r.get(column))
    ]
    if not measured:
        return
    xs, ys, _ = zip(*measured, strict=True)
    ax.plot(xs, ys, color=style.color, linestyle=style.linestyle, linewidth=1.6)
    for x, y, hollow in measured:
        ax.plot(
            [x],
            [y],
            marker=style.marker,
            color=style.color,
            ms=6,
            fillstyle="none" if hollow else "full",
            ls="none",
        )


def _mark_break(ax: Axes, rows: list[dict], column: str, scale, step: float, color: str) -> None:
    at_step: list[dict | None] = [r for r in rows if r["step"] == step]
    [row] = at_step or [None]
    if row is not None and is_num(row.get(column)):
        ax.plot(
            [step],
            [row[column] * scale],
            marker="X",
            ms=13,
            color=color,
            markeredgecolor="0.1",
            ls="none",
            zorder=5,
        )


def sweep_defender(run: RunData, palette: Palette) -> Figure:
    return _panels(run, palette, DEFENDER_PANELS, (12, 6.5))


def sweep_attacker(run: RunData, palette: Palette) -> Figure:
    return _panels(run, palette, ATTACKER_PANELS, (11, 4))


def sweep_legit(run: RunData, palette: Palette) -> Figure:
    sweep = run.sweep or {}

    def threshold(column: str) -> float | None:
        if column == "legit_success_rate" and is_num(sweep.get("break_legit_success")):
            return 100 * sweep["break_legit_success"]
        if column == "legit_latency_p95_s" and is_num(sweep.get("break_latency_s")):
            return sweep["break_latency_s"]
        return None

    return _panels(run, palette, LEGIT_PANELS, (11, 4), threshold)

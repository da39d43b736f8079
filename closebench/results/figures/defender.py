"""The defender's figures: its cost over time, its kernel sockets, the legitimate clients' service,
and the cost asymmetry."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import MaxNLocator

from closebench.results.figures.drawing import (
    TIME_LABEL,
    is_num,
    label_clusters,
    legend,
    new_figure,
    no_data,
    trial_handles,
)
from closebench.results.figures.palette import Palette
from closebench.results.run_directory import AttemptColumns, RunData, TrialData

# Kernel socket states as samples.csv names them, bottom to top of the stack.
LIVE_STATES = (
    ("established", "ESTABLISHED", "#1f77b4"),
    ("syn_recv", "SYN-RECV", "#aec7e8"),
    ("close_wait", "CLOSE-WAIT", "#ff7f0e"),
    ("fin_wait_1", "FIN-WAIT-1", "#d62728"),
    ("fin_wait_2", "FIN-WAIT-2", "#ff9896"),
    ("other_sockets", "other (LAST-ACK, CLOSING...)", "#8c564b"),
)
TIME_WAIT_COLOUR = "#9a9a9a"
DEFENDER_PANELS = (  # samples.csv column, label with unit, scale, whole numbers
    ("fds", "open file descriptors", 1.0, True),
    ("threads", "threads", 1.0, True),
    ("rss_bytes", "resident memory (MiB)", 1 / 2**20, False),
    ("cpu_s", "CPU time used since the start (s)", 1.0, False),
)


def defender_cost(run: RunData, palette: Palette) -> Figure:
    figure, axes = new_figure(2, 2, (11, 7))
    drawn = [t for t in run.trials if t.samples]
    for ax, (column, label, scale, whole) in zip(axes.flat, DEFENDER_PANELS, strict=True):
        for trial in drawn:
            times = [s["t"] for s in trial.samples]
            values = [s[column] * scale for s in trial.samples]
            if column == "cpu_s":
                values = [v - values[0] for v in values]  # what this trial used, not before
            style = palette(trial.name)
            ax.plot(times, values, color=style.color, linestyle=style.linestyle, linewidth=1.6)
        if not drawn:
            no_data(ax)
        if whole:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            # Memory and CPU from zero, so noise does not look like growth.
            ax.set_ylim(0, max(ax.get_ylim()[1] * 1.1, 0.01))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(TIME_LABEL, fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, alpha=0.3)
    legend(figure, trial_handles(palette, drawn))
    return figure


def kernel_sockets(run: RunData, palette: Palette) -> Figure:
    drawn = [t for t in run.trials if t.samples]
    cols = 3 if len(drawn) > 4 else max(1, len(drawn))
    rows = max(1, math.ceil(len(drawn) / cols))
    figure, axes = new_figure(rows, cols, (11, 2.6 * rows + 1))
    for ax in axes.flat[len(drawn) :]:
        ax.set_axis_off()
    if not drawn:
        axes.flat[0].set_axis_on()
        no_data(axes.flat[0])
    for ax, trial in zip(axes.flat, drawn, strict=False):
        _socket_panel(ax, trial)
        ax.set_title(trial.name, fontsize=10, color=palette.color(trial.name), fontweight="bold")
    handles: list = [Patch(color=c, label=label) for _, label, c in LIVE_STATES]
    handles += [
        Line2D([], [], color="black", linestyle="--", linewidth=2, label="orphans (no fd)"),
        Line2D([], [], color=TIME_WAIT_COLOUR, linewidth=1.5, label="TIME-WAIT (right axis)"),
    ]
    legend(figure, handles, "socket state")
    return figure


def _socket_panel(ax: Axes, trial: TrialData) -> None:
    """Live states stacked; TIME-WAIT on its own axis, since every served request leaves one
    there and its count would flatten the few sockets (and orphans) that matter."""
    times = [s["t"] for s in trial.samples]
    stacks = [[s.get(column, 0) for s in trial.samples] for column, _, _ in LIVE_STATES]
    ax.stackplot(times, stacks, colors=[c for _, _, c in LIVE_STATES], linewidth=0)
    orphans = [s.get("orphans", 0) for s in trial.samples]
    ax.plot(times, orphans, color="black", linewidth=2, linestyle="--")
    peak = max([1.0, *orphans, *(sum(v) for v in zip(*stacks, strict=True))])
    ax.set_ylim(0, peak * 1.2)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(TIME_LABEL, fontsize=8)
    ax.set_ylabel("live sockets", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    waiting = ax.twinx()
    waiting.plot(
        times, [s.get("time_wait", 0) for s in trial.samples], color=TIME_WAIT_COLOUR, linewidth=1.5
    )
    waiting.set_ylim(0, None)
    waiting.yaxis.set_major_locator(MaxNLocator(integer=True))
    waiting.set_ylabel("TIME-WAIT", fontsize=8, color="0.45")
    waiting.tick_params(labelsize=8, colors="0.45")


def legit_service(run: RunData, palette: Palette) -> Figure:
    figure, axes = new_figure(2, 1, (10, 7))
    success, latency = axes[0][0], axes[1][0]
    drawn = [t for t in run.trials if len(t.legit) and t.start is not None]
    width = 2.0
    for trial in drawn:
        style = palette(trial.name)
        offsets = trial.legit.t_syn - trial.start
        ok = trial.legit.http_status == 200
        edges = np.arange(0.0, offsets.max() + width, width)
        total, _ = np.histogram(offsets, bins=edges)
        good, _ = np.histogram(offsets[ok], bins=edges)
        shares = np.divide(good, total, out=np.full(len(total), np.nan), where=total > 0)
        success.stairs(
            100 * shares,
            edges,
            baseline=None,
            color=style.color,
            linestyle=style.linestyle,
            linewidth=2,
        )
        served = _served(trial.legit)
        times = offsets[served]
        waits = 1000 * (trial.legit.t_end - trial.legit.t_syn)[served]
        latency.plot(
            times,
            waits,
            marker=style.marker,
            linestyle="none",
            markersize=4,
            color=style.color,
            alpha=0.8,
        )
    if not drawn:
        no_data(success, "no legitimate client in this run")
        no_data(latency, "no legitimate client in this run")
    success.set_ylim(-5, 115)
    success.set_xlim(0, None)
    shares = [(t, float(_served(t.legit).mean())) for t in drawn]
    label_clusters(success, [(0.0, 100 * share, t.name) for t, share in shares], spread=True)
    success.set_ylabel(f"requests answered 200 (%, per {width:g} s)")
    success.set_title("success rate", fontsize=10)
    latency.set_yscale("log")
    latency.set_ylabel("latency, SYN to end (ms, log scale)")
    latency.set_title("latency of each answered request", fontsize=10)
    for ax in (success, latency):
        ax.set_xlabel(TIME_LABEL)
        ax.grid(True, which="both", alpha=0.3)
    legend(figure, trial_handles(palette, drawn))
    return figure


def _served(attempts: AttemptColumns) -> np.ndarray:
    """Which attempts were answered 200 and ended."""
    return (attempts.http_status == 200) & ~np.isnan(attempts.t_end)


def cost_asymmetry(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = new_figure(size=(10, 6))
    drawn = []
    for trial in run.trials:
        row = trial.row
        if row.get("error") or not is_num(row.get("fd_seconds")):
            continue
        style = palette(trial.name)
        ax.scatter(
            row["fd_seconds"],
            row.get("attacker_seconds_wasted") or 0.0,
            s=140,
            color=style.color,
            marker=style.marker,
            edgecolors="black",
            linewidths=0.6,
            alpha=0.85,
            zorder=3,
        )
        drawn.append(trial)
    if not drawn:
        no_data(ax)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlim(-0.2, _upper([t.row["fd_seconds"] for t in drawn]))
    ax.set_ylim(-0.2, _upper([t.row.get("attacker_seconds_wasted") or 0 for t in drawn]))
    _mark_corners(ax)
    ax.set_xlabel(
        "defender fd-seconds: fds held above idle, integrated over the trial (fd·s, symlog)"
    )
    ax.set_ylabel("attacker seconds wasted: every attempt, first SYN to end, summed (s, symlog)")
    ax.grid(True, which="both", alpha=0.3)
    points = [(t.row["fd_seconds"], t.row.get("attacker_seconds_wasted") or 0.0) for t in drawn]
    label_clusters(ax, [(x, y, t.name) for (x, y), t in zip(points, drawn, strict=True)], 0.09)
    legend(figure, trial_handles(palette, drawn, line=False))
    return figure


def _mark_corners(ax: Axes) -> None:
    """Shade the better corner (top left) green and the worse one (bottom right) red, and name
    them above the plot, where no point can hide the words."""
    for corner, colour in (
        ([(0, 1), (0.4, 1), (0, 0.6)], "#2ca02c"),
        ([(1, 0), (0.6, 0), (1, 0.4)], "#d62728"),
    ):
        ax.add_patch(
            Polygon(
                corner,
                closed=True,
                transform=ax.transAxes,
                color=colour,
                alpha=0.08,
                zorder=0,
                linewidth=0,
            )
        )
    ax.set_title(
        "↖ better: attacker wastes more, defender holds fewer fds",
        loc="left",
        fontsize=9,
        color="#1f7a32",
        fontweight="bold",
    )
    ax.set_title(
        "worse: defender pays, attacker loses nothing ↘",
        loc="right",
        fontsize=9,
        color="#b3261e",
    )


def _upper(values: list[float]) -> float:
    return max([10.0, *values]) * 2.5

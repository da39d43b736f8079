"""The report's figures: matplotlib's Agg canvas (no pyplot: no window, no global state, safe
in the runner's threads), each saved as PNG and SVG.

Every figure takes its colours from one Palette built from the run's trial order, so a strategy
has the same colour everywhere. Repetitions of a strategy ("graceful #2") share its colour.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from harness.core.outcomes import waited

if TYPE_CHECKING:
    from harness.core.safe_files import SafeDirectory
    from harness.results.report.prose import RunData, TrialData

HANG_FLOOR_S = 1e-4  # hangs below 0.1 ms are drawn at 0.1 ms on the log axis
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", "-.", ":")
# Outcome colours: what the attacker learnt; silent (good for the defender) is green.
OUTCOME_COLOURS = {
    "fin": "#f0a030",
    "rst": "#d62728",
    "refused": "#9467bd",
    "icmp": "#17becf",
    "syn-timeout": "#98df8a",
    "silent": "#2ca02c",
}
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
TIME_LABEL = "time since the trial started (s)"


def strategy_key(trial: str) -> str:
    """The colour key of a trial: its name without a repetition suffix (' #2')."""
    return re.sub(r" #\d+$", "", trial)


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str


class Palette:
    """One colour (and marker, line style) per strategy, derived once from the trial order."""

    def __init__(self, trials: Sequence[str]) -> None:
        keys = list(dict.fromkeys(strategy_key(t) for t in trials))
        colours = _colours(len(keys))
        self.styles = {
            key: Style(colours[i], MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)])
            for i, key in enumerate(keys)
        }

    def __call__(self, trial: str) -> Style:
        return self.styles[strategy_key(trial)]

    def color(self, trial: str) -> str:
        return self(trial).color


def _colours(count: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    name = "tab10" if count <= 10 else "tab20"
    cmap = colormaps[name]
    if count <= cmap.N:
        return [to_hex(cmap(i)) for i in range(count)]
    return [to_hex(colormaps["hsv"](i / count)) for i in range(count)]


@dataclass(frozen=True)
class FigureFile:
    name: str  # file stem under figures/
    title: str
    caption: str  # how to read it, shown under the figure in the HTML
    png: Path
    svg: Path


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[RunData, Palette], Figure]


def render_all(run: RunData, out: SafeDirectory) -> list[FigureFile]:
    """Draw every figure of the report into `out` as <name>.png and <name>.svg."""
    palette = Palette([t.name for t in run.trials])
    files = []
    for spec in FIGURES:
        figure = spec.draw(run, palette)
        figure.suptitle(spec.title, fontsize=13, fontweight="bold")
        FigureCanvasAgg(figure)  # attaches the Agg canvas: no pyplot, no global state
        png, svg = io.BytesIO(), io.BytesIO()
        figure.savefig(png, format="png", dpi=110)
        # A fixed salt and no date: rebuilding a report from the same run gives the same files.
        with rc_context({"svg.hashsalt": "closebench"}):
            figure.savefig(svg, format="svg", metadata={"Date": None})
        png_path = out.write(f"{spec.name}.png", png.getvalue())
        svg_path = out.write(f"{spec.name}.svg", svg.getvalue())
        files.append(FigureFile(spec.name, spec.title, spec.caption, png_path, svg_path))
    return files


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (10, 5.5)):
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def _no_data(ax: Axes, what: str = "no data in this run") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _legend(figure: Figure, handles: list, title: str | None = None) -> None:
    if handles:
        figure.legend(handles=handles, loc="outside right center", title=title, fontsize=9)


def _trial_handles(palette: Palette, trials: Iterable[TrialData], line: bool = True) -> list:
    """One legend entry per strategy (repetitions share theirs)."""
    handles, seen = [], set()
    for trial in trials:
        key = strategy_key(trial.name)
        if key in seen:
            continue
        seen.add(key)
        style = palette(trial.name)
        handles.append(
            Line2D(
                [],
                [],
                color=style.color,
                marker=style.marker,
                linestyle=style.linestyle if line else "none",
                label=key,
            )
        )
    return handles


def _label_clusters(
    ax: Axes,
    points: list[tuple[float, float, str]],
    near: float = 0.05,
    stagger: tuple[float, ...] = (),
    spread: bool = False,
) -> None:
    """Name overlapping curves or points: trials within `near` (axes fraction) of each other
    share one label, so identical results stay readable where their marks hide each other.
    With `stagger`, labels sit at those heights (axes fraction) in turn, with an arrow; with
    `spread`, at their own height but side by side (for horizontal lines)."""
    ax.get_xlim(), ax.get_ylim()  # settles pending autoscaling before transforming
    to_axes = ax.transAxes.inverted()
    clusters: list[tuple[np.ndarray, list[str]]] = []
    for x, y, name in points:
        where = to_axes.transform(ax.transData.transform((x, y)))
        for centre, names in clusters:
            if np.hypot(*(where - centre)) < near:
                names.append(name)
                break
        else:
            clusters.append((where, [name]))
    clusters.sort(key=lambda cluster: (cluster[0][0], cluster[0][1]))
    if len(clusters) == 1 and len(points) > 2:
        clusters[0][1][:] = ["all trials"]
    box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.9}
    for index, (where, names) in enumerate(clusters):
        anchor = (0.04 + 0.9 * index / len(clusters), where[1]) if spread else tuple(where)
        right = anchor[0] > 0.6  # near the right edge: write leftwards
        text = {"ha": "right" if right else "left", "fontsize": 8.5, "color": "0.15", "bbox": box}
        if stagger:
            height = stagger[index % len(stagger)]
            ax.annotate(
                _wrap(names),
                anchor,
                xycoords="axes fraction",
                xytext=(anchor[0] + (-0.03 if right else 0.03), height),
                textcoords="axes fraction",
                va="center",
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.8},
                **text,
            )
        else:
            ax.annotate(
                _wrap(names),
                anchor,
                xycoords="axes fraction",
                xytext=(-8 if right else 8, 6 if anchor[1] < 0.8 else -6),
                textcoords="offset points",
                va="bottom" if anchor[1] < 0.8 else "top",
                **text,
            )


def _wrap(names: list[str], width: int = 34) -> str:
    lines = [""]
    for name in names:
        if lines[-1] and len(lines[-1]) + len(name) > width:
            lines[-1] += ","
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + name
    return "\n".join(lines)


# attacker hang time


def hang_cdf(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = _figure()
    drawn = []
    connect_waits = False
    for trial in run.trials:
        # (wait, is a connect wait): the hang after the request, or, for an attempt that never
        # sent one, its wait to connect (outcomes.waited: one rule for the summary and this).
        points = sorted(
            (max(HANG_FLOOR_S, wait), a.get("t_request") is None)
            for a in trial.attacks
            if _num(wait := waited(a.get("hang_s"), a.get("connect_wait_s")))
        )
        if not points:
            continue
        hangs = [wait for wait, _ in points]
        style = palette(trial.name)
        shares = np.arange(1, len(hangs) + 1) / len(hangs)
        ax.step(
            [hangs[0], *hangs],
            [0, *shares],
            where="post",
            color=style.color,
            linestyle=style.linestyle,
            linewidth=2,
        )
        ax.plot(hangs[-1], 1.0, marker=style.marker, color=style.color)
        marked = [(w, y) for (w, connect), y in zip(points, shares, strict=True) if connect]
        if marked:
            connect_waits = True
            ax.scatter(*zip(*marked, strict=True), marker="x", s=36, color=style.color, zorder=4)
        drawn.append((float(np.median(hangs)), 0.5, trial))
    if not drawn:
        _no_data(ax)
    for timeout in sorted({a["client_timeout"] for _, _, t in drawn for a in t.attacks}):
        ax.axvline(timeout, color="0.3", linestyle=":", linewidth=1)
        ax.annotate(
            f"client timeout {timeout:g} s",
            (timeout, 0.5),
            rotation=90,
            ha="right",
            va="center",
            fontsize=8,
            color="0.3",
        )
    ax.set_xscale("log")
    ax.set_xlim(HANG_FLOOR_S / 2, None)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(
        "attacker hang per attempt: request to its end; x: no request, its wait to connect "
        "(s, log; < 0.1 ms drawn at 0.1 ms)"
    )
    ax.set_ylabel("share of attempts that hung at most this long")
    ax.grid(True, which="both", alpha=0.3)
    _label_clusters(ax, [(x, y, t.name) for x, y, t in drawn], 0.012, (0.62, 0.4, 0.18, 0.84))
    handles = _trial_handles(palette, [t for _, _, t in drawn])
    if connect_waits:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="x",
                linestyle="none",
                label="no request: wait to connect",
            )
        )
    _legend(figure, handles)
    return figure


# attacker attempts/s


def attempt_rate(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = _figure()
    width = rate_bin_width(run)
    span = attack_span(run)
    drawn = []
    for trial in run.trials:
        offsets = [a["t_syn"] - trial.start for a in trial.attacks if trial.start is not None]
        if not offsets:
            continue
        edges = _bin_edges(span, width)
        counts, _ = np.histogram(offsets, bins=edges)
        rates = counts / np.diff(edges)
        style = palette(trial.name)
        ax.stairs(rates, edges, color=style.color, linestyle=style.linestyle, linewidth=2)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, rates, marker=style.marker, linestyle="none", color=style.color)
        drawn.append((span / 2, len(offsets) / span, trial))
    if not drawn:
        _no_data(ax)
    for value, label in reference_rates(run):
        ax.axhline(value, color="0.35", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (1, value),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="0.3",
        )
    _symlog_rates(ax, _rate_floor(width))
    ax.set_xlim(0, None)
    ax.set_ylim(0, None)
    ax.set_xlabel(f"{TIME_LABEL}; bins of {width:g} s")
    ax.set_ylabel("attacker attempts started per second (symlog)")
    ax.grid(True, which="both", alpha=0.3)
    _label_clusters(ax, [(x, y, t.name) for x, y, t in drawn], spread=True)
    _legend(figure, _trial_handles(palette, [t for _, _, t in drawn]))
    return figure


def rate_bin_width(run: RunData) -> float:
    """One bin per client timeout: a silent strategy then shows its real rate (one attempt per
    timeout per connection) instead of isolated one-attempt spikes; at least two bins."""
    timeouts = [a["client_timeout"] for t in run.trials for a in t.attacks]
    width = max(timeouts, default=1.0)
    span = attack_span(run)
    return max(1.0, min(width, span / 2) if span else width)


def attack_span(run: RunData) -> float:
    """How long the attackers kept starting attempts (the latest start in any trial)."""
    last = [a["t_syn"] - t.start for t in run.trials for a in t.attacks if t.start is not None]
    return math.ceil(max(last)) if last else 0.0


def _bin_edges(span: float, width: float) -> np.ndarray:
    edges = [*np.arange(0.0, span, width), span]
    if len(edges) > 2 and edges[-1] - edges[-2] < width / 2:
        del edges[-2]  # a sliver of a last bin would make a noisy rate: merge it
    return np.array(edges if len(edges) > 1 else [0.0, width])


def _rate_floor(width: float) -> float:
    return 1.0 / width / 2


def _symlog_rates(ax: Axes, floor: float) -> None:
    """A log axis that still shows zero: linear below `floor`, ticks at powers of ten."""
    ax.set_yscale("symlog", linthresh=floor, linscale=0.5)
    top = ax.get_ylim()[1]
    # Powers of ten from about the floor (one far below it would crowd the tick at 0).
    powers = range(math.ceil(math.log10(floor / 2)), math.floor(math.log10(top)) + 1)
    ax.set_yticks([0.0, *(10.0**k for k in powers)])
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _scripts(attacker: dict) -> int:
    """Copies of the attacker's policy that run: one, or one per Locust worker."""
    return attacker.get("workers", 1) if attacker.get("engine") == "locust" else 1


def reference_rates(run: RunData) -> list[tuple[float, str]]:
    """The attackers' rate cap and the rate of one attempt per timeout, from scenario.toml."""
    attackers = run.scenario.get("attackers") or []
    cap = sum((a.get("rate") or 0) * _scripts(a) for a in attackers)
    slots = sum(a.get("concurrency", 1) * _scripts(a) / a.get("timeout", 10.0) for a in attackers)
    lines = []
    if cap:
        lines.append((float(cap), f"attackers' rate cap: {cap:g}/s"))
    if slots:
        lines.append((slots, f"one attempt per client timeout: {slots:.2g}/s"))
    return lines


# defender cost


DEFENDER_PANELS = (  # samples.csv column, label with unit, scale, whole numbers
    ("fds", "open file descriptors", 1.0, True),
    ("threads", "threads", 1.0, True),
    ("rss_bytes", "resident memory (MiB)", 1 / 2**20, False),
    ("cpu_s", "CPU time used since the start (s)", 1.0, False),
)


def defender_cost(run: RunData, palette: Palette) -> Figure:
    figure, axes = _figure(2, 2, (11, 7))
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
            _no_data(ax)
        if whole:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            # Memory and CPU from zero, so noise does not look like growth.
            ax.set_ylim(0, max(ax.get_ylim()[1] * 1.1, 0.01))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(TIME_LABEL, fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, alpha=0.3)
    _legend(figure, _trial_handles(palette, drawn))
    return figure


def kernel_sockets(run: RunData, palette: Palette) -> Figure:
    drawn = [t for t in run.trials if t.samples]
    cols = 3 if len(drawn) > 4 else max(1, len(drawn))
    rows = max(1, math.ceil(len(drawn) / cols))
    figure, axes = _figure(rows, cols, (11, 2.6 * rows + 1))
    for ax in axes.flat[len(drawn) :]:
        ax.set_axis_off()
    if not drawn:
        axes.flat[0].set_axis_on()
        _no_data(axes.flat[0])
    for ax, trial in zip(axes.flat, drawn, strict=False):
        _socket_panel(ax, trial)
        ax.set_title(trial.name, fontsize=10, color=palette.color(trial.name), fontweight="bold")
    handles: list = [Patch(color=c, label=label) for _, label, c in LIVE_STATES]
    handles += [
        Line2D([], [], color="black", linestyle="--", linewidth=2, label="orphans (no fd)"),
        Line2D([], [], color=TIME_WAIT_COLOUR, linewidth=1.5, label="TIME-WAIT (right axis)"),
    ]
    _legend(figure, handles, "socket state")
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


# legitimate clients


def legit_service(run: RunData, palette: Palette) -> Figure:
    figure, axes = _figure(2, 1, (10, 7))
    success, latency = axes[0][0], axes[1][0]
    drawn = [t for t in run.trials if t.legit and t.start is not None]
    width = 2.0
    for trial in drawn:
        style = palette(trial.name)
        offsets = np.array([a["t_syn"] - trial.start for a in trial.legit])
        ok = np.array([a.get("http_status") == 200 for a in trial.legit])
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
        times = [a["t_syn"] - trial.start for a in trial.legit if _served(a)]
        waits = [1000 * (a["t_end"] - a["t_syn"]) for a in trial.legit if _served(a)]
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
        _no_data(success, "no legitimate client in this run")
        _no_data(latency, "no legitimate client in this run")
    success.set_ylim(-5, 115)
    success.set_xlim(0, None)
    shares = [(t, sum(_served(a) for a in t.legit) / len(t.legit)) for t in drawn]
    _label_clusters(success, [(0.0, 100 * share, t.name) for t, share in shares], spread=True)
    success.set_ylabel(f"requests answered 200 (%, per {width:g} s)")
    success.set_title("success rate", fontsize=10)
    latency.set_yscale("log")
    latency.set_ylabel("latency, SYN to end (ms, log scale)")
    latency.set_title("latency of each answered request", fontsize=10)
    for ax in (success, latency):
        ax.set_xlabel(TIME_LABEL)
        ax.grid(True, which="both", alpha=0.3)
    _legend(figure, _trial_handles(palette, drawn))
    return figure


def _served(attempt: dict) -> bool:
    return attempt.get("http_status") == 200 and _num(attempt.get("t_end"))


# cost asymmetry


def cost_asymmetry(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = _figure(size=(10, 6))
    drawn = []
    for trial in run.trials:
        row = trial.row
        if row.get("error") or not _num(row.get("fd_seconds")):
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
        _no_data(ax)
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
    _label_clusters(ax, [(x, y, t.name) for (x, y), t in zip(points, drawn, strict=True)], 0.09)
    _legend(figure, _trial_handles(palette, drawn, line=False))
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


# outcomes


def outcome_classes(run: RunData, palette: Palette) -> Figure:
    drawn = [t for t in run.trials if t.row.get("outcomes")]
    figure, [[ax]] = _figure(size=(10, 1.2 + 0.45 * max(3, len(drawn))))
    rows = np.arange(len(drawn))
    present = [o for o in OUTCOME_COLOURS if any(o in t.row["outcomes"] for t in drawn)]
    present += sorted({o for t in drawn for o in t.row["outcomes"]} - set(OUTCOME_COLOURS))
    left = np.zeros(len(drawn))
    for outcome in present:
        counts = np.array([t.row["outcomes"].get(outcome, 0) for t in drawn], dtype=float)
        totals = np.array([sum(t.row["outcomes"].values()) for t in drawn], dtype=float)
        shares = 100 * counts / totals
        ax.barh(
            rows,
            shares,
            left=left,
            color=OUTCOME_COLOURS.get(outcome, "0.6"),
            label=outcome,
            edgecolor="white",
        )
        left += shares
    for y, trial in enumerate(drawn):
        ax.annotate(
            f"n = {sum(trial.row['outcomes'].values())}",
            (100, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(rows, [t.name for t in drawn], fontweight="bold")
    ax.tick_params(axis="y", pad=18, length=0)  # room for the strategy's marker
    beside = ax.get_yaxis_transform()  # x in axes fraction, y in data
    for y, trial in enumerate(drawn):  # the strategy's colour, as in every other figure
        style = palette(trial.name)
        ax.plot(
            -0.016,
            y,
            marker=style.marker,
            color=style.color,
            markersize=9,
            clip_on=False,
            transform=beside,
        )
    if not drawn:
        _no_data(ax)
    ax.invert_yaxis()  # the scenario's order, top to bottom
    ax.set_xlim(0, 112)
    ax.set_xlabel("share of the trial's attacker attempts (%)")
    _legend(
        figure, [Patch(color=OUTCOME_COLOURS.get(o, "0.6"), label=o) for o in present], "outcome"
    )
    return figure


def _num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


FIGURES = (
    FigureSpec(
        "hang_cdf",
        "Attacker hang time per attempt",
        "For each trial, the share of attempts (y) that left the attacker hanging at most x "
        "seconds: after its request, or, marked with an x, to connect for an attempt that "
        "never got to send one (a dropped SYN). A curve far right means every attempt cost the "
        "attacker its whole timeout.",
        hang_cdf,
    ),
    FigureSpec(
        "attempt_rate",
        "Attacker attempts per second over time",
        "Attempts started per second, binned by start time. A strategy that tells the attacker "
        "at once lets it run at its rate cap; a silent one holds it to one attempt per timeout.",
        attempt_rate,
    ),
    FigureSpec(
        "defender_cost",
        "Defender cost over time",
        "The server process as sampled during each trial: fds, threads, memory and CPU time.",
        defender_cost,
    ),
    FigureSpec(
        "kernel_sockets",
        "Defender kernel TCP sockets by state",
        "The defender host's TCP sockets (LISTEN excluded), stacked by state; the dashed line "
        "counts orphans, sockets the application closed that the kernel still keeps and no fd "
        "count shows.",
        kernel_sockets,
    ),
    FigureSpec(
        "legit_service",
        "Legitimate clients: is the service still up?",
        "The legitimate client beside the attack: share of its requests answered 200, and "
        "how long each answered request took.",
        legit_service,
    ),
    FigureSpec(
        "cost_asymmetry",
        "Cost asymmetry: attacker time wasted against defender fd-time",
        "One point per trial. Up is more attacker time wasted, left is fewer defender "
        "fd-seconds: the top-left corner is where a defender wants to be.",
        cost_asymmetry,
    ),
    FigureSpec(
        "outcomes",
        "What ended each attacker attempt",
        "Outcome classes per trial, as shares of its attempts (n: attempts). fin and rst tell "
        "the attacker at once; silent leaves it waiting for its own timeout.",
        outcome_classes,
    ),
)

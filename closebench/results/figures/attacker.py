"""The attacker's figures: hang times, attempts per second over time, outcome classes."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from closebench.results.figures.drawing import (
    TIME_LABEL,
    label_clusters,
    legend,
    new_figure,
    no_data,
    trial_handles,
)
from closebench.results.figures.palette import Palette
from closebench.results.run_directory import RunData

HANG_FLOOR_S = 1e-4  # hangs below 0.1 ms are drawn at 0.1 ms on the log axis
CDF_POINTS = 2000  # a CDF of more attempts is drawn through this many of them, evenly by rank
# Outcome colours: what the attacker learnt; silent (good for the defender) is green.
OUTCOME_COLOURS = {
    "fin": "#f0a030",
    "rst": "#d62728",
    "refused": "#9467bd",
    "icmp": "#17becf",
    "syn-timeout": "#98df8a",
    "silent": "#2ca02c",
}


def hang_cdf(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = new_figure()
    drawn = []
    connect_waits = False
    for trial in run.trials:
        # The hang after the request, or, for an attempt that never sent one, its wait to
        # connect (outcomes.waited: one rule for the summary and this), drawn as a connect wait.
        attacks = trial.attacks
        present = ~np.isnan(attacks.waited)
        if not present.any():
            continue
        order = np.argsort(attacks.waited[present], kind="stable")
        waits = np.maximum(HANG_FLOOR_S, attacks.waited[present][order].astype(np.float64))
        connect_only = attacks.connect_only[present][order]
        ranks = _cdf_ranks(len(waits))
        hangs, connects = waits[ranks], connect_only[ranks]
        style = palette(trial.name)
        shares = (ranks + 1) / len(waits)
        ax.step(
            [hangs[0], *hangs],
            [0, *shares],
            where="post",
            color=style.color,
            linestyle=style.linestyle,
            linewidth=2,
        )
        ax.plot(hangs[-1], 1.0, marker=style.marker, color=style.color)
        if connects.any():
            connect_waits = True
            ax.scatter(
                hangs[connects], shares[connects], marker="x", s=36, color=style.color, zorder=4
            )
        drawn.append((float(np.median(waits)), 0.5, trial))
    if not drawn:
        no_data(ax)
    timeouts = [t.attacks.client_timeout for _, _, t in drawn]
    for timeout in np.unique(np.concatenate(timeouts)) if timeouts else ():
        if not np.isfinite(timeout):
            continue  # another program's timeout, which closebench does not know
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
    label_clusters(ax, [(x, y, t.name) for x, y, t in drawn], 0.012, (0.62, 0.4, 0.18, 0.84))
    handles = trial_handles(palette, [t for _, _, t in drawn])
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
    legend(figure, handles)
    return figure


def _cdf_ranks(count: int) -> np.ndarray:
    """The ranks a CDF of `count` values is drawn through: every one, or CDF_POINTS of them
    evenly spread, the first and the last included."""
    if count <= CDF_POINTS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, CDF_POINTS).round().astype(np.int64))


def attempt_rate(run: RunData, palette: Palette) -> Figure:
    figure, [[ax]] = new_figure()
    width = rate_bin_width(run)
    span = attack_span(run)
    drawn = []
    for trial in run.trials:
        if trial.start is None or not len(trial.attacks):
            continue
        offsets = trial.attacks.t_syn - trial.start
        edges = _bin_edges(span, width)
        counts, _ = np.histogram(offsets, bins=edges)
        rates = counts / np.diff(edges)
        style = palette(trial.name)
        ax.stairs(rates, edges, color=style.color, linestyle=style.linestyle, linewidth=2)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, rates, marker=style.marker, linestyle="none", color=style.color)
        drawn.append((span / 2, len(offsets) / span, trial))
    if not drawn:
        no_data(ax)
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
    label_clusters(ax, [(x, y, t.name) for x, y, t in drawn], spread=True)
    legend(figure, trial_handles(palette, [t for _, _, t in drawn]))
    return figure


def rate_bin_width(run: RunData) -> float:
    """One bin per client timeout: a silent strategy then shows its real rate (one attempt per
    timeout per connection) instead of isolated one-attempt spikes; at least two bins."""
    timeouts = [t.attacks.client_timeout for t in run.trials if len(t.attacks)]
    known = [float(c[np.isfinite(c)].max()) for c in timeouts if np.isfinite(c).any()]
    width = max(known, default=1.0)
    span = attack_span(run)
    return max(1.0, min(width, span / 2) if span else width)


def attack_span(run: RunData) -> float:
    """How long the attackers kept starting attempts (the latest start in any trial)."""
    last = [t.attacks.t_syn.max() - t.start for t in run.trials if len(t.attacks)]
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


def outcome_classes(run: RunData, palette: Palette) -> Figure:
    drawn = [t for t in run.trials if t.row.get("outcomes")]
    figure, [[ax]] = new_figure(size=(10, 1.2 + 0.45 * max(3, len(drawn))))
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
        no_data(ax)
    ax.invert_yaxis()  # the scenario's order, top to bottom
    ax.set_xlim(0, 112)
    ax.set_xlabel("share of the trial's attacker attempts (%)")
    legend(
        figure, [Patch(color=OUTCOME_COLOURS.get(o, "0.6"), label=o) for o in present], "outcome"
    )
    return figure

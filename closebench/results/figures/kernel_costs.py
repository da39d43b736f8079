"""The defender's kernel over time: what /proc/net/sockstat and the TcpExt counters of its
namespace said at each sample (samples.csv's tcp_inuse, tcp_tw and the give-up counters)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from closebench.results.figures.drawing import (
    TIME_LABEL,
    legend,
    new_figure,
    no_data,
    trial_handles,
)
from closebench.results.figures.palette import Palette
from closebench.results.run_directory import RunData

PANELS = (  # samples.csv columns summed, title, cumulative counters drawn from the trial's start
    (("tcp_inuse",), "TCP sockets in use (sockstat)", False),
    (("tcp_tw",), "TIME-WAIT sockets (sockstat)", False),
    (("listen_overflows",), "listen queue overflows (TcpExt), since the start", True),
    (
        ("aborts_on_memory", "aborts_on_timeout"),
        "connections the kernel gave up on (TcpExt), since the start",
        True,
    ),
)


def kernel_counters(run: RunData, palette: Palette) -> Figure:
    figure, axes = new_figure(2, 2, (11, 7))
    drawn = [t for t in run.trials if t.samples and "tcp_inuse" in t.samples[0]]
    for ax, (columns, title, since_start) in zip(axes.flat, PANELS, strict=True):
        for trial in drawn:
            times = [s["t"] for s in trial.samples]
            values = [sum(s.get(c) or 0 for c in columns) for s in trial.samples]
            if since_start:
                values = [v - values[0] for v in values]
            style = palette(trial.name)
            ax.plot(times, values, color=style.color, linestyle=style.linestyle, linewidth=1.6)
        if not drawn:
            no_data(ax, "not sampled in this run")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(ax.get_ylim()[1], 1))  # counts from zero, a flat zero at the bottom
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(TIME_LABEL, fontsize=9)
        ax.grid(True, alpha=0.3)
    legend(figure, trial_handles(palette, drawn))
    return figure

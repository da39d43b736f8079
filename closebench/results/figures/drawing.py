"""What the figures share: a new figure, legends, labels of crowded curves, "no data" panels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from closebench.results.figures.palette import Palette, strategy_key
from closebench.results.run_directory import TrialData

TIME_LABEL = "time since the trial started (s)"


def new_figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (10, 5.5)):
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def no_data(ax: Axes, what: str = "no data in this run") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")


def legend(figure: Figure, handles: list, title: str | None = None) -> None:
    if handles:
        figure.legend(handles=handles, loc="outside right center", title=title, fontsize=9)


def trial_handles(palette: Palette, trials: Iterable[TrialData], line: bool = True) -> list:
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


def label_clusters(
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
        text: dict[str, Any] = {
            "ha": "right" if right else "left",
            "fontsize": 8.5,
            "color": "0.15",
            "bbox": box,
        }
        if stagger:
            height = stagger[index % len(stagger)]
            ax.annotate(
                wrap_names(names),
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
                wrap_names(names),
                anchor,
                xycoords="axes fraction",
                xytext=(-8 if right else 8, 6 if anchor[1] < 0.8 else -6),
                textcoords="offset points",
                va="bottom" if anchor[1] < 0.8 else "top",
                **text,
            )


def wrap_names(names: list[str], width: int = 34) -> str:
    lines = [""]
    for name in names:
        if lines[-1] and len(lines[-1]) + len(name) > width:
            lines[-1] += ","
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + name
    return "\n".join(lines)


def is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

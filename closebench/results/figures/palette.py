"""One colour, marker and line style per strategy, derived once from the trial order: a
strategy has the same colour in every figure and table. Repetitions ("graceful #2") share it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "h", "<", ">", "p")
LineStyle = Literal["-", "--", "-.", ":"]  # the ones matplotlib names so (its stubs check)
LINESTYLES: tuple[LineStyle, ...] = ("-", "--", "-.", ":")


def strategy_key(trial: str) -> str:
    """The colour key of a trial: its name without a repetition suffix (' #2') or a sweep's
    step (' @ concurrency 100': trials/scenario.py names them so)."""
    return re.sub(r"( @ \S+ \S+)?( #\d+)?$", "", trial)


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: LineStyle


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

"""The report's figures: matplotlib's Agg canvas (no pyplot: no window, no global state, safe
in the runner's threads), each saved as PNG and SVG.

Every figure takes its colours from one Palette built from the run's trial order, so a strategy
has the same colour everywhere. Repetitions of a strategy ("graceful #2") share its colour.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from closebench.core.safe_files import SafeDirectory
from closebench.results.figures.attacker import attempt_rate, hang_cdf, outcome_classes
from closebench.results.figures.defender import (
    cost_asymmetry,
    defender_cost,
    kernel_sockets,
    legit_service,
)
from closebench.results.figures.kernel_costs import kernel_counters
from closebench.results.figures.palette import Palette
from closebench.results.figures.sweep import sweep_attacker, sweep_defender, sweep_legit
from closebench.results.run_directory import RunData


@dataclass(frozen=True)
class FigureFile:
    name: str  # file stem under figures/
    title: str
    caption: str  # how to read it, shown under the figure in the HTML
    png: Path
    svg: Path
    svg_text: bytes = b""  # as written: the page embeds it without reading svg back by name


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[RunData, Palette], Figure]
    drawn_for: Callable[[RunData], bool] = lambda run: True  # which runs have this figure


def render_all(run: RunData, out: SafeDirectory) -> list[FigureFile]:
    """Draw every figure of the report into `out` as <name>.png and <name>.svg."""
    palette = Palette([t.name for t in run.trials])
    files = []
    for spec in FIGURES:
        if not spec.drawn_for(run):
            continue
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
        files.append(
            FigureFile(spec.name, spec.title, spec.caption, png_path, svg_path, svg.getvalue())
        )
    return files


# attacker hang time


# attacker attempts/s


# defender cost


# legitimate clients


# cost asymmetry


# outcomes


def _a_sweep(run: RunData) -> bool:
    return run.sweep is not None


FIGURES = (
    FigureSpec(
        "sweep_legit",
        "Legitimate service against the load",
        "A sweep: for each strategy, the legitimate client's success and p95 latency at each "
        "step; the dotted lines are the breaking thresholds, an X marks where each strategy "
        "broke (the breaking-point table says why). Hollow marks: steps the harness itself "
        "limited, never counted as breaking points.",
        sweep_legit,
        _a_sweep,
    ),
    FigureSpec(
        "sweep_defender",
        "Defender cost against the load",
        "A sweep: each strategy's peak fds, threads, memory, CPU time, TCP memory (the kernel "
        "counts it for the whole machine: trials running at once add theirs) and orphan "
        "sockets at each step.",
        sweep_defender,
        _a_sweep,
    ),
    FigureSpec(
        "sweep_attacker",
        "What the attacker got against the load",
        "A sweep: the attempts per second the attacker managed, and the median hang of an "
        "attempt, at each step.",
        sweep_attacker,
        _a_sweep,
    ),
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
        "kernel_counters",
        "The defender's kernel: sockets and give-ups over time",
        "Read in the defender's namespace at each sample: its TCP sockets in use and in "
        "TIME-WAIT (/proc/net/sockstat), and, counted from the trial's start, the connections "
        "its listen queue overflowed on and those the kernel gave up on (TcpExt "
        "TCPAbortOnMemory: too many orphans or tcp_mem; TCPAbortOnTimeout: retransmissions "
        "unanswered).",
        kernel_counters,
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

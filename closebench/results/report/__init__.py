"""The report of a run: index.html (templates/report.html.j2), summary.md and figures/, built
from the run directory's files.

Its render module (and with it matplotlib, about 1.5 s of CPU) is imported on first use: a command
that only prints a table (`closebench probe`, cli/tables.py imports columns.py) does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from closebench.results.report.render import (
        build_report,
        build_run_report,
        run_report_command,
    )

__all__ = ["build_report", "build_run_report", "run_report_command"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from closebench.results.report import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

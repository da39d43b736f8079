"""The report of a run: index.html (templates/report.html.j2), summary.md and figures/, built
from the run directory's files."""

from closebench.results.report.render import build_report, build_run_report, run_report_command

__all__ = ["build_report", "build_run_report", "run_report_command"]

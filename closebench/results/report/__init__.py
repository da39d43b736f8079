"""The report of a run: index.html (templates/report.html.j2), summary.md and figures/.

    columns.py   the tables: which summary figures, under which headers, formatted how
    ranking.py   which trial wins on each axis, within the noise
    prose.py     the reading: sentences and caveats derived from the numbers
    render.py    the page and summary.md, from the run directory's raw files

Loading the run directory: closebench/results/run_directory.py; the figures:
closebench/results/figures/.
"""

from closebench.results.report.render import build_report, build_run_report, run_report_command

__all__ = ["build_report", "build_run_report", "run_report_command"]

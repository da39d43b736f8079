"""The commands that read run directories: `closebench compare RUN_A RUN_B` and `closebench check
RUN --expect FILE` (what they compute: closebench/results/compare.py and check.py). As in
commands.py, each imports what it needs when it runs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from closebench.cli.output import warn_on_stderr


def add_compare_parser(commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="show how every summary figure changed between two runs",
        description="Compare two run directories trial by trial (repetitions `name #k` give the "
        "noise band), print the changes and write them as a self-contained HTML page.",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="the earlier run directory (the base)")
    compare.add_argument("run_b", metavar="RUN_B", help="the later run directory")
    compare.add_argument(
        "--html", metavar="FILE", help="write the page here (default: RUN_B/compare-<A>.html)"
    )
    compare.add_argument(
        "--only-flagged",
        action="store_true",
        help="print only the changes outside the noise (the page has every figure)",
    )


def run_compare_command(args, console: Console) -> int:
    from closebench.results.compare import compare_runs
    from closebench.results.compare_page import default_html_path, print_comparison, write_html
    from closebench.results.run_directory import load_summary

    run_a, run_b = (
        load_summary(args.run_a, warn_on_stderr),
        load_summary(args.run_b, warn_on_stderr),
    )
    comparison = compare_runs(run_a, run_b)
    print_comparison(comparison, console, args.only_flagged)
    page = write_html(comparison, Path(args.html) if args.html else default_html_path(comparison))
    console.print(f"page: {escape(str(page))}", highlight=False)
    return 0


def add_check_parser(commands) -> None:
    check = commands.add_parser(
        "check",
        help="check a run against expectations (exit 1 when one fails): a CI gate",
        description="Check a run directory's summary against expectations written in TOML (see "
        "docs/reference/expectations.md). Exit 0 when all hold, 1 when one fails, 2 on bad input.",
    )
    check.add_argument("run", metavar="RUN", help="the run directory to check")
    check.add_argument("--expect", required=True, metavar="FILE", help="the expectations (TOML)")
    check.add_argument(
        "--baseline", metavar="RUN_DIR", help="compare with this run (overrides `baseline`)"
    )
    check.add_argument("-v", "--verbose", action="store_true", help="list the kept ones too")


def run_check_command(args, console: Console) -> int:
    from closebench.results.check import print_verdicts, run_check

    verdicts = run_check(args.run, args.expect, args.baseline, warn_on_stderr)
    print_verdicts(verdicts, args.run, console, args.verbose)
    return 0 if all(verdict.ok for verdict in verdicts) else 1

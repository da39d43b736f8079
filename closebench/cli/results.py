"""The commands that read run directories: `closebench compare RUN_A RUN_B` and `closebench check
RUN --expect FILE` (what they compute: closebench/results/compare.py and check.py). As in
commands.py, each imports what it needs when it runs."""

from __future__ import annotations

import sys
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
        "--html", metavar="FILE", help="write the page here (default: ./compare-<A>-<B>.html)"
    )
    compare.add_argument(
        "--all", action="store_true", help="print every figure (default: those beyond the noise)"
    )
    compare.add_argument(
        "--only-flagged",
        action="store_true",
        help="the default now (only what moved beyond the noise); kept for older scripts",
    )
    compare.add_argument("--json", action="store_true", help="print a JSON document instead")
    compare.add_argument(
        "--fail-on",
        choices=("worse", "changed"),
        help="exit 1 on a regression (worse: a figure worse beyond the noise, a missing trial, a "
        "new outcome class, a moved breaking point; changed: any figure beyond the noise too)",
    )


PAGE_NOT_WRITTEN = 3  # exit status when the page cannot be written (1 is the gate's failure)


def run_compare_command(args, console: Console) -> int:
    import json

    from closebench.core.errors import ClosebenchError, UsageError
    from closebench.results.compare import compare_runs
    from closebench.results.compare_page import (
        comparison_json,
        default_html_path,
        print_comparison,
        write_html,
    )
    from closebench.results.run_directory import load_summary

    run_a, run_b = (
        load_summary(args.run_a, warn_on_stderr),
        load_summary(args.run_b, warn_on_stderr),
    )
    comparison = compare_runs(run_a, run_b)
    fail_on = args.fail_on or "worse"
    if args.json:
        print(json.dumps(comparison_json(comparison, args.all, fail_on), indent=1))
    else:
        print_comparison(comparison, console, args.all, fail_on)
    try:
        page = write_html(
            comparison, Path(args.html) if args.html else default_html_path(comparison)
        )
    except UsageError:
        raise  # a place refused (another user could change it): bad input, exit 2
    except ClosebenchError as error:  # the page failed where it was asked for (a full disk...)
        print(f"closebench compare: {error}", file=sys.stderr)
        return PAGE_NOT_WRITTEN
    if not args.json:
        console.print(f"page: {escape(str(page))}", highlight=False)
    failed = bool(args.fail_on) and bool(comparison.regressions(fail_on))
    return 1 if failed else 0


def add_check_parser(commands) -> None:
    check = commands.add_parser(
        "check",
        help="check a run against expectations (exit 1 when one fails): a CI gate",
        description="Check a run directory's summary against expectations written in TOML (see "
        "docs/reference/expectations.md). Exit 0 when all hold, 1 when one fails, 2 on bad input.",
    )
    check.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="the run directory to check (with "
        "--suggest-bounds: the unchanged runs to take bounds from)",
    )
    check.add_argument(
        "--expect",
        metavar="FILE",
        help="the expectations (TOML), or a shipped scenario's gate by name (ci)",
    )
    check.add_argument(
        "--baseline", metavar="RUN_DIR", help="compare with this run (overrides `baseline`)"
    )
    check.add_argument(
        "--suggest-bounds",
        action="store_true",
        help="print expectations (TOML) with absolute bounds from the RUNs given, each at the "
        "edge of the noise model's band, for `> expect.toml`",
    )
    check.add_argument("-v", "--verbose", action="store_true", help="list the kept ones too")


def run_check_command(args, console: Console) -> int:
    from closebench.core.errors import UsageError
    from closebench.results.gate import print_verdicts, run_check

    if args.suggest_bounds:
        from closebench.results.bounds import suggest_bounds
        from closebench.results.run_directory import load_summary

        if args.expect or args.baseline:
            raise UsageError("--suggest-bounds writes expectations: give it runs, no --expect")
        print(suggest_bounds([load_summary(run, warn_on_stderr) for run in args.runs]), end="")
        return 0
    if args.expect is None:
        raise UsageError("check needs --expect FILE (or --suggest-bounds RUN... to write one)")
    if len(args.runs) != 1:
        raise UsageError("check takes one run (several only with --suggest-bounds)")
    from closebench.trials.scenario import find_expectations

    expect = find_expectations(args.expect)
    verdicts = run_check(args.runs[0], expect, args.baseline, warn_on_stderr)
    print_verdicts(verdicts, args.runs[0], console, args.verbose)
    return 0 if all(verdict.ok for verdict in verdicts) else 1

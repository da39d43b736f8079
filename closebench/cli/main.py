"""The `closebench` command: parses the command line (parser.py) and runs the command
(commands.py; compare and check: results.py; the Locust ones: locust.py; sample: sample.py).
Every error is one line (output.py) and an exit status: 2 bad input, 1 a failure, 130
interrupted."""

from __future__ import annotations

import sys

from rich.console import Console

from closebench.cli.commands import (
    run_attack_command,
    run_export_command,
    run_lab_clean,
    run_probe,
    run_report,
    run_scenario_command,
    run_scenarios_command,
    run_verify_command,
)
from closebench.cli.last_resort import machine_fault
from closebench.cli.locust import check_locust_arguments, run_locust_command
from closebench.cli.output import print_error
from closebench.cli.parser import build_parser
from closebench.cli.results import run_check_command, run_compare_command
from closebench.core.background import terminate_like_ctrl_c
from closebench.core.errors import ClosebenchError
from closebench.lab.privileges import ensure_privileges

# The commands that only read files: no lab, no privileges.
READ_ONLY = ("compare", "check", "verify", "export", "scenarios", "report")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    terminate_like_ctrl_c()
    args = build_parser().parse_args(argv)
    # Piped output keeps full rows rather than wrapping them at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        # These only read files (run directories, scenarios): no lab, no privileges (READ_ONLY).
        if args.command == "compare":
            return run_compare_command(args, console)
        if args.command == "check":
            return run_check_command(args, console)
        if args.command == "verify":  # reads a run directory and its pcaps
            return run_verify_command(args, console)
        if args.command == "export":  # reads a run directory's attempts
            return run_export_command(args, errors)
        if args.command == "scenarios":
            return run_scenarios_command(args, console)
        if args.command == "report":  # reads a run directory too
            return run_report(args, console, errors)
        # Outside any lab: a worker or the sampler on their machines, an attack on a server
        # elsewhere. They must not re-execute in a namespace of their own (ensure_privileges).
        if args.command == "locust-worker":
            return run_locust_command(args, console)
        if args.command == "sample":
            from closebench.cli.sample import run_sample_command

            return run_sample_command(args, console)
        if args.command == "attack":
            check_locust_arguments(args)  # bad input is told before privileges are sought
            if args.target:
                return run_attack_command(args, console, errors)
        ensure_privileges(argv)
        if args.command == "probe":
            return run_probe(args, console, errors)
        if args.command == "run":
            return run_scenario_command(args, console, errors)
        if args.command == "attack":
            return run_attack_command(args, console, errors)
        if args.command == "lab":
            return run_lab_clean(console)
    except ClosebenchError as error:
        print_error(errors, str(error))
        return error.status
    except KeyboardInterrupt:
        lab = args.command not in READ_ONLY  # the read-only commands build no lab
        errors.print("closebench: interrupted" + ("; the lab was removed" if lab else ""))
        return 130
    except Exception as error:  # a fault of the machine or of closebench: one line, never a trace
        fault = machine_fault(error)
        error.__traceback__ = None  # what the failed work held (out of memory: all of it) goes
        # Plain, not through rich: with no memory left, even rich's imports fail.
        sys.stderr.write(f"closebench: error: {fault.message}\n")
        return fault.status
    return 2

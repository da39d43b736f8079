"""The `closebench` command (the entry point `closebench = closebench.cli:main`).

    main.py      dispatch; errors as one line and an exit status
    parser.py    every command's arguments and their checks
    commands.py  probe, attack, run, lab clean, scenarios, verify, report
    results.py   compare and check
    locust.py    the Locust engine's options, locust-worker, sample, attack --target
    render.py    the tables and progress displays for terminals
    output.py    errors and warnings on stderr

The top stage: imports any other, none imports it.
"""

from closebench.cli.main import main

__all__ = ["main"]

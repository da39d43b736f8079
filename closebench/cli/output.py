"""What the command tells on stderr: one line per error or warning."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def print_error(errors: Console, message: str) -> None:
    # Escaped: a message may hold brackets ([repair], [::1]) that rich would take for markup.
    errors.print(f"[bold red]closebench: error:[/] {escape(message)}", highlight=False)


def print_warning(errors: Console, message: str) -> None:
    errors.print(f"[yellow]closebench: warning:[/] {escape(message)}", highlight=False)


def warn_on_stderr(problem: str) -> None:
    print_warning(Console(stderr=True, soft_wrap=True), problem)

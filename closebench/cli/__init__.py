"""The `closebench` command (the entry point `closebench = closebench.cli:main`): its arguments,
its commands and their terminal output. The top stage: imports any other, none imports it."""

from closebench.cli.main import main

__all__ = ["main"]

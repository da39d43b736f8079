"""The `closebench` command (the entry point `closebench = harness.cli:main`)."""

from harness.cli.main import main

__all__ = ["main"]

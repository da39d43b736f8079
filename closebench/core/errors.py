"""Errors a user can act on: each message names the problem and the fix."""


class ClosebenchError(Exception):
    """An error shown to the user as one line, with exit status `status`."""

    status = 1


class UsageError(ClosebenchError):
    """Bad input: an option, a strategy, a port, a scenario."""

    status = 2


class EnvironmentProblem(ClosebenchError):
    """The machine lacks a privilege or a tool closebench needs."""

    status = 2


class LabError(ClosebenchError):
    """Building or driving the lab failed."""

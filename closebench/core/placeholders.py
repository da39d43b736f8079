"""Placeholders in a user's command line: `{port}`, `{url}`... replaced by closebench's values.

Plain replacement, not str.format: a command may hold braces of its own (a shell's `${VAR}`, an
awk program). A `{word}` that is not `${word}` is taken for a placeholder, so a misspelt one is an
error naming it and the ones allowed, before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def unknown_placeholder(argv: Iterable[str], allowed: Iterable[str]) -> str | None:
    """One line naming the first placeholder of `argv` not in `allowed` (None: all known)."""
    allowed = list(allowed)
    for part in argv:
        for name in PLACEHOLDER.findall(part):
            if name not in allowed:
                known = " ".join("{" + a + "}" for a in allowed)
                return f"unknown placeholder {{{name}}} in the command; allowed: {known}"
    return None


def fill(argv: Iterable[str], values: Mapping[str, str]) -> list[str]:
    """`argv` with each `{name}` of `values` replaced."""
    filled = []
    for part in argv:
        for name, value in values.items():
            part = part.replace("{" + name + "}", value)
        filled.append(part)
    return filled

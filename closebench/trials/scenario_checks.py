"""Checks of a scenario that its schema (trials/scenario.py) calls: the number of trials it asks
for, counted before anything is built, and whether the abuse path will work in every server."""

from __future__ import annotations

import re

from closebench.core.limits import MAX_ABUSE_PATH
from closebench.core.placeholders import unknown_placeholder


def trial_count(data: dict) -> int:
    """strategies x repetitions x sweep steps (x attackers, when apart), of a scenario's raw
    data (1 for what is missing or not yet valid: the fields' own checks tell those)."""

    def size(value: object) -> int:
        return len(value) if isinstance(value, list) and value else 1

    repetitions = data.get("repetitions", 1)
    repetitions = repetitions if isinstance(repetitions, int) and repetitions > 0 else 1
    sweep = data.get("sweep")
    steps = size(sweep.get("steps")) if isinstance(sweep, dict) else 1
    apart = size(data.get("attackers")) if data.get("attackers_apart") is True else 1
    return size(data.get("strategies")) * repetitions * steps * apart


def abuse_path_problem(value: str) -> str | None:
    """Why `value` cannot be the abuse path (a regular expression every server and peer is
    given), or None. Checked when the scenario is read, not when a server fails to start."""
    if not value:
        return "the abuse path is empty: give a regular expression such as ^/spam"
    if len(value.encode()) > MAX_ABUSE_PATH:
        return f"the abuse path is {len(value.encode()):,} bytes; at most {MAX_ABUSE_PATH:,}"
    if not value.isprintable():
        return "the abuse path is one line of visible text (no NUL, tab, CR or newline)"
    if value.startswith("-"):
        return "the abuse path must not start with - (it would read as an option)"
    try:
        re.compile(value)
    except re.error as error:
        return f"the abuse path is not a regular expression: {error}"
    return None


def tool_entry_problem(kind: str, tool: str | None, args: list[str] | None) -> str | None:
    """Why an [[attackers]] table's tool and args do not fit (None: they do)."""
    from closebench.attackers import COMMAND_PLACEHOLDERS
    from closebench.attackers.tool_profiles import PROFILES, TOOL_PLACEHOLDERS

    if (tool is not None or args is not None) and kind != "tool":
        return f'tool and args go with kind = "tool", not {kind!r}'
    if kind != "tool":
        return None
    if tool is None:
        return f'kind = "tool" needs tool = one of {", ".join(PROFILES)}'
    if tool not in PROFILES:
        return f"unknown tool {tool!r}; known: {', '.join(PROFILES)}"
    return unknown_placeholder(args or [], (*COMMAND_PLACEHOLDERS, *TOOL_PLACEHOLDERS))


def tools_missing(trials: list) -> dict[str, str]:
    """The trials (TrialConfig) whose tool is not installed, each with the line that says which
    package brings it: they keep their rows, skipped."""
    from closebench.attackers.tool_profiles import profile

    missing: dict[str, str] = {}
    for trial in trials:
        for spec in trial.attackers:
            if spec.kind == "tool" and spec.tool and not profile(spec.tool).installed():
                missing[trial.name] = profile(spec.tool).missing()
    return missing

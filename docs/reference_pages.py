"""The reference pages of the docs site, written from the code at build time so they cannot drift:
the command line from its argument parser, the strategies and their options, the summary row's
figures, the expectation file's keys, summary.json's row, and the packet engine's state diagram
from its transition table. gen_reference.py (run by mkdocs-gen-files) writes them into the site;
tests/test_docs.py uses missing_descriptions() to fail on a flag, strategy, option or key that has
no description. Nothing here is committed output: the pages exist only in a build."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import closebench
from closebench.attackers.packet import engine
from closebench.cli.parser import build_parser
from closebench.results import check, schema, summary_figures
from closebench.servers.strategies import STRATEGIES, Option

# Page path below docs/ -> the function that writes it.
PAGES: dict[str, Callable[[], str]] = {}


def page(path: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def register(write: Callable[[], str]) -> Callable[[], str]:
        PAGES[path] = write
        return write

    return register


def cell(text: object) -> str:
    """Text fit for one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


GENERATED = (
    "*This page is generated from the code ({source}) each time the site is built: "
    "what it says is what the code does.*\n"
)


# The command line -------------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command below `parser`, depth first, as ("run", parser), ("lab clean", parser)..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                for grandchild, sub in subcommands(child):
                    yield f"{name} {grandchild}", sub


def command_help(root: argparse.ArgumentParser, name: str) -> str:
    """The one-line help a command (e.g. "lab clean") was registered with below `root`."""
    parent, _, leaf = name.rpartition(" ")
    holder = dict(subcommands(root))[parent] if parent else root
    for action in holder._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == leaf:
                    return choice.help or ""
    return ""


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A command's own arguments: not --help, --version or its sub-commands."""
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [action for action in parser._actions if not isinstance(action, skip)]


def argument_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    names = ", ".join(action.option_strings)
    return f"{names} {metavar}" if takes_value else names


def argument_default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def argument_help(action: argparse.Action) -> str:
    text = action.help or ""
    if action.choices and not isinstance(action.choices, dict):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return text


@page("reference/cli.md")
def cli_page() -> str:
    parser = build_parser()
    out = ["# The command line\n", GENERATED.format(source="closebench/cli/parser.py"), ""]
    out.append(f"`closebench`: {parser.description}\n")
    out.append("Exit status: 0 ok, 1 a failed run or check, 2 bad input, 130 interrupted.\n")
    for name, sub in subcommands(parser):
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            continue  # a group of commands (`lab`): its commands have their own sections
        out.append(f"## closebench {name}\n")
        out.append(f"{command_help(parser, name)}\n")
        if sub.description:
            out.append(f"{sub.description}\n")
        usage = sub.format_usage().removeprefix("usage: ").strip()
        out.append(f"```\n{usage}\n```\n")
        rows = [
            [f"`{argument_name(a)}`", argument_default(a), argument_help(a)] for a in arguments(sub)
        ]
        if rows:
            out.append(table(["argument", "default", "what it does"], rows))
    return "\n".join(out)


def undescribed_arguments() -> list[str]:
    missing = []
    parser = build_parser()
    for name, sub in subcommands(parser):
        if not command_help(parser, name):
            missing.append(f"command `closebench {name}`")
        for action in arguments(sub):
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"`closebench {name} {argument_name(action)}`")
    return missing


# Strategies -------------------------------------------------------------------------------------


def option_allows(option: Option) -> str:
    if option.choices:
        return "one of " + ", ".join(f"`{choice}`" for choice in option.choices)
    if option.type is bool:
        return "`true` or `false`"
    limits = []
    if option.positive:
        limits.append("> 0")
    if option.minimum is not None:
        limits.append(f">= {option.minimum:g}")
    if option.maximum is not None:
        limits.append(f"<= {option.maximum:g}")
    kind = {int: "a whole number", float: "a number", str: "text"}.get(option.type, "a value")
    return kind + (" " + ", ".join(limits) if limits else "")


def option_default(option: Option) -> str:
    value = option.default
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


@page("reference/strategies.md")
def strategies_page() -> str:
    out = ["# Strategies\n", GENERATED.format(source="closebench/servers/strategies.py"), ""]
    out.append(
        "A strategy is named alone (`repair`) or with options (`repair:read_first=false`, "
        "`fw-drop:bantime=60,then=graceful`), on the command line (`-s`) and in scenarios. "
        "Kinds: `close` ends the abusive connection one way or another; `ban` also refuses the "
        "address's later connections for a while; `peer` runs real software (HAProxy, nginx, "
        "endlessh); `packet` answers an abusive address's packets before the kernel's TCP sees "
        "them.\n"
    )
    rows = [
        [f"[`{s.name}`](#{s.name})", s.kind, s.summary, ", ".join(o.name for o in s.options)]
        for s in STRATEGIES.values()
    ]
    out.append(table(["strategy", "kind", "what it does", "options"], rows))
    for strategy in STRATEGIES.values():
        out.append(f"## {strategy.name}\n")
        out.append(f"{strategy.summary} (kind `{strategy.kind}`).\n")
        if strategy.options:
            rows = [
                [f"`{o.name}`", option_default(o), option_allows(o), o.help]
                for o in strategy.options
            ]
            out.append(table(["option", "default", "allowed", "what it does"], rows))
        else:
            out.append("No options.\n")
    return "\n".join(out)


def undescribed_strategies() -> list[str]:
    missing = []
    for strategy in STRATEGIES.values():
        if not strategy.summary.strip():
            missing.append(f"strategy `{strategy.name}`")
        missing += [
            f"option `{strategy.name}:{o.name}`" for o in strategy.options if not o.help.strip()
        ]
    return missing


# Figures and expectation keys -------------------------------------------------------------------


@page("reference/figures.md")
def figures_page() -> str:
    out = ["# Figures\n", GENERATED.format(source="closebench/results/summary_figures.py"), ""]
    out.append(
        "The numeric figures of a summary row (one trial). `closebench compare` flags a change "
        "larger than the figure's resolution; `closebench check` bounds any of them "
        "(`<figure>_min`, `<figure>_max`, see [expectation keys](expectations.md)) and, with a "
        "baseline, fails a change in the worse direction beyond `max_regression_pct`. A figure "
        "with no worse direction is never a regression.\n"
    )
    rows = [
        [f"`{f.name}`", f.worse or "neither", f.resolution_text(), f.meaning]
        for f in summary_figures.FIGURES
    ]
    out.append(table(["figure", "worse when", "resolution", "what"], rows))
    return "\n".join(out)


def undescribed_figures() -> list[str]:
    known = {figure.name for figure in summary_figures.KNOWN_FIGURES}
    return [f"figure `{f.name}`" for f in summary_figures.FIGURES if f.name not in known]


@page("reference/expectations.md")
def expectations_page() -> str:
    out = ["# Expectation keys\n", GENERATED.format(source="closebench/results/check.py"), ""]
    out.append(
        "The keys of a `closebench check --expect FILE` file (TOML). Top-level keys apply to the "
        'whole file; every table is named after a trial, a sweep series, a strategy, or `"*"` '
        "(every trial). An unknown key is one error naming the nearest known one (exit 2).\n"
    )
    out.append("## Top level\n")
    rows = [[f"`{key}`", check.KEY_DESCRIPTIONS[key]] for key in check.TOP_LEVEL_KEYS]
    out.append(table(["key", "meaning"], rows))
    out.append("## In a table\n")
    rows = [[f"`{key}`", check.KEY_DESCRIPTIONS[key]] for key in check.TABLE_KEYS]
    rows += [[f"`{alias}`", f"short for `{full}`"] for alias, full in check.ALIASES.items()]
    rows.append(
        [
            "`<figure>_min`, `<figure>_max`",
            "the figure is at least / at most this number, inclusive: any name in "
            "[Figures](figures.md)",
        ]
    )
    out.append(table(["key", "meaning"], rows))
    out.append(f"Outcome classes a key may name: {', '.join(f'`{o}`' for o in check.OUTCOMES)}.\n")
    return "\n".join(out)


def undescribed_check_keys() -> list[str]:
    keys = (*check.TOP_LEVEL_KEYS, *check.TABLE_KEYS)
    described = getattr(check, "KEY_DESCRIPTIONS", {})
    return [f"check key `{key}`" for key in keys if not described.get(key, "").strip()]


# summary.json ----------------------------------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """A dataclass's fields' comments: the one at the end of the field's line, else the block of
    comment lines right above it (which may cover the fields that follow it)."""
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    block: list[str] = []  # the comment lines above the current run of fields
    after_comment = False
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            block = [*block, text.lstrip("# ")] if after_comment else [text.lstrip("# ")]
            after_comment = True
            continue
        after_comment = False
        name = text.split(":", 1)[0]
        if name not in names:
            continue
        _, hash_, trailing = text.partition("  # ")
        if hash_:
            comments[name] = trailing.strip()
            block = []  # a field with its own comment ends the block's run
        else:
            comments[name] = " ".join(block)
    return comments


@page("reference/summary-schema.md")
def schema_page() -> str:
    out = ["# summary.json\n", GENERATED.format(source="closebench/results/schema.py"), ""]
    out.append(
        f"`summary.json` is the document `{schema.SUMMARY_SCHEMA}`: the run's metadata and "
        "`rows`, one per trial. Fields are only ever added within a schema version; a reader "
        "takes a missing field's default. The other documents closebench writes: "
        f"`{schema.PROBE_SCHEMA}` (`closebench probe --json`), `{schema.ATTACK_SCHEMA}` "
        f"(`closebench attack --json`), `{schema.VERIFY_SCHEMA}` (`closebench verify --json`).\n"
    )
    out.append("## A row\n")
    out.append(inspect.cleandoc(schema.TrialRow.__doc__ or "") + "\n")
    hints = typing.get_type_hints(schema.TrialRow)
    comments = field_comments(schema.TrialRow)
    figures = summary_figures.FIGURE_BY_NAME
    rows = []
    for row_field in dataclasses.fields(schema.TrialRow):
        known = figures.get(row_field.name)
        meaning = known.meaning if known else comments.get(row_field.name, "")
        rows.append([f"`{row_field.name}`", schema._type_text(hints[row_field.name]), meaning])
    out.append(table(["field", "type", "what"], rows))
    return "\n".join(out)


# The packet engine ------------------------------------------------------------------------------


def entry_parts(entry: object) -> tuple[str, str, str]:
    """(action, next state, outcome) of a TRANSITIONS entry, whatever form the entry takes: a
    tuple (action, next state[, outcome]) or a record with those attributes."""
    if isinstance(entry, tuple):
        action, target, *rest = entry
        outcome = rest[0] if rest else None
    else:
        action = getattr(entry, "action", "")
        target = getattr(entry, "next_state", getattr(entry, "state", ""))
        outcome = getattr(entry, "outcome", None)
    return name_of(action), name_of(target), name_of(outcome) if outcome is not None else ""


def name_of(thing: object) -> str:
    if isinstance(thing, enum.Enum):
        return str(thing.value) if isinstance(thing.value, str) else thing.name
    return getattr(thing, "__name__", None) or str(thing)


def enum_comments(cls: type[enum.Enum]) -> dict[str, tuple[str, str]]:
    """An enum's members' (group, comment): the comment at the end of the member's line, and the
    comment line above the run of members it belongs to."""
    comments: dict[str, tuple[str, str]] = {}
    group = ""
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            group = text.lstrip("# ")
            continue
        name = text.split("=", 1)[0].strip()
        if name in cls.__members__:
            comments[name] = (group, text.partition("  # ")[2].strip())
    return comments


@page("reference/engine-states.md")
def engine_page() -> str:
    out = [
        "# The packet engine's states\n",
        GENERATED.format(
            source="closebench/attackers/packet/engine.py, TRANSITIONS; states.py; actions.py"
        ),
        "",
        "Every connection of the scapy and volume attackers runs through one state machine. "
        "This diagram and the tables below are drawn from its transition table, an entry per "
        "(state, event): the action that runs, the state that follows and, where the attempt "
        "ends, its outcome. An action may answer *ignore* (the event does not concern this "
        "connection: nothing changes) or hand on another event, fired at once. A pair that is "
        "not in the table is a hole: the tests' strict mode raises on it. See "
        "[The packet engine](../explanation/engine.md) for what it is for.\n",
    ]
    parts = {pair: entry_parts(entry) for pair, entry in engine.TRANSITIONS.items()}
    edges: dict[tuple[str, str], list[str]] = {}
    for (state, event), (_action, target, outcome) in parts.items():
        label = event.name + (f" / {outcome}" if outcome else "")
        edges.setdefault((state.name, target), []).append(label)
    out.append("```mermaid\nstateDiagram-v2\n    [*] --> SYN_SENT")
    for (source, target), labels in edges.items():
        out.append(f"    {source} --> {target}: {', '.join(labels)}")
    out.append("```\n")
    out.append("## Transitions\n")
    rows = [
        [state.name, event.name, f"`{action}`", target, outcome or ""]
        for (state, event), (action, target, outcome) in parts.items()
    ]
    out.append(table(["state", "event", "action", "next state", "outcome"], rows))
    out.append("## States\n")
    states = enum_comments(engine.State)
    out.append(table(["state", "meaning"], [[n, c] for n, (_, c) in states.items()]))
    out.append("## Events\n")
    groups: dict[str, list[list[object]]] = {}
    for name, (group, comment) in enum_comments(engine.Event).items():
        groups.setdefault(group, []).append([name, comment])
    for group, rows in groups.items():
        out.append(f"{group}\n")
        out.append(table(["event", "meaning"], rows))
    out.append("## Actions\n")
    actions = {entry_parts(entry)[0]: action_of(entry) for entry in engine.TRANSITIONS.values()}
    rows = [[f"`{name}`", first_line(action.__doc__)] for name, action in actions.items()]
    out.append(table(["action", "what it does"], rows))
    return "\n".join(out)


def action_of(entry: typing.Any) -> Callable[..., object]:
    """The action of a TRANSITIONS entry, a tuple or a record (as entry_parts reads them)."""
    return entry[0] if isinstance(entry, tuple) else entry.action


def first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def undescribed_engine_words() -> list[str]:
    """The engine's states, events and actions that the engine page would leave unexplained."""
    missing = [f"engine state {n}" for n, (_, c) in enum_comments(engine.State).items() if not c]
    missing += [f"engine event {n}" for n, (_, c) in enum_comments(engine.Event).items() if not c]
    for entry in engine.TRANSITIONS.values():
        action = action_of(entry)
        if not first_line(action.__doc__):
            missing.append(f"engine action {getattr(action, '__name__', action)}")
    return sorted(set(missing))


def missing_descriptions() -> list[str]:
    """Every flag, strategy, option, figure, check key and engine word without a description."""
    return (
        undescribed_arguments()
        + undescribed_strategies()
        + undescribed_figures()
        + undescribed_check_keys()
        + undescribed_engine_words()
    )


# The probe's default cases and the module map -----------------------------------------------------


@page("reference/probe-cases.md")
def probe_cases_page() -> str:
    from closebench.trials.probe import default_cases

    out = ["# The probe's cases\n", GENERATED.format(source="closebench/trials/probe.py"), ""]
    out.append(
        "`closebench probe` with no `-s` runs these cases, in this order: every strategy once "
        "with its defaults, plus the contrasts (a strategy with other options, a late request, "
        "or a router hop in between). Each is a lab of its own; `--jobs` run at once.\n"
    )
    rows = [
        [
            f"`{case.label}`",
            str(case.server.spec),
            "yes" if case.routed else "",
            f"{case.request_delay:g} s" if case.request_delay else "",
        ]
        for case in default_cases(8080, 4)
    ]
    out.append(table(["case", "strategy", "via a router", "request sent late"], rows))
    return "\n".join(out)


def module_summary(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(docstring.split("\n\n")[0].split())


@page("reference/modules.md")
def modules_page() -> str:
    root = Path(closebench.__file__).parent
    out = ["# Modules\n", GENERATED.format(source="each module's docstring"), ""]
    out.append(
        "`closebench/` is one folder per stage; a stage imports only its own and lower stages "
        "(`tests/test_layout.py` checks it): servers (0, imports nothing else of closebench) < "
        "core (1) < wire (2) < lab (3) < defender, attackers (4) < results (5) < trials (6) < "
        "cli, pytest_plugin (7). Everything under `closebench/` other than "
        "[the public surface](../development.md#the-public-surface) may move between releases.\n"
    )
    by_folder: dict[str, list[list[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        folder = str(relative.parent)
        by_folder.setdefault(folder, []).append([f"`{relative.name}`", module_summary(path)])
    for folder, rows in by_folder.items():
        out.append(f"## {folder}/\n")
        out.append(table(["module", "what it is"], rows))
    return "\n".join(out)


def undescribed_modules() -> list[str]:
    root = Path(closebench.__file__).parent
    return [
        f"module `{path.relative_to(root.parent)}`"
        for path in sorted(root.rglob("*.py"))
        if not module_summary(path)
    ]

"""The report of a run: figures, a self-contained index.html and a summary.md.

Built from the run directory's raw files alone (summary.json, attempts.jsonl, samples.csv,
scenario.toml), so `closebench report RUN_DIR` can rebuild it at any time, also for an interrupted
run or one whose trials failed. The reading of the result is derived from the numbers: nothing in
it is written for a particular strategy's outcome.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness import __version__
from harness.core.errors import UsageError
from harness.core.safe_files import SafeDirectory
from harness.defender.peers.notes import peer_note
from harness.results.records import ATTEMPTS_FILE, read_records
from harness.results.schema import check_rows
from servers.strategies import STRATEGIES

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LEGIT = "legit"  # the legitimate client's name in attempts.jsonl (harness/trials/trial.py)
RAW_FILES = ("summary.json", ATTEMPTS_FILE, "samples.csv", "scenario.toml", "run.log")
FD_NOISE = 1.0  # fd-seconds below this are a transient fd, not a held socket
FEW_ATTEMPTS = 5

# loading the run directory


@dataclass
class TrialData:
    row: dict  # the trial's row of summary.json
    attacks: list[dict] = field(default_factory=list)  # attacker attempts
    legit: list[dict] = field(default_factory=list)  # legitimate client attempts
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.row["trial"]

    @cached_property  # read once per attempt by the figures: computing it each time is quadratic
    def start(self) -> float | None:
        """The first SYN of the trial: time zero for attempts (the sampler starts with it)."""
        starts = [a["t_syn"] for a in self.attacks + self.legit if _number(a.get("t_syn"))]
        return min(starts) if starts else None

    @property
    def ok(self) -> bool:
        return not self.row.get("error")


@dataclass
class RunData:
    directory: Path
    summary: dict
    trials: list[TrialData]
    scenario_text: str | None
    scenario: dict  # scenario.toml parsed, {} when missing or unreadable
    problems: list[str]  # raw files that were missing or partly unreadable

    @property
    def meta(self) -> dict:
        return self.summary.get("meta") or {}

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))


def load_run(directory: Path) -> RunData:
    """Read a run directory; UsageError (one line) when it is not one."""
    summary = _load_summary(directory)
    checked = check_rows(summary["rows"])
    summary["rows"] = checked.rows
    trials = {row["trial"]: TrialData(row) for row in checked.rows}
    problems: list[str] = checked.problems
    _load_attempts(directory / ATTEMPTS_FILE, trials, problems)
    _load_samples(directory / "samples.csv", trials, problems)
    text, scenario = _load_scenario(directory / "scenario.toml", problems)
    return RunData(directory, summary, list(trials.values()), text, scenario, problems)


def _load_summary(directory: Path) -> dict:
    def refuse(why: str) -> UsageError:
        return UsageError(
            f"{directory} is not a closebench run directory ({why}); give one that "
            "`closebench run` wrote, e.g. reports/latest"
        )

    if not directory.is_dir():
        return _raise(refuse("no such directory"))
    path = directory / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _raise(refuse("no summary.json"))
    except (OSError, ValueError) as error:
        return _raise(refuse(f"summary.json is unreadable: {error}"))
    schema = summary.get("schema", "") if isinstance(summary, dict) else ""
    if not str(schema).startswith("closebench.summary/") or not isinstance(
        summary.get("rows"), list
    ):
        return _raise(refuse("summary.json is not a closebench.summary document"))
    return summary


def _raise(error: Exception):
    raise error


def _load_attempts(path: Path, trials: dict[str, TrialData], problems: list[str]) -> None:
    if not path.is_file():
        problems.append(f"{ATTEMPTS_FILE} is missing: no per-attempt figures")
        return
    found = read_records(path)
    bad = found.unreadable  # e.g. the last line of an interrupted write
    for record in found.records:
        name = record.get("trial")
        if not isinstance(name, str):
            bad += 1
            continue
        trial = trials.get(name)
        if trial is not None and _number(record.get("t_syn")):
            (trial.legit if record.get("attacker") == LEGIT else trial.attacks).append(record)
    if bad:
        problems.append(f"{ATTEMPTS_FILE}: {bad} unreadable line(s) skipped")


def _load_samples(path: Path, trials: dict[str, TrialData], problems: list[str]) -> None:
    if not path.is_file():
        problems.append("samples.csv is missing: no defender figures over time")
        return
    bad = 0
    with path.open(encoding="utf-8", errors="replace", newline="") as stream:
        lines = iter(stream)
        try:
            header = next(csv.reader([next(lines, "")]), [])
        except csv.Error:
            header = []
        # Line by line: samples.csv has one sample a line, and an unmatched quote must cost that
        # line only, not swallow the rest of the file into one field.
        for line in lines:
            try:
                values = next(csv.reader([line]), None)
                if values is None:
                    continue  # a blank line
                if len(values) != len(header):
                    raise ValueError(line)
                record = dict(zip(header, values, strict=True))
                # An empty cell was not measured (router_conntrack without a router).
                sample = {k: float(v) for k, v in record.items() if k != "trial" and k and v != ""}
            except (ValueError, csv.Error):  # csv.Error: a NUL byte
                bad += 1
                continue
            trial = trials.get(record.get("trial") or "")
            if trial is not None:
                trial.samples.append(sample)
    if bad:
        problems.append(f"samples.csv: {bad} unreadable row(s) skipped")


def _load_scenario(path: Path, problems: list[str]) -> tuple[str | None, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        problems.append("scenario.toml is missing")
        return None, {}
    except UnicodeDecodeError:
        problems.append("scenario.toml is not UTF-8 text: not shown")
        return None, {}
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        problems.append(f"scenario.toml is not valid TOML ({error})")
        return text, {}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# the summary table: one definition for the HTML and summary.md


def _fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


def _whole(value: float) -> str:
    return f"{value:.0f}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _millis(value: float) -> str:
    return f"{1000 * value:.1f}"


def _outcomes(value: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in value.items()) or "none"


@dataclass(frozen=True)
class Column:
    key: str  # the summary.json row field
    header: str
    group: str
    show: Callable[[object], str]
    missing: str = "-"  # shown for null

    def cell(self, row: dict) -> str:
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return self.missing
        return self.show(value)


COLUMNS = (
    Column("attempts", "attempts", "attacker", _whole),
    Column("attempts_per_s", "attempts/s", "attacker", _fixed(2)),
    Column("hang_median_s", "hang median (s)", "attacker", _fixed(3)),
    Column("hang_p95_s", "hang p95 (s)", "attacker", _fixed(3)),
    Column("hang_max_s", "hang max (s)", "attacker", _fixed(3)),
    Column("connect_wait_median_s", "connect wait median (s)", "attacker", _fixed(3)),
    Column("slot_median_s", "slot median (s)", "attacker", _fixed(3)),
    Column("outcomes", "outcomes", "attacker", _outcomes),
    Column("attacker_seconds_wasted", "seconds wasted", "attacker", _fixed(1)),
    Column("legit_requests", "requests", "legitimate clients", _whole),
    Column("legit_success_rate", "answered", "legitimate clients", _percent),
    Column("legit_latency_median_s", "latency median (ms)", "legitimate clients", _millis),
    Column("legit_latency_p95_s", "latency p95 (ms)", "legitimate clients", _millis),
    Column("peak_fds", "peak fds", "defender", _whole),
    Column("fd_seconds", "fd-s", "defender", _fixed(1)),
    Column("cpu_seconds", "CPU s", "defender", _fixed(2)),
    Column("peak_threads", "peak threads", "defender", _whole),
    Column("peak_rss_mb", "peak RSS (MiB)", "defender", _fixed(1)),
    Column("peak_orphans", "peak orphans", "defender", _whole),
    Column("peak_sockets", "peak sockets", "defender", _whole),
    Column("retransmissions", "retransmits", "defender", _whole),
    Column("packets_sent", "packets sent", "defender", _whole),
    Column("cpu_ms_per_attempt", "CPU ms per attempt", "defender", _fixed(2)),
    Column("wasted_per_fd_second", "wasted s per fd-s", "asymmetry", _fixed(2), "no fd held"),
    Column("wasted_per_cpu_second", "wasted s per CPU s", "asymmetry", _fixed(1), "no CPU"),
    Column("sampler_overhead", "sampler CPU", "harness", _percent),
)


# Shown as a third table when some trial banned (its `bans` is not null).
BAN_COLUMNS = (
    Column("bans", "bans", "bans", _whole),
    Column("banned_addresses", "addresses banned", "bans", _whole),
    Column("time_to_ban_median_s", "time to ban (s)", "bans", _fixed(3)),
    Column("attempts_before_ban", "attempts before ban", "bans", _whole),
    Column("attempts_per_s_after_ban", "attempts/s after ban", "bans", _fixed(2)),
    Column("syns_dropped", "SYNs dropped", "bans", _whole),
    Column("peak_bans_active", "peak bans active", "bans", _whole),
    Column("legit_wrongly_refused", "legit wrongly refused", "bans", _whole),
)

# Shown as a table of its own when some trial ran across the lab's router.
ROUTER_COLUMNS = (
    Column("peak_router_conntrack", "tracked at peak", "router", _whole),
    Column("peak_router_established", "established at peak", "router", _whole),
)

# The HTML splits the table in two so that it fits a screen; summary.md keeps one.
TABLES = (
    ("The attacker and the legitimate clients", ("attacker", "legitimate clients")),
    ("The defender and the cost asymmetry", ("defender", "asymmetry", "harness")),
)


def column_groups(columns: list[Column]) -> list[tuple[str, int]]:
    """(group, number of columns) in order, for a table's grouped header."""
    groups: list[tuple[str, int]] = []
    for column in columns:
        if groups and groups[-1][0] == column.group:
            groups[-1] = (column.group, groups[-1][1] + 1)
        else:
            groups.append((column.group, 1))
    return groups


def html_tables(trials: list[TrialData], palette) -> list[dict]:
    tables = []
    banned = any(t.row.get("bans") is not None for t in trials)
    routed = any(t.row.get("peak_router_conntrack") is not None for t in trials)
    extra = ((("Bans", ("bans",)),) if banned else ()) + (
        (("The router's connection tracking", ("router",)),) if routed else ()
    )
    for title, groups in TABLES + extra:
        columns = [c for c in COLUMNS + BAN_COLUMNS + ROUTER_COLUMNS if c.group in groups]
        rows = [
            {
                "name": t.name,
                "color": palette.color(t.name),
                "error": t.row.get("error"),
                "cells": [(c.cell(t.row), c.key == "outcomes") for c in columns],
            }
            for t in trials
        ]
        tables.append(
            {"title": title, "columns": columns, "groups": column_groups(columns), "rows": rows}
        )
    return tables


# the Locust engine's workers: one row per worker, from the attacker's entry in summary.json

WORKER_HEADERS = ("trial", "attacker", "worker", "addresses", "attempts", "attempts/s", "outcomes")


@dataclass(frozen=True)
class WorkerRow:
    trial: str
    attacker: str
    worker: str
    addresses: str
    attempts: str
    rate: str
    outcomes: str
    lost: str | None  # when and how the worker was lost, or None

    @property
    def cells(self) -> tuple[str, ...]:
        return (
            self.trial,
            self.attacker,
            self.worker,
            self.addresses,
            self.attempts,
            self.rate,
            self.outcomes,
        )


def worker_rows(trials: list[TrialData]) -> list[WorkerRow]:
    """Every Locust worker of every trial (attackers[name].attacker_cost.workers); entries a
    damaged summary.json made unreadable are left out."""
    rows = []
    for trial in trials:
        for name, attacker in (trial.row.get("attackers") or {}).items():
            cost = attacker.get("attacker_cost") if isinstance(attacker, dict) else None
            workers = cost.get("workers") if isinstance(cost, dict) else None
            for worker in workers if isinstance(workers, list) else []:
                row = _worker_row(trial.name, name, worker)
                if row is not None:
                    rows.append(row)
    return rows


def _worker_row(trial: str, attacker: str, worker: object) -> WorkerRow | None:
    if not isinstance(worker, dict) or not _number(worker.get("attempts_per_s")):
        return None
    lost = None
    if worker.get("lost"):
        when = worker.get("lost_s")
        lost = f"lost {when:.1f} s in: {worker['lost']}" if _number(when) else worker["lost"]
    return WorkerRow(
        trial=trial,
        attacker=attacker,
        worker=str(worker.get("worker", "?")),
        addresses=", ".join(map(str, worker.get("addresses") or [])) or "-",
        attempts=str(worker.get("attempts", "-")),
        rate=_fixed(2)(worker["attempts_per_s"]),
        outcomes=_outcomes(
            worker.get("outcomes") if isinstance(worker.get("outcomes"), dict) else {}
        ),
        lost=lost,
    )


# the reading: which trial wins on each axis, what each costs, what to beware of


@dataclass(frozen=True)
class Axis:
    key: str
    label: str
    lower_is_better: bool
    show: Callable[[float], str]
    absolute: float = 0.0  # differences up to this (or `relative` of the best) are a tie
    relative: float = 0.0

    def ties(self, value: float, best: float) -> bool:
        return abs(value - best) <= max(self.absolute, self.relative * abs(best)) + 1e-12


AXES = (
    Axis("attempts_per_s", "fewest attacker attempts/s", True, "{:.2f}/s".format, 0.0, 0.1),
    Axis("hang_median_s", "longest attacker hang", False, "{:.2f} s median".format, 0.05, 0.1),
    Axis("fd_seconds", "fewest defender fd-seconds", True, "{:.1f} fd-s".format, FD_NOISE),
    Axis("cpu_seconds", "least defender CPU", True, "{:.2f} CPU s".format, 0.02, 0.1),
    Axis("peak_threads", "fewest defender threads", True, "{:.0f} at peak".format),
    Axis("peak_orphans", "fewest orphan sockets", True, "{:.0f} at peak".format),
    Axis("legit_success_rate", "most legitimate requests answered", False, _percent, 0.01),
)


@dataclass
class AxisResult:
    axis: Axis
    winners: list[str]
    best: str  # the winners' value, shown
    losers: list[str]  # the worst trials
    worst: str
    all_tied: bool


def axis_results(trials: list[TrialData]) -> list[AxisResult]:
    results = []
    for axis in AXES:
        values = {t.name: t.row[axis.key] for t in trials if t.ok and _number(t.row.get(axis.key))}
        if not values:
            continue
        pick = min if axis.lower_is_better else max
        best, worst = pick(values.values()), (max if axis.lower_is_better else min)(values.values())
        winners = [name for name, value in values.items() if axis.ties(value, best)]
        losers = [n for n, v in values.items() if axis.ties(v, worst) and n not in winners]
        results.append(
            AxisResult(
                axis,
                winners,
                axis.show(best),
                losers,
                axis.show(worst),
                axis.ties(worst, best) or not losers,
            )
        )
    return results


def _better(axis: Axis, a: float, b: float) -> bool:
    """a is better than b beyond noise."""
    if axis.ties(a, b):
        return False
    return a < b if axis.lower_is_better else a > b


def undominated(trials: list[TrialData]) -> list[str]:
    """Trials no other trial beats on one axis without being worse on any."""
    ok = [t for t in trials if t.ok]

    def dominates(a: TrialData, b: TrialData) -> bool:
        shared = [x for x in AXES if _number(a.row.get(x.key)) and _number(b.row.get(x.key))]
        better = any(_better(x, a.row[x.key], b.row[x.key]) for x in shared)
        worse = any(_better(x, b.row[x.key], a.row[x.key]) for x in shared)
        return better and not worse

    return [b.name for b in ok if not any(dominates(a, b) for a in ok if a is not b)]


# What the defender cares about most first: the service staying up, then what it holds.
COST_PRIORITY = ("legit_success_rate", "fd_seconds", "peak_orphans", "cpu_seconds", "peak_threads")


def best_silencer(trials: list[TrialData], results: list[AxisResult]) -> tuple[list[str], str]:
    """Among the trials that slow the attacker most, those cheapest for the defender: keep the
    best on each cost in COST_PRIORITY in turn (ties within noise stay)."""
    rate = next((r for r in results if r.axis.key == "attempts_per_s"), None)
    if rate is None:
        return [], ""
    candidates = [t for t in trials if t.name in rate.winners]
    axes = {axis.key: axis for axis in AXES}
    for key in COST_PRIORITY:
        axis = axes[key]
        values = [t.row[key] for t in candidates if _number(t.row.get(key))]
        if not values:
            continue
        best = min(values) if axis.lower_is_better else max(values)
        candidates = [
            t for t in candidates if not _number(t.row.get(key)) or axis.ties(t.row[key], best)
        ]
    return [t.name for t in candidates], rate.best


@dataclass
class TrialReading:
    name: str
    color: str
    error: str | None
    sentences: list[str]
    wins: list[str]
    caveats: list[str]


def read_trial(trial: TrialData, run: RunData, results: list[AxisResult]) -> TrialReading:
    from harness.results.figures import Palette

    color = Palette([t.name for t in run.trials]).color(trial.name)
    row = trial.row
    if not trial.ok:
        return TrialReading(trial.name, color, row.get("error"), [], [], _caveats(trial, run))
    wins = [r.axis.label for r in results if trial.name in r.winners and not r.all_tied]
    sentences = [_attacker_sentence(trial, run), _defender_sentence(row)]
    if row.get("legit_requests"):
        sentences.append(
            f"Legitimate clients: {_percent(row['legit_success_rate'])} of "
            f"{row['legit_requests']} requests answered"
            + (
                f", median {_millis(row['legit_latency_median_s'])} ms."
                if _number(row.get("legit_latency_median_s"))
                else "."
            )
        )
    return TrialReading(trial.name, color, None, sentences, wins, _caveats(trial, run))


def _attacker_sentence(trial: TrialData, run: RunData) -> str:
    row = trial.row
    text = f"Attacker: {row['attempts']} attempts, {row['attempts_per_s']:.2f}/s"
    loudest = max(
        (t for t in run.trials if t.ok and _number(t.row.get("attempts_per_s"))),
        key=lambda t: t.row["attempts_per_s"],
        default=None,
    )
    rate = row["attempts_per_s"]
    if loudest and loudest is not trial and rate > 0 and loudest.row["attempts_per_s"] >= 2 * rate:
        text += f" ({loudest.row['attempts_per_s'] / rate:.0f} times fewer than {loudest.name})"
    if _number(row.get("runs_per_s")) and row.get("runs"):
        text += (
            f", from {row['runs']} command runs ({row['runs_per_s']:.2f}/s, "
            f"{row['attempts'] / row['runs']:.1f} connections each)"
        )
    if _number(row.get("hang_median_s")):
        text += f", each hanging {row['hang_median_s']:.2f} s (median)"
    waits = row.get("connect_waits") or 0
    if waits and _number(row.get("connect_wait_median_s")):
        text += (
            f"; {waits} of them sent no request, and count their wait to connect "
            f"(connect wait median {row['connect_wait_median_s']:.2f} s)"
        )
    text += f"; outcomes {_outcomes(row.get('outcomes') or {})}"
    return text + (
        f"; {row.get('attacker_seconds_wasted') or 0:.1f} s wasted in all, first SYN to end "
        "of every attempt."
    )


def _defender_sentence(row: dict) -> str:
    if not _number(row.get("fd_seconds")):
        return "Defender: not sampled."
    held = (
        "no fd held beyond noise"
        if row["fd_seconds"] < FD_NOISE
        else f"{row['fd_seconds']:.1f} fd-s held"
    )
    text = (
        f"Defender: {held} (peak {row['peak_fds']} fds), {row['cpu_seconds']:.2f} CPU s, "
        f"peak {row['peak_threads']} thread(s), {row['peak_rss_mb']:.1f} MiB, "
        f"{row['peak_orphans']} orphan socket(s) at peak"
    )
    ratio = row.get("wasted_per_fd_second")
    if row["fd_seconds"] >= FD_NOISE and _number(ratio):
        text += f"; the attacker lost {ratio:.2f} s per defender fd-second"
    return text + "."


def _caveats(trial: TrialData, run: RunData) -> list[str]:
    notes = [check(trial, run) for check in CAVEATS]
    return [note for note in notes if note]


def _spec(trial: TrialData):
    from servers.strategies import parse_spec

    try:
        return parse_spec(trial.row.get("strategy") or "")
    except ValueError:
        return None  # a user's own server command, or a strategy this version does not know


def _caveat_error(trial: TrialData, run: RunData) -> str | None:
    if trial.ok and not trial.row.get("complete", True):
        return "Interrupted: the figures cover the trial so far."
    return None


def _caveat_capability(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or spec.name != "repair":
        return None
    had = (run.meta.get("capabilities") or {}).get("CAP_NET_ADMIN")
    fallbacks = (trial.row.get("server_stats") or {}).get("repair_fallbacks") or 0
    text = "TCP_REPAIR needs CAP_NET_ADMIN in the server: " + (
        "this run had it." if had else "this run did not have it."
    )
    if fallbacks:
        text += f" {fallbacks} close(s) fell back to RST."
    return text


def _caveat_read_first(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or "read_first" not in spec.options or STRATEGIES[spec.name].peer:
        return None
    outcomes = trial.row.get("outcomes") or {}
    if spec.options["read_first"] is False:
        text = (
            "read_first=false acts at accept() on clients matched by address: a request that "
            "arrives later meets no socket and is answered with RST"
        )
        return text + (f" ({outcomes['rst']} RST here)." if outcomes.get("rst") else ".")
    # Silent without holding a socket: the socket is gone, so only reading first keeps a
    # request that arrives late from meeting no socket (and an RST).
    gone = _number(trial.row.get("fd_seconds")) and trial.row["fd_seconds"] < FD_NOISE
    if gone and outcomes and outcomes.get("silent", 0) >= sum(outcomes.values()) / 2:
        return (
            "Silent because it reads the request first (read_first); acting at accept() "
            "instead lets a late request meet no socket and get an RST."
        )
    return None


def _caveat_peer(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    return peer_note(spec, trial.row) if spec else None


def _caveat_router(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or spec.name not in ("ttl-drop", "rst-ttl"):
        return None
    packet = "FIN" if spec.name == "ttl-drop" else "RST"
    ttl = spec.options.get("ttl", 1)
    outcomes = trial.row.get("outcomes") or {}
    told = outcomes.get("fin", 0) + outcomes.get("rst", 0)
    if outcomes and told > sum(outcomes.values()) / 2:
        where = "via a router" if trial.row.get("routed") else "with no router hop"
        return f"The TTL-{ttl} {packet} reached the attacker {where}: here it is a plain close."
    if trial.row.get("routed"):
        return (
            f"Silent only because a router hop drops the TTL-{ttl} {packet}; on a direct link "
            "it arrives."
        )
    return None


def _caveat_router_state(trial: TrialData, run: RunData) -> str | None:
    """What the stateful router remembered, next to what the attacker's kernel held."""
    row = trial.row
    tracked, established = row.get("peak_router_conntrack"), row.get("peak_router_established")
    if not _number(tracked) or not _number(established):
        return None
    costs = [a.get("attacker_cost") or {} for a in (row.get("attackers") or {}).values()]
    client = max((c.get("peak_by_state", {}).get("ESTABLISHED", 0) for c in costs), default=0)
    text = (
        f"The router tracked up to {tracked} connection(s) to the server, {established} of "
        "them established at peak"
    )
    if client:
        text += f", while the attacker host held up to {client} established socket(s)"
        if established < client / 2:
            text += ": the router forgot connections the attacker still waited on"
    return text + "."


def _caveat_orphans(trial: TrialData, run: RunData) -> str | None:
    orphans = trial.row.get("peak_orphans") or 0
    lasting = orphan_seconds(trial.samples)
    if orphans <= 0 or (trial.samples and lasting < FD_NOISE):
        return None  # an orphan for a moment after close() is every close's lot
    retrans = trial.row.get("retransmissions") or 0
    text = f"Kept up to {orphans} orphan socket(s) in the kernel ({lasting:.0f} orphan-seconds)"
    text += ", which no fd count shows"
    return text + (f"; {retrans} retransmitted segments." if retrans else ".")


def orphan_seconds(samples: list[dict[str, float]]) -> float:
    """Orphan sockets integrated over time, like fd-seconds."""
    return sum(a.get("orphans", 0) * (b["t"] - a["t"]) for a, b in itertools.pairwise(samples))


def _caveat_fds(trial: TrialData, run: RunData) -> str | None:
    row = trial.row
    ratio = row.get("wasted_per_fd_second")
    if not _number(row.get("fd_seconds")) or row["fd_seconds"] < FD_NOISE:
        return None
    stats = row.get("server_stats") or {}
    nofile = (run.scenario.get("server") or {}).get("nofile")
    limit = f"RLIMIT_NOFILE ({nofile})" if nofile else "RLIMIT_NOFILE"
    if stats.get("refused_emfile"):
        return f"Ran out of fds: {stats['refused_emfile']} request(s) refused with 503."
    if stats.get("held"):
        return (
            f"Still held {stats['held']} socket(s) when the trial ended: they are never "
            f"released, so a long or concurrent attack exhausts {limit}."
        )
    if _number(ratio) and ratio <= 1.5:
        return (
            "Holds an fd for about every second the attacker waits: a concurrent attacker "
            f"makes it run into {limit}."
        )
    return None


def _caveat_threads(trial: TrialData, run: RunData) -> str | None:
    if not trial.samples:
        return None
    idle = trial.samples[0].get("threads", 0)
    peak = trial.row.get("peak_threads") or 0
    if peak > idle:
        return f"Threads grew from {idle:.0f} to {peak}: a thread per held socket."
    return None


def _caveat_data_first(trial: TrialData, run: RunData) -> str | None:
    got = sum(a.get("data_first") is True for a in trial.attacks)
    if got:
        return (
            f"{got} attempt(s) received response bytes before they ended: the attacker sees "
            "a live server."
        )
    return None


def _caveat_legit(trial: TrialData, run: RunData) -> str | None:
    rate = trial.row.get("legit_success_rate")
    if _number(rate) and rate < 0.99:
        return f"The service suffered: only {_percent(rate)} of legitimate requests were answered."
    return None


def _caveat_lost_workers(trial: TrialData, run: RunData) -> str | None:
    lost = [row for row in worker_rows([trial]) if row.lost]
    if not lost:
        return None
    which = "; ".join(f"{row.worker} ({row.lost}, {row.attempts} attempts kept)" for row in lost)
    return f"Locust worker(s) lost during the attack: {which}. The others attacked on."


CAVEATS = (
    _caveat_error,
    _caveat_lost_workers,
    _caveat_capability,
    _caveat_read_first,
    _caveat_peer,
    _caveat_router,
    _caveat_router_state,
    _caveat_orphans,
    _caveat_fds,
    _caveat_threads,
    _caveat_data_first,
    _caveat_legit,
)


@dataclass
class WireAgreement:
    """closebench verify's result as the report shows it: a verdict, a sentence, one row per
    trial."""

    ok: bool
    verified: bool  # False: verification could not run (nothing to verify, a failure)
    sentence: str
    rows: list[tuple[str, bool, str]]  # trial, ok, its sentence


def wire_agreement(run: RunData) -> WireAgreement | None:
    """None when the run was not verified (run --no-verify, or an older run)."""
    from harness.results.verify import agreement_text

    totals = run.summary.get("wire_agreement")
    if not isinstance(totals, dict):
        return None
    rows = [
        (t.name, bool(figures.get("ok")), agreement_text(figures))
        for t in run.trials
        if isinstance(figures := t.row.get("wire_agreement"), dict)
    ]
    verified = not totals.get("error")
    return WireAgreement(bool(totals.get("ok")), verified, agreement_text(totals), rows)


def run_notes(run: RunData) -> list[str]:
    """What a reader must know about the run as a whole before trusting its numbers."""
    notes = []
    if run.meta.get("stopped"):
        notes.append(f"The run stopped early: {run.meta['stopped']}.")
    if not run.complete:
        notes.append("The run is incomplete (interrupted, or a trial failed): see the rows.")
    failed = [t.name for t in run.trials if not t.ok]
    if failed:
        notes.append(f"No figures for: {', '.join(failed)} (their error is in the table).")
    few = [t.name for t in run.trials if t.ok and (t.row.get("attempts") or 0) < FEW_ATTEMPTS]
    if few:
        notes.append(
            f"Fewer than {FEW_ATTEMPTS} attacker attempts in {', '.join(few)}: their rates and "
            "hang times are rough; run for several client timeouts to measure them."
        )
    durations = [t.row["duration_s"] for t in run.trials if _number(t.row.get("duration_s"))]
    planned = run.scenario.get("duration")
    if _number(planned) and durations and max(durations) < 0.9 * planned:
        notes.append(
            f"The trials ran at most {max(durations):.0f} s though scenario.toml says "
            f"{planned:g} s (a --duration override)."
        )
    return notes + run.problems


# writing the report


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: list
    problems: list[str]  # raw files missing or partly unreadable: shown on the page too


def build_report(directory: Path) -> ReportFiles:
    """Rebuild figures/, index.html and summary.md of a run directory from its raw files.

    Written without following any link in the run directory (harness/core/safe_files.py): a run
    directory from elsewhere may have `index.html` or `figures` pointing outside it.
    """
    from harness.results.figures import render_all

    run = load_run(Path(directory))
    fix = "copy the run directory somewhere writable and run `closebench report` on the copy"
    with SafeDirectory(run.directory, fix) as out:
        with out.subdirectory("figures") as figure_directory:
            figures = render_all(run, figure_directory)
        context = _context(run, figures)
        page = _environment().get_template("report.html.j2").render(context)
        html = out.write("index.html", page)
        markdown = out.write("summary.md", summary_markdown(context))
    return ReportFiles(html, markdown, figures, run.problems)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value from the run is escaped: trial names, errors, TOML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _context(run: RunData, figures: list) -> dict:
    from harness.results.figures import Palette

    palette = Palette([t.name for t in run.trials])
    results = axis_results(run.trials)
    best, best_rate = best_silencer(run.trials, results)
    return {
        "version": __version__,
        "run": run,
        "meta": run.meta,
        "title": f"closebench: {run.meta.get('scenario_name') or run.directory.name}",
        "description": run.scenario.get("description", ""),
        "tables": html_tables(run.trials, palette),
        "workers": worker_rows(run.trials),
        "worker_headers": WORKER_HEADERS,
        "rows": [
            {
                "name": t.name,
                "color": palette.color(t.name),
                "error": t.row.get("error"),
                "cells": [c.cell(t.row) for c in COLUMNS],
            }
            for t in run.trials
        ],
        "axes": results,
        "undominated": undominated(run.trials),
        "best": best,
        "best_rate": best_rate,
        "readings": [read_trial(t, run, results) for t in run.trials],
        "notes": run_notes(run),
        "wire": wire_agreement(run),
        "figures": [_embedded(f) for f in figures],
        "raw": _raw_links(run.directory),
        "environment": _environment_rows(run.meta),
    }


def _embedded(figure) -> dict:
    svg = figure.svg.read_bytes()
    return {
        "name": figure.name,
        "title": figure.title,
        "caption": figure.caption,
        "src": "data:image/svg+xml;base64," + base64.b64encode(svg).decode(),
        "png": f"figures/{figure.png.name}",
        "svg": f"figures/{figure.svg.name}",
    }


def _raw_links(directory: Path) -> list[tuple[str, str]]:
    links = [(name, name) for name in (*RAW_FILES, "summary.md") if (directory / name).exists()]
    for folder, pattern in (("pcaps", "*.pcap"), ("locust", "*.csv")):  # locust: Locust's CSVs
        if (directory / folder).is_dir():
            found = sorted((directory / folder).glob(pattern))
            links += [(f"{folder}/{p.name}", f"{folder}/{p.name}") for p in found]
    return links


def _environment_rows(meta: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in meta.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
        rows.append((key, _plain(value)))
    return rows


def _plain(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def summary_markdown(context: dict) -> str:
    """The summary table and the winners, as GitHub markdown for a pull request."""
    meta = context["meta"]
    state = "complete" if context["run"].complete else "**incomplete**"
    lines = [
        f"## {_md(context['title'])}",
        "",
        f"Run {_md(meta.get('run_id', '?'))}, {state}, closebench "
        f"{_md(meta.get('closebench', '?'))}, kernel {_md(meta.get('kernel', '?'))}.",
        "",
        "| trial | " + " | ".join(_md(c.header) for c in COLUMNS) + " |",
        "| --- | " + " | ".join(":---" if c.key == "outcomes" else "---:" for c in COLUMNS) + " |",
    ]
    for row in context["rows"]:
        cells = [_md(f"error: {row['error']}")] + [""] * (len(COLUMNS) - 1)
        if not row["error"]:
            cells = [_md(cell) for cell in row["cells"]]
        lines.append(f"| {_md(row['name'])} | " + " | ".join(cells) + " |")
    if context["workers"]:
        lines += ["", "| " + " | ".join(context["worker_headers"]) + " | lost |"]
        lines.append("| --- " * (len(context["worker_headers"]) + 1) + "|")
        for worker in context["workers"]:
            cells = [_md(cell) for cell in (*worker.cells, worker.lost or "")]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for result in context["axes"]:
        who = "all alike" if result.all_tied else ", ".join(result.winners)
        lines.append(f"- {result.axis.label}: {_md(who)} ({_md(result.best)})")
    lines += [f"- note: {_md(note)}" for note in context["notes"]]
    wire = context["wire"]
    if wire is not None:
        verdict = "records agree with the wire" if wire.ok else "**records DISAGREE with the wire**"
        verdict = verdict if wire.verified else "records not verified against the wire"
        lines.append(f"- {verdict} (closebench verify): {_md(wire.sentence)}")
        lines += [f"  - {_md(name)}: {_md(text)}" for name, ok, text in wire.rows if not ok]
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    """Text safe in a markdown table cell: no formatting, no HTML, no column breaks."""
    escaped = "".join("\\" + c if c in "\\`*_[]<>|#" else c for c in str(text))
    return " ".join(escaped.split())


def run_report_command(directory: str, warn: Callable[[str], None]) -> Path:
    """`closebench report RUN_DIR`: rebuild the report, `warn` of each unreadable part of the
    run (the page says it too); returns the path of index.html."""
    files = build_report(Path(directory))
    for problem in files.problems:
        warn(problem)
    return files.html


def build_run_report(directory: Path, log: Callable[[str], None]) -> Path | None:
    """For `closebench run`: build the report; a failure is logged and never loses the run,
    whose raw files are already written (`closebench report` can retry)."""
    try:
        html = build_report(directory).html
    except Exception as error:
        log(f"report: failed: {type(error).__name__}: {error}")
        return None
    log(f"report: {html.name}, summary.md, figures/")
    return html

"""A run directory: its files, and how they are read (written by results/run_writing.py).

`closebench run` (closebench/trials/runner.py) and `closebench attack --out` write one; report,
compare, check and verify read it. Every reader goes through load_run(): one check of summary.json
against its schema (closebench/results/schema.py), then, for the report, the raw files beside it.

    reports/<run-id>/summary.json    one row per trial and the run's metadata
                     attempts/       every attempt, a Parquet file per trial
                                     (closebench/results/records.py)
                     samples.csv     the defender sampled over time
                     scenario.toml   the scenario as run
                     run.log, pcaps/<trial>.pcap, peers/, locust/
    reports/latest                   a link to the newest run
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow.compute as pc

from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.file_names import unique_names
from closebench.core.input_files import (
    SCENARIO_BYTES,
    SUMMARY_BYTES,
    TABLE_BYTES,
    open_regular,
    parse_toml,
    read_bytes,
    read_json,
)
from closebench.core.outcomes import LEGIT_CLIENT
from closebench.core.safe_files import SafeDirectory, shown
from closebench.core.summary import derived_times
from closebench.results.records import (
    ATTEMPTS_DIR,
    LEGACY_ATTEMPTS_FILE,
    SUFFIX,
    DamagedAttempts,
    attempt_files,
    export_jsonl,
    read_batches,
    read_legacy_jsonl,
    table_columns,
)
from closebench.results.schema import (
    SUMMARY_SCHEMAS_READ,
    check_breaking_points,
    check_rows,
)

SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.csv"
SCENARIO_FILE = "scenario.toml"
LOG_FILE = "run.log"
PCAP_DIR = (
    "pcaps"  # a trial's capture: closebench.core.file_names.unique_names of the trials, in order
)
LATEST = "latest"
# The raw files the report links to (attempts/*.parquet too); attempts.jsonl once exported.
RAW_FILES = (SUMMARY_FILE, SAMPLES_FILE, SCENARIO_FILE, LOG_FILE, LEGACY_ATTEMPTS_FILE)
REPETITION = re.compile(r"^(?P<name>.*) #(?P<k>\d+)$")


def is_number(value: object) -> TypeGuard[float]:
    """A finite number of a summary row or a record (true and false are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# reading


# What the report reads of each attempt (a few columns: not the records).
READ_COLUMNS = ["trial", "attacker", "t_syn", "t_established", "t_request", "t_end"]
READ_COLUMNS += ["client_timeout", "data_first", "http_status"]


# AttemptColumns' arrays and their types: float32 where a figure needs no more.
COLUMN_TYPES = {
    "t_syn": np.float64,  # Unix time of the first SYN
    "t_end": np.float64,  # NaN: no end
    "waited": np.float32,  # outcomes.waited(): the hang, or for no request the wait to connect
    "connect_only": np.bool_,  # no request was sent: `waited` is the wait to connect
    "client_timeout": np.float64,
    "http_status": np.float32,  # NaN: no status line
    "data_first": np.bool_,
}


@dataclass
class AttemptColumns:
    """Attempts as numpy arrays (COLUMN_TYPES), what the report draws from them: about 30 bytes
    an attempt, so that a run of millions of attempts is never a list of records."""

    t_syn: np.ndarray
    t_end: np.ndarray
    waited: np.ndarray
    connect_only: np.ndarray
    client_timeout: np.ndarray
    http_status: np.ndarray
    data_first: np.ndarray

    @classmethod
    def empty(cls) -> AttemptColumns:
        return cls(**{name: np.array([], dtype=kind) for name, kind in COLUMN_TYPES.items()})

    @classmethod
    def of(cls, columns: dict[str, np.ndarray]) -> AttemptColumns:
        """From records.table_columns() of READ_COLUMNS."""
        hang, connect, _ = derived_times(columns)
        values = {
            **columns,
            "waited": np.where(np.isnan(hang), connect, hang),
            "connect_only": np.isnan(columns["t_request"]),
        }
        return cls(**{name: values[name].astype(kind) for name, kind in COLUMN_TYPES.items()})

    @classmethod
    def concat(cls, parts: list[AttemptColumns]) -> AttemptColumns:
        if not parts:
            return cls.empty()
        return cls(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in COLUMN_TYPES}
        )

    def __len__(self) -> int:
        return len(self.t_syn)

    def where(self, mask: np.ndarray) -> AttemptColumns:
        return AttemptColumns(**{name: getattr(self, name)[mask] for name in COLUMN_TYPES})


@dataclass
class TrialData:
    row: dict  # the trial's row of summary.json
    attacks: AttemptColumns = field(default_factory=AttemptColumns.empty)  # attacker attempts
    legit: AttemptColumns = field(default_factory=AttemptColumns.empty)  # legitimate clients'
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.row["trial"]

    @cached_property
    def start(self) -> float | None:
        """The first SYN of the trial: time zero for attempts (the sampler starts with it)."""
        starts = np.concatenate([self.attacks.t_syn, self.legit.t_syn])
        return float(starts.min()) if len(starts) else None

    @property
    def ok(self) -> bool:
        return not self.row.get("error")


@dataclass
class RunData:
    directory: Path
    summary: dict  # summary.json, its rows checked
    trials: list[TrialData]
    scenario_text: str | None = None
    scenario: dict = field(default_factory=dict)  # scenario.toml parsed, {} when missing or bad
    problems: list[str] = field(default_factory=list)  # raw files missing or partly unreadable

    @property
    def name(self) -> str:
        return self.directory.resolve().name  # reports/latest names the run it points at

    @property
    def meta(self) -> dict:
        meta = self.summary.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def complete(self) -> bool:
        return self.summary.get("complete") is True

    @property
    def rows(self) -> list[dict]:
        return [trial.row for trial in self.trials]

    @property
    def breaking_points(self) -> dict[str, dict]:
        """{series: {axis, value, reason}} of a sweep (results/breaking_points.py); {}: none."""
        return self.summary.get("breaking_points") or {}

    @property
    def placement(self) -> dict | None:
        """Each side's CPUs as run (lab/cpus.py Placement.to_dict); None: not recorded (/1)."""
        placement = self.summary.get("placement")
        return placement if isinstance(placement, dict) else None

    @property
    def sweep(self) -> dict | None:
        """The scenario's [sweep] as run (axis, steps, thresholds); None: not a sweep."""
        sweep = self.summary.get("sweep")
        return sweep if isinstance(sweep, dict) and isinstance(sweep.get("axis"), str) else None

    def groups(self) -> dict[str, list[dict]]:
        """Rows by trial name, repetitions (`name #k`) together, in the run's order."""
        grouped: dict[str, list[dict]] = {}
        for row in self.rows:
            grouped.setdefault(group_name(row["trial"]), []).append(row)
        return grouped


def group_name(trial: str) -> str:
    match = REPETITION.match(trial)
    return match["name"] if match else trial


def load_run(path: str | Path, records: bool = True) -> RunData:
    """A run directory (or its summary.json), summary.json's rows checked against the schema
    (damaged rows are left out or marked failed, each problem one line in `problems`); with
    `records`, the attempts, samples and scenario too (a missing or damaged file is a problem,
    never an error). UsageError, one line, when it is not a run directory."""
    path = Path(path)
    directory = path.parent if path.name == SUMMARY_FILE and path.is_file() else path
    summary = _read_summary(directory)
    checked = check_rows(summary["rows"], SUMMARY_FILE)
    summary["rows"] = checked.rows
    summary["breaking_points"], bad_points = check_breaking_points(
        summary.get("breaking_points"), SUMMARY_FILE
    )
    trials = {row["trial"]: TrialData(row) for row in checked.rows}
    problems = checked.problems + bad_points
    run = RunData(directory, summary, list(trials.values()), problems=problems)
    if records:
        _read_attempts(directory, trials, run.problems)
        _read_samples(directory / SAMPLES_FILE, trials, run.problems)
        run.scenario_text, run.scenario = _read_scenario(directory / SCENARIO_FILE, run.problems)
    return run


def load_summary(path: str | Path, warn: Callable[[str], None] | None = None) -> RunData:
    """summary.json alone (compare, check): load_run() without the records, each damaged row
    told to `warn` with the file's path."""
    run = load_run(path, records=False)
    for problem in run.problems:
        if warn:
            warn(f"{run.directory}/{problem}")
    return run


def _read_summary(directory: Path) -> dict:
    def refuse(why: str) -> UsageError:
        return UsageError(
            f"{shown(directory)} is not a closebench run directory ({why}); give one that "
            "`closebench run` wrote, e.g. reports/latest"
        )

    if not directory.is_dir():
        raise refuse("no such directory")
    summary = read_json(directory / SUMMARY_FILE, SUMMARY_FILE, SUMMARY_BYTES, refuse)
    schema = summary.get("schema") if isinstance(summary, dict) else None
    if not isinstance(summary, dict) or schema not in SUMMARY_SCHEMAS_READ:
        known = " or ".join(map(repr, SUMMARY_SCHEMAS_READ))
        raise refuse(f"{SUMMARY_FILE} has schema {schema!r}, expected {known}")
    if not isinstance(summary.get("rows"), list):
        raise refuse(f"the rows of {SUMMARY_FILE} are not a list")
    return summary


def _read_attempts(directory: Path, trials: dict[str, TrialData], problems: list[str]) -> None:
    """Every trial's attempts, batch by batch, kept as AttemptColumns (a damaged file is a
    problem: its trials get no per-attempt figures)."""
    files = attempt_files(directory)
    legacy = directory / LEGACY_ATTEMPTS_FILE
    if not files and legacy.is_file():  # a run of closebench before Parquet
        table, bad = read_legacy_jsonl(legacy)
        if bad:
            problems.append(f"{LEGACY_ATTEMPTS_FILE}: {bad} unreadable line(s) skipped")
        batches = [table.select(READ_COLUMNS)]
        _collect(batches, trials)
        return
    if not files:
        problems.append(f"{ATTEMPTS_DIR}/ is missing: no per-attempt figures")
        return
    for path in files:
        try:
            _collect(read_batches([path], READ_COLUMNS), trials)
        except DamagedAttempts as error:
            problems.append(f"{error} (its trial's per-attempt figures are left out)")


def _collect(batches, trials: dict[str, TrialData]) -> None:
    parts: dict[str, tuple[list, list]] = {name: ([], []) for name in trials}
    for batch in batches:
        names = batch["trial"]
        for name in pc.unique(names).to_pylist():
            if name not in parts:
                continue
            mine = batch.filter(pc.equal(names, name))
            legit = pc.equal(mine["attacker"], LEGIT_CLIENT).to_numpy(zero_copy_only=False)
            columns = AttemptColumns.of(table_columns(mine))
            parts[name][0].append(columns.where(~legit))
            parts[name][1].append(columns.where(legit))
    for name, (attacks, legit) in parts.items():
        if attacks or legit:
            trial = trials[name]
            trial.attacks = AttemptColumns.concat([trial.attacks, *attacks])
            trial.legit = AttemptColumns.concat([trial.legit, *legit])


def _read_samples(path: Path, trials: dict[str, TrialData], problems: list[str]) -> None:
    if not os.path.lexists(path):
        problems.append(f"{SAMPLES_FILE} is missing: no defender figures over time")
        return
    try:
        fd = open_regular(path, SAMPLES_FILE, TABLE_BYTES)
    except ClosebenchError as error:
        problems.append(f"{SAMPLES_FILE} is not read: {error}")
        return
    bad = 0
    with open(fd, encoding="utf-8", errors="replace", newline="") as stream:
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
        problems.append(f"{SAMPLES_FILE}: {bad} unreadable row(s) skipped")


def _read_scenario(path: Path, problems: list[str]) -> tuple[str | None, dict]:
    if not os.path.lexists(path):
        problems.append(f"{SCENARIO_FILE} is missing")
        return None, {}
    try:
        text = read_bytes(path, SCENARIO_FILE, SCENARIO_BYTES).decode("utf-8")
    except ClosebenchError as error:
        problems.append(f"{SCENARIO_FILE} is not read: {error}")
        return None, {}
    except UnicodeDecodeError:
        problems.append(f"{SCENARIO_FILE} is not UTF-8 text: not shown")
        return None, {}
    try:
        return text, parse_toml(text, SCENARIO_FILE)
    except UsageError as error:
        problems.append(f"{SCENARIO_FILE} is not read ({error})")
        return text, {}


def export_attempts(directory: Path, out: str | None) -> tuple[Path | None, int]:
    """`closebench export RUN --jsonl`: the run's attempts as JSON lines (records.py's lines), in
    the run's trial order, into `out` ("-": standard output; None: attempts.jsonl in the run
    directory, written under a new name and renamed into place). The file written, and how many."""
    run = load_run(directory, records=False)
    files = attempt_files(run.directory)
    if not files:
        why = (
            f"it has {LEGACY_ATTEMPTS_FILE} already"
            if (run.directory / LEGACY_ATTEMPTS_FILE).is_file()
            else "no attempts were recorded"
        )
        raise UsageError(f"{run.directory} has no {ATTEMPTS_DIR}/ to export ({why})")
    order = {name: i for i, name in enumerate(unique_names([r["trial"] for r in run.rows], SUFFIX))}
    files.sort(key=lambda path: (order.get(path.name, len(order)), path.name))
    if out == "-":
        return None, export_jsonl(files, sys.stdout)
    target = Path(out) if out else run.directory / LEGACY_ATTEMPTS_FILE
    fix = "give another --out, or --out - for standard output"
    # Opened once and written through its descriptor; renamed into place, so a link named like
    # the target is replaced, not followed, and a damaged file or Ctrl-C leaves no half file.
    with SafeDirectory(target.parent, fix) as place, place.atomic(target.name) as stream:
        count = export_jsonl(files, stream)
    return target, count

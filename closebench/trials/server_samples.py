"""The server's side of an attack on a server outside the lab, merged into its run.

`closebench sample --pid PID --out DIR` (cli/sample.py) records them on the server's machine.
`closebench report RUN --samples DIR` merges them into the run by time: each trial that has no
samples of its own (an attack with --target) gets the samples from just before its first SYN to
its last attempt's end, its defender figures are computed from them as in the lab, and
summary.json and samples.csv are rewritten (whole files, never through a link).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from closebench.core.errors import UsageError
from closebench.core.safe_files import SafeDirectory
from closebench.defender.metrics import Sample, defender_cost
from closebench.results.run_directory import (
    SAMPLES_FILE,
    SUMMARY_FILE,
    AttemptColumns,
    TrialData,
    load_run,
)
from closebench.trials.rows import defender_figures

ABOUT = "sample.json"  # what was sampled: pid, process name, machine, rate, start
UNIX_T = "unix_t"


def merge_samples(run_directory: Path, samples_directory: Path) -> list[str]:
    """Merge `closebench sample`'s samples into the run's trials that have none of their own;
    returns the names of the trials that got samples."""
    rows = _read_samples(samples_directory)
    run = load_run(run_directory)
    about = _about(samples_directory)
    merged_before = set((run.meta.get("server_samples") or {}).get("trials", []))
    merged: dict[str, list[tuple[float, dict]]] = {}
    for trial in run.trials:
        row, span = trial.row, _attempt_window(trial)
        if span is None or (row.get("peak_fds") is not None and trial.name not in merged_before):
            continue
        window = _window(rows, *span)
        if window:
            merged[trial.name] = window
            wasted = row.get("attacker_seconds_wasted") or 0.0
            samples = [Sample.from_row(values) for _, values in window]
            cost = defender_cost(samples)
            assert cost is not None
            row.update(defender_figures(cost, wasted, row.get("attempts") or 0))
    if not merged:
        return []
    run.summary.setdefault("meta", {})["server_samples"] = {**about, "trials": sorted(merged)}
    with SafeDirectory(run_directory, "copy the run directory somewhere writable") as out:
        out.write(SAMPLES_FILE, _merged_csv(run_directory / SAMPLES_FILE, merged))
        out.write(SUMMARY_FILE, json.dumps(run.summary, indent=2) + "\n")
    return sorted(merged)


def _read_samples(directory: Path) -> list[tuple[float, dict]]:
    path = directory / SAMPLES_FILE
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            if UNIX_T not in (reader.fieldnames or []):
                raise UsageError(f"{path} is not from `closebench sample` (no {UNIX_T} column)")
            rows = []
            for values in reader:
                try:
                    rows.append((float(values.pop(UNIX_T)), values))
                except (TypeError, ValueError):
                    continue  # a line cut short when the sampler was killed
    except OSError as error:
        raise UsageError(f"--samples: cannot read {path} ({error.strerror})") from None
    return sorted(rows, key=lambda pair: pair[0])


def _about(directory: Path) -> dict:
    try:
        about = json.loads((directory / ABOUT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        about = {}
    return {"from": str(directory), **{k: about.get(k) for k in ("pid", "name", "host")}}


def _attempt_window(trial: TrialData) -> tuple[float, float] | None:
    """The trial's first SYN and last end, from its attempts (attackers' and legitimate)."""
    records = AttemptColumns.concat([trial.attacks, trial.legit])
    if not len(records):
        return None
    ends = np.where(np.isnan(records.t_end), records.t_syn, records.t_end)
    return float(records.t_syn.min()), float(ends.max())


def _window(rows: list[tuple[float, dict]], start: float, end: float) -> list[tuple[float, dict]]:
    """The samples from the last one at or before `start` (the idle baseline) to the first one
    at or after `end`, their `t` counted from that baseline."""
    before = [i for i, (t, _) in enumerate(rows) if t <= start]
    after = [i for i, (t, _) in enumerate(rows) if t >= end]
    first = before[-1] if before else 0
    last = after[0] if after else len(rows) - 1
    chosen = rows[first : last + 1]
    if not chosen or chosen[0][0] > end or chosen[-1][0] < start:
        return []  # sampled at another time than the attack
    origin = chosen[0][0]
    return [(t, {**values, "t": f"{t - origin:.6f}"}) for t, values in chosen]


def _merged_csv(path: Path, merged: dict[str, list[tuple[float, dict]]]) -> str:
    """samples.csv with the merged trials' rows replaced by their new samples."""
    kept: list[dict] = []
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as stream:
            kept = [row for row in csv.DictReader(stream) if row.get("trial") not in merged]
    new = [{"trial": trial, **values} for trial, window in merged.items() for _, values in window]
    fields = list(new[0])
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    # Rows of an older version may lack the newer columns: those counted nothing then.
    writer.writerows({field: row.get(field, "0") for field in fields} for row in kept + new)
    return text.getvalue()

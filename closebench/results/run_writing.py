"""A new run directory and the files of a run written into it, through descriptors opened once
(closebench/core/safe_files.py): the writing side of results/run_directory.py, which reads them."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.file_names import safe_stem
from closebench.core.safe_files import SafeDirectory, write_error
from closebench.results.run_directory import LATEST, SAMPLES_FILE, SUMMARY_FILE


@dataclass
class NewRun:
    """A run directory made under --out, both held open: every file of the run is written
    through `run` (closebench/core/safe_files.py), `latest` through `out`."""

    out: SafeDirectory
    run: SafeDirectory

    @property
    def path(self) -> Path:
        return self.run.path

    def point_latest(self) -> None:
        self.out.symlink(self.run.path.name, LATEST)

    def close(self) -> None:
        self.run.close()
        self.out.close()


def new_run_directory(out: Path, scenario: str, started: datetime) -> NewRun:
    """A new directory under --out, once --out has been checked: nothing starts on bad input.
    --out is opened once (closebench/core/trusted_paths.py: refused where another user could
    change it), the run directory made and opened through it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory: give a directory for the runs")
    parent = SafeDirectory(out, "give another --out", create=True)
    try:
        _check_latest(parent)
        base = f"{started.strftime('%Y%m%d-%H%M%S')}-{safe_stem(scenario, 'run')}"
        for attempt in range(100):
            try:
                run = parent.new_subdirectory(base if attempt == 0 else f"{base}-{attempt}")
            except FileExistsError:
                continue  # taken, by an earlier run or by anyone who can write to --out
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    continue  # replaced between mkdir and open: never followed, another name
                raise
            return NewRun(parent, run)
    except OSError as error:
        parent.close()
        raise write_error(out, error, "give another --out") from None
    except BaseException:
        parent.close()
        raise
    parent.close()
    raise ClosebenchError(
        f"cannot create a run directory under {out}: every name was taken or replaced as it was "
        "made; give another --out"
    )


def _check_latest(out: SafeDirectory) -> None:
    latest = out.path / LATEST
    try:
        found = os.stat(LATEST, dir_fd=out.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(found.st_mode):
        raise UsageError(
            f"{latest} is a real {'directory' if stat.S_ISDIR(found.st_mode) else 'file'}, not "
            "the link closebench keeps to the newest run: move it away, or give another --out"
        )


def write_summary(directory: Path | SafeDirectory, summary: dict) -> None:
    """summary.json, whole or not at all: readers never see half of it."""
    with _opened(directory) as run:
        run.write(SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


@contextlib.contextmanager
def _opened(directory: Path | SafeDirectory) -> Iterator[SafeDirectory]:
    """The directory as a SafeDirectory: one given is used (and left open), a path opened."""
    if isinstance(directory, SafeDirectory):
        yield directory
        return
    with SafeDirectory(directory) as opened:
        yield opened


def write_samples(directory: Path | SafeDirectory, trials: Iterable[tuple[str, list]]) -> None:
    """samples.csv: every trial's defender samples (closebench.defender.metrics.Sample), a
    line each."""
    with _opened(directory) as run, run.atomic(SAMPLES_FILE) as samples:
        writer = None
        for trial, trial_samples in trials:
            writer = _write_samples(samples, writer, trial, trial_samples)


def _write_samples(stream, writer, trial: str, samples: list) -> csv.DictWriter | None:
    for sample in samples:
        row = {"trial": trial, **sample.row()}
        if writer is None:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)
    return writer

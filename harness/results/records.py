"""Attempt records on disk: the one place that writes and reads them.

A run directory (harness/results/run_directory.py) keeps every attempt in `attempts.jsonl`, one
JSON object a line (Attempt.to_dict() plus the trial's name); `closebench attack --records FILE`
writes the same lines without it. Another format (Parquet, say) would be added here, next to this
one, and everything that reads records goes through read_records().
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.core.outcomes import Attempt


def write_records(stream: IO[str], attempts: Iterable[Attempt], trial: str | None = None) -> None:
    """Append `attempts` to `stream` as JSON lines, each tagged with `trial` when given."""
    for attempt in attempts:
        record = attempt.to_dict() if trial is None else {"trial": trial, **attempt.to_dict()}
        stream.write(json.dumps(record) + "\n")


@dataclass
class Records:
    """The records of a file, and how many of its lines could not be read."""

    records: list[dict] = field(default_factory=list)
    unreadable: int = 0  # e.g. the last line of an interrupted write


def read_records(path: Path) -> Records:
    """Every readable record of a JSON-lines file (FileNotFoundError when there is none)."""
    found = Records()
    # Bytes that are not UTF-8 become U+FFFD: that line may then fail to parse, not the file.
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                found.unreadable += 1
                continue
            if isinstance(record, dict):
                found.records.append(record)
            else:
                found.unreadable += 1
    return found

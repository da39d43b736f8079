"""Attempt records on disk: the one module that writes and reads them.

A run directory keeps its attempts in Parquet, one file per trial, `attempts/<trial>.parquet`
(named like the trial's pcap), written in batches of WRITE_ROWS while the trial runs: the runner
never holds a trial's attempts in memory, and a trial's file is whole (its footer written) as soon
as the trial ends. Its columns are `trial` and the fields of the attempt record
(closebench.core.outcomes.Attempt), in the record's order, their types taken from its annotations
(ATTEMPT_SCHEMA). The derived times (hang_s, connect_wait_s, slot_s) are not stored: with_derived()
computes them, as Attempt.to_dict() does.

JSON lines, Attempt.to_dict() plus `trial`, one a line: `closebench export RUN --jsonl` writes
them from the Parquet files, `closebench attack --records FILE` from the records in memory (both
through write_records()). A run directory of closebench before Parquet has attempts.jsonl
instead: read_legacy_jsonl() still reads it, into the same columns.

Readers go through read_batches() (the whole of a run, batch by batch: memory does not grow with
the attempts) or read_table() (one trial's file); a file that is not Parquet, or was cut short
(a killed run), is one DamagedAttempts error naming the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import threading
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from closebench.core import outcomes
from closebench.core.errors import ClosebenchError
from closebench.core.input_files import TABLE_BYTES, check_regular
from closebench.core.outcomes import Attempt
from closebench.core.safe_files import shown

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter


def _give_freed_memory_back() -> None:
    """Make the memory of a batch go back to the system once it is read: Arrow's own allocator
    (mimalloc) and glibc's heap both keep what was freed for reuse, which left 113 MB resident
    after reading 461,000 attempts a batch at a time (55 MB with this). glibc only: a column
    buffer of 128 KiB or more is then mapped on its own and unmapped when freed."""
    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no mallopt)
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1 << 17)


_give_freed_memory_back()

ATTEMPTS_DIR = "attempts"  # in a run directory: <trial>.parquet per trial
LEGACY_ATTEMPTS_FILE = "attempts.jsonl"  # run directories of closebench before Parquet
SUFFIX = ".parquet"
WRITE_ROWS = 16_384  # rows a writer buffers (about 25 MB as Python values), one row group each
BATCH_ROWS = 65_536  # rows a reader takes at a time (about 5 MB of Arrow columns)
COMPRESSION = "zstd"
DERIVED = ("hang_s", "connect_wait_s", "slot_s")
# Fields added to the record since run directories were first written in Parquet: an older file
# without them is read with them null.
ADDED_LATER = ("closed_by", "excerpt")

_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _arrow_type(annotation: type) -> tuple[pa.DataType, bool]:
    """The Arrow type of an Attempt field's annotation, and whether it may be null."""
    args = typing.get_args(annotation)
    nullable = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation)
    if isinstance(base, type) and issubclass(base, str):  # Outcome, a StrEnum: its value
        base = str
    return _ARROW_TYPES[base.__name__], nullable


def _schema() -> pa.Schema:
    hints = typing.get_type_hints(Attempt, vars(outcomes))
    columns = [pa.field("trial", pa.string(), nullable=False)]
    for item in fields(Attempt):
        kind, nullable = _arrow_type(hints[item.name])
        columns.append(pa.field(item.name, kind, nullable=nullable))
    return pa.schema(columns)


ATTEMPT_SCHEMA = _schema()
FIELD_NAMES = tuple(f.name for f in fields(Attempt))
FLOAT_COLUMNS = [f.name for f in ATTEMPT_SCHEMA if f.type == pa.float64()]


class DamagedAttempts(ClosebenchError):
    """An attempts file that cannot be read: cut short, or not Parquet."""


def damaged(path: Path, error: Exception) -> DamagedAttempts:
    return DamagedAttempts(
        f"{path} is not a readable Parquet file ({error}): it was cut short (a run killed before "
        "its trial ended, or a full disk) or is not closebench's; re-run the scenario"
    )


# writing


class AttemptWriter:
    """One trial's attempts file, written in batches as the attempts come (from any thread).

    The file is created with its first batch, or at close() when there were fewer: a trial that
    starts on a disk that has just filled up writes nothing until the run, stopping, has freed
    its reserve (closebench/trials/disk_space.py).
    """

    def __init__(self, path: str | Path, trial: str, batch_rows: int = WRITE_ROWS) -> None:
        self.path = Path(path)
        self.trial = trial
        self.batch_rows = batch_rows
        self.written = 0  # rows on disk (in closed batches)
        # A failed write (a full disk) is kept for close(): add() runs in the attackers' threads,
        # which must not die of it. The rows after it are dropped.
        self.error: OSError | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, list] = {name: [] for name in FIELD_NAMES}
        self._writer: pq.ParquetWriter | None = None
        self._stream: IO[bytes] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending["t_syn"])

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            for name, values in self._pending.items():
                values.append(getattr(attempt, name))
            self._pending["closed_by"][-1] = attempt.closer.value  # "" filled in by its class
            if self.pending >= self.batch_rows:
                self._flush()

    def add_all(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            self.add(attempt)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        rows = self.pending
        columns = {"trial": [self.trial] * rows, **self._pending}
        columns["outcome"] = [str(value) for value in columns["outcome"]]
        self._pending = {name: [] for name in FIELD_NAMES}
        if self.error is not None or self._closed:
            return
        try:
            writer = self._writer or self._open()
            if rows:
                writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=ATTEMPT_SCHEMA))
                self.written += rows
        except OSError as error:  # a full disk, a read-only one
            self.error = error

    def _open(self) -> pq.ParquetWriter:
        # Opened here, never through a link (a run's files are reached through its directory's
        # descriptor, closebench/core/safe_files.py); pyarrow writes to the stream.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        # Unbuffered: a batch written is on disk (`written`), as with a path.
        self._stream = os.fdopen(os.open(self.path, flags, 0o644), "wb", buffering=0)
        self._writer = pq.ParquetWriter(
            self._stream,
            ATTEMPT_SCHEMA,
            compression=COMPRESSION,
            # Timestamps compress far better split into their bytes (sign and exponent alike).
            use_dictionary=[f.name for f in ATTEMPT_SCHEMA if f.name not in FLOAT_COLUMNS],
            column_encoding={name: "BYTE_STREAM_SPLIT" for name in FLOAT_COLUMNS},
        )
        return self._writer

    def close(self) -> None:
        """Write what is pending and the file's footer: the file is whole from here on.
        ClosebenchError when a write failed."""
        with self._lock:
            try:
                self._flush()
            finally:
                self._closed = True
                if self._writer is not None:
                    try:
                        self._writer.close()
                        if self._stream is not None:
                            self._stream.close()
                    except OSError as error:
                        self.error = self.error or error
                    self._writer = None
        if self.error is not None:
            raise ClosebenchError(
                f"cannot write {shown(self.path)} ({self.error.strerror or self.error}): "
                f"{self.written} attempts kept; free some space, then run it again"
            )

    def __enter__(self) -> AttemptWriter:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def write_attempts_file(path: Path, trial: str, attempts: Iterable[Attempt]) -> Path:
    """A whole trial's attempts file at once (attempts already in memory)."""
    with AttemptWriter(path, trial) as writer:
        writer.add_all(attempts)
    return path


def write_records(stream: IO[str], attempts: Iterable[Attempt], trial: str | None = None) -> None:
    """Append `attempts` to `stream` as JSON lines, each tagged with `trial` when given."""
    for attempt in attempts:
        record = attempt.to_dict() if trial is None else {"trial": trial, **attempt.to_dict()}
        stream.write(json.dumps(record) + "\n")


def export_jsonl(paths: Iterable[Path], stream: IO[str]) -> int:
    """Every attempt of the files as JSON lines (write_records()'s lines); how many."""
    count = 0
    for batch in read_batches(paths):
        for record in with_derived(batch).to_pylist():
            stream.write(json.dumps(record) + "\n")
            count += 1
    return count


# reading


def attempt_files(directory: Path) -> list[Path]:
    """A run directory's attempts files, in name order."""
    folder = Path(directory) / ATTEMPTS_DIR
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def trial_tables(
    directory: Path, columns: list[str] | None = None
) -> Iterator[tuple[str, pa.Table]]:
    """Each trial's records in a run directory (every column, or `columns`), one trial at a
    time, each read from its own files alone: the Parquet files, or an older run's
    attempts.jsonl. FileNotFoundError: neither."""
    files = attempt_files(directory)
    if not files:
        table, _ = read_legacy_jsonl(Path(directory) / LEGACY_ATTEMPTS_FILE)
        for name in pc.unique(table["trial"]).to_pylist():
            yield name, _select(table.filter(pc.equal(table["trial"], name)), columns)
        return
    files_of: dict[str, list[Path]] = {}
    for path in files:
        for name in pc.unique(read_table(path, ["trial"])["trial"]).to_pylist():
            files_of.setdefault(name, []).append(path)
    for name, paths in files_of.items():
        whole = pa.concat_tables([read_table(path, columns) for path in paths])
        yield name, _select(whole.filter(pc.equal(whole["trial"], name)), columns)


def _select(table: pa.Table, columns: list[str] | None) -> pa.Table:
    return table if columns is None else table.select(columns)


def run_records(directory: Path) -> list[dict]:
    """Every record of a run directory as export writes them (each a dict): for small runs
    (tests, scripts); a large run's reader takes read_batches()."""
    files = attempt_files(directory)
    tables = read_batches(files) if files else (table for _, table in trial_tables(directory))
    return [record for data in tables for record in with_derived(data).to_pylist()]


def open_file(path: Path) -> pq.ParquetFile:
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    try:  # a link to /dev/zero, a FIFO: refused before pyarrow reads it
        check_regular(path, "attempts file", TABLE_BYTES)
        found = pq.ParquetFile(path)
    except (OSError, pa.ArrowException, ClosebenchError) as error:
        raise damaged(path, error) from None
    if not found.schema_arrow.equals(ATTEMPT_SCHEMA):
        missing = set(ATTEMPT_SCHEMA.names) - set(found.schema_arrow.names) - set(ADDED_LATER)
        if missing:
            raise damaged(path, ValueError(f"no column {', '.join(sorted(missing))}"))
        for expected in ATTEMPT_SCHEMA:  # the right names with the wrong types
            if expected.name not in found.schema_arrow.names:
                continue  # added later (ADDED_LATER): filled in as it is read
            kind = found.schema_arrow.field(expected.name).type
            if kind != expected.type:
                problem = f"column {expected.name} holds {kind}, not {expected.type}"
                raise damaged(path, ValueError(problem))
    return found


def read_batches(
    paths: Iterable[Path], columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The records of `paths` (every column, or `columns`) a batch at a time."""
    for path in paths:
        found = open_file(path)
        present, added = _present(found, columns)
        try:
            for batch in found.iter_batches(batch_size=batch_rows, columns=present):
                yield _filled(batch, added)
        except (OSError, pa.ArrowException) as error:
            raise damaged(path, error) from None


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One file's records, whole (a trial's, for its summary)."""
    found = open_file(path)
    present, added = _present(found, columns)
    try:
        return _filled(found.read(columns=present), added)
    except (OSError, pa.ArrowException) as error:
        raise damaged(path, error) from None


def _present(found: pq.ParquetFile, columns: list[str] | None) -> tuple[list[str] | None, list]:
    """The columns to read of a file, and those of ADDED_LATER it lacks (an older run's)."""
    names = set(found.schema_arrow.names)
    added = [n for n in (columns or ATTEMPT_SCHEMA.names) if n in ADDED_LATER and n not in names]
    if columns is None:
        return (
            (None, added) if not added else ([n for n in ATTEMPT_SCHEMA.names if n in names], added)
        )
    return [n for n in columns if n in names], added


def _filled(data, added: list[str]):
    """`data` with the columns of ADDED_LATER an older file lacks (null, or "" where the column
    takes no null: not known then; they come last in the schema, so a whole record keeps its
    order)."""
    for name in added:
        column = ATTEMPT_SCHEMA.field(name)
        filler = None if column.nullable else ""
        data = data.append_column(column, pa.array([filler] * len(data), column.type))
    return data


def read_attempts(path: Path) -> list[Attempt]:
    """One file's records as Attempt objects (accounting that needs them: bans, peers)."""
    return [Attempt.from_dict(record) for record in read_table(path).to_pylist()]


def table_columns(data: pa.RecordBatch | pa.Table) -> dict[str, np.ndarray]:
    """The columns of `data` as numpy arrays: numbers as float where they may be null (NaN:
    null), text as objects; what closebench.core.summary.summarize_columns() and the figures
    read."""
    columns = {}
    for name in data.column_names:
        values = data[name]
        if pa.types.is_string(values.type):  # the few distinct texts, shared: no object a row
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            encoded = pc.dictionary_encode(values)
            labels = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
            indices = encoded.indices.fill_null(len(encoded.dictionary))
            columns[name] = labels[indices.to_numpy(zero_copy_only=False)]
            continue
        if pa.types.is_integer(values.type) and values.null_count:
            values = values.cast(pa.float64())
        columns[name] = np.asarray(values.to_numpy(zero_copy_only=False))
    return columns


def with_derived(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """`data` with Attempt's derived times appended (hang_s, connect_wait_s, slot_s), computed as
    Attempt.to_dict() computes them: null where an end is missing, never negative."""

    def not_negative(values):
        return pc.max_element_wise(values, 0.0, skip_nulls=False)

    end, syn = data["t_end"], data["t_syn"]
    established = pc.coalesce(data["t_established"], end)
    derived = {
        "hang_s": not_negative(pc.subtract(end, data["t_request"])),
        "connect_wait_s": not_negative(pc.subtract(established, syn)),
        "slot_s": not_negative(pc.subtract(end, syn)),
    }
    for name in DERIVED:
        data = data.append_column(name, derived[name])
    return data


# run directories of closebench before Parquet


@dataclass
class Records:
    """The records of a JSON-lines file, and how many of its lines could not be read."""

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


def read_legacy_jsonl(path: Path) -> tuple[pa.Table, int]:
    """attempts.jsonl of an older run as a table of ATTEMPT_SCHEMA, and the records skipped (a
    line that does not parse, or a record without a trial or a first SYN)."""
    found = read_records(path)
    rows, skipped = [], found.unreadable
    for record in found.records:
        row = {f.name: _typed(record.get(f.name), f.type) for f in ATTEMPT_SCHEMA}
        if row["trial"] is None or row["t_syn"] is None:
            skipped += 1
            continue
        for column in ("attacker", "src", "dst", "outcome", "detail", "run_error", "closed_by"):
            row[column] = row[column] or ""
        for column in ("family", "sport", "dport", "bytes_received"):
            row[column] = row[column] or 0
        row["data_first"] = bool(row["data_first"])
        row["client_timeout"] = row["client_timeout"] or math.inf
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=ATTEMPT_SCHEMA), skipped


def _typed(value: object, kind: pa.DataType) -> object:
    """`value` when it is of the column's type, else None."""
    if kind == pa.string():
        return value if isinstance(value, str) else None
    if kind == pa.bool_():
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == pa.int64():
        return value if isinstance(value, int) else None
    return float(value) if math.isfinite(value) else None

"""What closebench's own data costs: a long volume trial's memory in `closebench run` and in
`closebench report`, and its bytes on disk per attempt; and the report of a synthetic run of ten
million attempts (no lab needed).

Each runs closebench as a user would, in a subprocess, and samples the process tree's resident
memory (closebench and every process it started: the lab's keepers, the server, tcpdump, the
attacker's child) with psutil: the peak of the tree's sum is the figure, next to closebench's
own peak (ru_maxrss of the child). Bounds (issue 10): run ≤ 400 MB, report ≤ 20 s and ≤ 1 GiB,
the synthetic report ≤ 2 GiB, ≤ 60 bytes an attempt on disk.

The run is measured twice, with --no-verify and with the check against the wire that ends it by
default (closebench/results/verify.py, which streams each trial's pcap), and `closebench verify` of
the first run apart; the bound holds for both runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closebench.results.records import ATTEMPT_SCHEMA, ATTEMPTS_DIR, BATCH_ROWS, attempt_files
from closebench.results.schema import SUMMARY_SCHEMA, TrialRow

# Minutes each: out of the default suite; `-m slow` runs them (see docs/development.md).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000
GIB = 1 << 30
VOLUME_SECONDS = 60
SYNTHETIC_ATTEMPTS = 10_000_000
SCENARIO = f"""\
name = "volume-storage"
description = "one volume attacker against graceful, for the storage benchmarks"
duration = {VOLUME_SECONDS}
sample_hz = 10
strategies = ["graceful"]

[[attackers]]
kind = "volume"
timeout = 10
concurrency = 64
"""


@dataclass
class Measured:
    wall_s: float
    peak_tree_bytes: int  # the sum over closebench and its descendants, sampled
    peak_own_bytes: int  # closebench's own process, ru_maxrss
    returncode: int
    stderr: str


def measure(args: list[str], every: float = 0.1) -> Measured:
    """Run `closebench ARGS`, sampling its process tree's memory until it ends."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "closebench.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.wait(every):
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += member.memory_info().rss
            peak = max(peak, total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    own = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest one's so far: only a new maximum is this run's.
    own_bytes = own * 1024 if own > before else 0
    return Measured(wall, peak, own_bytes, process.returncode, stderr)


def figures(measured: Measured, prefix: str) -> dict:
    return {
        f"{prefix}_wall_s": round(measured.wall_s, 1),
        f"{prefix}_peak_tree_mb": round(measured.peak_tree_bytes / MB),
        f"{prefix}_peak_closebench_mb": round(measured.peak_own_bytes / MB) or None,
    }


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory) -> tuple[Path, Measured]:
    """`closebench run` of a 60 s volume trial against graceful (about a million attempts)."""
    out = tmp_path_factory.mktemp("volume")
    scenario = out / "volume.toml"
    scenario.write_text(SCENARIO)
    measured = measure(["run", str(scenario), "--out", str(out / "reports"), "--no-verify"])
    assert measured.returncode == 0, measured.stderr[-2000:]
    return (out / "reports" / "latest").resolve(), measured


@pytest.mark.needs_lab
def test_run_memory_of_a_volume_trial(benchmark, volume_run):
    directory, measured = volume_run
    attempts = sum(pq.ParquetFile(p).metadata.num_rows for p in attempt_files(directory))
    size = sum(p.stat().st_size for p in attempt_files(directory))
    info = {
        "attempts": attempts,
        **figures(measured, "run"),
        "attempts_bytes": size,
        "bytes_per_attempt": round(size / attempts, 1),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }
    benchmark.extra_info.update(info)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(info)
    assert attempts > 100_000  # a volume trial worth the name, even on a loaded machine
    assert measured.peak_tree_bytes <= 400 * MB, info
    assert size / attempts <= 60, info


@pytest.mark.needs_lab
def test_run_memory_of_a_volume_trial_with_verify(benchmark, tmp_path):
    scenario = tmp_path / "volume.toml"
    scenario.write_text(SCENARIO)
    measured = measure(["run", str(scenario), "--out", str(tmp_path / "reports")])
    assert measured.returncode == 0, measured.stderr[-2000:]
    directory = (tmp_path / "reports" / "latest").resolve()
    summary = json.loads((directory / "summary.json").read_text())
    info = {
        "attempts": sum(pq.ParquetFile(p).metadata.num_rows for p in attempt_files(directory)),
        **figures(measured, "run_verified"),
        "wire_agreement_ok": summary["wire_agreement"]["ok"],
        "load_average": os.getloadavg()[0],
    }
    benchmark.extra_info.update(info)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(info)
    assert info["attempts"] > 100_000
    assert summary["wire_agreement"]["records"] == info["attempts"]  # every record checked
    assert measured.peak_tree_bytes <= 400 * MB, info


@pytest.mark.needs_lab
def test_report_of_a_volume_trial(benchmark, volume_run):
    directory, _ = volume_run
    measured = benchmark.pedantic(
        measure, args=(["report", str(directory)],), rounds=1, iterations=1
    )
    assert measured.returncode == 0, measured.stderr[-2000:]
    info = figures(measured, "report")
    benchmark.extra_info.update(info)
    print(info)
    assert measured.wall_s <= 20 and measured.peak_tree_bytes <= GIB, info


@pytest.mark.needs_lab
def test_verify_of_a_volume_trial(benchmark, volume_run):
    """Figures only: verify's memory and time (not bounded)."""
    directory, _ = volume_run
    measured = benchmark.pedantic(
        measure, args=(["verify", str(directory)],), rounds=1, iterations=1
    )
    info = {**figures(measured, "verify"), "returncode": measured.returncode}
    benchmark.extra_info.update(info)
    print(info)
    assert measured.returncode in (0, 1), measured.stderr[-2000:]  # 1: flagged, still measured


def test_report_of_ten_million_synthetic_attempts(benchmark, tmp_path):
    directory = synthetic_run(tmp_path / "synthetic", SYNTHETIC_ATTEMPTS)
    size = sum(p.stat().st_size for p in attempt_files(directory))
    measured = benchmark.pedantic(
        measure, args=(["report", str(directory)],), rounds=1, iterations=1
    )
    assert measured.returncode == 0, measured.stderr[-2000:]
    info = {
        "attempts": SYNTHETIC_ATTEMPTS,
        **figures(measured, "report"),
        "bytes_per_attempt": round(size / SYNTHETIC_ATTEMPTS, 1),
    }
    benchmark.extra_info.update(info)
    print(info)
    assert measured.peak_tree_bytes <= 2 * GIB, info


# a synthetic run: summary.json from a real run's row, attempts drawn from measured shapes

OUTCOMES = {"graceful": "fin", "rst": "rst", "repair": "silent", "never": "silent"}
STRATEGIES = tuple(OUTCOMES)


def synthetic_run(directory: Path, attempts: int) -> Path:
    """A run directory of `attempts` attempts over four trials (volume attackers: graceful and
    rst answer in about a millisecond, repair and never hang to the 10 s timeout), its Parquet
    files written a batch at a time, its summary.json rows filled from them."""
    (directory / ATTEMPTS_DIR).mkdir(parents=True)
    rng = np.random.default_rng(10)
    start = 1_800_000_000.0
    rows = []
    for index, trial in enumerate(STRATEGIES):
        count = attempts // len(STRATEGIES) + (index < attempts % len(STRATEGIES))
        path = directory / ATTEMPTS_DIR / f"{trial}.parquet"
        with pq.ParquetWriter(path, ATTEMPT_SCHEMA, compression="zstd") as writer:
            for first in range(0, count, BATCH_ROWS):
                n = min(BATCH_ROWS, count - first)
                writer.write_table(synthetic_batch(rng, trial, start, first, n, count))
        row = TrialRow(trial, trial, False, True, None, 60.0)
        row.attempts, row.attempts_per_s = count, count / 60.0
        row.outcomes = {OUTCOMES[trial]: count}
        rows.append(row.to_dict())
    summary = {"schema": SUMMARY_SCHEMA, "meta": {}, "complete": True, "rows": rows}
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def synthetic_batch(rng, trial: str, start: float, first: int, n: int, count: int) -> pa.Table:
    silent = trial in ("repair", "never")
    t_syn = start + 60.0 * (first + np.arange(n)) / count + rng.uniform(0, 1e-4, n)
    established = t_syn + rng.gamma(2.0, 2e-5, n)
    request = established + rng.gamma(2.0, 5e-5, n)
    end = request + (10.0 + rng.uniform(0, 1e-3, n) if silent else rng.gamma(2.0, 2e-4, n))
    columns = {
        "trial": pa.array([trial] * n),
        "attacker": pa.array(["volume"] * n),
        "family": np.full(n, 4),
        "src": pa.array(["198.18.0.1"] * n),
        "sport": rng.integers(1024, 65536, n),
        "dst": pa.array(["198.18.0.2"] * n),
        "dport": np.full(n, 8080),
        "client_timeout": np.full(n, 10.0),
        "outcome": pa.array([OUTCOMES[trial]] * n),
        "t_syn": np.round(t_syn, 6),
        "t_established": np.round(established, 6),
        "t_request": np.round(request, 6),
        "t_first_byte": pa.nulls(n, pa.float64()),
        "t_end": np.round(end, 6),
        "bytes_received": np.zeros(n, dtype=np.int64),
        "data_first": np.zeros(n, dtype=bool),
        "http_status": pa.nulls(n, pa.int64()),
        "detail": pa.array([""] * n),
        "run": pa.nulls(n, pa.int64()),
        "run_exit_status": pa.nulls(n, pa.int64()),
        "run_duration_s": pa.nulls(n, pa.float64()),
        "run_error": pa.array([""] * n),
    }
    return pa.table(columns, schema=ATTEMPT_SCHEMA)

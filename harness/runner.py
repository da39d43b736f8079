"""`closebench run`: every strategy of a scenario, each in its own lab, several at once.

Writes reports/<run-id>/: the scenario, attempts.jsonl, samples.csv, summary.json, the
attacker-side pcaps and run.log; reports/latest points at the newest run.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from harness import __version__
from harness.errors import ClosebenchError
from harness.metrics import Sample
from harness.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, has_capability
from harness.records import ATTEMPTS_FILE, PCAP_DIR, pcap_name, write_records
from harness.report import build_run_report
from harness.scenario import Scenario
from harness.summary import TrialRow, ratio, summarize
from harness.trial import TrialConfig, TrialResult, run_trial
from harness.verify import verify_trials

SUMMARY_SCHEMA = "closebench.summary/1"


@dataclass
class TrialProgress:
    """What the progress display shows of one trial; written by its worker, read by the UI."""

    name: str
    duration: float
    state: str = "waiting"  # waiting, running, done, error, skipped
    started: float | None = None
    attempts: int = 0

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


@dataclass
class RunOutcome:
    directory: Path
    rows: list[TrialRow]
    complete: bool
    errors: list[str] = field(default_factory=list)
    report: Path | None = None  # index.html of the run's report, when it could be built
    wire_agreement: dict | None = None  # closebench verify's totals; None with --no-verify


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        text: str,
        digest: str,
        source: Path,
        out: Path,
        verify: bool = True,
    ) -> None:
        self.scenario = scenario
        self.verify = verify  # check every record against the pcaps once the trials are done
        self.text = text
        self.digest = digest
        self.source = source
        self.trials = scenario.trials()
        self.progress = [TrialProgress(t.name, scenario.duration) for t in self.trials]
        self.cancel = threading.Event()
        self.started_at = datetime.now(UTC)
        self.directory = _new_run_directory(out, scenario.name, self.started_at)
        self._log_lock = threading.Lock()
        self._log = open(self.directory / "run.log", "a")  # noqa: SIM115 (closed in run())

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with self._log_lock:
            self._log.write(f"{stamp} {message}\n")
            self._log.flush()

    def run(self, jobs: int | None = None) -> RunOutcome:
        """Run every trial; on cancel (Ctrl-C) keep what was measured, marked incomplete."""
        random.seed(self.scenario.seed)
        (self.directory / "scenario.toml").write_text(self.text)
        (self.directory / PCAP_DIR).mkdir()
        jobs = jobs or self.scenario.parallel or min(len(self.trials), 2 * (os.cpu_count() or 1))
        self.log(f"run of {self.source} ({len(self.trials)} trials, {jobs} at once)")
        results: list[TrialResult | str | None] = [None] * len(self.trials)
        try:
            with ThreadPoolExecutor(jobs, thread_name_prefix="trial") as pool:
                futures = [pool.submit(self._one, i, results) for i in range(len(self.trials))]
                for future in futures:
                    future.result()
        finally:
            outcome = self._write(results)
            self._log.close()
        return outcome

    def _one(self, index: int, results: list) -> None:
        # Each trial's lab lives and dies inside this task (keepers die with their thread).
        progress = self.progress[index]
        if self.cancel.is_set():
            progress.state = "skipped"
            return
        config = replace(
            self.trials[index], pcap=str(self.directory / PCAP_DIR / pcap_name(progress.name))
        )
        progress.state, progress.started = "running", time.monotonic()
        self.log(f"{progress.name}: started")

        def counted(_attempt) -> None:
            progress.attempts += 1

        try:
            result = run_trial(config, self.cancel, counted)
            results[index] = result
            progress.state = "done"
            self.log(f"{progress.name}: done, {progress.attempts} attempts")
            for line in result.server_log.splitlines():
                self.log(f"{progress.name}: server: {line}")
        except ClosebenchError as error:
            results[index] = str(error)
            progress.state = "error"
            self.log(f"{progress.name}: error: {error}")

    def _write(self, results: list[TrialResult | str | None]) -> RunOutcome:
        rows, errors = [], []
        with (
            open(self.directory / ATTEMPTS_FILE, "w") as attempts,
            open(self.directory / "samples.csv", "w", newline="") as samples,
        ):
            sample_writer = None
            for trial, result in zip(self.trials, results, strict=True):
                if isinstance(result, TrialResult):
                    write_records(attempts, result.attempts + result.legit_attempts, trial.name)
                    sample_writer = _write_samples(
                        samples, sample_writer, trial.name, result.samples
                    )
                    rows.append(trial_row(trial, result))
                else:
                    error = result or "not run: the run was interrupted"
                    if result:
                        errors.append(f"{trial.name}: {result}")
                    rows.append(
                        TrialRow(trial.name, _strategy(trial), trial.routed, False, error, None)
                    )
        complete = not self.cancel.is_set() and all(isinstance(r, TrialResult) for r in results)
        wire = self._verify(rows) if self.verify else None
        summary = {
            "schema": SUMMARY_SCHEMA,
            "meta": self.metadata(),
            "complete": complete,
            "wire_agreement": wire,
            "rows": [row.to_dict() for row in rows],
        }
        (self.directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _point_latest(self.directory)
        report = build_run_report(self.directory, self.log)
        return RunOutcome(self.directory, rows, complete, errors, report, wire)

    def _verify(self, rows: list[TrialRow]) -> dict:
        """closebench verify on the records and pcaps just written: totals for summary.json, and
        each trial's figures in its row. A failure to verify is recorded, never loses the run."""
        try:
            agreement = verify_trials(self.directory, [row.trial for row in rows])
        except Exception as error:
            self.log(f"verify: failed: {type(error).__name__}: {error}")
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}
        by_trial = {trial.trial: trial.to_dict() for trial in agreement.trials}
        for row in rows:
            row.wire_agreement = by_trial.get(row.trial)
        totals = agreement.to_dict()
        self.log(f"verify: {'ok' if totals['ok'] else 'FLAGGED'}, {json.dumps(totals)}")
        return totals

    def metadata(self) -> dict:
        return {
            "closebench": __version__,
            "run_id": self.directory.name,
            "scenario_file": str(self.source),
            "scenario_sha256": self.digest,
            "scenario_name": self.scenario.name,
            "seed": self.scenario.seed,
            "duration_s": self.scenario.duration,  # as run: --duration may override the file
            "started": self.started_at.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_s": (datetime.now(UTC) - self.started_at).total_seconds(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "capabilities": {
                "CAP_NET_ADMIN": has_capability(CAP_NET_ADMIN),
                "CAP_NET_RAW": has_capability(CAP_NET_RAW),
                "CAP_SYS_ADMIN": has_capability(CAP_SYS_ADMIN),
            },
            "tools": tool_versions(),
        }


def trial_row(trial: TrialConfig, result: TrialResult) -> TrialRow:
    runs = [s.runs for s in result.summaries.values() if s.runs is not None]
    everything = summarize(
        "all", result.attempts, result.duration_s, {"runs": sum(runs)} if runs else None
    )
    wasted = everything.attacker_seconds_wasted
    defender = result.defender
    row = TrialRow(
        trial=trial.name,
        strategy=_strategy(trial),
        routed=trial.routed,
        complete=result.complete,
        error=None,
        duration_s=result.duration_s,
        attempts=everything.attempts,
        attempts_per_s=everything.attempts_per_s,
        hang_median_s=everything.hang_median_s,
        hang_p95_s=everything.hang_p95_s,
        hang_max_s=everything.hang_max_s,
        connect_wait_median_s=everything.connect_wait_median_s,
        connect_wait_p95_s=everything.connect_wait_p95_s,
        slot_median_s=everything.slot_median_s,
        slot_p95_s=everything.slot_p95_s,
        outcomes=everything.outcomes,
        attacker_seconds_wasted=wasted,
        connect_waits=everything.connect_waits,
        runs=everything.runs,
        runs_per_s=everything.runs_per_s,
        sampler_overhead=result.sampler_overhead,
        attackers={name: s.to_dict() for name, s in result.summaries.items()},
        server_stats=result.server_stats,
    )
    if result.legit:
        row.legit_requests = result.legit.requests
        row.legit_success_rate = result.legit.success_rate
        row.legit_latency_median_s = result.legit.latency_median_s
        row.legit_latency_p95_s = result.legit.latency_p95_s
    if defender:
        for name, value in defender.to_dict().items():
            setattr(row, name, value)
        row.wasted_per_fd_second = ratio(wasted, defender.fd_seconds)
        row.wasted_per_cpu_second = ratio(wasted, defender.cpu_seconds)
    if result.bans:
        for name, value in result.bans.to_dict().items():
            setattr(row, name, value)
    return row


def _strategy(trial: TrialConfig) -> str | None:
    return str(trial.server.spec) if trial.server.spec else None


def _write_samples(stream, writer, trial: str, samples: list[Sample]):
    for sample in samples:
        row = {"trial": trial, **sample.row()}
        if writer is None:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)
    return writer


def _new_run_directory(out: Path, scenario: str, started: datetime) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base = f"{started.strftime('%Y%m%d-%H%M%S')}-{Path(pcap_name(scenario)).stem}"
    for attempt in range(100):
        directory = out / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
    raise ClosebenchError(f"cannot create a run directory under {out}")


def _point_latest(directory: Path) -> None:
    latest = directory.parent / "latest"
    temporary = directory.parent / f".latest-{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(directory.name)
    os.replace(temporary, latest)  # atomic: readers never see it missing


def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for tool in ("tcpdump", "nft", "curl", "chromium"):
        if shutil.which(tool) is None:
            versions[tool] = None
            continue
        result = subprocess.run([tool, "--version"], capture_output=True, text=True)
        versions[tool] = (result.stdout or result.stderr).splitlines()[0].strip()
    for module in ("scapy", "psutil", "pydantic", "dpkt"):
        imported = sys.modules.get(module) or __import__(module)
        versions[module] = getattr(imported, "__version__", None) or getattr(
            imported, "VERSION", None
        )
    return versions


def watch(runner: Runner, show: Callable[[list[TrialProgress]], None], every: float = 0.25) -> None:
    """Call `show` with the trials' progress until the run ends (used by the CLI's display)."""
    while any(p.state in ("waiting", "running") for p in runner.progress):
        show(runner.progress)
        time.sleep(every)
    show(runner.progress)

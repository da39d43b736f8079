"""`closebench run`: every strategy of a scenario, each in its own lab, several at once.

Writes reports/<run-id>/: the scenario, attempts/ (a Parquet file per trial, written while it
runs), samples.csv, summary.json, the attacker-side pcaps and run.log; reports/latest points at
the newest run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from closebench import __version__
from closebench.core.background import TERMINATED
from closebench.core.errors import ClosebenchError
from closebench.core.faults import Fault
from closebench.core.file_names import unique_names
from closebench.core.safe_files import write_error
from closebench.defender.peers import peer_for
from closebench.lab import cpus
from closebench.lab.cpus import Placement
from closebench.results import report as run_report  # render.py (matplotlib) on first use
from closebench.results.breaking_points import Thresholds, breaking_points
from closebench.results.drop_check import add_drop_checks
from closebench.results.records import ATTEMPTS_DIR, SUFFIX
from closebench.results.run_directory import (
    SAMPLES_FILE,
    SUMMARY_FILE,
)
from closebench.results.run_writing import new_run_directory, write_samples, write_summary
from closebench.results.schema import SUMMARY_SCHEMA, TrialRow
from closebench.results.tool_check import check_tools
from closebench.results.verify import verify_trials
from closebench.trials.attacker_kinds import PACKET_KINDS
from closebench.trials.attacker_processes import saturated_packet_attackers, scaling
from closebench.trials.disk_space import DiskGuard, size_text
from closebench.trials.machine import machine_metadata
from closebench.trials.placement import resolve_placement
from closebench.trials.rows import strategy_name, trial_row
from closebench.trials.scenario import Scenario, SweepEntry
from closebench.trials.trial import TrialConfig, TrialResult, run_trial

DISK_CHECK_EVERY = 0.25  # seconds between looks at the free space while trials run
TRIAL = "the trial"  # the part a trial that raised names in its fault


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


@dataclass(frozen=True)
class Skipped:
    """A trial not run because its strategy's program is missing (peers.skip_missing) or the
    kernel cannot run it (capabilities.skip_unsupported)."""

    error: str


@dataclass
class RunOutcome:
    directory: Path
    rows: list[TrialRow]
    complete: bool
    errors: list[str] = field(default_factory=list)
    report: Path | None = None  # index.html of the run's report, when it could be built
    stopped: str | None = None  # why the run stopped early, other than an interruption
    wire_agreement: dict | None = None  # closebench verify's totals; None with --no-verify
    breaking_points: dict[str, dict] = field(default_factory=dict)  # a sweep's, by series


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        text: str,
        digest: str,
        source: Path,
        out: Path,
        verify: bool = True,
        skipped: dict[str, str] | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.scenario = scenario
        # Each side's CPUs (lab/cpus.py); None: the scenario's [cpus] (the default split).
        self.placement = placement or resolve_placement(**scenario.cpus.model_dump())
        self.verify = verify  # check every record against the pcaps once the trials are done
        # Strategies not run (a peer whose program is missing, by name; a kernel that cannot,
        # by str(spec)), with the error of their rows.
        self.skipped = skipped or {}
        self.text = text
        self.digest = digest
        self.source = source
        self.trials = scenario.trials()
        self.progress = [TrialProgress(t.name, scenario.duration) for t in self.trials]
        self.cancel = threading.Event()
        self.stopped: str | None = None  # why the run stopped early (a full disk)
        self.started_at = datetime.now(UTC)
        # One capture file per trial, even for labels that clean up to one name (a/b, a_b).
        self.pcap_names = unique_names([t.name for t in self.trials], ".pcap")
        # Opened once: every file of the run is written through its descriptor (`files`), code
        # that takes paths gets its anchor (closebench/core/safe_files.py), never its name.
        self.opened = new_run_directory(out, scenario.name, self.started_at)
        self.directory = self.opened.path  # for messages
        self.files = self.opened.run.anchor
        self._log_lock = threading.Lock()
        self._summary_lock = threading.Lock()
        try:
            self._log = self.opened.run.open("run.log", "a")
            self.opened.run.write("scenario.toml", text)
            os.mkdir("pcaps", 0o755, dir_fd=self.opened.run.fd)
            self.disk = DiskGuard(self.files)
        except (OSError, ClosebenchError) as error:
            if hasattr(self, "_log"):
                self._log.close()
            # Bad input leaves nothing behind: emptied through its descriptor, then removed
            # (rmdir never follows a link put at its name).
            run = self.opened.run.fd
            for name in os.listdir(run):
                shutil.rmtree(name, ignore_errors=True, dir_fd=run)
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=run)
            with contextlib.suppress(OSError):
                os.rmdir(self.directory.name, dir_fd=self.opened.out.fd)
            self.opened.close()
            if isinstance(error, OSError):
                raise write_error(self.directory, error, "give another --out") from None
            raise

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with self._log_lock:
            if self._log.closed:
                return
            try:
                self._log.write(f"{stamp} {message}\n")
                self._log.flush()
                return
            except OSError as error:  # the disk is full or gone; the line waits in the buffer
                failure = f"cannot write {self.directory / 'run.log'} ({error.strerror})"
        self.stop(failure)

    def stop(self, reason: str) -> None:
        """Stop the run early for `reason`, keeping what was measured (like Ctrl-C)."""
        # Room for what the stopping trials still write (their attempts' last batches), and the
        # results: a full disk, or a run.log that could not be written, is why it stops.
        self.disk.release()
        if self.stopped is None:
            self.stopped = reason
            self.log(f"stopping: {reason}")
        self.cancel.set()

    def run(self, jobs: int | None = None) -> RunOutcome:
        """Run every trial; on cancel (Ctrl-C, SIGTERM, a full disk) keep what was measured,
        marked incomplete."""
        random.seed(self.scenario.seed)
        chains = trial_chains(self.trials)
        jobs = jobs or self.scenario.parallel or min(len(chains), 2 * (os.cpu_count() or 1))
        self.log(f"run of {self.source} ({len(self.trials)} trials, {jobs} at once)")
        self.log(f"CPUs: {self.placement.text()}")
        results: list[TrialResult | Skipped | Fault | None] = [None] * len(self.trials)
        self._write_so_far(results)  # a run killed in its first trial still leaves a summary
        cpus.use(self.placement)
        # The runner's threads (kernel attackers, the legitimate client, samplers) are the
        # attacking side's; threads started later inherit it from these.
        pinned = {} if self.placement.shared else cpus.pin_this_process(self.placement.attackers)
        done = threading.Event()
        watch = threading.Thread(target=self._watch_disk, args=(done,), name="disk", daemon=True)
        watch.start()
        try:
            with ThreadPoolExecutor(jobs, thread_name_prefix="trial") as pool:
                futures = [pool.submit(self._chain, chain, results) for chain in chains]
                for future in futures:
                    future.result()
        finally:
            done.set()
            watch.join()
            cpus.restore(pinned)
            cpus.use(None)
            self.disk.release()  # room for the results, whatever filled the disk
            try:
                outcome = self._write(results)
            finally:
                self._log.close()
                self.opened.close()
        return outcome

    def _watch_disk(self, done: threading.Event) -> None:
        while not done.wait(DISK_CHECK_EVERY):
            if self.disk.full():
                writing = [
                    f"pcaps/{name}"
                    for name, trial in zip(self.pcap_names, self.progress, strict=True)
                    if trial.state == "running"
                ]
                if len(writing) > 3:
                    writing[2:] = [f"{writing[2]} and {len(writing) - 3} more captures"]
                reason = (
                    f"the disk is full ({size_text(self.disk.free())} free on the file system "
                    f"of {self.directory.parent}) while writing {', '.join(writing) or 'run.log'}"
                )
                self.stop(reason)
                return

    def _chain(self, indices: list[int], results: list) -> None:
        for index in indices:  # a sweep's steps, one after another, each in a fresh lab
            self._one(index, results)

    def _one(self, index: int, results: list) -> None:
        # Each trial's lab lives and dies inside this task (keepers die with their thread).
        progress = self.progress[index]
        if self.cancel.is_set() or self.disk.full():  # the watcher may not have looked yet
            progress.state = "skipped"
            return
        spec = self.trials[index].server.spec
        # Peers are skipped by name (their program is missing), kernel needs by spec (options).
        skipped = (self.skipped.get(str(spec)) or self.skipped.get(spec.name)) if spec else None
        skipped = skipped or self.skipped.get(self.trials[index].name)  # a tool not installed
        if skipped:
            results[index] = Skipped(skipped)
            progress.state = "skipped"
            self.log(f"{progress.name}: {skipped}")
            return
        pcap = f"pcaps/{self.pcap_names[index]}"
        stem = Path(self.pcap_names[index]).stem
        config = replace(
            self.trials[index],
            pcap=str(self.files / pcap),
            attempts_file=str(self.files / ATTEMPTS_DIR / f"{stem}{SUFFIX}"),
        )
        if peer_for(config.server.spec):  # its generated config and logs stay with the run
            # Its server may run as another user, who cannot reach the anchor: the real path.
            files = self.opened.run.real / "peers" / Path(self.pcap_names[index]).stem
            config = replace(config, server=replace(config.server, files=str(files)))
        if any(spec.engine == "locust" for spec in config.attackers):  # Locust's own CSV files
            with contextlib.suppress(FileExistsError):
                os.mkdir("locust", 0o755, dir_fd=self.opened.run.fd)
            stem = Path(self.pcap_names[index]).stem
            config = replace(config, locust_csv=str(self.files / "locust" / stem))
        progress.state, progress.started = "running", time.monotonic()
        self.log(f"{progress.name}: started, capturing into {pcap}")

        def counted(_attempt) -> None:
            progress.attempts += 1

        try:
            result = self._run_step(config, progress, counted)
            results[index] = result
            self._write_so_far(results)
            progress.state = "done"
            self.log(f"{progress.name}: done, {progress.attempts} attempts")
            for line in result.server_log.splitlines():
                self.log(f"{progress.name}: server: {line}")
        except Exception as error:  # a crash fails its trial, never the run's other trials
            # closebench's own errors are one line for the user already; anything else a crash
            fault = (
                Fault.told(TRIAL, error)
                if isinstance(error, ClosebenchError)
                else Fault.of(TRIAL, error)
            )
            results[index] = fault
            progress.state = "error"
            self.log(f"{progress.name}: error: {fault}")
        else:
            for fault in result.faults:
                progress.state = "error"
                self.log(f"{progress.name}: error: {fault}")

    def _run_step(self, config: TrialConfig, progress: TrialProgress, counted) -> TrialResult:
        """The trial, run again with one more process a packet attacker while one set the pace
        and the attackers have a CPU for it (trials/attacker_processes.py): the last run is the
        step's."""
        kinds = {spec.name: spec.kind for spec in config.attackers}
        processes, earlier = 1, ""
        while True:
            result = run_trial(with_processes(config, processes), self.cancel, counted)
            if not any(kind in PACKET_KINDS for kind in kinds.values()):
                return result
            costs = {name: s.attacker_cost for name, s in result.summaries.items()}
            saturated = saturated_packet_attackers(kinds, costs)
            step = scaling(processes, saturated, len(self.placement.attackers), earlier)
            result.attacker_processes, result.attacker_processes_reason = processes, step.reason
            if step.spent:  # the step stays limited, and says no more processes would help
                result.harness.reasons.append(step.spent)
            if not step.again or self.cancel.is_set() or result.faults:
                return result
            self.log(f"{progress.name}: run again with {processes + 1} processes: {step.reason}")
            processes, earlier = processes + 1, step.reason
            progress.attempts, progress.started = 0, time.monotonic()

    def _write_so_far(self, results: list) -> None:
        """summary.json of the trials finished so far, written as each ends (the others' rows say
        they did not end): a run killed later (SIGKILL, the memory limit, a SIGSEGV) still
        leaves a readable summary, `complete: false`."""
        unfinished = "not finished: the run ended before this trial did (killed?)"
        with self._summary_lock:
            rows, _ = self._rows(list(results), unfinished)
            summary: dict[str, Any] = {  # summary.json's document
                "schema": SUMMARY_SCHEMA,
                "meta": {**self.metadata(), "stopped": "the run has not finished"},
                "complete": False,
                "wire_agreement": None,
                "rows": [row.to_dict() for row in rows],
            }
            try:
                write_summary(self.opened.run, summary)
            except (OSError, ClosebenchError) as error:  # the final write tells, and stops
                self.log(f"{SUMMARY_FILE}: not written so far: {error}")

    def _rows(
        self, results: Sequence[TrialResult | Skipped | Fault | None], not_run: str
    ) -> tuple[list[TrialRow], list[str]]:
        """Each trial's row (a measurement, or why there is none) and the run's errors."""
        rows, errors = [], []
        for trial, result in zip(self.trials, results, strict=True):
            if isinstance(result, TrialResult):
                rows.append(trial_row(trial, result))
                errors += [f"{trial.name}: {fault}" for fault in result.faults]
                continue
            faults = []
            if isinstance(result, Skipped):  # its warning was printed before the run began
                error = result.error
            elif isinstance(result, Fault):  # the trial raised: its row and the run say so
                error = str(result)
                errors.append(f"{trial.name}: {error}")
                faults.append(result.to_dict())
            else:
                error = not_run
            failed = TrialRow(trial.name, strategy_name(trial), trial.routed, False, error, None)
            failed.step, failed.series, failed.faults = trial.step, trial.series, faults
            rows.append(failed)
        return rows, errors

    def _write(self, results: Sequence[TrialResult | Skipped | Fault | None]) -> RunOutcome:
        """Write the results, summary.json first: if the disk is full, the rest may not fit."""
        not_run = "not run: the run " + ("stopped early" if self.stopped else "was interrupted")
        with self._summary_lock:  # no trial's summary so far may land after the final one
            rows, errors = self._rows(results, not_run)
        # A skipped trial leaves the run complete: nothing was cut short, and its row says why it
        # has no figures (check fails any expectation about it; compare lists its error).
        complete = not self.cancel.is_set() and all(
            isinstance(r, Skipped) or (isinstance(r, TrialResult) and not r.faults) for r in results
        )
        measured = [
            (t, r) for t, r in zip(self.trials, results, strict=True) if isinstance(r, TrialResult)
        ]
        # SIGTERM: no verification either (it reads every pcap; `closebench verify` does it later)
        wire = self._verify(rows) if self.verify and not TERMINATED.is_set() else None
        summary: dict[str, Any] = {  # summary.json's document
            "schema": SUMMARY_SCHEMA,
            "meta": self.metadata(),
            "complete": complete,
            "wire_agreement": wire,
            "placement": self.placement.to_dict(),
            "rows": [row.to_dict() for row in rows],
        }
        if self.scenario.sweep is not None:
            summary.update(sweep_document(self.scenario.sweep, summary["rows"]))
        lost = []
        for name, write in (
            (SUMMARY_FILE, lambda: write_summary(self.opened.run, summary)),
            (SAMPLES_FILE, lambda: write_samples(self.opened.run, _samples(measured))),
        ):
            try:
                write()
            except (OSError, ClosebenchError) as error:
                lost.append(name)
                self.log(f"{name}: not written: {error}")
        try:
            self.opened.point_latest()
        except OSError as error:
            errors.append(f"cannot point {self.directory.parent / 'latest'} at this run: {error}")
        report = None
        if TERMINATED.is_set():  # SIGTERM: end within seconds; the page can be built later
            errors.append(
                f"terminated: the report was not built; `closebench report {self.directory}` "
                "builds it"
            )
            self.log("report: not built (SIGTERM)")
        elif SUMMARY_FILE not in lost:
            report = run_report.build_run_report(self.directory, self.log, self.opened.run)
        if report is None and not TERMINATED.is_set():
            lost.append("index.html")
        if self.stopped:
            errors.insert(0, self._stopped_line(lost))
        elif lost:
            errors.append(f"could not write {', '.join(lost)} in {self.directory}")
        points = summary.get("breaking_points", {})
        return RunOutcome(
            self.directory, rows, complete, errors, report, self.stopped, wire, points
        )

    def _stopped_line(self, lost: list[str]) -> str:
        """Why the run stopped and what it kept, in one line."""
        kept = [n for n in (SUMMARY_FILE, f"{ATTEMPTS_DIR}/", SAMPLES_FILE) if n not in lost]
        text = f"{self.stopped}: the run stopped early; kept in {self.directory}: "
        text += ", ".join([*kept, "pcaps/", "run.log"])
        if lost:
            text += f" (not written: {', '.join(lost)}; free some space, then `closebench report`)"
        return text

    def _verify(self, rows: list[TrialRow]) -> dict:
        """closebench verify on the trials' records (attempts/) and their pcaps: totals for
        summary.json, and each trial's figures in its row. A failure to verify is recorded,
        never loses the run."""
        try:
            dicts = [row.to_dict() for row in rows]
            agreement = verify_trials(self.files, [row.trial for row in rows])
            agreement = check_tools(add_drop_checks(agreement, self.files, dicts), dicts)
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
            **machine_metadata(),
            "stopped": self.stopped,  # why the run stopped early (a full disk), or null
        }


def sweep_document(sweep: SweepEntry, rows: list[dict]) -> dict:
    """summary.json's `sweep` (the axis, steps and thresholds) and `breaking_points`."""
    thresholds = Thresholds(
        sweep.break_legit_success, sweep.break_latency_s, sweep.break_server_errors
    )
    return {
        "sweep": sweep.model_dump(),
        "breaking_points": breaking_points(rows, sweep.axis, thresholds),
    }


def with_processes(config: TrialConfig, processes: int) -> TrialConfig:
    """The trial with each packet attacker run as `processes` engines."""
    if processes == 1:
        return config
    attackers = tuple(
        replace(spec, processes=processes) if spec.kind in PACKET_KINDS else spec
        for spec in config.attackers
    )
    return replace(config, attackers=attackers)


def trial_chains(trials: list[TrialConfig]) -> list[list[int]]:
    """The trials' indices in runs of their own: a sweep's series (its steps, in order) is one
    chain, so its steps never compete with each other for the machine; any other trial is
    alone."""
    chains: dict[object, list[int]] = {}
    for index, trial in enumerate(trials):
        chains.setdefault(trial.series if trial.series is not None else index, []).append(index)
    return list(chains.values())


def watch(runner: Runner, show: Callable[[list[TrialProgress]], None], every: float = 0.25) -> None:
    """Call `show` with the trials' progress until the run ends (used by the CLI's display)."""
    while any(p.state in ("waiting", "running") for p in runner.progress):
        show(runner.progress)
        time.sleep(every)
    show(runner.progress)


def _samples(measured: list[tuple[TrialConfig, TrialResult]]) -> list[tuple[str, list]]:
    return [(trial.name, result.samples) for trial, result in measured]

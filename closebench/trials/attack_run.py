"""The run directory of one attack outside a scenario (`closebench attack --out`, with or without
--target): the same files as `closebench run` writes (trials/runner.py), so that report, compare and
check read it alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from closebench import __version__
from closebench.core.file_names import unique_names
from closebench.results import report as run_report  # render.py (matplotlib) on first use
from closebench.results.drop_check import add_drop_checks
from closebench.results.records import ATTEMPTS_DIR, SUFFIX, write_attempts_file
from closebench.results.run_writing import new_run_directory, write_samples, write_summary
from closebench.results.schema import SUMMARY_SCHEMA
from closebench.results.verify import verify_trials
from closebench.trials.machine import machine_metadata
from closebench.trials.rows import trial_row
from closebench.trials.trial import TrialConfig, TrialResult


class AttackRun:
    """The run directory of one attack outside a scenario (`closebench attack --out`, with or
    without --target): the same files as a scenario's run, so that report, compare and check
    read it alike.

    Made up front, so that a bad --out is an error before anything starts.
    """

    def __init__(self, out: Path, name: str, scenario_toml: str) -> None:
        self.name = name
        self.started_at = datetime.now(UTC)
        self.opened = new_run_directory(out, name, self.started_at)
        self.directory = self.opened.path  # for messages; written through self.opened
        self.opened.run.write("scenario.toml", scenario_toml)

    def pcap_for(self, trial: str) -> str:
        """Where the trial's attacker-side capture goes (pcaps/, named as verify finds it),
        through the run directory's anchor (closebench/core/safe_files.py), never its name."""
        pcaps = self.opened.run.subdirectory("pcaps")
        pcaps.close()
        return str(self.opened.run.anchor / "pcaps" / unique_names([trial], ".pcap")[0])

    def write(self, trial: TrialConfig, result: TrialResult, log: Callable[[str], None]) -> Path:
        """summary.json, the attempts file, samples.csv and the report; returns the directory."""
        finished = datetime.now(UTC)
        meta = {
            "closebench": __version__,
            "run_id": self.directory.name,
            "scenario_name": self.name,
            "duration_s": result.duration_s,
            "started": self.started_at.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "wall_s": (finished - self.started_at).total_seconds(),
            **machine_metadata(),
            "stopped": None,
        }
        run = self.opened.run
        try:
            path = run.anchor / ATTEMPTS_DIR / unique_names([trial.name], SUFFIX)[0]
            write_attempts_file(path, trial.name, result.attempts + result.legit_attempts)
            row = trial_row(trial, result)
            wire = None
            if trial.pcap:  # the records against the capture, as `closebench run` does
                try:
                    agreement = verify_trials(run.anchor, [trial.name])
                    add_drop_checks(agreement, run.anchor, [row.to_dict()])
                    wire = agreement.to_dict()
                    row.wire_agreement = next((t.to_dict() for t in agreement.trials), None)
                except Exception as error:  # recorded, never loses the run
                    wire = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            summary = {
                "schema": SUMMARY_SCHEMA,
                "meta": meta,
                "complete": result.complete,
                "wire_agreement": wire,
                "rows": [row.to_dict()],
            }
            write_summary(run, summary)
            if result.samples:
                write_samples(run, [(trial.name, result.samples)])
            self.opened.point_latest()
            run_report.build_run_report(self.directory, log, run)
        finally:
            self.opened.close()
        return self.directory

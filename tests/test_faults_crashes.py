"""A part that crashed fails its trial (issue 22, point 3), SIGTERM ends a run within seconds and a
run killed after its first trial leaves a readable, incomplete summary (point "low memory, no
loss"). Real labs, real crashes: a curl path holding NUL, a legitimate client due in 1e300 s and
a delayed-thread server told to sleep 1e300 s, which the scenario checks now refuse, are built
here past those checks, as a file from an older version or a bug would reach them.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from closebench.attackers.policy import Policy
from closebench.core.outcomes import Attempt, Outcome
from closebench.core.summary import summarize
from closebench.defender import ServerConfig
from closebench.results.compare import compare_runs
from closebench.results.gate import run_check
from closebench.results.run_directory import load_run, load_summary
from closebench.servers.strategies import parse_spec
from closebench.trials.part_faults import idle_attackers
from closebench.trials.rows import trial_row
from closebench.trials.runner import Runner
from closebench.trials.scenario import load_scenario
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial
from tests.conftest import wait_until

CLOSEBENCH = [sys.executable, "-m", "closebench.cli"]
RUN = Path(__file__).parent / "data" / "20261129-215532-report-sample"


def short(**policy: float) -> Policy:
    return Policy(**{"duration": 2.0, "timeout": 1.0, **policy})


@pytest.mark.needs_lab
def test_crashed_attacker_and_legitimate_client_fail_their_trial():
    config = TrialConfig(
        ServerConfig(spec=parse_spec("rst")),
        attackers=(AttackerSpec("curl", short(), path="/a\0b"),),
        legit=LegitClient(start=1e300),  # Event.wait(1e300): OverflowError in its thread
        duration=2.0,
    )
    result = run_trial(config)
    assert result.complete is False
    faults = {fault.part: fault for fault in result.faults}
    assert faults["the curl attacker"].kind == "ValueError"
    assert faults["the curl attacker"].message == "embedded null byte"
    assert faults["the legitimate client"].kind == "OverflowError"
    row = trial_row(config, result)
    assert row.complete is False and "the curl attacker failed: ValueError" in row.error
    assert {f["part"] for f in row.faults} == {"the curl attacker", "the legitimate client"}


# The reference server as `delayed-thread:delay=1e300` ran it before its bound: each delayed-close
# thread died in time.sleep(1e300) ("timestamp out of range"), its socket never closed, which
# alone reads as a `silent` strategy. Its options refuse 1e300 now; the sleep overflows the same.
OVERFLOWING_SERVER = """
import sys, time
sleep = time.sleep
def overflowing(seconds):
    if seconds >= 86400:
        raise OverflowError("timestamp out of range for platform time_t")
    sleep(seconds)
time.sleep = overflowing
from closebench.servers.reference.options import main
sys.exit(main())
"""


@pytest.mark.needs_lab
def test_a_server_thread_crash_does_not_read_as_silent():
    argv = [sys.executable, "-c", OVERFLOWING_SERVER, "--strategy", "delayed-thread:delay=86400"]
    config = TrialConfig(
        ServerConfig(command=[*argv, "--port", "8080"]),
        attackers=(AttackerSpec("kernel", short(rate=5)),),
        legit=None,
    )
    result = run_trial(config)
    assert result.summaries["kernel"].outcomes.get("silent", 0) > 0  # what it would read as
    assert result.complete is False
    [fault] = result.faults
    assert fault.part == "the server" and fault.kind == "ThreadCrash"
    assert "OverflowError: timestamp out of range" in fault.message


@pytest.mark.slow  # a run with its report: 30-60 s on a loaded machine
@pytest.mark.needs_lab
def test_a_run_with_a_crashed_trial_is_incomplete_and_check_and_compare_say_so(tmp_path):
    path = tmp_path / "crash.toml"
    path.write_text(
        'name = "crash"\nduration = 2\nparallel = 1\nstrategies = ["rst", "graceful"]\n'
        '[[attackers]]\nkind = "curl"\ntimeout = 1\nrate = 2\n[legit]\nrate = 1\n'
    )
    scenario, text, digest = load_scenario(path)
    # A NUL in the path, as a bug or an older file would bring it past the scenario's checks.
    broken = scenario.attackers[0].model_copy(update={"path": "/a\0b"})
    scenario = scenario.model_copy(update={"attackers": [broken]})
    outcome = Runner(scenario, text, digest, path, tmp_path / "out", verify=False).run(1)
    assert outcome.complete is False
    assert outcome.errors and all(
        "the curl attacker failed: ValueError" in e for e in outcome.errors
    )
    summary = json.loads((outcome.directory / "summary.json").read_text())
    assert summary["complete"] is False
    assert [row["complete"] for row in summary["rows"]] == [False, False]
    assert all(row["faults"][0]["kind"] == "ValueError" for row in summary["rows"])
    expectations = tmp_path / "expect.toml"
    expectations.write_text("[rst]\nattempts_per_s_max = 1000\n")
    verdicts = run_check(outcome.directory, expectations, None, lambda _: None)
    failed = {(v.trial, v.figure) for v in verdicts if not v.ok}
    assert ("rst", "trial") in failed and ("run", "complete") in failed
    comparison = compare_runs(load_summary(RUN), load_summary(outcome.directory))
    errors = [error for group in comparison.groups for error in group.errors()]
    assert any("the curl attacker failed" in error for error in errors), errors


def test_check_and_compare_fail_a_faulted_row(tmp_path):
    """The default suite's half of the test above, on a copy of a real run: a row as a crashed
    part leaves it."""
    directory = tmp_path / "run"
    shutil.copytree(RUN, directory)
    summary = json.loads((directory / "summary.json").read_text())
    row = next(row for row in summary["rows"] if row["trial"] == "rst")
    fault = {"part": "the kernel attacker", "kind": "NoAttempts", "message": "made no attempt"}
    row.update(complete=False, error="the kernel attacker failed: NoAttempts: made no attempt")
    row["faults"] = [fault]
    summary["complete"] = False
    (directory / "summary.json").write_text(json.dumps(summary))
    expectations = tmp_path / "expect.toml"
    expectations.write_text("[rst]\nattempts_per_s_max = 100000\n")
    verdicts = run_check(directory, expectations, None, lambda _: None)
    failed = {(v.trial, v.figure) for v in verdicts if not v.ok}
    assert failed == {("rst", "trial"), ("run", "complete")}
    quiet = run_check(RUN, expectations, None, lambda _: None)  # the run as it was: all hold
    assert all(v.ok for v in quiet if v.trial == "rst")
    comparison = compare_runs(load_summary(RUN), load_summary(directory))
    errors = [error for group in comparison.groups for error in group.errors()]
    assert errors == ["B: rst: the kernel attacker failed: NoAttempts: made no attempt"]
    assert load_run(directory).trials  # the row reads as failed, the run still reads


def test_a_trial_that_raises_keeps_its_fault_in_the_row_and_the_run(tmp_path, monkeypatch):
    """A trial that raised reaches its row, summary.json and the run's errors as one typed Fault:
    closebench's own error as its line, a crash with its part and type. No lab is built: the
    trial itself stands in for one whose lab could not be built, and one that crashed."""
    from closebench.core.errors import LabError
    from closebench.trials import runner

    def raising(config, cancel, on_attempt):
        if config.name == "rst":
            raise LabError("tcpdump did not start capturing: no such device")
        raise KeyError("a bug")

    monkeypatch.setattr(runner, "run_trial", raising)
    path = tmp_path / "raise.toml"
    path.write_text(
        'name = "raise"\nduration = 1\nstrategies = ["rst", "graceful"]\n'
        '[[attackers]]\nkind = "kernel"\n'
    )
    scenario, text, digest = load_scenario(path)
    outcome = Runner(scenario, text, digest, path, tmp_path / "out", verify=False).run(1)
    assert outcome.complete is False
    assert outcome.errors == [
        "rst: tcpdump did not start capturing: no such device",
        "graceful: the trial failed: KeyError: 'a bug'",
    ]
    rows = json.loads((outcome.directory / "summary.json").read_text())["rows"]
    assert [row["error"] for row in rows] == [e.split(": ", 1)[1] for e in outcome.errors]
    assert [row["faults"] for row in rows] == [
        [
            {
                "part": "the trial",
                "kind": "LabError",
                "message": "tcpdump did not start capturing: no such device",
            }
        ],
        [{"part": "the trial", "kind": "KeyError", "message": "'a bug'"}],
    ]
    assert [row["complete"] for row in rows] == [False, False]


@pytest.mark.slow  # a run with its report, 20-40 s
@pytest.mark.needs_lab
def test_too_few_open_files_fail_the_trial_and_the_run(tmp_path):
    path = tmp_path / "fd.toml"
    path.write_text(
        'name = "fd"\nduration = 2\nstrategies = ["repair"]\n'
        '[[attackers]]\nkind = "kernel"\nconcurrency = 200\n'
    )
    command = " ".join([*CLOSEBENCH, "run", str(path), "--out", str(tmp_path / "out")])
    result = subprocess.run(
        ["bash", "-c", f"ulimit -n 64; exec {command}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    summary = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())
    assert summary["complete"] is False
    [row] = summary["rows"]
    assert row["complete"] is False and "Too many open files" in row["error"]


def start_run(tmp_path: Path, strategies: str, duration: int) -> tuple[subprocess.Popen, Path]:
    path = tmp_path / "s.toml"
    path.write_text(
        f'name = "s"\nduration = {duration}\nparallel = 1\nstrategies = [{strategies}]\n'
        '[[attackers]]\nkind = "kernel"\ntimeout = 1\nrate = 10\n'
    )
    out = tmp_path / "out"
    command = [*CLOSEBENCH, "run", str(path), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE), out


@pytest.mark.needs_lab
def test_sigterm_ends_a_run_within_five_seconds(tmp_path):
    process, out = start_run(tmp_path, '"rst", "never"', duration=60)
    try:
        # The first trial attacking: its capture holds packets.
        assert wait_until(
            lambda: any(p.stat().st_size > 2000 for p in out.glob("*/pcaps/rst.pcap")), 90
        )
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130 and b"Traceback" not in stderr, stderr
    assert took <= 5.0, f"SIGTERM took {took:.1f} s"  # the bound; measured 3 s loaded
    summary = json.loads((out / "latest" / "summary.json").read_text())
    assert summary["complete"] is False and summary["rows"][0]["attempts"] > 0
    assert b"`closebench report" in stderr  # the page it left to build later


def first_trial_done(out: Path) -> bool:
    """summary.json so far (written at the start, then as each trial ends) has its first row."""
    for path in out.glob("*/summary.json"):
        try:
            return json.loads(path.read_text())["rows"][0]["complete"] is True
        except (OSError, ValueError):
            return False  # never half a file (written whole, renamed), but it may not be there
    return False


@pytest.mark.needs_lab
def test_a_run_killed_after_its_first_trial_keeps_a_readable_summary(tmp_path):
    # The summary exists from the start: a run killed in its first trial leaves its rows too.
    process, out = start_run(tmp_path, '"rst", "never"', duration=2)
    try:
        assert wait_until(lambda: first_trial_done(out), 120)
        process.send_signal(signal.SIGSEGV)  # as a crash in pyarrow or under the memory limit
        process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGSEGV
    [directory] = [d for d in out.iterdir() if not d.is_symlink()]
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["complete"] is False
    first, second = summary["rows"]
    assert first["trial"] == "rst" and first["complete"] is True and first["attempts"] > 0
    assert second["complete"] is False and second["error"].startswith("not finished")
    run = load_run(directory)  # report, compare and check read it like any run
    assert not run.complete and run.trials[0].ok


def test_an_attacker_with_no_attempt_is_a_fault_with_its_reason():
    idle = summarize("kernel", [], 2.0)
    attempt = Attempt(
        "curl", 4, "198.18.0.2", 40000, "198.18.1.2", 8080, 1.0, Outcome.RST, 1.0, 1.1
    )
    busy = summarize("curl", [attempt], 2.0)
    costs = {"kernel": {"local_error_kinds": {"EMFILE": 200}}}
    [fault] = idle_attackers(["kernel", "curl"], {"kernel": idle, "curl": busy}, costs, set())
    assert str(fault) == (
        "the kernel attacker failed: NoAttempts: made no attempt in 2.0 s "
        "(its own errors: 200 x EMFILE)"
    )
    # One that crashed already has its fault: not told twice.
    assert idle_attackers(["kernel"], {"kernel": idle}, {}, {"the kernel attacker"}) == []

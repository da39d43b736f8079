"""The `closebench` command as a user runs it: output, errors, and nothing left behind."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from closebench.cli.tables import (
    ATTACK_FIGURES,
    PROBE_COLUMNS,
    RUN_COLUMNS,
    print_attack,
    print_run,
    probe_table,
)
from closebench.core.outcomes import Attempt, Outcome
from closebench.core.summary import summarize
from closebench.defender import ServerConfig
from closebench.results.report.columns import COLUMN_BY_KEY
from closebench.results.schema import TrialRow
from closebench.servers.strategies import parse_spec
from closebench.trials.probe import ProbeCase, ProbeResult
from closebench.trials.runner import RunOutcome
from closebench.trials.scenario import load_scenario
from closebench.trials.trial import TrialConfig, TrialResult
from tests.conftest import our_keepers, wait_until


def closebench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "closebench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.needs_lab
def test_probe_json_document():
    result = closebench("probe", "-s", "graceful", "-s", "repair", "--timeout", "2", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "closebench.probe/1"
    assert document["client_timeout"] == 2
    outcomes = {r["strategy"]: r["outcome"] for r in document["results"]}
    assert outcomes == {"graceful": "fin", "repair": "silent"}
    for row in document["results"]:
        assert row["attempt"]["outcome"] == row["outcome"]
        assert row["timeline"][0]["what"] == "S"
        assert row["error"] is None


@pytest.mark.needs_lab
def test_probe_table_for_humans(tmp_path):
    result = closebench("probe", "-s", "rst", "--timeout", "2", "--pcap-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    # The rst row's outcome cell (the strategy's own name, in the first cell, says nothing).
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in lines]
    [row] = [cells for cells in rows if cells[0] == "rst"]
    assert row[1] == "rst", row
    pcaps = list(tmp_path.glob("*.pcap"))
    assert len(pcaps) == 1 and pcaps[0].stat().st_size > 24  # more than a pcap header


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "nonsense"], "unknown strategy 'nonsense'; choose one of: graceful"),
        (["-s", "repair:delay=3"], "has no option 'delay'"),
        (["-s", "tarpit:interval=soon"], "takes a float"),
        (["--port", "70000"], "outside 1-65535"),
        (["--timeout", "0"], "must be greater than 0"),
    ],
)
def test_bad_options_are_one_clear_error(args, message):
    result = closebench("probe", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not our_keepers()


def test_strategy_and_command_together_is_an_error():
    result = closebench("probe", "-s", "rst", "--", "true")
    assert result.returncode == 2
    assert "either --strategy or a command" in result.stderr


@pytest.mark.needs_lab
def test_command_that_exits_is_reported():
    result = closebench("probe", "--", "sh", "-c", "echo cannot start >&2; exit 3")
    assert result.returncode == 1
    assert "exited with status 3 before listening on port 8080: cannot start" in result.stderr


@pytest.mark.needs_lab
def test_command_that_never_listens_is_reported():
    result = closebench("probe", "--listen-timeout", "1", "--", "sleep", "30")
    assert result.returncode == 1
    assert "did not listen on port 8080 within 1 s" in result.stderr
    assert not our_keepers()


@pytest.mark.needs_lab
def test_user_command_is_probed():
    server = [sys.executable, "-m", "http.server", "--bind", "::", "8081"]
    result = closebench("probe", "--port", "8081", "--timeout", "2", "--json", "--", *server)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["results"][0]
    assert row["command"] == server
    assert row["outcome"] == "fin" and row["data_first"] is True


@pytest.mark.needs_lab
def test_kill_9_of_a_running_probe_leaves_nothing():
    probe = subprocess.Popen(
        [sys.executable, "-m", "closebench.cli", "probe", "-s", "never", "--timeout", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Both running first: else a changed command line would let the test pass unseen.
        assert wait_until(lambda: _tcpdumps(probe.pid), timeout=20), "the probe never captured"
        servers, tcpdumps = _reference_servers(probe.pid), _tcpdumps(probe.pid)
        assert servers and tcpdumps, (servers, tcpdumps)
        os.kill(probe.pid, signal.SIGKILL)
        probe.wait(10)
        assert wait_until(lambda: not our_keepers()), "lab keepers survived kill -9"
        _, alive = psutil.wait_procs([*servers, *tcpdumps], timeout=10)
        assert not alive, f"the server or tcpdump survived kill -9: {alive}"
    finally:
        probe.kill()
        probe.wait()


@pytest.mark.needs_lab
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly(stop):
    probe = subprocess.Popen(
        [sys.executable, "-m", "closebench.cli", "probe", "-s", "never", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: _tcpdumps(probe.pid), timeout=20)
        servers = _reference_servers(probe.pid)
        assert servers, "the reference server is not running"
        probe.send_signal(stop)
        _, stderr = probe.communicate(timeout=20)
        assert probe.returncode == 130
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert not our_keepers()
        _, alive = psutil.wait_procs(servers, timeout=10)
        assert not alive, f"the server survived: {alive}"
    finally:
        probe.kill()
        probe.wait()


@pytest.mark.needs_lab
def test_lab_clean_removes_old_named_namespaces():
    subprocess.run(["ip", "netns", "add", "closebench-test-old"], check=True)
    try:
        result = closebench("lab", "clean")
        assert result.returncode == 0
        assert "deleted network namespace closebench-test-old" in result.stdout
        assert "closebench-test-old" not in os.listdir("/run/netns")
    finally:
        subprocess.run(["ip", "netns", "delete", "closebench-test-old"], capture_output=True)
    again = closebench("lab", "clean")
    assert "nothing to clean" in again.stdout


def _descendants(ancestor: int, matches) -> list[psutil.Process]:
    """The processes `ancestor` started (its descendants) whose command line `matches`: never
    those of other closebench runs on the same machine."""
    found = []
    for process in psutil.Process(ancestor).children(recursive=True):
        try:
            if matches(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _reference_servers(ancestor: int) -> list[psutil.Process]:
    return _descendants(ancestor, lambda argv: argv[1:3] == ["-m", "closebench.servers.reference"])


def _tcpdumps(ancestor: int) -> list[psutil.Process]:
    # The capture starts once the server listens: the probe is under way, its handlers installed.
    return _descendants(ancestor, lambda argv: argv[:1] == ["tcpdump"])


@pytest.mark.needs_lab
def test_probe_inside_a_user_namespace():
    # What an ordinary user gets: closebench re-executes itself like this when not root.
    command = ["unshare", "-Urnm", "--", "env", "CLOSEBENCH_IN_USERNS=1", sys.executable]
    command += ["-m", "closebench.cli", "probe", "-s", "rst", "-s", "repair", "--timeout", "2"]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcomes = {r["strategy"]: r["outcome"] for r in json.loads(result.stdout)["results"]}
    assert outcomes == {"rst": "rst", "repair": "silent"}


def test_the_run_table_shows_each_figure_as_the_report_does():
    """`closebench run`'s table reads the rows of summary.json with the report's column definition:
    the sample run's figures appear in the terminal as they do on the page, and a ratio of 0.0 (the
    attacker wasted nothing) is a number, not "no fd held" (which only a null ratio means)."""
    run = Path(__file__).parent / "data" / "20261129-215532-report-sample"
    raw = json.loads((run / "summary.json").read_text())["rows"]
    fields = set(TrialRow.__dataclass_fields__)
    rows = [TrialRow(**{k: v for k, v in r.items() if k in fields}) for r in raw]
    rows[0] = replace(rows[0], wasted_per_fd_second=0.0)
    rows[1] = replace(rows[1], wasted_per_fd_second=None)
    out = io.StringIO()
    print_run(
        RunOutcome(run, rows, complete=True),
        load_scenario(run / "scenario.toml")[0],
        Console(file=out, width=400),
    )
    headers = ["strategy"] + [COLUMN_BY_KEY[key].header for key in RUN_COLUMNS]
    lines = [line for line in out.getvalue().splitlines() if line.startswith(("┃", "│"))]
    table = [[cell.strip() for cell in re.split("[┃│]", line)[1:-1]] for line in lines]
    assert table[0] == headers
    by_trial = {cells[0]: dict(zip(headers, cells, strict=True)) for cells in table[1:]}
    assert set(by_trial) == {row.trial for row in rows}
    for row in rows:
        shown = by_trial[row.trial]
        assert shown["peak fds"] == ("-" if row.peak_fds is None else str(row.peak_fds))
        assert shown["attempts/s"] == f"{row.attempts_per_s:.2f}"
    assert by_trial[rows[0].trial]["wasted s per fd-s"] == "0.00"
    assert by_trial[rows[1].trial]["wasted s per fd-s"] == "no fd held"


def table_cells(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith(("┃", "│"))]
    return [[cell.strip() for cell in re.split("[┃│]", line)[1:-1]] for line in lines]


def synthetic_attempt(outcome: Outcome, t0: float, hang: float, **fields) -> Attempt:
    return Attempt(
        "kernel", 4, "198.18.0.2", 40000 + int(t0), "198.19.0.2", 8080, 10.0, outcome,
        t0, t0 + 0.001, t0 + 0.002, None, t0 + 0.002 + hang, **fields,
    )  # fmt: skip


def test_the_attack_and_probe_tables_are_drawn_from_their_definitions():
    """`attack`'s rows and `probe`'s columns each come from one definition: every figure the
    attacker's summary has, under its label and in order (one it lacks, command runs, left
    out), attempts/s as the report writes it; a probe that could not run reads error."""
    attempts = [synthetic_attempt(Outcome.FIN, 100.0 + i, 0.5 * i) for i in range(5)]
    attempts.append(synthetic_attempt(Outcome.SILENT, 120.0, 10.0))
    summary = summarize("kernel", attempts, 30.0, {"peak_kernel_sockets": 4})
    config = TrialConfig(ServerConfig(spec=parse_spec("graceful")), legit=None)
    result = TrialResult(
        config, attempts, [], {"kernel": summary}, None, [], None, None, {}, "", 30.0, True
    )
    out = io.StringIO()
    print_attack(result, Console(file=out, width=200))
    shown = {cells[0]: cells[1] for cells in table_cells(out.getvalue())}
    assert list(shown) == [f.label for f in ATTACK_FIGURES if f.label in shown]  # in its order
    assert {"attempts", "attempts/s", "hang median / p95 / max", "outcomes"} <= set(shown)
    assert "command runs" not in shown and "attacker peak open fds" not in shown
    assert shown["attempts/s"] == f"{6 / 30:.2f}" and shown["attempts"] == "6 in 30.0 s"
    assert shown["outcomes"] == "fin 5, silent 1"
    assert shown["hang median / p95 / max"].startswith("1.250 s / ")
    case = ProbeCase(ServerConfig(spec=parse_spec("repair")))
    ran = ProbeResult(case, synthetic_attempt(Outcome.SILENT, 200.0, 10.0, data_first=True))
    out = io.StringIO()
    Console(file=out, width=200).print(probe_table([ran, ProbeResult(case, error="no")], 10.0))
    header, good, failed = table_cells(out.getvalue())
    assert header == ["strategy", *(column.header for column in PROBE_COLUMNS)]
    assert good == ["repair", "silent", "yes", "10.00 s", "nothing", "no socket"]
    assert failed == ["repair", "error", "", "", "see below", ""]

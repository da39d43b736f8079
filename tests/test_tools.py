"""The tool attacker kind: real abuse tools run by their profiles (attackers/tool_profiles.py),
the registry of kinds, and the reference server's basic auth that gives a brute-forcer its tries.

The fast tests need no lab: the tools run against the reference server on loopback, and their
own output is read by the profiles. The lab tests (needs_lab) run them from the attacker host.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
import sys

import pytest

from closebench.attackers import (
    COMMAND_KINDS,
    KINDS,
    Request,
    make_attacker,
    require_tools_for,
    tool_profiles,
)
from closebench.attackers.tool_profiles import PROFILES, WORDLISTS, profile, skip_missing
from closebench.core.errors import EnvironmentProblem, UsageError
from closebench.core.placeholders import fill
from tests.test_own_server import _closebench

# In the shipped wordlists: user 2 of 6, password 6 of 10 (hydra then skips admin's last 4).
CREDENTIALS = "admin:letmein"


def _needs(program: str):
    return pytest.mark.skipif(
        shutil.which(program) is None, reason=f"{program} is not installed (apt install {program})"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(strategy: str = "graceful", basic_auth: str | None = CREDENTIALS):
    port = _free_port()
    argv = [sys.executable, "-m", "closebench.servers.reference", "--strategy", strategy]
    argv += ["--port", str(port), "--bind4", "127.0.0.1", "--no-ipv6"]
    argv += ["--basic-auth", basic_auth] if basic_auth else []
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _ask(port: int, credentials: str | None) -> bytes:
    header = ""
    if credentials is not None:
        header = f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /spam HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        return answer


def test_every_kind_is_one_record():
    """The registry is the one list: command kinds are the ones with a command line, and an
    unknown kind is an error naming the known ones."""
    assert set(COMMAND_KINDS) == {"curl", "command", "browser", "tool"}
    assert all(kind.description and kind.name == name for name, kind in KINDS.items())
    with pytest.raises(ValueError, match="choose one of: kernel, scapy"):
        make_attacker("nope")
    assert make_attacker("tool", Request(tool="hydra")).name == "tool"


def test_basic_auth_asks_serves_and_punishes():
    """No credentials: 401 with a Basic challenge; the right pair: 200; a wrong pair is the
    abuse: graceful closes it with no answer."""
    with _server() as port:
        challenge = _ask(port, None)
        assert challenge.startswith(b"HTTP/1.1 401") and b"WWW-Authenticate: Basic" in challenge
        assert _ask(port, CREDENTIALS).startswith(b"HTTP/1.1 200")
        assert _ask(port, "operator:wrong") == b""


def test_basic_auth_argument_is_checked():
    argv = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "graceful"]
    result = subprocess.run([*argv, "--basic-auth", "nocolon"], capture_output=True, text=True)
    assert result.returncode == 2 and "USER:PASSWORD" in result.stderr


def _run_tool(name: str, port: int, cwd, args: list[str] | None = None) -> tuple[str, str, int]:
    values = {
        "address": "127.0.0.1",
        "port": str(port),
        "path": "/spam",
        "users": str(WORDLISTS / "users.txt"),
        "passwords": str(WORDLISTS / "passwords.txt"),
    }
    argv = fill(profile(name).argv(args), values)
    # In a directory of its own: hydra may leave ./hydra.restore
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    return done.stdout, done.stderr, done.returncode


@_needs("hydra")
def test_hydra_profile_reads_its_tries_and_the_pair_it_found(tmp_path):
    """hydra against basic auth on loopback: every pair of the wordlists tried once but admin's
    after its right one, which it found; counted from hydra's own output (its -V lines)."""
    with _server() as port:
        reading = profile("hydra").read(*_run_tool("hydra", port, tmp_path))
    if reading.gave_up is None:
        assert (reading.tries, reading.successes) == (56, 1)
    else:  # hydra's own race on a loaded machine: a task's connection failed, its pair lost
        assert "could not be connected" in reading.gave_up and reading.tries == 60


@_needs("hydra")
def test_hydra_gives_up_on_a_closed_port_and_says_so(tmp_path):
    out, err, status = _run_tool("hydra", _free_port(), tmp_path)
    reading = profile("hydra").read(out, err, status)
    assert reading.gave_up is not None and reading.tries <= 4


@_needs("nmap")
def test_nmap_profile_counts_its_probe_and_the_open_port(tmp_path):
    with _server() as port:
        reading = profile("nmap").read(*_run_tool("nmap", port, tmp_path))
    assert (reading.tries, reading.successes, reading.gave_up) == (1, 1, None)


def test_tool_timeouts_are_read_from_their_arguments():
    assert profile("hydra").wait(["-t", "4", "-w", "5"]) == 5.0
    assert profile("hydra").wait([]) == 32.0  # hydra's default
    assert profile("medusa").wait(["-g", "7"]) == 7.0
    assert profile("nmap").wait(["-sT", "--max-rtt-timeout", "500ms"]) == 0.5
    assert profile("masscan").wait([]) == 10.0
    assert profile("ncrack").wait([]) == float("inf")


def test_a_missing_tool_names_its_package(monkeypatch):
    monkeypatch.setattr(tool_profiles.shutil, "which", lambda program: None)
    with pytest.raises(EnvironmentProblem, match="apt-get install medusa"):
        require_tools_for("tool", Request(tool="medusa"))
    warned: list[str] = []
    missing = {"graceful / medusa": profile("medusa").missing()}
    assert skip_missing(missing, 2, warned.append) == {
        "graceful / medusa": "skipped: " + profile("medusa").missing()
    }
    assert warned == [profile("medusa").missing() + "; its trials skipped"]
    with pytest.raises(EnvironmentProblem):  # nothing would be left
        skip_missing(missing, 1, warned.append)


def test_tools_scenario_runs_each_tool_apart(monkeypatch):
    """The shipped tools scenario: one trial per strategy and tool; a tool not installed keeps
    its trials, to be skipped with its package named."""
    from closebench.trials.scenario import find_scenario, load_scenario

    scenario, _, _ = load_scenario(find_scenario("tools"))
    names = [trial.name for trial in scenario.trials()]
    assert len(names) == 3 * len(PROFILES) and "repair / hydra" in names
    assert all(len(trial.attackers) == 1 for trial in scenario.trials())
    assert scenario.duration * len(names) / (scenario.parallel or 1) <= 300  # <= 5 minutes
    real = shutil.which
    monkeypatch.setattr(tool_profiles.shutil, "which", lambda p: None if p == "ncrack" else real(p))
    missing = scenario.tools_missing()
    assert set(missing) == {f"{s} / ncrack" for s in ("graceful", "repair", "fw-drop")}
    assert all("apt-get install ncrack" in why for why in missing.values())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('kind = "tool"', 'kind = "tool" needs tool = one of hydra'),
        ('kind = "tool"\ntool = "john"', "unknown tool 'john'"),
        ('kind = "kernel"\ntool = "hydra"', 'tool and args go with kind = "tool"'),
        ('kind = "tool"\ntool = "nmap"\nargs = ["{target}"]', "unknown placeholder {target}"),
    ],
)
def test_bad_tool_entries_are_one_line(tmp_path, entry, message):
    from closebench.trials.scenario import load_scenario

    path = tmp_path / "s.toml"
    path.write_text(f'name = "t"\nstrategies = ["graceful"]\n[[attackers]]\n{entry}\n')
    with pytest.raises(UsageError, match=message):
        load_scenario(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "tool:john"], "unknown tool 'john'"),
        (["-a", "tool"], "invalid choice: 'tool' (choose from kernel"),
        (["-a", "kernel", "--tool-args", "-t 4"], "--tool-args goes with --attacker tool:NAME"),
    ],
)
def test_bad_tool_flags_are_one_line(tmp_path, args, message):
    result = _closebench("attack", "-s", "rst", "--out", str(tmp_path / "runs"), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]  # argparse's usage, then one line
    assert not (tmp_path / "runs").exists()


# In the lab: the tools from the attacker host, by their profiles, against the reference server.


def _tool_trial(
    strategy: str,
    tool: str,
    duration: float,
    args: list[str] | None = None,
    runs: int | None = None,
):
    """One trial of `tool` alone; `runs`: that many runs, each until the tool ends it (within
    `duration`, a bound for a tool that hangs), else runs until the attack ends."""
    from closebench.attackers.policy import Policy
    from closebench.defender import ServerConfig
    from closebench.servers.strategies import parse_spec
    from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

    policy = Policy(timeout=5.0, duration=duration, attempts=runs)
    attacker = AttackerSpec("tool", policy, tool=tool, args=args)
    server = ServerConfig(8080, parse_spec(strategy), basic_auth=CREDENTIALS)
    result = run_trial(TrialConfig(server, (attacker,), legit=None))
    summary = result.summaries[attacker.name]
    return result, summary, summary.attacker_cost["tool"]


@pytest.mark.needs_lab
@_needs("nmap")
@pytest.mark.parametrize("strategy", ["graceful", "repair", "fw-drop"])
def test_nmap_connect_scan_ends_at_its_own_rst(strategy):
    """nmap -sT connects and resets at once, whatever the strategy (it never sends a request
    for the strategy to answer): each attempt is closed by the client, at nmap's RST, long
    before its run ends; and nmap finished every run."""
    result, summary, tool = _tool_trial(strategy, "nmap", 60.0, runs=1)
    assert result.attempts and summary.closed_by["client"] == len(result.attempts)
    for attempt in result.attempts:
        assert attempt.t_request is None and attempt.slot_s < 0.5 * attempt.run_duration_s
    assert tool["tries"] == 1 and tool["ended"] == {"finished": 1}


@pytest.mark.slow
@pytest.mark.needs_lab
@_needs("hydra")
def test_hydra_against_repair_is_stopped_and_makes_no_progress():
    """repair closes silently: hydra's tasks wait (-w 5, and then again), it never learns a
    pair's verdict; closebench stops it at the attack's end: outlasted, 0 tries/s."""
    _result, summary, tool = _tool_trial("repair", "hydra", 10.0)
    assert tool["ended"] == {"stopped": 1} and tool["tries"] == 0
    assert tool["tries_per_s"] == 0.0 and summary.outlasted >= 1


@pytest.mark.slow
@pytest.mark.needs_lab
@_needs("hydra")
def test_hydra_tries_per_second_agree_with_requests_on_the_wire():
    """Against graceful each wrong pair is one request and one FIN: hydra's own count of its
    tries per second of its wall time is within 10% of the requests on the wire per second.
    Two whole runs of the wordlist, each until hydra ends it."""
    result, _summary, tool = _tool_trial("graceful", "hydra", 120.0, runs=2)
    requests = sum(attempt.t_request is not None for attempt in result.attempts)
    assert tool["tries"] > 20
    assert tool["tries_per_s"] == pytest.approx(requests / tool["wall_s"], rel=0.10)


@pytest.mark.slow
@pytest.mark.needs_lab
@_needs("hydra")
def test_hydra_attacker_time_is_the_union_of_its_connections():
    """hydra -t 4 for 20 s against never: four connections held at once. The attacker's time
    (union) is at most the 20 s one run of it lasted; the per-connection sum is about four
    times that, shown beside it."""
    _result, summary, _tool = _tool_trial("never", "hydra", 20.0, ["-t", "4", "-w", "5"])
    assert summary.attacker_seconds_busy <= 20.0 * 1 + 1.0  # one run at a time (concurrency 1)
    assert summary.attacker_seconds_wasted > 2 * summary.attacker_seconds_busy


@pytest.mark.needs_lab
@_needs("masscan")
def test_masscan_runs_without_a_wrapper():
    """masscan writes its own frames: its profile gives it the attacker's interface, address
    and the next hop's MAC, so it runs as itself (no script around it) and finds the port."""
    result, _summary, tool = _tool_trial("rst", "masscan", 60.0, ["--wait", "1"], runs=1)
    assert tool["program"] == "masscan" and tool["tries"] == 1 and tool["successes"] == 1
    assert tool["ended"] == {"finished": 1} and result.attempts


@pytest.mark.slow
@pytest.mark.needs_lab
@_needs("nmap")
def test_a_missing_tool_keeps_its_row_skipped(tmp_path, monkeypatch):
    """A scenario whose hydra is not installed runs the rest; hydra's row stays, skipped,
    naming the package, and the run's versions name the tool that ran."""
    import json

    from closebench.cli.main import main

    scenario = tmp_path / "t.toml"
    scenario.write_text(
        'name = "t"\nduration = 2\nattackers_apart = true\nstrategies = ["rst"]\n'
        '[[attackers]]\nkind = "tool"\ntool = "hydra"\n'
        '[[attackers]]\nkind = "tool"\ntool = "nmap"\n'
    )
    real = shutil.which
    monkeypatch.setattr(tool_profiles.shutil, "which", lambda p: None if p == "hydra" else real(p))
    assert main(["run", str(scenario), "--out", str(tmp_path / "runs")]) == 0
    rows = {
        row["trial"]: row
        for row in json.loads((tmp_path / "runs/latest/summary.json").read_text())["rows"]
    }
    assert rows["rst / hydra"]["error"].startswith("skipped:")
    assert "apt-get install hydra" in rows["rst / hydra"]["error"]
    assert rows["rst / nmap"]["error"] is None and "nmap" in rows["rst / nmap"]["tool_versions"]


def _row(tries: int, tries_are: str = "credential pairs", attackers: int = 1) -> dict:
    tool = {"name": "hydra", "tries": tries, "wall_s": 10.0, "tries_are": tries_are}
    cost = {"attacker_cost": {"tool": tool}}
    return {"trial": "t", "attackers": {f"a{i}": cost for i in range(attackers)}}


def test_verify_checks_a_tools_tries_against_the_wire():
    """Quiet when the tool's count is the wire's (a brute-forcer's answered requests, a
    scanner's connections); flags a count 15% off; no check for several attackers at once."""
    from closebench.results.tool_check import check_tool, tool_figures

    [tool] = tool_figures([_row(100)]).values()
    assert check_tool(tool, connections=130, answered=100).agrees
    assert check_tool(tool, connections=130, answered=95).agrees  # within 10%
    assert not check_tool(tool, connections=130, answered=85).agrees
    [scan] = tool_figures([_row(20, "port probes")]).values()
    assert check_tool(scan, connections=20, answered=0).agrees
    assert not check_tool(scan, connections=17, answered=0).agrees
    assert check_tool(tool_figures([_row(0)])["t"], 3, 1).agrees  # within one try
    assert tool_figures([_row(100, attackers=2)]) == {}

"""Your own server gated like a reference strategy: a scenario's command trial and
`closebench attack --out DIR -- CMD` write run directories that `closebench check` reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLOSEBENCH = [sys.executable, "-m", "closebench.cli"]
PYTHON = "/usr/bin/python3"  # reachable by the unprivileged uid a scenario's command runs as
SCENARIO = """
name = "own-server"
duration = 2
[server]
port = 8080
[[strategies]]
command = ["python3", "-m", "http.server", "{port}"]  # found on the confined PATH
label = "mine"
[[attackers]]
timeout = 2
rate = 10
"""


def _closebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLOSEBENCH, *args], capture_output=True, text=True, timeout=300)


def _gate(run: Path, tmp_path: Path) -> None:
    """`outcome = "fin"` passes, `outcome = "silent"` fails with exit 1; the server's fd and CPU
    figures were measured."""
    [row] = json.loads((run / "summary.json").read_text())["rows"]
    assert row["trial"] == "mine" and row["error"] is None
    assert row["peak_fds"] is not None and row["peak_fds"] >= 1
    assert row["cpu_seconds"] is not None
    assert row["wire_agreement"] is not None  # checked against the pcap, as a scenario's rows
    for outcome, status in (("fin", 0), ("silent", 1)):
        expect = tmp_path / f"{outcome}.toml"
        expect.write_text(f'[mine]\noutcome = "{outcome}"\n')
        result = _closebench("check", str(run), "--expect", str(expect))
        assert result.returncode == status, result.stdout + result.stderr
    assert "every attempt silent" in result.stdout  # the failure names what was expected


@pytest.mark.slow  # ~35 s on a loaded 2-core machine, most of it the report
@pytest.mark.needs_lab
def test_own_server_from_a_scenario(tmp_path):
    scenario = tmp_path / "own.toml"
    scenario.write_text(SCENARIO)
    result = _closebench("run", str(scenario), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "server mine" in line)
    assert "runs as uid" in line and "capabilities: none" in line
    _gate(tmp_path / "runs" / "latest", tmp_path)


@pytest.mark.slow
@pytest.mark.needs_lab
def test_own_server_from_attack_out(tmp_path):
    args = ["attack", "--out", str(tmp_path / "runs"), "--label", "mine", "--duration", "2"]
    args += ["--timeout", "2", "--rate", "10", "--", PYTHON, "-m", "http.server", "8080"]
    result = _closebench(*args)
    assert result.returncode == 0, result.stderr
    assert "runs as typed" in result.stderr
    run = tmp_path / "runs" / "latest"
    assert sorted(p.name for p in (run / "pcaps").iterdir()) == ["mine.pcap"]
    assert (run / "samples.csv").is_file() and (run / "index.html").is_file()
    _gate(run, tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--", "server", "{prot}"], "-- CMD: unknown placeholder {prot} in the command; allowed:"),
        (["-a", "curl", "--attacker-command", "curl {ulr}", "-s", "rst"], "unknown placeholder"),
        (
            ["-a", "command", "--attacker-command", "hydra {target}", "-s", "rst"],
            "--attacker-command: unknown placeholder {target} in the command; allowed: {url}",
        ),
    ],
)
def test_unknown_placeholders_in_typed_commands(tmp_path, args, message):
    result = _closebench("attack", "--out", str(tmp_path / "runs"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing left behind

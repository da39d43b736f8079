"""Commands from scenario files run without root's powers (closebench/lab/confine.py); commands
typed on the command line run as typed."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import psutil
import pytest

from closebench.attackers.policy import Policy
from closebench.core.errors import UsageError
from closebench.defender import Defender, ServerConfig
from closebench.lab.confine import (
    Confinement,
    describe,
    root_is_the_machines,
    unprivileged_identity,
)
from closebench.servers.strategies import parse_spec
from closebench.trials.scenario import Scenario, load_scenario
from closebench.trials.scenario_commands import command_lines
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

PYTHON = "/usr/bin/python3"  # the system's: a confined uid may not reach a virtualenv under /root
# What the hostile command tries; its exit status has one bit per attempt that FAILED:
# 1 writing $1 (a root-only place), 2 entering the network namespace of process $2 (the test's:
# the machine's), 4 running as uid $0, 8 reading closebench's environment ($SECRET).
HOSTILE = (
    'curl -sS -o /dev/null --max-time {timeout} {url}; s=0; touch "$1" 2>/dev/null || s=$((s|1)); '
    "nsenter --net=/proc/$2/ns/net true 2>/dev/null || s=$((s|2)); "
    '[ "$(id -u)" = "$0" ] || s=$((s|4)); [ -n "$SECRET" ] || s=$((s|8)); exit $s'
)
RAW_SOCKET = (
    "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()"
)


def _own_uid() -> int:
    identity = unprivileged_identity()
    return identity[0] if identity else os.geteuid()


def _one_run(command: list[str], confine: Confinement | None):
    """The one attempt of one run of `command` against a graceful server, with its exit status."""
    policy = Policy(timeout=2.0, reconnect=False, duration=15.0)
    attacker = AttackerSpec("curl", policy, "/", command, "hostile", confine=confine)
    config = TrialConfig(ServerConfig(8080, parse_spec("graceful")), (attacker,), legit=None)
    result = run_trial(config)
    [attempt] = result.attempts
    attempt.runs_failed = result.summaries["hostile"].attacker_cost["runs_failed"]
    return attempt


@pytest.mark.needs_lab
def test_a_scenario_command_cannot_write_as_root_nor_leave_its_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET", "root's token")
    if root_is_the_machines():  # root under `unshare -Urnm`: no other uid to run it as
        pytest.skip("uid 0 is the machine's root and the only uid mapped")
    forbidden = "/etc/closebench-confinement-test"
    assert not os.path.exists(forbidden)
    command = ["sh", "-c", HOSTILE, str(_own_uid()), forbidden, str(os.getpid())]
    try:
        attempt = _one_run(command, Confinement())
        assert not os.path.exists(forbidden)
    finally:
        if os.path.exists(forbidden):  # only if confinement failed
            os.unlink(forbidden)
    # Both attempts failed, it ran as the unprivileged uid, and the run is recorded as failed.
    assert attempt.run_exit_status == 1 | 2 | 8 and attempt.runs_failed == 1
    # Its connection is still measured: served (who closed first, curl or the server, is a race
    # on a served request, so its class may be fin or silent).
    assert attempt.http_status == 200 and attempt.t_end is not None


@pytest.mark.needs_lab
def test_a_typed_command_runs_as_typed(tmp_path, monkeypatch):
    """The same command as typed (no confinement) can: the test above can fail."""
    monkeypatch.setenv("SECRET", "root's token")
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    command = ["sh", "-c", HOSTILE, str(os.geteuid()), str(private / "written"), str(os.getpid())]
    attempt = _one_run(command, None)
    assert attempt.run_exit_status == 0
    assert (private / "written").exists()


@pytest.mark.needs_lab
def test_a_granted_capability_opens_a_raw_socket():
    command = ["sh", "-c", f'curl -s -o /dev/null {{url}}; {PYTHON} -c "{RAW_SOCKET}"']
    assert _one_run(command, Confinement(("net_raw",))).run_exit_status == 0
    assert _one_run(command, Confinement()).run_exit_status == 1  # PermissionError


@pytest.mark.needs_lab
def test_a_confined_server_runs_as_the_unprivileged_uid_and_is_sampled(lab):
    command = [PYTHON, "-m", "http.server", "{port}"]
    config = ServerConfig(8081, command=command, confine=Confinement(), name="mine")
    defender = Defender(lab, config)
    try:
        process = psutil.Process(defender.server_pid)
        assert process.cmdline() == [PYTHON, "-m", "http.server", "8081"]  # the same PID
        assert process.uids().effective == _own_uid()
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
        mounts = os.readlink(f"/proc/{process.pid}/ns/mnt")
        assert mounts != os.readlink("/proc/self/ns/mnt")
    finally:
        defender.stop()
        defender.close()


def test_wrap_runs_setpriv_in_a_mount_namespace():
    argv = Confinement(("NET_RAW",)).wrap(["server", "--port", "1"])
    assert argv[:4] == ["unshare", "--mount", "--mount-proc", "--"]
    assert "--no-new-privs" in argv and "--bounding-set=-all,+net_raw" in argv
    assert "--reset-env" in argv
    assert argv[-3:] == ["server", "--port", "1"]
    assert Confinement(privileged=True).wrap(["server"]) == ["server"]
    with pytest.raises(ValueError, match="unknown capability 'net_rw'"):
        Confinement(("net_rw",))


def _scenario(strategy: str, attacker: str = 'kind = "kernel"') -> Scenario:
    text = f'name = "x"\n[[strategies]]\n{strategy}\n[[attackers]]\n{attacker}\n'
    return Scenario.model_validate(tomllib.loads(text))


def test_a_strategy_entry_may_be_a_command():
    scenario = _scenario('command = ["my-server", "--port", "{port}"]\nlabel = "mine"')
    [trial] = scenario.trials()
    assert trial.name == "mine" and trial.server.argv() == ["my-server", "--port", "8080"]
    assert trial.server.confine == Confinement()
    [line] = command_lines(scenario.strategies, scenario.attackers)
    assert line.startswith("server mine `my-server --port {port}` runs as uid ")
    assert f"uid {_own_uid()}, capabilities: none; no_new_privs" in line


@pytest.mark.parametrize(
    ("strategy", "attacker", "message"),
    [
        ('command = ["s", "{prot}"]\nlabel = "m"', "", "unknown placeholder {prot}"),
        ('command = ["s"]', "", "a command needs a label"),
        ('strategy = "rst"\ncommand = ["s"]\nlabel = "m"', "", "a strategy or a command"),
        ('strategy = "rst"\ncapabilities = ["net_raw"]', "", "go with a command"),
        ('command = ["s"]\nlabel = "m"\ncapabilities = ["raw"]', "", "unknown capability"),
        ('strategy = "rst"', 'command = ["curl", "{ulr}"]', "allowed: {url} {address}"),
    ],
)
def test_bad_commands_are_one_line(tmp_path, strategy, attacker, message):
    path = tmp_path / "s.toml"
    attacker = 'kind = "curl"\n' + attacker if attacker else 'kind = "kernel"'
    path.write_text(f'name = "x"\n[[strategies]]\n{strategy}\n[[attackers]]\n{attacker}\n')
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_scenario(path)


def test_attacker_commands_are_confined_and_granted():
    scenario = _scenario(
        'strategy = "rst"',
        'kind = "curl"\ncommand = ["scan", "{address}"]\ncapabilities = ["net_raw"]',
    )
    [trial] = scenario.trials()
    assert trial.attackers[0].confine == Confinement(("net_raw",))
    [line] = command_lines(scenario.strategies, scenario.attackers)
    assert "capabilities: net_raw" in line
    assert describe(None).startswith("as typed")

"""The generic command kind (`-a command --attacker-command`, `kind = "command"`), the old spelling
(`kind = "curl"` with a command) still accepted with a one-line warning, and the friction of issue
23: a command typed as the server beside --strategy, a command that opens no connection, `legit =
false`, SIGTERM to the command's process group, an attacker named after its program."""

from __future__ import annotations

import shlex
import sys
import time

import pytest

from closebench.attackers.policy import Policy
from closebench.core.errors import UsageError
from closebench.trials.scenario import load_scenario
from closebench.trials.trial import AttackerSpec
from tests.test_attack import _config, closebench, run_attack

HEAD = 'name = "t"\nstrategies = ["graceful"]\n'


def _scenario(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(HEAD + text)
    return load_scenario(path)[0]


def test_the_old_spelling_runs_as_the_command_kind_with_one_warning(tmp_path):
    scenario = _scenario(
        tmp_path,
        '[[attackers]]\nkind = "curl"\ncommand = ["/usr/bin/hydra", "{source}"]\n'
        '[[attackers]]\nkind = "curl"\ncommand = ["wget", "--bind-address", "{source}"]\n',
    )
    [first, second] = scenario.trials()[0].attackers
    assert (first.kind, first.name) == ("command", "hydra")
    assert (second.kind, second.name) == ("command", "wget")
    [note] = scenario.deprecations  # said once, for both
    assert 'kind "curl" with a command is deprecated' in note and "\n" not in note
    plain = _scenario(tmp_path, '[[attackers]]\nkind = "curl"\n')
    assert plain.deprecations == [] and plain.trials()[0].attackers[0].kind == "curl"


def test_the_command_kind_needs_its_command(tmp_path):
    with pytest.raises(UsageError, match=r'kind = "command" needs command = \[\.\.\.\]'):
        _scenario(tmp_path, '[[attackers]]\nkind = "command"\n')
    scenario = _scenario(tmp_path, '[[attackers]]\nkind = "command"\ncommand = ["x", "{url}"]\n')
    assert scenario.deprecations == []


def test_an_unknown_placeholder_in_a_scenario_names_it_and_the_allowed_ones(tmp_path):
    with pytest.raises(UsageError) as error:
        _scenario(tmp_path, '[[attackers]]\nkind = "command"\ncommand = ["hydra", "{target}"]\n')
    assert "unknown placeholder {target}" in str(error.value)
    assert "allowed: {url} {address} {port}" in str(error.value)


def test_an_attacker_is_named_after_its_program_not_curl():
    assert AttackerSpec("command", command=["/usr/bin/nmap", "-sT"]).name == "nmap"
    assert AttackerSpec("curl", command=["medusa"]).name == "medusa"
    assert AttackerSpec("curl").name == "curl"
    assert AttackerSpec("command", command=["nmap"], label="scan").name == "scan"


def test_legit_false_runs_no_legitimate_client(tmp_path):
    kernel = '[[attackers]]\nkind = "kernel"\n'
    assert _scenario(tmp_path, "legit = false\n" + kernel).trials()[0].legit is None
    assert _scenario(tmp_path, kernel).trials()[0].legit is not None  # omitted: the defaults


def test_a_command_after_dashes_beside_a_strategy_hints_at_the_attacker_command():
    result = closebench("attack", "-s", "graceful", "--", "hydra", "-l", "root", "{address}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "not both" in line
    assert "-a command --attacker-command 'hydra -l root {address}'" in line


@pytest.mark.needs_lab
def test_a_command_that_opens_no_connection_shows_why_in_the_table():
    """A command that never connected fails its trial, and the one error line says what the
    command printed (not only --json's records); the old spelling runs it, with its one
    warning line, under its program's name."""
    command = f"{sys.executable} -c \"import sys; sys.exit('no route to the moon')\""
    args = ["-s", "graceful", "--duration", "1", "--timeout", "1", "--legit-rate", "0"]
    result = closebench("attack", *args, "-a", "curl", "--attacker-command", command)
    assert result.returncode == 1
    assert result.stderr.count("deprecated") == 1
    [error] = [line for line in result.stderr.splitlines() if "error:" in line]
    assert "the python attacker failed: NoAttempts" in error  # named after its program
    assert "'no route to the moon'" in error


@pytest.mark.needs_lab
def test_stopping_a_command_terminates_its_whole_process_group(tmp_path):
    """A command's child that outlives closebench's deadline gets SIGTERM too (it writes a file
    when it does), not only the SIGKILL that follows."""
    marker = tmp_path / "terminated"
    child = (
        "import signal, sys, time; "
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), "
        "sys.exit(0))); time.sleep(600)"
    )
    wrapper = f"{shlex.quote(sys.executable)} -c {shlex.quote(child)} & wait"
    policy = Policy(timeout=0.5, reconnect=False, duration=10)
    started = time.monotonic()
    result = run_attack(_config("graceful", "command", policy, command=["sh", "-c", wrapper]))
    assert result.summary.runs == 1
    assert marker.exists(), "the command's child got no SIGTERM"
    assert time.monotonic() - started >= 0.5  # it ran to closebench's deadline

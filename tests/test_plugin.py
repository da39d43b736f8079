"""The pytest plugin, as a user's test suite meets it: fixtures from the installed entry point."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import pytest

from closebench import pytest_plugin

pytest_plugins = ["pytester"]

# "Their" server: the reference server as an opaque command, the way a user gives their own.
USER_TESTS = """
import sys

COMMAND = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "repair"]
COMMAND += ["--port", "8081"]


def test_probe_their_server(closebench_probe):
    result = closebench_probe(COMMAND, port=8081, timeout=1.5)
    assert result.attempt.outcome == "silent"
    assert [event.what for event in result.timeline][:3] == ["S", "SA", "A"]


def test_probe_a_strategy(closebench_probe):
    assert closebench_probe("graceful", timeout=1).attempt.outcome == "fin"


def test_attack_their_server(closebench_attack):
    result = closebench_attack(COMMAND, port=8081, duration=1.5, timeout=1, legit_rate=2)
    spam = result.summaries["kernel"]
    assert spam.attempts >= 1 and set(spam.outcomes) == {"silent"}
    assert result.legit.success_rate == 1.0
    assert result.defender.peak_fds > 0


def test_lab(closebench_lab):
    assert closebench_lab.defender_ip(4) != closebench_lab.attacker_ip(4)
"""


def test_entry_point_is_installed():
    """pytest finds the plugin through the pytest11 entry point (reinstall: pip install -e .)."""
    [entry] = [e for e in entry_points(group="pytest11") if e.name == "closebench"]
    assert entry.value == "closebench.pytest_plugin"


@pytest.mark.needs_lab
def test_fixtures_in_a_users_suite(pytester):
    pytester.makepyfile(test_their_server=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)


def test_without_privileges_skips_or_fails_in_ci(monkeypatch):
    monkeypatch.setattr("closebench.lab.privileges.has_capability", lambda bit: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="CAP_NET_ADMIN"):
        pytest_plugin.require_lab()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="run pytest as root"):
        pytest_plugin.require_lab()


def test_server_is_a_strategy_or_a_command():
    assert str(pytest_plugin.server_config("tarpit:interval=5", 8080).spec) == "tarpit:interval=5"
    command = pytest_plugin.server_config([sys.executable, "-m", "my.server"], 9000)
    assert command.command == [sys.executable, "-m", "my.server"] and command.port == 9000
    with pytest.raises(pytest.UsageError, match=r"unknown strategy .my-server.*as a list"):
        pytest_plugin.server_config("my-server --port 8080", 8080)
    with pytest.raises(pytest.UsageError, match="non-empty list of strings"):
        pytest_plugin.server_config([], 8080)


# Expectations, and what a failure shows: the reference server's "rst" strategy as their server.
EXPECTING_TESTS = """
import sys

COMMAND = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "rst"]
COMMAND += ["--port", "8082"]


def test_attack_meets_a_table(closebench_attack):
    closebench_attack(COMMAND, port=8082, duration=1, timeout=1, rate=20, legit_rate=0,
                      label="mine",
                      expect={"outcome": "rst", "peak_fds_min": 1})


def test_attack_fails_a_file(closebench_attack, tmp_path):
    expect = tmp_path / "expect.toml"
    expect.write_text('[mine]\\noutcome = "silent"\\n')
    closebench_attack(COMMAND, port=8082, duration=1, timeout=1, rate=20, legit_rate=0,
                      label="mine",
                      expect=expect)


def test_bare_assert_fails(closebench_probe):
    assert closebench_probe(COMMAND, port=8082, timeout=1).attempt.outcome == "silent"
"""


@pytest.mark.needs_lab
def test_expectations_and_failures_show_the_wire(pytester):
    pytester.makepyfile(test_expecting=EXPECTING_TESTS)
    # In a process of its own: numpy (via the check's figures) cannot be imported twice in one.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "1 of 1 expectations failed for 'mine'" in text
    assert "outcome: expected every attempt silent; measured rst" in text
    # One timeline in each failure's report (a CI run's short summary repeats messages whole).
    reports = text.split("short test summary info")[0]
    assert reports.count("wire timeline (attacker side):") == 2
    assert "<- RA" in text or "<- R" in text  # the server's reset, packet by packet
    assert text.count("pcap: ") >= 2 and ".pcap" in text
    assert "outcome 'rst' == 'silent'" in text  # the bare assertion, explained

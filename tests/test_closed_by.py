"""Who closed, in real labs: a port scanner's own RST ends its attempt, and a command closebench had
to stop leaves attempts that closebench outlasted, kept out of the hang figures."""

from __future__ import annotations

import shutil

import pytest

from closebench.attackers.policy import Policy
from closebench.core.outcomes import ClosedBy, Outcome
from tests.test_attack import _config, run_attack

# A client that connects, sends nothing and waits far longer than closebench lets it run.
HOLDER = [
    "python3",
    "-c",
    "import socket, time; s = socket.create_connection(('{address}', {port})); time.sleep(600)",
]


@pytest.mark.needs_lab
@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed (apt install nmap)")
def test_a_connect_scan_ends_at_the_scanners_own_rst():
    """nmap -sT connects and resets at once: its attempt ends at that RST, long before its run
    ends, closed by the client, with no request; the server's strategy never came into it."""
    command = ["nmap", "-sT", "-Pn", "-n", "-p", "{port}", "{address}"]
    policy = Policy(timeout=2.0, reconnect=False, duration=10)
    result = run_attack(_config("graceful", "curl", policy, command=command))
    [attempt] = result.attempts
    assert attempt.closer is ClosedBy.CLIENT and attempt.outcome is Outcome.SILENT
    assert attempt.t_request is None and attempt.client_timeout == float("inf")
    # nmap's run (its start-up, its report) lasts far longer than its connection
    assert attempt.slot_s < 0.5 * attempt.run_duration_s
    assert result.summary.closed_by["client"] == 1 and result.summary.outlasted == 0


@pytest.mark.needs_lab
def test_a_command_closebench_stops_is_outlasted():
    """A client that holds its connection past closebench's deadline (timeout + 5 s) is stopped:
    its connection is closebench's to end (closed_by closebench), counted as outlasted and left
    out of the hang figures, whose 6 s would be closebench's deadline, not the client's."""
    policy = Policy(timeout=1.0, reconnect=False, duration=10)
    result = run_attack(_config("never", "curl", policy, command=HOLDER))
    [attempt] = result.attempts
    assert "stopped" in attempt.run_error
    assert attempt.closer is ClosedBy.CLOSEBENCH and attempt.outlasted
    # It lasted until closebench stopped it, past the timeout closebench was given (the client's
    # start-up, before its SYN, is part of the deadline too).
    assert attempt.slot_s > 1.0 and attempt.t_end <= attempt.t_syn + attempt.run_duration_s
    summary = result.summary
    assert summary.outlasted == 1 and summary.closed_by["closebench"] == 1
    assert summary.hang_median_s is None and summary.slot_median_s is None
    assert summary.attacker_seconds_busy == pytest.approx(attempt.slot_s)

"""Headless Chromium as the attacker: every connection it opens is an attempt of its own."""

from __future__ import annotations

import pytest

from closebench.attackers.browser import BrowserClient
from closebench.attackers.policy import Policy
from closebench.core.errors import EnvironmentProblem
from closebench.defender import ServerConfig
from closebench.servers.strategies import parse_spec
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial


def browse(strategy: str, timeout: float, page_loads: int):
    policy = Policy(timeout=timeout, reconnect=True, duration=None, attempts=page_loads)
    config = TrialConfig(
        ServerConfig(8080, parse_spec(strategy)), (AttackerSpec("browser", policy),), legit=None
    )
    result = run_trial(config)
    return result, result.summaries["browser"]


def requests(result) -> list:
    return [a for a in result.attempts if a.t_request is not None]


def test_missing_chromium_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CLOSEBENCH_BROWSER", raising=False)
    with pytest.raises(
        EnvironmentProblem, match=r"^missing chromium: .*`apt-get install chromium`"
    ):
        BrowserClient()


@pytest.mark.needs_lab
def test_every_request_carrying_connection_is_recorded():
    result, summary = browse("graceful", timeout=5, page_loads=2)
    assert summary.runs == 2 and summary.attempts >= 2
    # The server counted every abusive request it read; each came on a recorded connection.
    assert len(requests(result)) == result.server_stats["abusive"]
    assert {a.outcome.value for a in requests(result)} == {"fin"}
    assert {a.run for a in result.attempts} == {1, 2}
    assert all(a.run_error == "Page load failed: net::ERR_EMPTY_RESPONSE" for a in result.attempts)


@pytest.mark.needs_lab
def test_a_browser_that_gives_up_on_silence():
    # The page load is bounded by the policy's timeout (--timeout): Chromium closes, and the FIN
    # of the request's connection meets no socket: an RST the server did not send of its accord.
    result, summary = browse("repair", timeout=3, page_loads=1)
    carried = requests(result)
    assert carried and len(carried) == result.server_stats["abusive"]
    for attempt in carried:
        assert attempt.outcome.value == "silent", attempt
        assert attempt.hang_s >= 0.9 * 3
        assert attempt.detail.startswith("RST to the client's FIN at +")
    assert summary.attacker_seconds_wasted >= 0.9 * 3 * len(carried)


@pytest.mark.needs_lab
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_browser_left_to_itself_against_a_silent_close():
    # Chromium's own TCP keepalive (45 s idle) finds the socket gone. When the request went on a
    # connection it had opened ahead of time it retries once, and hangs as long again; when not,
    # the page load fails there. Either way each request's connection is silent until its probe.
    result, summary = browse("repair", timeout=150, page_loads=2)
    carried = requests(result)
    assert len(carried) >= 2 and len(carried) == result.server_stats["abusive"]
    for attempt in carried:
        assert attempt.outcome.value == "silent", attempt
        assert attempt.detail.startswith("RST to the client's keepalive at +")
        assert attempt.hang_s >= 40
    assert {a.run for a in carried} == {1, 2}
    assert summary.attacker_seconds_wasted >= 80
    assert {a.run_error for a in carried} == {"Page load failed: net::ERR_CONNECTION_RESET"}

"""Attacks on real servers in real labs: outcome classes, the seed's effect, real clients."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from closebench.attackers.policy import Policy
from closebench.defender import ServerConfig
from closebench.servers.strategies import parse_spec
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial

T = 2.0  # the attacker's timeout: short, so a silent strategy shows within a few seconds
SEED_POLICY = Policy(timeout=T, reconnect=True, concurrency=2, duration=5.0)
TARPIT = "tarpit:interval=0.5"  # drips well inside the timeout T
STRATEGIES = ["graceful", "rst", "repair", "never", TARPIT, "delayed-reaper:delay=1", "fw-drop"]


def _config(
    strategy: str, kind: str = "kernel", policy: Policy = SEED_POLICY, path: str = "/spam", **more
) -> TrialConfig:
    attacker = AttackerSpec(kind, policy, path, more.pop("command", None))
    return TrialConfig(ServerConfig(8080, parse_spec(strategy)), (attacker,), **more)


def run_attack(config: TrialConfig):
    """Run the trial and return it with its one attacker's summary."""
    result = run_trial(config)
    result.summary = result.summaries[config.attackers[0].name]
    return result


@pytest.fixture(scope="module")
def kernel_results():
    """The seed's spam script (reconnect, T = 2 s) against each strategy, all at once."""
    configs = {s: _config(s, legit=LegitClient(rate=4)) for s in STRATEGIES}
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = {s: pool.submit(run_attack, c) for s, c in configs.items()}
        return {s: f.result() for s, f in futures.items()}


@pytest.mark.needs_lab
@pytest.mark.parametrize(
    ("strategy", "outcome"),
    [
        ("graceful", "fin"),
        ("rst", "rst"),
        ("repair", "silent"),
        ("never", "silent"),
        (TARPIT, "silent"),
        ("delayed-reaper:delay=1", "fin"),
    ],
)
def test_kernel_spammer_sees_the_wire_outcome(kernel_results, strategy, outcome):
    summary = kernel_results[strategy].summary
    assert set(summary.outcomes) == {outcome}, summary.outcomes
    assert summary.attempts > 0


@pytest.mark.needs_lab
def test_reconnecting_spammer_is_slowed_by_silence(kernel_results):
    rate = {s: r.summary.attempts_per_s for s, r in kernel_results.items()}
    # About one attempt per T per connection slot when the server stays silent...
    for silent in ("repair", "never", TARPIT):
        assert 0.3 <= rate[silent] <= 2.0, rate
    # ...and many times that when it answers with FIN or RST.
    for loud in ("graceful", "rst"):
        assert rate[loud] > 20 * max(rate["repair"], rate["never"], rate[TARPIT]), rate
    # A 1 s delayed close lets through about one attempt per 1 s per slot: in between.
    assert rate["repair"] < rate["delayed-reaper:delay=1"] < rate["graceful"]


@pytest.mark.needs_lab
def test_hang_time_is_what_the_strategy_makes_it(kernel_results):
    summaries = {s: r.summary for s, r in kernel_results.items()}
    assert summaries["graceful"].hang_median_s < 0.5
    assert summaries["repair"].hang_median_s >= 0.9 * T
    assert 0.5 <= summaries["delayed-reaper:delay=1"].hang_median_s < 0.9 * T


@pytest.mark.needs_lab
def test_tarpit_drips_data_before_the_timeout(kernel_results):
    assert kernel_results[TARPIT].summary.data_first > 0


@pytest.mark.needs_lab
def test_legitimate_client_stays_served(kernel_results):
    for strategy, result in kernel_results.items():
        legit = result.legit
        assert legit.requests >= 5, strategy
        assert legit.success_rate == 1.0, (strategy, legit)


@pytest.mark.needs_lab
def test_dropped_syns_cost_the_attacker_its_timeout(kernel_results):
    # fw-drop: the first request is reset and bans the address; every later SYN is dropped and
    # the spammer sits out its timeout in connect(). That time counts, as a connect wait.
    # (How many requests get through before the ban is in force depends on the nft commit: the
    # figures are checked attempt by attempt.)
    result = kernel_results["fw-drop"]
    dropped = [a for a in result.attempts if a.outcome.value == "syn-timeout"]
    assert dropped, result.summary.outcomes
    for attempt in dropped:
        assert attempt.hang_s is None and attempt.t_request is None
        assert attempt.waited_s == attempt.connect_wait_s == attempt.slot_s >= 0.9 * T
    summary = result.summary
    assert summary.connect_waits == len(dropped)
    assert summary.hang_max_s >= 0.9 * T  # the connect waits are in the hang figures
    assert summary.attacker_seconds_wasted >= sum(a.slot_s for a in dropped)
    # Told at once: no connect wait worth the name, and the whole slot is the short hang.
    graceful = kernel_results["graceful"].summary
    assert graceful.hang_median_s < 0.1 and graceful.connect_wait_median_s < 0.1
    assert graceful.attacker_seconds_wasted < 0.1 * graceful.attempts


@pytest.mark.needs_lab
def test_kernel_spammer_reaches_high_concurrency():
    config = _config("repair", policy=Policy(timeout=T, concurrency=300, duration=2.0))
    result = run_attack(config)
    assert result.summary.attacker_cost["peak_open_sockets"] >= 250
    assert result.summary.attempts >= 250
    assert set(result.summary.outcomes) == {"silent"}


@pytest.mark.needs_lab
@pytest.mark.parametrize(
    ("strategy", "outcome", "curl_says"),
    [
        ("graceful", "fin", "(52) Empty reply from server"),
        ("rst", "rst", "(56) Recv failure"),
        ("repair", "silent", "(28) Operation timed out"),
    ],
)
def test_curl_as_the_attacker(strategy, outcome, curl_says):
    policy = Policy(timeout=T, reconnect=False, duration=10)
    result = run_attack(_config(strategy, "curl", policy))
    [attempt] = result.attempts
    assert attempt.outcome.value == outcome
    assert curl_says in attempt.run_error
    assert attempt.run == 1 and attempt.run_exit_status == int(curl_says[1:3])
    assert attempt.run_duration_s >= attempt.slot_s
    if outcome == "silent":
        assert attempt.hang_s >= 0.9 * T  # curl hung until its --max-time
        # It gave up with a FIN that met no socket: the server's kernel had dropped it silently.
        assert attempt.detail.startswith("RST to the client's FIN at +")
    assert result.summary.runs == 1


@pytest.mark.needs_lab
def test_any_command_as_the_attacker():
    command = ["curl", "-s", "--max-time", "{timeout}", "{url}"]
    policy = Policy(timeout=T, reconnect=False, duration=10)
    config = _config("graceful", "curl", policy, "/", command=command)
    [attempt] = run_attack(config).attempts
    assert attempt.http_status == 200
    assert attempt.run_exit_status == 0 and attempt.run_error == ""


@pytest.mark.needs_lab
def test_every_connection_of_a_command_is_an_attempt():
    # Two requests in one run of curl, each on a connection of its own (the server closes each).
    command = ["curl", "-s", "--interface", "{source}", "--max-time", "{timeout}", "{url}", "{url}"]
    policy = Policy(timeout=T, reconnect=True, duration=10, attempts=3)
    result = run_attack(_config("graceful", "curl", policy, command=command))
    assert result.summary.runs == 3 and result.summary.attempts == 6
    assert sorted(a.run for a in result.attempts) == [1, 1, 2, 2, 3, 3]
    assert {a.outcome.value for a in result.attempts} == {"fin"}
    assert result.server_stats["abusive"] == 6  # every request the server saw is a record
    assert len({(a.src, a.sport) for a in result.attempts}) == 6


def closebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "closebench.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.needs_lab
def test_attack_cli_json_and_records(tmp_path):
    records = tmp_path / "attempts.jsonl"
    args = ["-s", "rst", "--timeout", "1", "--duration", "1", "--records", str(records)]
    result = closebench("attack", *args, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "closebench.attack/1"
    assert document["summary"]["outcomes"].keys() == {"rst"}
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    spam = [line for line in lines if line["attacker"] == "kernel"]
    assert len(spam) == document["summary"]["attempts"]
    assert {line["attacker"] for line in lines} == {"kernel", "legit"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "rst", "--concurrency", "0"], "must be at least 1"),
        (["-s", "rst", "-a", "kernel", "--attacker-command", "x"], "goes with -a command"),
        (["-s", "rst", "-a", "command"], "-a command runs the command given with --attacker-c"),
        (["--duration", "1"], "give one --strategy"),
        (["-s", "rst", "--attacker", "laser"], "invalid choice: 'laser'"),
    ],
)
def test_attack_cli_bad_input(args, message):
    result = closebench("attack", *args)
    assert result.returncode == 2
    assert message in result.stderr

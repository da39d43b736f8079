"""What blocking an abuser costs the defender, by where it is blocked: the same banned volume
attacker against xdp-drop, tc-drop, fw-drop and the application blacklist, at one rate, one trial
after another in one run, the defender on a CPU of its own (receive packet steering brings its
packets' softirq there).

Per strategy in extra_info (and printed): the attempts the block met (those after the ban), the
packets the layer dropped (its own counter), the defender's processes' CPU, softirq on its CPU
(/proc/stat: 10 ms ticks, and machine-wide: other labs' packets on that CPU count too, so it is an
upper bound), and per blocked attempt and per dropped packet; the load average beside them.
"""

from __future__ import annotations

import os

import pytest

from closebench.attackers.policy import Policy
from closebench.defender import ServerConfig
from closebench.lab import cpus
from closebench.servers.strategies import parse_spec
from closebench.trials.rows import trial_row
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

STRATEGIES = ("xdp-drop", "tc-drop", "fw-drop", "blacklist")
# One rate for all: 2000 attempts/s from one address, each given up after 1 s (one SYN).
POLICY = Policy(timeout=1.0, reconnect=True, concurrency=2000, rate=2000, duration=4.0)


def _trial(strategy: str) -> dict:
    server = ServerConfig(8080, parse_spec(f"{strategy}:bantime=300"))
    config = TrialConfig(server, (AttackerSpec("volume", POLICY),), legit=None, sample_hz=10)
    result = run_trial(config)
    assert result.complete, result.faults
    row = trial_row(config, result)
    return {
        "attempts": row.attempts,
        "blocked_attempts": row.blocked_attempts,
        "dropped": sum(row.drops_by_layer.values()),
        "server_cpu_s": row.cpu_seconds,
        "softirq_s": row.softirq_s,
        "cpu_ms_per_blocked_attempt": row.cpu_ms_per_blocked_attempt,
        "softirq_us_per_drop": row.cpu_us_per_drop,
        "outcomes": row.outcomes,
    }


@pytest.mark.needs_lab
def test_defender_cpu_per_blocked_attempt(benchmark):
    placement = cpus.default_placement()
    if placement.shared:
        pytest.skip("one CPU: the defender cannot have one of its own")

    def every_strategy() -> dict[str, dict]:
        cpus.use(placement)
        pinned = cpus.pin_this_process(placement.attackers)
        try:
            return {strategy: _trial(strategy) for strategy in STRATEGIES}
        finally:
            cpus.restore(pinned)
            cpus.use(None)

    load_before = os.getloadavg()[0]
    figures = benchmark.pedantic(every_strategy, rounds=1, iterations=1)
    benchmark.extra_info["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    benchmark.extra_info["placement"] = placement.text()
    print("load average", benchmark.extra_info["load_average"], placement.text())
    for strategy, found in figures.items():
        benchmark.extra_info[strategy] = found
        print(strategy, found)
        assert found["blocked_attempts"] and found["blocked_attempts"] > 0, strategy
    for strategy in ("xdp-drop", "tc-drop", "fw-drop"):
        assert figures[strategy]["dropped"] > 0, strategy  # the layer's own counter
        assert set(figures[strategy]["outcomes"]) <= {"rst", "syn-timeout"}, strategy
    # The blacklist accepts every attempt and closes it itself: the server pays per attempt.
    assert set(figures["blacklist"]["outcomes"]) <= {"rst", "fin"}

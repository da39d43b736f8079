"""Attempts per second: the Locust engine (2 workers) beside the kernel spammer, in one lab against
one graceful server, measured side by side in one run.

Both run the same policy with the same connections in flight in all (the spammer 8, each worker
4) and count only the attack itself: the Locust engine's start-up (master, workers, connecting)
comes before its clock, as in a trial. The phases alternate (spammer, Locust, spammer, Locust) so
that a change in the machine's load shows in both. The server's CPU per phase says whether it,
rather than the attacker, was the limit; the load average says how busy the machine was.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time

import psutil
import pytest

from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.locust.swarm import LocustEngine, lab_placement
from closebench.attackers.policy import Policy, Target
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.servers.strategies import parse_spec

pytestmark = pytest.mark.needs_lab

PORT = 8080
SECONDS = 3
CONNECTIONS = 8  # in flight: the spammer's, and the two workers' together
WORKERS = 2
MIN_RATIO = 0.5  # the bound: the Locust engine gets at least half the spammer's rate


def test_locust_rate_against_the_kernel_spammer(benchmark):
    # find_spec, not importorskip: importing Locust here would patch this process for gevent.
    if importlib.util.find_spec("locust") is None:
        reason = "the extra closebench[locust] is not installed (setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the benchmarks: {reason}")
        pytest.skip(reason)
    with Lab(attacker_hosts=1 + WORKERS) as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("graceful")))
        try:
            figures = benchmark.pedantic(compare, args=(lab, defender), rounds=1, iterations=1)
        finally:
            defender.stop()
            defender.close()
    benchmark.extra_info.update(figures)
    print(figures)
    assert figures["kernel_outcomes"] == figures["locust_outcomes"] == ["fin"]
    assert figures["ratio"] >= MIN_RATIO, figures


def compare(lab: Lab, defender: Defender) -> dict:
    server = psutil.Process(defender.server_pid)
    target = Target(lab.defender_ip(4), PORT)
    figures: dict = {"cpus": os.cpu_count(), "load_before": _load()}
    phases = {"kernel": [], "locust": []}
    for name in ("kernel", "locust") * 2:
        run = run_kernel if name == "kernel" else run_locust
        phases[name].append(_phase(server, lambda run=run: run(lab, target)))
    for name, runs in phases.items():
        attempts, seconds = sum(r["attempts"] for r in runs), sum(r["seconds"] for r in runs)
        figures[f"{name}_attempts_per_s"] = round(attempts / seconds, 1)
        figures[f"{name}_server_cpu_share"] = round(sum(r["server_cpu"] for r in runs) / seconds, 2)
        figures[f"{name}_outcomes"] = sorted({o for r in runs for o in r["outcomes"]})
    figures["ratio"] = round(figures["locust_attempts_per_s"] / figures["kernel_attempts_per_s"], 2)
    figures["load_after"] = _load()
    return figures


def _phase(server: psutil.Process, body) -> dict:
    cpu_before = sum(server.cpu_times()[:2])
    figures = body()
    figures["server_cpu"] = sum(server.cpu_times()[:2]) - cpu_before
    return figures


def run_kernel(lab: Lab, target: Target) -> dict:
    attempts = []
    policy = Policy(timeout=2, concurrency=CONNECTIONS, duration=SECONDS)
    started = time.monotonic()
    KernelSpammer().run(lab, target, policy, attempts.append, threading.Event())
    seconds = time.monotonic() - started
    return {
        "attempts": len(attempts),
        "seconds": seconds,
        "outcomes": {a.outcome.value for a in attempts},
    }


def run_locust(lab: Lab, target: Target) -> dict:
    attempts = []
    policy = Policy(timeout=2, concurrency=CONNECTIONS // WORKERS, duration=SECONDS)
    engine = LocustEngine()
    cancel = threading.Event()
    try:
        engine.prepare(lab_placement(lab, lab.more_attackers, 4), target, policy, cancel)
        started = time.monotonic()
        engine.run(lab, target, policy, attempts.append, cancel)
        seconds = time.monotonic() - started
    finally:
        engine.close()
    return {
        "attempts": len(attempts),
        "seconds": seconds,
        "outcomes": {a.outcome.value for a in attempts},
    }


def _load() -> float:
    return round(os.getloadavg()[0], 2)

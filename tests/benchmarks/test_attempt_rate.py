"""Attempts per second against `graceful` with 50 in flight: the scapy, volume and kernel attackers.

The scapy spammer and the volume attacker run one packet engine (closebench/attackers/packet/). The
target: the scapy spammer at 10,000 attempts/s or more on 2 cores, next to the kernel spammer
(asyncio on kernel sockets, about 9,500 there). One lab and one reference server; each attacker
runs for SECONDS in turn, the server's CPU is measured over the same time. The figures go to
extra_info; the assertions are lower bounds a busy machine still meets.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import psutil
import pytest

from closebench.attackers import make_attacker
from closebench.attackers.policy import Policy, Target
from closebench.core.outcomes import Attempt
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.servers.strategies import parse_spec

pytestmark = pytest.mark.needs_lab

PORT = 8080
SECONDS = 3.0
IN_FLIGHT = 50
KINDS = ("scapy", "volume", "kernel")


def test_attempt_rate_against_graceful(benchmark):
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("graceful")))
        try:
            figures = benchmark.pedantic(measure, args=(lab, defender), rounds=1, iterations=1)
        finally:
            defender.close()
    benchmark.extra_info.update(figures)
    print(figures)
    for kind in KINDS:
        assert figures[f"{kind}_outcomes"] == {"fin": figures[f"{kind}_attempts"]}, figures
    # The packet engine holds its own against kernel sockets (it is well ahead on a quiet machine).
    assert figures["scapy_attempts_per_s"] >= 0.75 * figures["kernel_attempts_per_s"], figures
    assert figures["volume_attempts_per_s"] >= 0.75 * figures["kernel_attempts_per_s"], figures


def measure(lab: Lab, defender: Defender) -> dict:
    server = psutil.Process(defender.server_pid)
    figures: dict = {"cpus": os.cpu_count(), "in_flight": IN_FLIGHT, "seconds": SECONDS}
    for kind in KINDS:
        figures.update(run(kind, lab, server))
    return figures


def run(kind: str, lab: Lab, server: psutil.Process) -> dict:
    attempts: list[Attempt] = []
    policy = Policy(concurrency=IN_FLIGHT, duration=SECONDS, timeout=2)
    target = Target(lab.defender_ip(4), PORT)
    server_cpu, started = sum(server.cpu_times()[:2]), time.monotonic()
    cost = make_attacker(kind).run(lab, target, policy, attempts.append, threading.Event())
    wall = time.monotonic() - started
    figures = {
        f"{kind}_attempts": len(attempts),
        f"{kind}_attempts_per_s": round(len(attempts) / SECONDS),
        f"{kind}_outcomes": dict(Counter(a.outcome.value for a in attempts)),
        f"{kind}_server_cpu_share": round((sum(server.cpu_times()[:2]) - server_cpu) / wall, 2),
    }
    if "cpu_user_s" in cost:  # the packet attackers' child reports its own CPU time
        us = 1e6 / max(1, len(attempts))  # per attempt
        figures[f"{kind}_child_user_us_per_attempt"] = round(cost["cpu_user_s"] * us, 1)
        figures[f"{kind}_child_system_us_per_attempt"] = round(cost["cpu_system_s"] * us, 1)
        figures[f"{kind}_receive_drops"] = cost["receive_drops"]
    return figures

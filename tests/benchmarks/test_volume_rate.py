"""New connections per second: the volume attacker against wrk, on one lab and one graceful server.

wrk (C, kernel sockets, `Connection: close`) sets the bar for what a tool can get out of this
server; the volume attacker should reach at least half of it. Against `graceful` and `/spam` the
server closes without a response, so wrk counts every connection as a read error and reports
0 requests/s: its connection rate is taken from the attacker host's TCP ActiveOpens instead.
The server's CPU time per phase tells whether it, rather than the client, was the limit.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import threading
import time

import psutil
import pytest

from closebench.attackers.policy import Policy, Target
from closebench.attackers.volume import VolumeAttacker
from closebench.core.outcomes import Attempt
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.lab.socket_table import tcp_counters
from closebench.servers.strategies import parse_spec

pytestmark = pytest.mark.needs_lab

PORT = 8080
SECONDS = 3
CONNECTIONS = 64  # wrk's -c, and the volume attacker's window
MIN_RATIO = 0.3  # generous: the target is 0.5, the bound leaves room for a busy machine


@pytest.fixture
def wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        reason = "wrk is not installed: apt-get install wrk (setup.sh should install it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the benchmarks: {reason}")
        pytest.skip(reason)
    return path


def test_volume_connection_rate_against_wrk(benchmark, wrk):
    started = time.monotonic()
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("graceful")))
        try:
            figures = benchmark.pedantic(compare, args=(lab, defender, wrk), rounds=1, iterations=1)
        finally:
            server = defender.stop()
            defender.close()
    figures["server_abusive_total"] = server.get("abusive")
    figures["wall_s"] = round(time.monotonic() - started, 2)
    benchmark.extra_info.update(figures)
    print(figures)
    # Every connection either tool completed reached the server and was read.
    assert server["abusive"] >= figures["wrk_connections"] + figures["volume_established"] - 200
    assert figures["ratio"] >= MIN_RATIO, figures


def compare(lab: Lab, defender: Defender, wrk: str) -> dict:
    server = psutil.Process(defender.server_pid)
    figures = {"cpus": os.cpu_count()}
    figures.update(_phase("wrk", server, lambda: run_wrk(lab, wrk)))
    figures.update(_phase("volume", server, lambda: run_volume(lab)))
    figures["ratio"] = round(figures["volume_conn_per_s"] / figures["wrk_conn_per_s"], 2)
    return figures


def _phase(name: str, server: psutil.Process, body) -> dict:
    """Run one client; add the server's CPU use over the same time (1.0 = one core flat out)."""
    cpu_before, started = sum(server.cpu_times()[:2]), time.monotonic()
    figures = body()
    cpu, wall = sum(server.cpu_times()[:2]) - cpu_before, time.monotonic() - started
    figures[f"{name}_server_cpu_share"] = round(cpu / wall, 2)
    return figures


def run_wrk(lab: Lab, wrk: str) -> dict:
    url = f"http://{lab.defender_ip(4)}:{PORT}/spam"
    argv = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-H", "Connection: close", url]
    opens_before = tcp_counters(lab.attacker)["ActiveOpens"]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = lab.attacker.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=SECONDS + 10)
    assert process.returncode == 0, err
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    connections = tcp_counters(lab.attacker)["ActiveOpens"] - opens_before
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "wrk_connections": connections,
        "wrk_conn_per_s": round(connections / elapsed, 1),
        "wrk_requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "wrk_read_errors": int(errors.group(2)) if errors else 0,
        "wrk_cpu_s": round(
            usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime, 2
        ),
    }


def run_volume(lab: Lab) -> dict:
    attempts: list[Attempt] = []
    policy = Policy(concurrency=CONNECTIONS, duration=SECONDS, timeout=2)
    stats = VolumeAttacker().run(
        lab, Target(lab.defender_ip(4), PORT), policy, attempts.append, threading.Event()
    )
    established = sum(a.t_established is not None for a in attempts)
    return {
        "volume_attempts": len(attempts),
        "volume_established": established,
        "volume_conn_per_s": round(established / stats["starting_s"], 1),
        "volume_cpu_s": round(stats["cpu_user_s"] + stats["cpu_system_s"], 2),
        "volume_receive_drops": stats["receive_drops"],
        "volume_send_errors": stats["send_errors"],
    }

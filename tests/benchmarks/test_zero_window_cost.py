"""What trapping costs the defender: the zero-window tarpit's answer per packet, and 200
connections trapped at once by zero-window and by tarpit (a socket each).

The figures go in extra_info: microseconds per answered packet; per strategy the defender's CPU,
CPU per trapped connection, packets sent, peak fds and kernel sockets.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dpkt
import pytest

from closebench.attackers.policy import Policy
from closebench.defender import ServerConfig
from closebench.servers.strategies import parse_spec
from closebench.servers.zero_window import Responder, Segment, build, parse
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

IN_FLIGHT = 200
TIMEOUT = 4.0


def test_answer_per_packet(benchmark):
    """parse + answer, what the tarpit does per packet besides the two system calls."""
    responder = Responder(b"k" * 16)
    syn = Segment(4, "198.18.0.1", "198.19.0.2", 40000, 8080, 1000, 0, dpkt.tcp.TH_SYN, 0)
    ours = parse(responder.answer(syn)).seq
    # The probe as the client's kernel sends it: an empty ACK one below its next byte.
    probe = build(
        Segment(4, "198.19.0.2", "198.18.0.1", 8080, 40000, 0, 0, 0, 0),
        1000,
        ours + 1,
        dpkt.tcp.TH_ACK,
    )

    def answer() -> bytes | None:
        return responder.answer(parse(probe))

    assert benchmark(answer) is not None
    if benchmark.stats:
        benchmark.extra_info["us_per_packet"] = round(benchmark.stats.stats.mean * 1e6, 1)


@pytest.mark.needs_lab
def test_trapped_connections_cost(benchmark):
    policy = Policy(timeout=TIMEOUT, reconnect=True, concurrency=IN_FLIGHT, duration=TIMEOUT)

    def trial(strategy: str):
        server = ServerConfig(8080, parse_spec(strategy))
        config = TrialConfig(server, (AttackerSpec("kernel", policy),), legit=None, sample_hz=10)
        return run_trial(config)

    def both():
        names = ("zero-window", "tarpit")
        with ThreadPoolExecutor(2) as pool:
            return dict(zip(names, pool.map(trial, names), strict=True))

    results = benchmark.pedantic(both, rounds=1, iterations=1)
    for name, result in results.items():
        cost = result.defender
        attempts = len(result.attempts)
        benchmark.extra_info[name] = {
            "attempts": attempts,
            "cpu_s": round(cost.cpu_seconds, 3),
            "cpu_ms_per_attempt": round(1000 * cost.cpu_seconds / attempts, 3),
            "packets_sent": cost.packets_sent,
            "peak_fds_above_idle": cost.peak_fds - result.samples[0].fds,
            "peak_sockets": cost.peak_sockets,
        }
        assert set(result.summaries["kernel"].outcomes) == {"silent"}, name
        assert attempts >= IN_FLIGHT
    # No socket and no fd per trapped connection, against one of each for tarpit.
    zero, tarpit = results["zero-window"].defender, results["tarpit"].defender
    assert zero.peak_sockets == 0 and zero.peak_fds == results["zero-window"].samples[0].fds
    assert tarpit.peak_sockets >= IN_FLIGHT // 2
    assert results["zero-window"].server_stats["zw_syn_acks"] >= IN_FLIGHT

"""The volume attacker on real labs: raw-socket handshakes, what they end with, and its hygiene.

Its TCP engine (the scapy spammer's too) is tested without a lab in tests/test_engine.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import pytest

from closebench.attackers import rst_filter
from closebench.attackers.packet.raw_sockets import MARK
from closebench.attackers.policy import Policy, Target
from closebench.attackers.rst_filter import PortRange
from closebench.attackers.volume import NFT_TABLE, VolumeAttacker
from closebench.core.errors import LabError, UsageError
from closebench.core.outcomes import Attempt, Outcome
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.lab.socket_table import tcp_counters
from closebench.servers.strategies import parse_spec
from tests.conftest import members, wait_until

PORT = 8080
DROP_SYNS = f"""
table inet drop_syns {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp dport {PORT} drop
    }}
}}
"""


@pytest.fixture
def serve(lab):
    """Start a reference server in the lab: serve(spec) -> Defender (stopped at teardown)."""
    started: list[Defender] = []

    def start(spec: str) -> Defender:
        defender = Defender(lab, ServerConfig(PORT, parse_spec(spec)))
        started.append(defender)
        return defender

    yield start
    for defender in started:
        defender.close()


def attack(lab: Lab, policy: Policy, family: int = 4, **kwargs):
    """Run the volume attacker on PORT to its end: (attempts, attacker figures)."""
    attempts: list[Attempt] = []
    target = Target(lab.defender_ip(family), PORT, family)
    stats = VolumeAttacker(**kwargs).run(lab, target, policy, attempts.append, threading.Event())
    return attempts, stats


def assert_clean(lab: Lab) -> None:
    assert not rst_filter.present(lab.attacker, NFT_TABLE)
    assert wait_until(lambda: not members(lab.attacker), timeout=2)


@pytest.mark.needs_lab
def test_graceful_gets_fin_after_complete_handshakes(lab, serve):
    defender = serve("graceful")
    attempts, stats = attack(lab, Policy(concurrency=32, attempts=3000, duration=20, timeout=3))
    assert len(attempts) == 3000
    assert Counter(a.outcome for a in attempts) == {Outcome.FIN: 3000}
    assert all(a.t_syn <= a.t_established <= a.t_request <= a.t_end for a in attempts)
    assert len({(a.src, a.sport) for a in attempts}) > 1000  # ports spread over the range
    assert stats["connections_established"] == stats["requests_sent"] == 3000
    assert stats["kernel_sockets"] == 0 and stats["peak_in_flight"] <= 32
    # The server really read 3000 requests: the handshakes were complete and the requests whole.
    assert defender.stop()["abusive"] == 3000
    assert_clean(lab)


@pytest.mark.needs_lab
def test_repair_leaves_every_attempt_silent(lab, serve):
    serve("repair")
    attempts, stats = attack(lab, Policy(concurrency=50, attempts=50, duration=10, timeout=1.0))
    assert Counter(a.outcome for a in attempts) == {Outcome.SILENT: 50}
    assert all(0.95 <= a.hang_s <= 1.5 for a in attempts)
    assert stats["fins_received"] == 0  # (RSTs do come: the answers to our FINs at the timeout)
    assert_clean(lab)


@pytest.mark.needs_lab
def test_ipv6_and_extra_source_addresses(lab, serve):
    serve("graceful")
    lab.add_attacker_addresses(2)
    sources = [lab.addressing.attacker_extra(6, i) for i in range(2)]
    policy = Policy(concurrency=16, attempts=400, duration=10, timeout=3)
    attempts, stats = attack(lab, policy, family=6, sources=sources)
    assert Counter(a.outcome for a in attempts) == {Outcome.FIN: 400}
    assert {a.src for a in attempts} == set(sources)
    assert stats["unknown_packets_seen"] == stats["bad_acks_seen"] == 0
    assert_clean(lab)


@pytest.mark.needs_lab
def test_served_requests_after_a_delay_get_their_response(lab, serve):
    defender = serve("graceful")
    target = Target(lab.defender_ip(4), PORT, path="/")  # not abuse: answered 200, then FIN
    attempts: list[Attempt] = []
    policy = Policy(concurrency=10, attempts=10, request_delay=0.3, timeout=3)
    VolumeAttacker().run(lab, target, policy, attempts.append, threading.Event())
    assert Counter(a.outcome for a in attempts) == {Outcome.FIN: 10}
    assert all(a.http_status == 200 and a.data_first and a.bytes_received > 0 for a in attempts)
    assert all(0.29 <= a.t_request - a.t_established <= 0.4 for a in attempts)
    assert defender.stop()["served"] == 10
    assert_clean(lab)


@pytest.mark.needs_lab
def test_closed_port_is_refused_and_dropped_syns_time_out(lab):
    # Nothing listens on PORT: the defender's kernel answers RST.
    attempts, _ = attack(lab, Policy(concurrency=5, attempts=5, timeout=2))
    assert Counter(a.outcome for a in attempts) == {Outcome.REFUSED: 5}
    # A firewall that drops SYNs: retransmitted like a kernel client's, then syn-timeout.
    lab.defender.run(["nft", "-f", "-"], stdin=DROP_SYNS)
    attempts, stats = attack(lab, Policy(concurrency=5, attempts=5, timeout=1.3))
    assert Counter(a.outcome for a in attempts) == {Outcome.SYN_TIMEOUT: 5}
    assert all(a.t_established is None and 1.25 <= a.t_end - a.t_syn <= 1.6 for a in attempts)
    assert stats["syn_retransmits_sent"] == 5  # at 1 s
    assert {a.detail for a in attempts} == {"SYN sent 2 times"}
    assert_clean(lab)


@pytest.mark.needs_lab
def test_kernel_clients_in_the_attacker_host_still_connect(lab, serve):
    serve("graceful")
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(
            stats=attack(lab, Policy(concurrency=64, duration=2.5, timeout=2))[1]
        )
    )
    runner.start()
    try:
        assert wait_until(lambda: rst_filter.present(lab.attacker, NFT_TABLE))
        time.sleep(0.3)  # well into the flood
        rules = lab.attacker.run(["nft", "list", "ruleset"])
        assert "sport 61000-65535" in rules and "dport 61000-65535" in rules
        replies = [legitimate_get(lab) for _ in range(20)]
        during = runner.is_alive()
    finally:
        runner.join()
    assert during, "the flood ended before the legitimate requests did"
    assert all(reply.startswith(b"HTTP/1.1 200 OK") for reply in replies)
    assert result["stats"]["connections_established"] > 1000  # the flood really ran meanwhile
    assert_clean(lab)


def legitimate_get(lab: Lab) -> bytes:
    with lab.attacker.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        sock.connect((lab.defender_ip(4), PORT))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


@pytest.mark.needs_lab
def test_duration_and_rate_bound_the_attack(lab, serve):
    serve("graceful")
    attempts, stats = attack(lab, Policy(concurrency=8, rate=200, duration=1.0, timeout=2))
    assert 150 <= len(attempts) <= 205  # at most the rate; a busy machine may start fewer
    assert stats["starting_s"] >= 1.0  # it started attempts for the whole duration, then stopped
    assert_clean(lab)


@pytest.mark.needs_lab
def test_cancel_stops_it_within_a_poll(lab, serve):
    serve("repair")  # attempts would hang for 10 s: only the cancel can end this quickly
    cancel = threading.Event()
    attempts: list[Attempt] = []
    target = Target(lab.defender_ip(4), PORT)

    # Cancel once the defender's kernel has accepted every slot's connection (on a busy machine
    # the child's start alone can take longer than a fixed delay would allow).
    def cancel_when_all_open() -> None:
        wait_until(lambda: tcp_counters(lab.defender)["PassiveOpens"] >= 20, timeout=30)
        cancel.set()

    threading.Thread(target=cancel_when_all_open, daemon=True).start()
    stats = VolumeAttacker().run(
        lab, target, Policy(concurrency=20, duration=30, timeout=10), attempts.append, cancel
    )
    assert stats["cancelled"] and stats["connections_started"] == 20
    assert not attempts  # it returned before any attempt's 10 s timeout could end it
    assert_clean(lab)


@pytest.mark.needs_lab
def test_ports_overlapping_the_ephemeral_range_are_refused(lab):
    lab.attacker.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=32768 64000"])
    with pytest.raises(LabError, match="overlap the attacker host's ephemeral range 32768-64000"):
        attack(lab, Policy(attempts=1, timeout=1))
    assert_clean(lab)


@pytest.mark.needs_lab
def test_cancelled_before_it_starts(lab):
    cancel = threading.Event()
    cancel.set()
    target = Target(lab.defender_ip(4), PORT)
    stats = VolumeAttacker().run(lab, target, Policy(duration=30), lambda a: None, cancel)
    assert stats["cancelled"] and stats["connections_started"] == 0
    assert_clean(lab)


def test_ports_below_1024_are_refused():
    with pytest.raises(UsageError, match="bad volume port range"):
        VolumeAttacker(ports=PortRange(80, 90))


def test_rule_drops_the_servers_segments_before_the_kernel_and_spares_our_resets():
    rules = VolumeAttacker().rules(NFT_TABLE, Target("198.19.0.2", PORT), ["198.18.0.1"])
    assert "hook prerouting" in rules
    assert f"ip saddr 198.19.0.2 tcp sport {PORT} tcp dport 61000-65535 drop" in rules
    resets = "ip daddr 198.19.0.2 tcp sport 61000-65535 tcp flags & rst == rst"
    assert f"{resets} meta mark != {MARK:#x} drop" in rules

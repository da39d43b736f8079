"""The scapy spammer against real servers in real labs, and its nft rule and checks on their own.

The lab scenarios are independent, so they run at once in a module fixture (a few seconds each);
the tests then check what each one saw. Its TCP engine's transitions: tests/test_engine.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from closebench.attackers import rst_filter
from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Policy, Target
from closebench.attackers.rst_filter import PortRange
from closebench.attackers.scapy_spammer import MARK, TABLE_PREFIX, ScapySpammer, rst_filter_rules
from closebench.core.errors import EnvironmentProblem
from closebench.core.outcomes import Attempt, Outcome
from closebench.defender import Defender, ServerConfig
from closebench.lab import Host, Lab
from closebench.lab.socket_table import tcp_sockets
from closebench.servers.strategies import parse_spec
from tests.conftest import members, wait_until

PORT = 8080
T = 2.0  # the spammer's timeout
DURATION = 5.0
FAST = Policy(timeout=T, duration=DURATION, concurrency=2)  # flat out, for the reconnect effect
CAPPED = Policy(timeout=T, duration=3.0, concurrency=2, rate=30.0)  # outcome checks, less CPU


@dataclass
class Scenario:
    strategy: str | None  # None: no server listens
    policy: Policy = CAPPED
    family: int = 4
    path: str = "/spam"
    routed: bool = False
    setup: Callable[[Lab], None] | None = None
    # runs in a thread beside the spammer, may cancel it; returns what the test wants to check
    beside: Callable[[Lab, threading.Event], dict] | None = None


@dataclass
class Result:
    records: list[Attempt]
    counters: dict
    ended_at: float  # time.monotonic() when run() returned
    tables_after: str
    left_in_attacker: list[int]  # processes still in the attacker host after run()
    child_status: int | None
    ephemeral_after: str
    established_at_defender: int  # the server's connections from the spammer still open after
    beside: dict = field(default_factory=dict)

    def outcomes(self) -> Counter:
        return Counter(record.outcome for record in self.records)


def _reject_at_router(lab: Lab) -> None:
    # The router answers the attacker's SYNs with ICMP errors (both families).
    assert lab.router is not None
    lab.router.run(
        ["nft", "-f", "-"],
        stdin="table inet t {\n chain reject_syns {\n type filter hook forward priority 0\n"
        f" tcp dport {PORT} reject with icmpx type admin-prohibited\n }}\n}}\n",
    )


def _drop_at_defender(lab: Lab) -> None:
    lab.defender.run(
        ["nft", "-f", "-"],
        stdin="table inet t {\n chain drop_syns {\n type filter hook input priority 0\n"
        f" tcp dport {PORT} drop\n }}\n}}\n",
    )


def _overlapping_ephemeral_range(lab: Lab) -> None:
    lab.attacker.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=32768 64000"])


def _kernel_client_beside(lab: Lab, _cancel: threading.Event) -> dict:
    """A kernel-socket client in the same host while the scapy spammer's rule is in place."""
    rule_in_place = wait_until(lambda: rst_filter.present(lab.attacker, TABLE_PREFIX), timeout=10)
    records: list[Attempt] = []
    policy = Policy(timeout=T, duration=2.0, rate=10.0)
    target = Target(lab.defender_ip(4), PORT, 4, "/")
    KernelSpammer().run(lab, target, policy, records.append, threading.Event())
    still_in_place = rst_filter.present(lab.attacker, TABLE_PREFIX)
    return {"rule_in_place": rule_in_place and still_in_place, "records": records}


def _cancel_once_established(lab: Lab, cancel: threading.Event) -> dict:
    """Cancel while the spammer's connection is open (its start takes a while on a busy box)."""
    opened = wait_until(lambda: _spammer_connections(lab.defender) > 0, timeout=20)
    cancel.set()
    return {"opened": opened, "cancelled_at": time.monotonic()}


SCENARIOS = {
    "graceful": Scenario("graceful", FAST, beside=_kernel_client_beside),
    "repair": Scenario("repair", FAST),
    "rst": Scenario("rst"),
    "tarpit": Scenario("tarpit:interval=0.5"),
    "never": Scenario("never", Policy(timeout=1.5, duration=3.0, concurrency=2)),
    "served": Scenario("graceful", path="/"),
    "graceful-v6": Scenario("graceful", family=6),
    "repair-v6": Scenario("repair", Policy(timeout=1.5, duration=3.0), family=6),
    "refused": Scenario(None, Policy(timeout=1.0, attempts=3), setup=_overlapping_ephemeral_range),
    "syn-timeout": Scenario(None, Policy(timeout=1.5, attempts=2), setup=_drop_at_defender),
    "icmp": Scenario(None, Policy(timeout=1.0, attempts=2), routed=True, setup=_reject_at_router),
    "icmp-v6": Scenario(
        None, Policy(timeout=1.0, attempts=2), family=6, routed=True, setup=_reject_at_router
    ),
    "cancelled": Scenario(
        "never", Policy(timeout=10.0, duration=30.0), beside=_cancel_once_established
    ),
}


def _spammer_connections(host: Host) -> int:
    return sum(
        s.state == "ESTABLISHED" and s.remote[1] in ScapySpammer().ports for s in tcp_sockets(host)
    )


def _tables(host: Host) -> str:
    return host.run(["nft", "list", "tables"])


def _play(scenario: Scenario) -> Result:
    with Lab(routed=scenario.routed) as lab:
        defender = None
        if scenario.strategy:
            defender = Defender(lab, ServerConfig(PORT, parse_spec(scenario.strategy)))
        try:
            if scenario.setup:
                scenario.setup(lab)
            return _attack(lab, scenario)
        finally:
            if defender:
                defender.close()


def _attack(lab: Lab, scenario: Scenario) -> Result:
    target = Target(lab.defender_ip(scenario.family), PORT, scenario.family, scenario.path)
    cancel = threading.Event()
    records: list[Attempt] = []
    spammer = ScapySpammer()
    with ThreadPoolExecutor(1) as pool:
        beside = pool.submit(scenario.beside, lab, cancel) if scenario.beside else None
        counters = spammer.run(lab, target, scenario.policy, records.append, cancel)
        ended_at = time.monotonic()
        beside_result = beside.result() if beside else {}
    assert spammer.child is not None and spammer.child.process is not None
    return Result(
        records=records,
        counters=counters,
        ended_at=ended_at,
        tables_after=_tables(lab.attacker),
        left_in_attacker=members(lab.attacker),
        child_status=spammer.child.process.poll(),
        ephemeral_after=lab.attacker.run(["sysctl", "-n", "net.ipv4.ip_local_port_range"]),
        established_at_defender=_spammer_connections(lab.defender),
        beside=beside_result,
    )


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        futures = {name: pool.submit(_play, scenario) for name, scenario in SCENARIOS.items()}
        return {name: future.result() for name, future in futures.items()}


def _only(result: Result, outcome: Outcome) -> None:
    assert result.records, "no attempt was reported"
    assert set(result.outcomes()) == {outcome}, result.outcomes()


@pytest.mark.needs_lab
@pytest.mark.parametrize("name", ["graceful", "graceful-v6"])
def test_graceful_is_fin(results, name):
    result = results[name]
    _only(result, Outcome.FIN)
    assert not any(r.data_first for r in result.records)
    assert all(r.hang_s is not None and r.hang_s < 1.0 for r in result.records)


@pytest.mark.needs_lab
def test_rst_is_rst(results):
    _only(results["rst"], Outcome.RST)


@pytest.mark.needs_lab
@pytest.mark.parametrize("name", ["repair", "repair-v6", "never"])
def test_silent_strategies_hang_until_the_timeout(results, name):
    result = results[name]
    _only(result, Outcome.SILENT)
    timeout = SCENARIOS[name].policy.timeout
    for record in result.records:
        assert not record.data_first and record.bytes_received == 0
        assert record.hang_s == pytest.approx(timeout, abs=0.3)
    # It gave up like an aborting client: one RST a connection, passed by its mark.
    assert result.counters["rsts_sent"] >= len(result.records)


@pytest.mark.needs_lab
def test_tarpit_is_silent_with_data_first(results):
    result = results["tarpit"]
    _only(result, Outcome.SILENT)
    assert all(r.data_first and r.bytes_received >= 2 for r in result.records)
    assert all(r.t_first_byte is not None for r in result.records)


@pytest.mark.needs_lab
def test_served_path_is_fin_with_200(results):
    result = results["served"]
    _only(result, Outcome.FIN)
    assert all(r.http_status == 200 and r.data_first for r in result.records)


@pytest.mark.needs_lab
def test_nothing_listening_is_refused(results):
    _only(results["refused"], Outcome.REFUSED)
    assert len(results["refused"].records) == 3


@pytest.mark.needs_lab
def test_unanswered_syn_is_syn_timeout_after_retransmissions(results):
    result = results["syn-timeout"]
    _only(result, Outcome.SYN_TIMEOUT)
    assert result.counters["syn_retransmits_sent"] >= 2  # Linux-like: again after 1 s
    assert all(r.t_established is None and r.t_request is None for r in result.records)


@pytest.mark.needs_lab
@pytest.mark.parametrize("name", ["icmp", "icmp-v6"])
def test_icmp_error_ends_the_attempt(results, name):
    result = results[name]
    _only(result, Outcome.ICMP)
    assert all(r.detail.startswith("icmp") for r in result.records)


@pytest.mark.needs_lab
def test_reconnect_effect_fin_versus_silence(results):
    graceful = len(results["graceful"].records)
    repair = len(results["repair"].records)
    # repair: 2 slots x (5 s / 2 s) attempts; graceful: as fast as the server answers.
    assert repair <= 2 * (int(DURATION // T) + 1)
    assert graceful >= 10 * repair, (graceful, repair)


@pytest.mark.needs_lab
def test_kernel_client_beside_it_still_connects(results):
    beside = results["graceful"].beside
    assert beside["rule_in_place"]
    records = beside["records"]
    assert records
    assert {(r.outcome, r.http_status) for r in records} == {(Outcome.FIN, 200)}


@pytest.mark.needs_lab
def test_cancel_stops_it_promptly(results):
    result = results["cancelled"]
    assert result.beside["opened"]
    # Stopped by the cancel, not by its attempt's 10 s timeout nor the 30 s duration (a loaded
    # machine can take a second or two to wind the child up; the bound is what tells them apart).
    assert result.ended_at - result.beside["cancelled_at"] < 5.0
    assert result.records == []  # nothing had ended; abandoned attempts are not reported
    assert result.counters["rsts_sent"] >= 1  # the abandoned connection was reset


@pytest.mark.needs_lab
@pytest.mark.parametrize("name", ["repair", "never", "tarpit", "cancelled"])
def test_giving_up_leaves_the_server_no_connection_of_ours(results, name):
    assert results[name].established_at_defender == 0


@pytest.mark.needs_lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nothing_left_behind(results, name):
    result = results[name]
    assert TABLE_PREFIX not in result.tables_after
    assert result.left_in_attacker == []
    assert result.child_status is not None


@pytest.mark.needs_lab
def test_ephemeral_range_moved_off_the_spammer_ports(results):
    assert results["refused"].ephemeral_after.split() == ["32768", "60999"]


def test_missing_nft_is_one_clear_error(monkeypatch):
    real_which = __import__("shutil").which
    monkeypatch.setattr(
        "closebench.lab.privileges.shutil.which",
        lambda tool: None if tool == "nft" else real_which(tool),
    )
    with pytest.raises(EnvironmentProblem, match="nft"):
        ScapySpammer().run(None, Target("198.18.0.2", PORT), CAPPED, print, threading.Event())


def test_rule_spares_marked_resets_and_other_ports():
    target = Target("198.19.0.2", PORT)
    rules = rst_filter_rules("t", target, "198.18.0.1", PortRange(61000, 65535))
    assert "tcp sport 61000-65535" in rules and f"meta mark != {MARK:#x}" in rules
    assert "ip saddr 198.18.0.1" in rules
    assert f"ip saddr 198.19.0.2 tcp sport {PORT} tcp dport 61000-65535 drop" in rules
    assert PortRange.parse("32768\t60999") == PortRange(32768, 60999)

"""What each strategy puts on the abuser's wire, from real packet captures."""

from __future__ import annotations

import pytest

from closebench.core.outcomes import Outcome
from closebench.defender import ServerConfig
from closebench.servers.strategies import STRATEGIES, parse_spec
from closebench.trials.probe import Probe, ProbeCase, ProbeResult, default_cases
from tests.test_peers import skip_missing_peer

TIMEOUT = 5.0  # above the 3 s default delays, below the default 10 s to keep the suite short
# Twelve labs start at once: on a loaded 2-core machine a server may take more than the default
# 10 s to listen. A wait, not a bound on anything measured.
LISTEN_TIMEOUT = 40.0

EXPECTED = {
    "graceful": (Outcome.FIN, False),
    "rst": (Outcome.RST, False),
    "repair": (Outcome.SILENT, False),
    "repair:read_first=false (request 0.5 s late)": (Outcome.RST, False),
    "never": (Outcome.SILENT, False),
    "delayed-thread": (Outcome.FIN, False),
    "delayed-reaper": (Outcome.FIN, False),
    "tarpit": (Outcome.SILENT, True),
    "ttl-drop": (Outcome.FIN, False),
    "ttl-drop (via router)": (Outcome.SILENT, False),
    "rst-ttl": (Outcome.RST, False),
    "rst-ttl (via router)": (Outcome.SILENT, False),
    "zero-window": (Outcome.SILENT, False),
    # Destroyed from outside the server: the kernel's RST reaches the abuser.
    "ss-kill": (Outcome.RST, False),
    # Ban strategies: the probe's one request triggers the ban and meets `then` (rst by default).
    "blacklist": (Outcome.RST, False),
    "fw-drop": (Outcome.RST, False),
    "fw-reject": (Outcome.RST, False),
    "xdp-drop": (Outcome.RST, False),
    "tc-drop": (Outcome.RST, False),
    # A connection cap lets one connection through; its abusive request meets `then` (rst).
    "conn-cap": (Outcome.RST, False),
    "synproxy": (Outcome.RST, False),  # the handshake completes through the proxy; then rst
    # Peers: real HAProxy, nginx and endlessh (closebench/defender/peers/).
    "haproxy-silent-drop": (Outcome.SILENT, False),
    # Without CAP_NET_ADMIN silent-drop sends an RST with TTL 1: on a direct link it arrives.
    "haproxy-silent-drop:net_admin=false": (Outcome.RST, False),
    "haproxy-reject": (Outcome.RST, False),  # at accept, by address
    "haproxy-reject:read_first=true": (Outcome.FIN, False),  # http-request reject: a FIN
    "haproxy-tarpit": (Outcome.SILENT, False),  # its 30 s `timeout tarpit` outlasts the client
    "nginx-444": (Outcome.FIN, False),
    "nginx-limit-conn": (Outcome.FIN, True),  # one request is within the rate: served
    "endlessh": (Outcome.SILENT, True),  # a line every 2 s, until the client gives up
}


@pytest.fixture(scope="module")
def ipv4_results():
    probe = Probe(timeout=TIMEOUT, listen_timeout=LISTEN_TIMEOUT)
    results = probe.run_all(default_cases(8080, 4), jobs=12)
    return {result.case.label: result for result in results}


@pytest.fixture(scope="module")
def ipv6_results():
    cases = default_cases(8080, 6)
    results = Probe(timeout=TIMEOUT, listen_timeout=LISTEN_TIMEOUT).run_all(cases, jobs=12)
    return {result.case.label: result for result in results}


def test_default_cases_cover_every_strategy():
    labels = {case.label for case in default_cases(8080, 4)}
    assert labels == set(EXPECTED)
    assert {label.split(":")[0].split(" ")[0] for label in labels} == set(STRATEGIES)


@pytest.mark.needs_lab
@pytest.mark.parametrize("label", list(EXPECTED))
def test_outcome_on_the_wire_ipv4(ipv4_results, label):
    _check(ipv4_results[label], label)


@pytest.mark.needs_lab
@pytest.mark.parametrize("label", list(EXPECTED))
def test_outcome_on_the_wire_ipv6(ipv6_results, label):
    _check(ipv6_results[label], label)


def _check(result, label):
    skip_missing_peer(result.case.server.spec)
    assert not result.error, result.error
    outcome, data_first = EXPECTED[label]
    attempt = result.attempt
    assert attempt.outcome is outcome, result.to_dict()
    assert attempt.data_first is data_first
    hang = attempt.hang_s
    if outcome is Outcome.SILENT:
        assert hang >= TIMEOUT * 0.9  # the client waited out its own timeout
    elif label.startswith("delayed"):
        assert 1.5 <= hang <= TIMEOUT  # the 3 s default delay, with a wide margin
    else:  # an RST at accept may beat the request (no hang then)
        assert hang is None or hang < 1.5  # the client learnt at once


@pytest.mark.needs_lab
def test_delay_option_is_honoured():
    case = ProbeCase(ServerConfig(8080, parse_spec("delayed-reaper:delay=1")))
    attempt = Probe(timeout=TIMEOUT).run(case).attempt
    assert attempt.outcome is Outcome.FIN
    # Well below the 3 s default: a server that ignored the option would hang the client 3 s.
    assert 0.5 <= attempt.hang_s <= 2.5


@pytest.mark.needs_lab
def test_legitimate_request_is_served():
    case = ProbeCase(ServerConfig(8080, parse_spec("repair")))
    result = Probe(timeout=TIMEOUT, path="/").run(case)
    assert result.attempt.outcome is Outcome.FIN
    assert result.attempt.data_first
    assert result.attempt.bytes_received > 0


@pytest.mark.needs_lab
def test_repair_reads_then_leaves_the_client_with_a_dead_socket(ipv4_results):
    # When the silent client finally gives up, the defender's kernel no longer knows the
    # connection and answers the client's FIN with RST: proof that no socket was kept.
    timeline = ipv4_results["repair"].timeline
    client_fin = next(i for i, e in enumerate(timeline) if e.direction == "out" and "F" in e.what)
    assert any(e.direction == "in" and "R" in e.what for e in timeline[client_fin:])


def _observe(lab, family: int = 4) -> ProbeResult:
    case = ProbeCase(ServerConfig(8080, command=["none"]), family=family)
    result = ProbeResult(case)
    Probe(timeout=2.0).observe(lab, case, 8080, result)
    return result


def _nft(lab, rule: str) -> None:
    lab.defender.run(
        ["nft", "-f", "-"],
        stdin=f"""
table inet probe_test {{
    chain input {{
        type filter hook input priority 0;
        tcp dport 8080 {rule}
    }}
}}
""",
    )


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_nothing_listening_is_refused(lab, family):
    result = _observe(lab, family)
    assert result.attempt.outcome is Outcome.REFUSED
    assert result.attempt.t_established is None


@pytest.mark.needs_lab
def test_dropped_syns_are_a_syn_timeout(lab):
    _nft(lab, "drop")
    result = _observe(lab)
    assert result.attempt.outcome is Outcome.SYN_TIMEOUT
    syns = [e for e in result.timeline if e.direction == "out" and e.what == "S"]
    assert len(syns) >= 2  # the client's kernel retried, and the retries were counted as such
    assert all(e.retransmission for e in syns[1:])


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_icmp_error_ends_the_attempt(lab, family):
    _nft(lab, "reject with icmpx host-unreachable")
    result = _observe(lab, family)
    assert result.attempt.outcome is Outcome.ICMP
    assert result.attempt.hang_s is None or result.attempt.hang_s < 1


@pytest.mark.needs_lab
@pytest.mark.parametrize(
    ("label", "kept"),
    [
        ("repair", []),
        ("never", ["ESTABLISHED"]),
        ("tarpit", ["ESTABLISHED"]),
        ("zero-window", []),
        ("rst-ttl (via router)", []),
        ("ttl-drop (via router)", ["FIN-WAIT-1 (orphan)"]),
    ],
)
def test_what_the_defender_kept_while_the_client_waited(ipv4_results, label, kept):
    # Read from the defender's socket table the moment the client stopped waiting.
    assert ipv4_results[label].defender_sockets == kept

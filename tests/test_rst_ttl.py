"""rst-ttl, and the lab router's connection tracking: an RST that dies at the router, which forgets
the connection while the client still waits; read from the router's /proc and checked against
the kernel's own count."""

from __future__ import annotations

import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from closebench.attackers.policy import Policy
from closebench.core.outcomes import Outcome
from closebench.defender import Defender, ServerConfig
from closebench.lab import ROUTER_TABLE, Lab, conntrack
from closebench.lab.socket_table import tcp_sockets
from closebench.servers.strategies import parse_spec
from closebench.trials.probe import Probe, ProbeCase
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial
from tests.conftest import wait_until

PORT = 8080
REQUEST = b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n"


# options, without a lab


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rst-ttl:ttl=0", "option 'ttl' must be at least 1, got '0'"),
        ("rst-ttl:ttl=256", "option 'ttl' must be at most 255, got '256'"),
        ("rst-ttl:ttl=1.5", "option 'ttl' takes a int, not '1.5'"),
        ("rst-ttl:ttl=-1", "must not be negative"),
        ("rst-ttl:hops=2", "strategy 'rst-ttl' has no option 'hops'; its options: read_first, ttl"),
    ],
)
def test_bad_ttl_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_ttl_option_and_its_default():
    options = parse_spec("rst-ttl").options
    # Its own options, and the listening socket's every reference strategy takes (off: 0).
    assert options == {
        "read_first": True,
        "ttl": 1,
        "defer_accept": 0,
        "user_timeout": 0.0,
        "syncookies": "kernel",
    }
    assert str(parse_spec("rst-ttl:ttl=1")) == "rst-ttl"
    assert str(parse_spec("rst-ttl:ttl=2,read_first=false")) == "rst-ttl:read_first=false,ttl=2"
    assert parse_spec("fw-drop:then=rst-ttl").options["then"] == "rst-ttl"  # a close strategy


def test_conntrack_table_is_read_per_port_and_state():
    text = (
        "ipv4     2 tcp      6 9 CLOSE src=198.18.0.1 dst=198.19.0.2 sport=40000 dport=8080 "
        "src=198.19.0.2 dst=198.18.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1\n"
        "ipv6     10 tcp      6 431999 ESTABLISHED src=2001:2::1 dst=2001:2:0:100::2 sport=1 "
        "dport=8080 src=2001:2:0:100::2 dst=2001:2::1 sport=8080 dport=1 [ASSURED] use=2\n"
        "ipv4     2 tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.19.0.2 sport=8080 "
        "dport=9000 src=198.19.0.2 dst=198.18.0.1 sport=9000 dport=8080 use=1\n"
        "ipv4     2 udp      17 29 src=198.18.0.1 dst=198.19.0.2 sport=5 dport=8080 use=1\n"
    )
    reading = conntrack.parse(text, 8080)
    assert reading.by_state == {"CLOSE": 1, "ESTABLISHED": 1}
    assert (reading.entries, reading.established) == (2, 1)


# in a lab


def probe(spec: str, routed: bool, family: int):
    case = ProbeCase(ServerConfig(PORT, parse_spec(spec)), routed=routed, family=family)
    result = Probe(timeout=2.0).run(case)
    assert not result.error, result.error
    return result


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(
    ("spec", "routed", "outcome"),
    [
        ("rst-ttl", False, Outcome.RST),  # directly connected, the RST arrives
        ("rst-ttl", True, Outcome.SILENT),  # one router on the way: it dies there
        ("rst-ttl:ttl=2", True, Outcome.RST),  # TTL 2 crosses one router
    ],
)
def test_the_rst_arrives_only_if_its_ttl_allows(spec, routed, outcome, family):
    result = probe(spec, routed, family)
    assert result.attempt.outcome is outcome, result.to_dict()
    assert result.defender_sockets == []  # an RST leaves no orphan, unlike ttl-drop's FIN
    resets = [e for e in result.timeline if e.direction == "in" and "R" in e.what]
    if outcome is Outcome.RST:
        assert resets[0].ttl == 1  # it had just enough TTL to get here
    else:
        assert result.attempt.hang_s >= 1.8
        # The client's FIN at its timeout meets a defender that forgot the connection.
        assert all(e.t >= result.attempt.t_request + 1.8 for e in resets)


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_the_router_forgets_what_the_client_still_waits_on(family):
    """rst-ttl: the router saw the RST go by (CLOSE), the client is still ESTABLISHED. repair:
    nothing went by, the router still holds the connection ESTABLISHED."""
    states = {}
    for spec in ("rst-ttl", "repair"):
        with Lab(routed=True) as lab:
            defender = Defender(lab, ServerConfig(PORT, parse_spec(spec)))
            inet = socket.AF_INET if family == 4 else socket.AF_INET6
            with lab.attacker.entered():
                client = socket.socket(inet)
            with client:
                client.settimeout(5)
                client.connect((lab.defender_ip(family), PORT))
                client.sendall(REQUEST)
                port = client.getsockname()[1]
                assert wait_until(lambda lab=lab, port=port: not _defender_holds(lab, port))
                time.sleep(0.2)  # room for a late RST
                mine = [s for s in tcp_sockets(lab.attacker) if s.local[1] == port]
                assert [s.state for s in mine] == ["ESTABLISHED"]  # the client still waits
                reading = conntrack.read(lab.router, PORT)
                count = lab.router.run(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
            defender.close()
        assert reading.entries == int(count) == 1  # the kernel's own count agrees
        states[spec] = reading.by_state
    assert states == {"rst-ttl": {"CLOSE": 1}, "repair": {"ESTABLISHED": 1}}


def _defender_holds(lab: Lab, port: int) -> bool:
    return any(s.remote[1] == port for s in tcp_sockets(lab.defender))


@pytest.mark.needs_lab
def test_router_state_is_sampled_and_summarised():
    policy = Policy(timeout=2.0, reconnect=True, concurrency=3, duration=3.0)

    def trial(spec: str, routed: bool = True):
        server = ServerConfig(PORT, parse_spec(spec))
        config = TrialConfig(server, (AttackerSpec("kernel", policy),), routed=routed, sample_hz=10)
        return run_trial(config)

    with ThreadPoolExecutor(3) as pool:
        rst_ttl, repair, direct = pool.map(
            lambda args: trial(*args), [("rst-ttl",), ("repair",), ("rst-ttl", False)]
        )
    assert set(rst_ttl.summaries["kernel"].outcomes) == {"silent"}
    assert set(repair.summaries["kernel"].outcomes) == {"silent"}
    assert all(s.router_conntrack is not None for s in rst_ttl.samples)
    assert rst_ttl.defender.peak_router_conntrack >= 3  # the router saw every connection...
    # ...and forgot them, while repair's stay established as long as the client waits.
    assert repair.defender.peak_router_established >= 3
    assert rst_ttl.defender.peak_router_established < 3
    assert direct.defender.peak_router_conntrack is None  # no router, nothing to read
    assert all(s.row()["router_conntrack"] is None for s in direct.samples)


@pytest.mark.needs_lab
def test_router_table_lives_in_the_router_only():
    def ruleset() -> str:
        return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout

    before = ruleset()
    with Lab(routed=True) as lab:
        assert ROUTER_TABLE in lab.router.run(["nft", "list", "tables"])
        for host in (lab.attacker, lab.defender):
            assert ROUTER_TABLE not in host.run(["nft", "list", "tables"])
        assert ruleset() == before
    assert ruleset() == before

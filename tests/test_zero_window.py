"""zero-window: the stateless tarpit's packets (no root), and the tarpit in real labs: what the
abuser's wire and kernel see, what the defender keeps (nothing), and its rules kept in the lab."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import subprocess
import sys

import dpkt
import pytest

from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Policy, Target
from closebench.core.errors import LabError
from closebench.core.outcomes import Attempt, Outcome
from closebench.defender import Defender, ServerConfig, steering
from closebench.defender.metrics import packets_sent
from closebench.lab import Lab
from closebench.lab.socket_table import tcp_counters
from closebench.servers import zero_window
from closebench.servers.strategies import parse_spec
from closebench.servers.zero_window import Responder, Segment, TarpitError, parse
from closebench.trials.probe import Probe, ProbeCase, ProbeResult
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial
from closebench.wire.classify import ZERO_WINDOW_NOTE

PORT = 8080
SYN, ACK, FIN, RST, PSH = (
    getattr(dpkt.tcp, f"TH_{f}") for f in ("SYN", "ACK", "FIN", "RST", "PUSH")
)
CLIENT = {4: "198.18.0.1", 6: "2001:2::1"}
SERVER = {4: "198.19.0.2", 6: "2001:2:0:100::2"}


# the packets, without a lab


def segment(family: int = 4, seq: int = 1000, ack: int = 0, flags: int = SYN, payload: int = 0):
    return Segment(family, CLIENT[family], SERVER[family], 40000, PORT, seq, ack, flags, payload)


def answer(responder: Responder, incoming: Segment) -> Segment | None:
    reply = responder.answer(incoming)
    return None if reply is None else parse(reply)


def handshake(responder: Responder, family: int = 4, isn: int = 1000) -> Segment:
    syn_ack = answer(responder, segment(family, seq=isn))
    assert syn_ack is not None
    return syn_ack


@pytest.mark.parametrize("family", [4, 6])
def test_a_syn_gets_a_zero_window_syn_ack(family):
    responder = Responder(b"k" * 16)
    reply = responder.answer(segment(family, seq=0xFFFFFFFF))  # the ack wraps around
    assert reply is not None
    syn_ack = parse(reply)
    assert syn_ack == Segment(
        family,
        SERVER[family],
        CLIENT[family],
        PORT,
        40000,
        syn_ack.seq,
        0,
        SYN | ACK,
        0,
    )
    tcp = (dpkt.ip.IP(reply) if family == 4 else dpkt.ip6.IP6(reply)).data
    assert tcp.win == 0
    assert dict(dpkt.tcp.parse_opts(tcp.opts))[dpkt.tcp.TCP_OPT_MSS] == b"\x05\xb4"  # 1460
    # The checksums are right: scapy recomputes them and finds the same.
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    decoded = IP(reply) if family == 4 else IPv6(reply)
    sent = decoded["TCP"].chksum
    del decoded["TCP"].chksum
    assert (IP if family == 4 else IPv6)(bytes(decoded))["TCP"].chksum == sent


def test_the_answer_depends_on_the_packet_alone():
    incoming = segment(seq=1234)
    assert Responder(b"a" * 16).answer(incoming) == Responder(b"a" * 16).answer(incoming)
    assert handshake(Responder(b"a" * 16)).seq != handshake(Responder(b"b" * 16)).seq
    other_port = Segment(4, CLIENT[4], SERVER[4], 40001, PORT, 1000, 0, SYN, 0)
    responder = Responder(b"a" * 16)
    assert parse(responder.answer(other_port)).seq != handshake(responder).seq


@pytest.mark.parametrize("family", [4, 6])
def test_window_probes_are_answered_with_the_window_still_zero(family):
    responder = Responder(b"k" * 16)
    ours = handshake(responder, family, isn=5000).seq
    # Linux probes with an empty segment one below its next sequence number (the SYN's).
    probe = segment(family, seq=5000, ack=ours + 1, flags=ACK)
    reply = answer(responder, probe)
    assert reply is not None
    assert (reply.flags, reply.seq, reply.ack, reply.payload) == (ACK, ours + 1, 5001, 0)
    # Data pushed past the window, or a FIN, is answered without being acknowledged.
    for flags, payload in ((ACK | PSH, 1), (ACK | PSH, 80), (ACK | FIN, 0)):
        pushed = segment(family, seq=5001, ack=ours + 1, flags=flags, payload=payload)
        assert answer(responder, pushed).ack == 5001


def test_what_needs_no_answer():
    responder = Responder(b"k" * 16)
    ours = handshake(responder, isn=7000).seq
    for quiet in (
        segment(seq=7001, ack=ours + 1, flags=ACK),  # the handshake's own ACK
        segment(seq=7001, ack=ours + 1, flags=RST | ACK),
        segment(seq=7001, flags=RST),
        segment(seq=9999, ack=ours + 1, flags=ACK),  # not a sequence number of this connection
        segment(seq=7000, ack=ours + 99, flags=ACK),  # an acknowledgement we never asked for
        segment(seq=7000, ack=ours + 1, flags=SYN | ACK),
    ):
        assert responder.answer(quiet) is None, quiet


def test_parse_takes_tcp_only():
    udp = dpkt.ip.IP(src=b"\1\2\3\4", dst=b"\4\3\2\1", p=17, data=dpkt.udp.UDP(sport=1, dport=2))
    for packet in (b"", b"\x45", b"\x00" * 40, bytes(udp), b"\x60" + b"\x00" * 10):
        assert parse(packet) is None


def test_ruleset_steers_only_the_given_sources_before_conntrack():
    rules = zero_window.ruleset(8081, ["198.18.0.1/32", "2001:2::1/128"])
    assert "hook prerouting priority raw" in rules
    assert "ip saddr { 198.18.0.1/32 } tcp dport 8081 counter name steered drop" in rules
    assert "ip6 saddr { 2001:2::1/128 } tcp dport 8081" in rules
    assert "ip6 saddr" not in zero_window.ruleset(8081, ["198.18.0.0/24"])


def test_packet_filter_is_compiled_by_tcpdump(monkeypatch, tmp_path):
    sources = [ipaddress.ip_network("198.18.0.1/32"), ipaddress.ip_network("2001:2::1/128")]
    expression = zero_window.filter_expression(8080, sources)
    assert expression == "tcp dst port 8080 and (src net 198.18.0.1/32 or src net 2001:2::1/128)"
    program = zero_window.compile_filter(expression)
    assert len(program) > 10 and program[-1][0] == 6  # ends in a return (BPF_RET)
    with pytest.raises(TarpitError, match="cannot compile"):
        zero_window.compile_filter("tcp dst port eighty")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TarpitError, match="apt-get install tcpdump"):
        zero_window.compile_filter(expression)


# option validation, without a lab


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zero-window:ttl=1", "strategy 'zero-window' has no option 'ttl'; its options: none"),
        ("zero-window:read_first=false", "has no option 'read_first'"),
    ],
)
def test_zero_window_takes_no_options(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_zero_window_picks_its_abusers_by_address():
    spec = parse_spec("zero-window")
    assert spec.by_address and not parse_spec("repair").by_address
    config = ServerConfig(PORT, spec).with_attacker_rule("2001:2::1")
    assert config.abuse_sources == ["2001:2::1/128"]
    server = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "zero-window"]
    result = subprocess.run(server, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "zero-window acts on the SYN" in result.stderr and "--abuse-source" in result.stderr


# in a lab


def host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def probe(lab: Lab, family: int, timeout: float = 2.0) -> ProbeResult:
    """One abusive request from the attacker's main address, read from the capture."""
    case = ProbeCase(ServerConfig(PORT, command=["none"]), family=family)
    result = ProbeResult(case)
    Probe(timeout=timeout).observe(lab, case, PORT, result)
    return result


def request(lab: Lab, source: str, family: int) -> Attempt:
    """One `GET /` from `source` by the kernel-socket client."""
    target = Target(lab.defender_ip(family), PORT, family, "/")
    with lab.attacker.entered():
        return asyncio.run(KernelSpammer("test").attempt(target, Policy(timeout=2), source, 2))


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_the_abuser_hangs_and_the_defender_keeps_nothing(family):
    before = host_ruleset()
    with Lab() as lab:
        lab.add_attacker_addresses(1)
        config = ServerConfig(PORT, parse_spec("zero-window")).with_attacker_rule(
            lab.attacker_ip(family)
        )
        defender = Defender(lab, config)
        assert host_ruleset() == before  # the table is in the defender's namespace only
        assert zero_window.TABLE in lab.defender.run(["nft", "list", "tables"])
        assert zero_window.TABLE not in lab.attacker.run(["nft", "list", "tables"])
        trapped = probe(lab, family)
        # Another source still reaches the kernel's TCP and the server.
        served = request(lab, lab.addressing.attacker_extra(family, 0), family)
        steered = steering.steered(lab)
        counters = tcp_counters(lab.defender)
        stats = defender.stop()
        defender.close()
    assert host_ruleset() == before
    attempt = trapped.attempt
    assert attempt.outcome is Outcome.SILENT and not attempt.data_first
    assert attempt.hang_s >= 1.8 and attempt.bytes_received == 0
    assert trapped.defender_sockets == []
    # On the wire: a SYN-ACK with a zero window, probes answered, and no byte of the request.
    syn_ack = next(e for e in trapped.timeline if e.direction == "in" and e.what == "SA")
    assert syn_ack.window == 0
    assert not any(e.length for e in trapped.timeline if e.direction == "out")
    answers = [e for e in trapped.timeline if e.direction == "in" and e.what == "A"]
    assert answers and all(e.window == 0 for e in answers)
    assert ZERO_WINDOW_NOTE in attempt.detail
    # The kernel's TCP never saw the trapped connection: its one passive open is the served one.
    assert served.http_status == 200
    assert counters["PassiveOpens"] == 1
    assert stats["zw_syn_acks"] == 1 and stats["zw_probe_acks"] == len(answers)
    assert stats["zw_packets_in"] == steered  # what nft took from the kernel, the tarpit got
    assert stats["abusive"] == 0 and stats["served"] == 1


@pytest.mark.needs_lab
def test_the_server_refuses_to_start_without_its_steering_table():
    with Lab() as lab:
        server = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "zero-window"]
        server += ["--abuse-source", lab.attacker_ip(4)]
        with pytest.raises(LabError, match=f"no nftables table inet {zero_window.TABLE}"):
            lab.defender.run(server)
        lab.defender.run(["nft", "-f", "-"], stdin=zero_window.ruleset(PORT, [lab.attacker_ip(4)]))
        drop_raw = ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", "--"]
        with pytest.raises(LabError, match="needs CAP_NET_RAW"):
            lab.defender.run(drop_raw + server)


@pytest.mark.needs_lab
@pytest.mark.parametrize("kind", ["kernel", "curl", "scapy", "volume"])
def test_attackers_stay_trapped_until_their_own_timeout(kind):
    policy = Policy(timeout=2.0, reconnect=True, concurrency=3, duration=3.0)
    if kind == "curl":
        policy = Policy(timeout=2.0, reconnect=True, concurrency=1, duration=3.0)
    config = TrialConfig(
        ServerConfig(PORT, parse_spec("zero-window")),
        (AttackerSpec(kind, policy),),
        legit=None,
        sample_hz=10,
    )
    result = run_trial(config)
    summary = result.summaries[kind]
    assert set(summary.outcomes) == {"silent"}, [a.to_dict() for a in result.attempts]
    assert summary.data_first == 0 and summary.bytes_received == 0
    assert summary.hang_median_s >= 1.8  # the attacker's own timeout ended each attempt
    assert result.defender.peak_sockets == 0  # no kernel socket, not even for a moment
    assert result.defender.peak_fds == result.samples[0].fds  # no fd either
    assert result.server_stats["zw_syn_acks"] >= summary.attempts
    if kind == "curl":
        assert all("(28) Operation timed out" in a.run_error for a in result.attempts)
        assert all(ZERO_WINDOW_NOTE in a.detail for a in result.attempts)
    if kind in ("scapy", "volume"):
        # The packet engine keeps its request out of the zero window, as a kernel does: nothing
        # of it on the wire, nothing sent again. scapy probes the window (Linux's empty ACK one
        # byte back, every RTO doubling) and each probe is answered; volume does not retransmit,
        # so it does not probe either.
        cost = summary.attacker_cost
        assert cost["requests_held"] == summary.attempts and cost["requests_sent"] == 0
        assert cost["data_retransmits_sent"] == 0 and cost["bad_acks_seen"] == 0
        assert cost["odd_segments_seen"] == 0 and cost["late_packets_seen"] == 0
        if kind == "scapy":
            assert cost["window_probes_sent"] >= 2 * summary.attempts
            assert result.server_stats["zw_probe_acks"] == cost["window_probes_sent"]
        else:
            assert cost["window_probes_sent"] == 0
    # The defender's interfaces sent what the tarpit sent, and a little ARP/ND besides (an
    # answer to a probe after the last sample is in the server's count only).
    out = result.server_stats["zw_packets_out"]
    assert out - 3 <= result.defender.packets_sent <= out + 10


@pytest.mark.needs_lab
def test_packets_sent_is_what_the_kernel_counts():
    def netlink_count(lab: Lab) -> int:
        shown = lab.defender.run(["ip", "-s", "-j", "link", "show", "eth0"])
        return json.loads(shown)[0]["stats64"]["tx"]["packets"]

    with Lab() as lab:
        before = packets_sent(lab.defender)
        with lab.defender.entered():
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sender:
            for _ in range(7):
                sender.sendto(b"x", (lab.attacker_ip(4), 9))
        first = netlink_count(lab)
        after = packets_sent(lab.defender)
        last = netlink_count(lab)
    assert after - before >= 7
    assert first <= after <= last  # /proc/net/dev and netlink count the same packets

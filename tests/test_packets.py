"""The packet engine's bytes, without a lab: templates, decoding, the BPF program, the lines the
child writes and the pacing of starts. Packets are built and checked with scapy.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6

from closebench.attackers.packet import templates
from closebench.attackers.packet.connection import Profile
from closebench.attackers.packet.decode import Decoder
from closebench.attackers.packet.loop import Pacer
from closebench.attackers.packet.raw_sockets import compile_bpf, reply_filter
from closebench.attackers.packet.segments import ACK, FIN, PSH, RST, SYN, IcmpError, Kind, Segment
from closebench.attackers.policy import Policy
from closebench.core.outcomes import Outcome
from tests.playbook import Playbook

CLIENT4, SERVER4 = "198.18.0.1", "198.19.0.2"
CLIENT6, SERVER6 = "2001:2::1", "2001:2:0:1::2"
PORT = 8080
REQUEST = b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n"


ENDS = [(4, CLIENT4, SERVER4), (6, CLIENT6, SERVER6)]


@pytest.mark.parametrize(("family", "source", "dst"), ENDS)
@pytest.mark.parametrize("kind", list(Kind))
def test_patched_template_is_the_packet_scapy_would_build(family, source, dst, kind):
    template = templates.build(family, source, dst, PORT, REQUEST)[kind]
    packet = template.packet(61234, 0xFFFFFFF0, 0x12345678)
    parsed = (IP if family == 4 else IPv6)(packet)
    tcp = parsed[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq) == (61234, PORT, 0xFFFFFFF0)
    assert tcp.ack == 0x12345678
    assert (bytes(tcp.payload) == REQUEST) is (kind is Kind.REQUEST)
    checksum = tcp.chksum
    del tcp.chksum  # scapy computes it again from everything else
    assert (IP if family == 4 else IPv6)(bytes(parsed))[TCP].chksum == checksum
    assert template == templates.Template.from_json(template.to_json())


def server4(flags: str, payload: bytes = b"", dport: int = 61000, **ip) -> bytes:
    tcp = TCP(sport=PORT, dport=dport, seq=100, ack=200, flags=flags)
    return bytes(IP(src=SERVER4, dst=CLIENT4, **ip) / tcp / payload)


def decoder(family: int = 4) -> Decoder:
    if family == 4:
        return Decoder(4, SERVER4, PORT, [CLIENT4], 61000, 61009)
    return Decoder(6, SERVER6, PORT, [CLIENT6], 61000, 61009)


def test_usual_segments_are_read_by_the_fast_path():
    response = b"HTTP/1.1 200 OK\r\n" + b"x" * 100
    # Ethernet pads a bare segment to 60 bytes: the IP header's length says where it ends.
    padded = server4("A") + b"\0" * 6
    expected = Segment(1.5, 0, 61000, 100, 200, ACK, window=8192)  # scapy's default window
    assert decoder().decode(padded, 1.5) == expected
    shut = IP(src=SERVER4, dst=CLIENT4) / TCP(sport=PORT, dport=61000, flags="SA", window=0)
    assert decoder().decode(bytes(shut), 1.5).window == 0  # a zero-window tarpit's SYN-ACK
    segment = decoder().decode(server4("PA", response), 2.0)
    assert (segment.flags, segment.length) == (PSH | ACK, len(response))
    assert segment.head == response[:64] and not segment.odd


def test_lengths_come_from_the_headers_when_the_ring_cuts_a_packet_short():
    big = b"HTTP/1.1 200 OK\r\n" + b"x" * 1400
    assert decoder().decode(server4("PA", big)[:900], 1.0).length == len(big)
    six = IPv6(src=SERVER6, dst=CLIENT6) / TCP(sport=PORT, dport=61001, flags="PAU") / big
    segment = decoder(6).decode(bytes(six)[:900], 1.0)  # odd flags: read by scapy
    assert (segment.length, segment.odd, segment.head) == (len(big), "PAU", big[:64])


def test_segments_not_for_this_attack_are_ignored():
    assert decoder().decode(server4("SA", dport=62000), 1.0) is None  # outside our ports
    other = bytes(IP(src="198.19.0.9", dst=CLIENT4) / TCP(sport=PORT, dport=61000, flags="SA"))
    assert decoder().decode(other, 1.0) is None


def test_odd_flags_go_to_scapy_and_say_so():
    segment = decoder().decode(server4("FSA"), 1.0)
    assert segment.flags == FIN | SYN | ACK and segment.odd == "FSA"
    assert decoder().decode(server4("SA", options=[]), 1.0).odd == ""


def test_ip_options_and_ipv6_are_read_too():
    with_options = bytes(
        IP(src=SERVER4, dst=CLIENT4, options=b"\x01\x01\x01\x00")
        / TCP(sport=PORT, dport=61003, seq=7, ack=8, flags="R")
    )
    assert decoder().decode(with_options, 1.0) == Segment(1.0, 0, 61003, 7, 8, RST, window=8192)
    six = bytes(IPv6(src=SERVER6, dst=CLIENT6) / TCP(sport=PORT, dport=61001, flags="FA") / b"ab")
    expected = Segment(1.0, 0, 61001, 0, 0, FIN | ACK, 2, b"ab", window=8192)
    assert decoder(6).decode(six, 1.0) == expected


def test_icmp_errors_quoting_our_segments_are_decoded_by_scapy():
    quoted = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=61002, dport=PORT, flags="S")
    error = bytes(IP(src="198.18.0.254", dst=CLIENT4) / ICMP(type=3, code=13) / quoted)
    assert decoder().decode(error, 3.0) == IcmpError(3.0, 0, 61002, "icmp 3/13", "198.18.0.254")
    quoted6 = IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=61002, dport=PORT, flags="S")
    error6 = bytes(IPv6(src="2001:2::fe", dst=CLIENT6) / ICMPv6DestUnreach(code=1) / quoted6)
    assert decoder(6).decode(error6, 3.0) == IcmpError(3.0, 0, 61002, "icmpv6 1/1", "2001:2::fe")


def test_path_mtu_messages_and_errors_about_others_are_not_ours():
    frag_needed = IP(src="198.18.0.254", dst=CLIENT4) / ICMP(type=3, code=4)
    quoted = IP(src=CLIENT4, dst=SERVER4) / TCP(sport=61002, dport=PORT)
    assert decoder().decode(bytes(frag_needed / quoted), 1.0) is None
    too_big = IPv6(src="2001:2::fe", dst=CLIENT6) / ICMPv6PacketTooBig()
    quoted6 = IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=61002, dport=PORT)
    assert decoder(6).decode(bytes(too_big / quoted6), 1.0) is None
    elsewhere = IP(src=CLIENT4, dst="198.19.0.9") / TCP(sport=61002, dport=PORT)
    unreachable = IP(src="198.18.0.254", dst=CLIENT4) / ICMP(type=3, code=1)
    assert decoder().decode(bytes(unreachable / elsewhere), 1.0) is None


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("bare_acks", [True, False])
def test_reply_filter_compiles(family, bare_acks):
    server, client = (SERVER4, CLIENT4) if family == 4 else (SERVER6, CLIENT6)
    expression = reply_filter(family, server, PORT, [client], "61000-65535", bare_acks)
    assert ("tcp-syn" in expression or "ip6[53]" in expression) is not bare_acks
    program = compile_bpf(expression)
    assert 10 < len(program) < 4096 and all(len(insn) == 4 for insn in program)


def test_attempt_lines_carry_the_record_whole():
    play = Playbook(timeout=2.0, sources=2)
    play.connect()
    first = play.connect()  # from the second source address
    play.t += 0.25
    play.server(SYN | ACK, seq=1000)
    play.server(PSH | ACK, seq=1001, payload=b"HTTP/1.1 404 Not Found\r\n")
    play.later(2.0)
    [attempt] = [a for a in play.attempts() if a.sport == first.port and a.src == "198.18.0.5"]
    assert attempt.outcome is Outcome.SILENT and attempt.http_status == 404
    assert attempt.t_established - attempt.t_syn == pytest.approx(0.25, abs=1e-6)
    assert attempt.t_first_byte == pytest.approx(attempt.t_established, abs=1e-6)
    assert attempt.hang_s == pytest.approx(2.0, abs=1e-6)
    assert attempt.detail == "" and attempt.client_timeout == 2.0


def test_pacer_keeps_the_window_the_rate_and_the_bounds():
    window = Pacer(Policy(concurrency=5, duration=10), now=0.0)
    assert window.due(0.0, in_flight=0) == 5 and window.due(0.0, in_flight=5) == 0
    rated = Pacer(Policy(concurrency=50, rate=250, duration=1), now=0.0)  # one per 4 ms
    assert rated.due(0.0, 0) == 1 and rated.due(0.002, 1) == 0 and rated.due(0.0102, 1) == 2
    assert rated.due(0.5, 0) == 3  # a stall is caught up for BURST (10 ms) only
    assert rated.starting(0.99) and not rated.starting(1.0)
    counted = Pacer(Policy(concurrency=8, attempts=10, duration=10), now=0.0)
    assert counted.due(0.0, 0) == 8 and counted.due(0.1, 0) == 2 and not counted.starting(0.2)
    once = Pacer(Policy(concurrency=3, reconnect=False, duration=10), now=0.0)
    assert once.due(0.0, 0) == 3 and once.due(1.0, 0) == 0 and not once.starting(1.0)


def test_profiles_of_the_two_attackers():
    from closebench.attackers.scapy_spammer import ScapySpammer
    from closebench.attackers.volume import VolumeAttacker

    assert ScapySpammer.profile == Profile(give_up=Kind.RST_ACK, retransmits=True)
    assert VolumeAttacker.profile == Profile(give_up=Kind.FIN, retransmits=False)

"""Per-layer drop counters and the defender's kernel cost (issue 21): the counters' check against
the capture (verify), conntrack's bytes, the cost figures of a summary row. The lab trials that
fill them in run in tests/test_further_out.py (xdp-drop and tc-drop over IPv4 and IPv6)."""

from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pytest

from closebench.defender.drop_layers import slab_object_size
from closebench.results.drop_check import agrees, drop_check
from closebench.results.schema import TrialRow
from closebench.results.verify import agreement_text
from closebench.trials.rows import ban_windows, blocked_attempts

BANNED = "198.18.0.2"
OTHER = "198.18.0.3"
SERVER = "198.18.1.2"


def _frame(source: str, flags: int, sport: int) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=8080, flags=flags, seq=1)
    ip = dpkt.ip.IP(
        src=socket.inet_aton(source), dst=socket.inet_aton(SERVER), p=dpkt.ip.IP_PROTO_TCP
    )
    ip.data = tcp
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def _pcap(path: Path, packets: list[tuple[float, str, int]]) -> Path:
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        for number, (t, source, flags) in enumerate(packets):
            writer.writepkt(_frame(source, flags, 20000 + number), ts=t)
    return path


SYN, SYN_ACK, ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK


@pytest.fixture
def capture(tmp_path):
    """200 SYNs from the banned address inside its ban (1000 to 1100), with what must not count
    around them: its SYNs before the ban, another address's SYNs, ACKs and SYN-ACKs."""
    packets = [(990.0 + i * 0.01, BANNED, SYN) for i in range(50)]  # before the ban
    packets += [(1000.0 + i * 0.1, BANNED, SYN) for i in range(200)]
    packets += [(1000.0 + i * 0.1, OTHER, SYN) for i in range(100)]  # never banned
    packets += [(1001.0 + i, BANNED, flags) for i in range(10) for flags in (ACK, SYN_ACK)]
    packets += [(1100.0 + i, BANNED, SYN) for i in range(5)]  # the ban is over
    return _pcap(tmp_path / "trial.pcap", sorted(packets))


def _row(layer: str, counted: int) -> dict:
    windows = [{"address": BANNED, "from": 1000.0, "until": 1100.0}]
    return {"drops_by_layer": {layer: counted}, "ban_windows": windows}


def test_the_drop_check_is_quiet_when_the_counter_matches_the_capture(capture):
    for counted in (200, 199, 201):  # one SYN in flight as the map was written
        check = drop_check(_row("xdp", counted), capture)
        assert check == {"layer": "xdp", "counted": counted, "on_wire": 200, "ok": True}
    assert "agree" in agreement_text({"drops": drop_check(_row("tc", 200), capture)})


def test_the_drop_check_catches_a_counter_off_by_more_than_one_percent(capture):
    for counted in (197, 203, 0):
        check = drop_check(_row("tc", counted), capture)
        assert check is not None and check["ok"] is False and check["on_wire"] == 200
    text = agreement_text({"drops": drop_check(_row("tc", 197), capture)})
    assert "counted 197 SYNs dropped, the capture shows 200" in text and "DISAGREE" in text


def test_the_drop_check_leaves_out_what_no_bpf_program_counted(capture):
    assert drop_check(_row("nft-ban", 200), capture) is None  # fw-*: not this check's
    assert drop_check({"drops_by_layer": {"xdp": 5}, "ban_windows": []}, capture) is None
    assert drop_check({"drops_by_layer": {"xdp": 5}, "ban_windows": "x"}, capture) is None
    assert drop_check({}, capture) is None


def test_one_percent_of_many_syns_is_the_tolerance():
    assert agrees(10_000, 10_100) and not agrees(10_000, 10_102)
    assert agrees(0, 1) and not agrees(0, 2)


def test_conntrack_bytes_come_from_the_slab_object_size():
    slabinfo = (
        "slabinfo - version: 2.1\n"
        "nf_conntrack_expect    0      0    208   19    1 : tunables    0    0    0\n"
        "nf_conntrack         144    144    256   16    1 : tunables    0    0    0\n"
    )
    assert slab_object_size(slabinfo) == 256
    assert slab_object_size("slabinfo - version: 2.1\n") == 0
    assert slab_object_size() >= 0  # this machine's (0 where /proc/slabinfo does not say)


def test_blocked_attempts_are_those_after_a_ban_else_those_a_layer_refused():
    row = TrialRow("t", "xdp-drop", False, True, None, 1.0, attempts=30)
    row.outcomes = {"rst": 10, "syn-timeout": 20}
    row.attempts_after_ban = 20
    assert blocked_attempts(row, layered=True) == 20
    row.attempts_after_ban = None
    row.outcomes = {"fin": 5, "refused": 7, "syn-timeout": 3}
    assert blocked_attempts(row, layered=True) == 10  # conn-cap, synproxy
    assert blocked_attempts(row, layered=False) is None  # nothing in front of the server


def test_ban_windows_are_the_bans_in_force():
    log = [
        {"address": BANNED, "t_effective": 1000.0, "duration_s": 100.0},
        {"address": OTHER, "t_effective": None, "duration_s": 100.0},  # failed: never in force
    ]
    assert ban_windows(log) == [{"address": BANNED, "from": 1000.0, "until": 1100.0}]

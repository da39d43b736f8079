"""The four readers of the outcome rules against one specification (tests/outcome_spec.py), and
the figures derived from their records against their one definition. No lab, no root, no socket.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from closebench.attackers.conversation import Connect, Receive, Send, advance, conversation
from closebench.attackers.packet.connection import Profile
from closebench.attackers.packet.segments import ACK, FIN, RST, SYN, Kind
from closebench.attackers.policy import Target
from closebench.core import outcomes
from closebench.core.outcomes import Attempt, ClosedBy, Outcome
from closebench.core.summary import busy_time, columns_of, derived_times, median, summarize
from closebench.results import dpkt_wire
from closebench.results.dpkt_wire import Reading, read_wire
from closebench.results.records import ATTEMPT_SCHEMA, with_derived
from closebench.wire import classify as classify_module
from closebench.wire.classify import classify
from closebench.wire.pcap import Endpoint, connections
from tests import outcome_spec
from tests.outcome_spec import CASES, ICMP_ERRNO, Case
from tests.playbook import REQUEST, START, Playbook

ADDRESSES = {4: ("198.18.0.1", "198.18.0.2", "198.18.0.254"), 6: ("fd00::1", "fd00::2", "fd00::fe")}
CLIENT_PORT, SERVER_PORT = 41000, 8080
C_ISN, S_ISN = 5000, 1000
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PROBE_INTERVALS = (0.2, 0.6, 1.4)  # a kernel's zero-window probes, after the request is written


class Result(NamedTuple):
    outcome: str
    end: float | None  # seconds after the first SYN
    closed_by: str
    request: float | None


def expected(case: Case, reader: str) -> Result:
    end = case.end
    if end is None and reader != "dpkt":
        end = case.own_end()  # the client's own clock: what the records keep
    return Result(case.outcome.value, end, case.closed_by.value, case.request)


def _close(a: float | None, b: float | None) -> bool:
    return (a is None) == (b is None) and (a is None or abs(a - b) < 2e-6)


def same(got: Result, want: Result) -> bool:
    return (
        got.outcome == want.outcome
        and got.closed_by == want.closed_by
        and _close(got.end, want.end)
        and _close(got.request, want.request)
    )


# the capture readers: the case's packets in a real pcap


class Frame(NamedTuple):
    t: float
    order: int  # among frames at the same time: the SYN-ACK before the request it draws
    outgoing: bool
    flags: str
    seq: int
    ack: int
    payload: bytes = b""
    window: int = 65535
    icmp: bool = False


def wire_frames(case: Case) -> list[Frame]:
    """Both sides' packets of a case, in time order."""
    est, frames = case.established, [Frame(0.0, 0, True, "S", C_ISN, 0)]
    sent = C_ISN + 1 + (len(REQUEST) if case.sends_request and est is not None else 0)
    if est is None and not any(s.what in ("refuse", "icmp") for s in case.server):
        frames.append(Frame(1.0, 0, True, "S", C_ISN, 0))  # the SYN sent again (Linux: 1 s)
    if est is not None and case.sends_request and not case.zero_window:
        frames.append(Frame(est, 2, True, "PA", C_ISN + 1, S_ISN + 1, REQUEST))
        if not case.acks_request:
            frames.append(Frame(est + 0.2, 2, True, "PA", C_ISN + 1, S_ISN + 1, REQUEST))
    if est is not None and case.sends_request and case.zero_window:
        for wait in PROBE_INTERVALS:  # it probes the window: it has its request to send
            frames.append(Frame(est + wait, 2, True, "A", C_ISN, S_ISN + 1))
    served = S_ISN + 1
    ends_at = math.inf
    for step in case.server:
        acked = sent if case.acks_request else C_ISN + 1
        if step.what.startswith("SA"):
            window = 0 if step.what == "SA0" else 65535
            frames.append(Frame(step.t, 1, False, "SA", S_ISN, C_ISN + 1, window=window))
        elif step.what == "data":
            frames.append(Frame(step.t, 3, False, "PA", served, acked, RESPONSE))
            served += len(RESPONSE)
        elif step.what in ("FIN", "RST"):
            flags = "FA" if step.what == "FIN" else "RA"
            frames.append(Frame(step.t, 4, False, flags, served, acked))
            ends_at = min(ends_at, step.t)
        elif step.what == "refuse":
            frames.append(Frame(step.t, 1, False, "RA", 0, C_ISN + 1))
        else:
            frames.append(Frame(step.t, 1, False, "", 0, 0, icmp=True))
    close = case.close
    if close is None and est is not None and case.own_end() <= ends_at:
        close = (case.give_up, case.own_end())  # its timeout: it gives up
    if close is not None:
        kind, t = close
        frames.append(Frame(t, 2, True, "RA" if kind == "R" else "FA", sent, S_ISN + 1))
    return sorted(frames, key=lambda f: (f.t, f.order))


def write_pcap(case: Case, family: int, path: Path, start: float) -> Endpoint:
    client, server, router = ADDRESSES[family]
    ip = IP if family == 4 else IPv6
    packets = []
    for frame in wire_frames(case):
        ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if frame.icmp:
            quoted = ip(src=client, dst=server) / TCP(
                sport=CLIENT_PORT, dport=SERVER_PORT, flags="S", seq=C_ISN
            )
            error = ICMP(type=3, code=1) if family == 4 else ICMPv6DestUnreach(code=3)
            packet = ether / ip(src=router, dst=client) / error / quoted
        else:
            ends = (client, server) if frame.outgoing else (server, client)
            ports = (CLIENT_PORT, SERVER_PORT) if frame.outgoing else (SERVER_PORT, CLIENT_PORT)
            tcp = TCP(sport=ports[0], dport=ports[1], flags=frame.flags, seq=frame.seq)
            tcp.ack, tcp.window = frame.ack, frame.window
            packet = ether / ip(src=ends[0], dst=ends[1]) / tcp
            if frame.payload:
                packet = packet / Raw(frame.payload)
        packet.time = start + frame.t
        packets.append(packet)
    wrpcap(str(path), packets)
    return Endpoint(server, SERVER_PORT)


def by_classify(case: Case, family: int, pcap: Path, server: Endpoint, start: float) -> Result:
    [(client, events)] = connections(str(pcap), server)
    attempt = Attempt(
        "spec",
        family,
        client.address,
        client.port,
        server.address,
        server.port,
        case.timeout,
        Outcome.SYN_TIMEOUT,
        start,
        t_end=start + case.own_end(),
    )
    classify(events, attempt)
    return _result(attempt, start)


def by_dpkt(case: Case, pcap: Path, start: float) -> Result:
    [connection] = read_wire(pcap)
    reading = Reading()
    for packet in connection.packets:
        if reading.add(packet):
            break
    found = reading.outcome(case.timeout)
    request = reading.request_time()
    return Result(
        found.outcome,
        None if found.end is None else found.end - start,
        found.closed_by,
        None if request is None else request - start,
    )


def _result(attempt: Attempt, start: float) -> Result:
    def at(t: float | None) -> float | None:
        return None if t is None else t - start

    return Result(
        attempt.outcome.value, at(attempt.t_end), attempt.closer.value, at(attempt.t_request)
    )


# the packet engine: the server's segments on its clock


def by_engine(case: Case) -> Result:
    give_up = Kind.FIN if case.give_up == "F" else Kind.RST_ACK
    play = Playbook(timeout=case.timeout, profile=Profile(give_up=give_up))
    conn = play.connect()
    served = S_ISN + 1
    steps = sorted(case.server, key=lambda s: s.t)
    last = max([case.own_end(), *(s.t for s in steps)]) + 0.01
    for tick in range(1, round(last * 1000) + 1):
        play.t = START + tick / 1000
        play.engine.fire_timers()
        for step in [s for s in steps if round(s.t * 1000) == tick]:
            ack = None if case.acks_request else conn.iss + 1
            if step.what.startswith("SA"):
                play.server(SYN | ACK, seq=S_ISN, window=0 if step.what == "SA0" else 65535)
            elif step.what == "data":
                play.server(ACK, seq=served, ack=ack, payload=RESPONSE)
                served += len(RESPONSE)
            elif step.what == "FIN":
                play.server(FIN | ACK, seq=served, ack=ack)
            elif step.what == "RST":
                play.server(RST | ACK, seq=served, ack=ack)
            elif step.what == "refuse":
                play.server(RST | ACK, seq=0)
            else:
                play.icmp("icmp 3/1")
    [attempt] = play.attempts()
    return _result(attempt, START)


# the kernel conversation: its socket operations' results, no socket


def by_conversation(case: Case, family: int) -> Result:
    client, server, _ = ADDRESSES[family]
    target = Target(server, SERVER_PORT, family)
    clock = [START]
    attempt = Attempt(
        "spec",
        family,
        client,
        CLIENT_PORT,
        server,
        SERVER_PORT,
        case.timeout,
        Outcome.SILENT,
        START,
    )
    steps = conversation(attempt, target, 0.0, clock=lambda: clock[0], monotonic=lambda: clock[0])
    pending = sorted(case.server, key=lambda s: s.t)
    step = advance(steps, None, None)
    while step is not None:
        result, error = None, None
        if isinstance(step, Connect):
            first = pending.pop(0) if pending else None
            if first is None:
                clock[0], error = START + step.timeout, TimeoutError()
            else:
                clock[0] = START + first.t
                if first.what == "refuse":
                    error = ConnectionRefusedError()
                elif first.what == "icmp":
                    error = OSError(ICMP_ERRNO, "No route to host")
        elif isinstance(step, Receive):
            if pending and START + pending[0].t <= clock[0] + step.timeout:
                event = pending.pop(0)
                clock[0] = START + event.t
                if event.what == "data":
                    result = RESPONSE
                elif event.what == "RST":
                    error = ConnectionResetError()
                else:
                    result = b""
            else:
                clock[0] += step.timeout
                error = TimeoutError()
        else:
            assert isinstance(step, Send)
        step = advance(steps, result, error)
    return _result(attempt, START)


def read(reader: str, case: Case, family: int, tmp_path: Path) -> Result:
    if reader == "engine":
        return by_engine(case)
    if reader == "conversation":
        return by_conversation(case, family)
    start = 1_800_000_000.0
    pcap = tmp_path / "case.pcap"
    server = write_pcap(case, family, pcap, start)
    if reader == "classify":
        return by_classify(case, family, pcap, server, start)
    return by_dpkt(case, pcap, start)


PLAYS = [
    pytest.param(reader, case, family, id=f"{reader}-ipv{family}-{case.name}")
    for case in CASES
    for reader in sorted(case.readers)
    for family in (4, 6)
    if family == 4 or reader in ("classify", "dpkt", "conversation")
]


@pytest.mark.parametrize(("reader", "case", "family"), PLAYS)
def test_each_reader_follows_the_specification(reader, case, family, tmp_path):
    got = read(reader, case, family, tmp_path)
    want = expected(case, reader)
    assert same(got, want), f"{reader} read {got}, the specification says {want}"


def test_the_specification_covers_every_class_for_every_reader_and_the_give_up_rule():
    for reader in ("classify", "dpkt", "engine", "conversation"):
        covered = {case.outcome for case in CASES if reader in case.readers}
        assert covered == set(Outcome), reader
    names = " / ".join(case.name for case in CASES)
    assert "below the give-up line" in names and "at the give-up line" in names
    below, at = (next(c for c in CASES if c.name.startswith(side)) for side in ("below", "at"))
    share = outcomes.GAVE_UP_SHARE
    assert (
        below.close[1] - outcome_spec.SA_AT
        < share * below.timeout
        <= at.close[1] - outcome_spec.SA_AT
    )


@pytest.mark.parametrize("share", [0.8, 0.95])
def test_moving_the_give_up_share_breaks_the_specification(share, monkeypatch, tmp_path):
    """The share is defined once (core/outcomes.py) and both capture readers read it: moved, a
    side of the rule reads otherwise."""
    monkeypatch.setattr(outcomes, "GAVE_UP_SHARE", share)
    monkeypatch.setattr(dpkt_wire, "GAVE_UP_SHARE", share)
    wrong = [
        (reader, case.name)
        for case in CASES
        if "give-up line" in case.name
        for reader in ("classify", "dpkt")
        if not same(read(reader, case, 4, tmp_path), expected(case, reader))
    ]
    assert {reader for reader, _ in wrong} == {"classify", "dpkt"}


def test_the_rules_share_one_give_up_share():
    assert dpkt_wire.GAVE_UP_SHARE is outcomes.GAVE_UP_SHARE
    assert classify_module.gave_up is outcomes.gave_up


# samples of real tools' captures (tests/data/wire)

DATA = Path(__file__).parent / "data" / "wire"


def test_nmap_connect_scan_ends_at_its_own_rst():
    """nmap -sT against an open port (captured on loopback, nmap 7.93): SYN, SYN-ACK, ACK and
    nmap's RST 47 µs later. The attempt ends at that RST, closed by the client, with no request,
    whatever closebench's timeout: the scanner's, not closebench's, is what ended it."""
    pcap, server = DATA / "nmap-st-loopback.pcap", Endpoint("127.0.0.1", 18089)
    [(client, events)] = connections(str(pcap), server)
    rst = next(e for e in events if e.direction == "out" and "R" in e.what)
    for timeout in (math.inf, 10.0):
        attempt = Attempt(
            "nmap",
            4,
            client.address,
            client.port,
            server.address,
            server.port,
            timeout,
            Outcome.SYN_TIMEOUT,
            events[0].t,
            t_end=events[0].t + 42,
        )
        classify(events, attempt)
        assert (attempt.outcome, attempt.t_end, attempt.closer) == (
            Outcome.SILENT,
            rst.t,
            ClosedBy.CLIENT,
        )
        assert attempt.t_request is None and attempt.hang_s is None
        assert attempt.slot_s == pytest.approx(4.7e-5, abs=2e-6)
        [connection] = read_wire(pcap)
        theirs = dpkt_wire.read_outcome(connection, timeout)
        assert (theirs.outcome, theirs.end, theirs.closed_by) == (
            "silent",
            pytest.approx(rst.t),
            "client",
        )


def test_ethernet_padding_is_not_payload():
    """A masscan-style RST in a 60-byte frame (made with scapy: 54 bytes and 6 of padding): the
    IP header says it carries nothing, so there is no request."""
    pcap, server = DATA / "masscan-padded-rst.pcap", Endpoint("198.18.0.2", 8080)
    [(client, events)] = connections(str(pcap), server)
    assert [(e.what, e.length) for e in events] == [("S", 0), ("SA", 0), ("R", 0)]
    attempt = Attempt(
        "masscan",
        4,
        client.address,
        client.port,
        server.address,
        server.port,
        math.inf,
        Outcome.SYN_TIMEOUT,
        events[0].t,
    )
    classify(events, attempt)
    assert attempt.t_request is None and attempt.closer is ClosedBy.CLIENT
    assert attempt.t_end == events[-1].t
    [connection] = read_wire(pcap)
    assert [p.length for p in connection.packets] == [0, 0, 0]


# derived times: Attempt's properties are the definition


def _varied() -> list[Attempt]:
    base = 1_800_000_000.0
    made = []
    for established, request, end in [
        (0.1, 0.2, 3.2),  # answered late
        (0.1, None, 0.5),  # never sent a request
        (None, None, 21.0),  # a SYN never answered
        (0.1, 0.2, None),  # no end
        (0.1, 0.3, 0.25),  # an end read before the request's time: never negative
    ]:
        at = [None if t is None else base + t for t in (established, request, end)]
        made.append(
            Attempt(
                "a",
                4,
                "198.18.0.1",
                1,
                "198.18.0.2",
                80,
                10.0,
                Outcome.SILENT,
                base,
                t_established=at[0],
                t_request=at[1],
                t_end=at[2],
            )
        )
    return made


def test_numpy_and_pyarrow_derive_the_times_as_the_record_defines_them():
    attempts = _varied()
    hang, connect, slot = derived_times(columns_of(attempts))
    table = pa.Table.from_pylist(
        [dataclasses.asdict(a) | {"outcome": a.outcome.value} for a in attempts],
        schema=pa.schema([f for f in ATTEMPT_SCHEMA if f.name != "trial"]),
    )
    derived = with_derived(table)
    for index, attempt in enumerate(attempts):
        for name, values in (("hang_s", hang), ("connect_wait_s", connect), ("slot_s", slot)):
            want = getattr(attempt, name)
            numpy_value = None if np.isnan(values[index]) else float(values[index])
            assert numpy_value == (None if want is None else pytest.approx(want)), (index, name)
            assert derived[name][index].as_py() == (None if want is None else pytest.approx(want))


def test_the_hang_median_is_the_median_and_outlasted_attempts_stay_out():
    """Four RSTs and four syn-timeouts of 21 s: the median is between them, and the quartiles
    show both; an attempt closebench outlasted counts in its own figure, not in the hang."""
    base = 1_800_000_000.0
    made = []
    for index in range(8):
        quick = index < 4
        attempt = Attempt(
            "a",
            4,
            "198.18.0.1",
            index,
            "198.18.0.2",
            80,
            21.0,
            Outcome.RST if quick else Outcome.SYN_TIMEOUT,
            base,
            t_end=base + (0.004 if quick else 21.0),
        )
        made.append(attempt)
    stopped = Attempt(
        "a",
        4,
        "198.18.0.1",
        9,
        "198.18.0.2",
        80,
        math.inf,
        Outcome.SILENT,
        base,
        t_established=base,
        t_request=base,
        t_end=base + 600.0,
    )
    stopped.closed_by = ClosedBy.CLOSEBENCH.value
    summary = summarize("a", [*made, stopped], 30.0)
    assert summary.hang_median_s == pytest.approx((0.004 + 21.0) / 2, abs=1e-6)
    assert summary.hang_q1_s == pytest.approx(0.004, abs=1e-6)
    assert summary.hang_q3_s == pytest.approx(21.0)
    assert summary.hang_max_s == pytest.approx(21.0)  # not the outlasted 600 s
    assert summary.outlasted == 1 and summary.closed_by == {
        "server": 4,
        "client": 4,
        "closebench": 1,
    }
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5 and median([]) is None


def test_attacker_time_counts_concurrent_connections_once():
    """Four connections open together for 20 s cost 20 s of the attacker's time, not 80; the
    per-connection sum stays beside it."""
    base = 1_800_000_000.0
    parallel = [
        Attempt(
            "a",
            4,
            "198.18.0.1",
            n,
            "198.18.0.2",
            80,
            30.0,
            Outcome.SILENT,
            base + n * 0.1,
            t_end=base + 20.0,
        )
        for n in range(4)
    ]
    later = Attempt(
        "a", 4, "198.18.0.1", 9, "198.18.0.2", 80, 30.0, Outcome.FIN, base + 25.0, t_end=base + 26.0
    )
    summary = summarize("a", [*parallel, later], 30.0)
    assert summary.attacker_seconds_busy == pytest.approx(21.0)
    assert summary.attacker_seconds_wasted == pytest.approx(80.0 - 0.6 + 1.0)
    assert busy_time(np.array([0.0, 1.0]), np.array([np.nan, 2.0])) == pytest.approx(1.0)

"""`closebench verify` reads a pcap once, in time order, holding only the connections still open:
the same agreement as reading the whole capture first, and a memory that does not grow with
the connections already ended."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from closebench.core.file_names import unique_names
from closebench.results.dpkt_wire import ConnectionFollower, Reading, read_outcome, read_wire
from closebench.results.records import run_records
from closebench.results.verify import JOIN_WINDOW_S, TrialAgreement, _compare_request, verify_run
from closebench.trials.runner import Runner
from closebench.trials.scenario import load_scenario
from tests.conftest import figures_not_drawn

CLIENT, SERVER, PORT = "198.18.0.1", "198.18.0.2", 8080
SCENARIO = """\
name = "verify-stream"
description = "a short volume trial against two strategies, for verify's streaming reader"
duration = 1
sample_hz = 10
strategies = ["graceful", "rst"]

[[attackers]]
kind = "volume"
timeout = 10
concurrency = 32
"""


def whole_file_agreement(trial: str, records: list[dict], pcap: Path) -> TrialAgreement:
    """The check as closebench did it before it streamed: every connection of the pcap with
    its packets in memory, then each record, in order, takes its client's nearest free one."""
    result = TrialAgreement(trial, len(records))
    connections = read_wire(pcap)
    by_client = defaultdict(list)
    for connection in connections:
        by_client[connection.client].append(connection)
    taken: set[int] = set()
    for record in records:
        best, gap = None, JOIN_WINDOW_S
        for connection in by_client[(record["src"], record["sport"])]:
            if id(connection) not in taken and abs(connection.syn_t - record["t_syn"]) <= gap:
                best, gap = connection, abs(connection.syn_t - record["t_syn"])
        if best is None:
            result.missing_on_wire += 1
            continue
        taken.add(id(best))
        result.joined += 1
        whole = Reading()
        for packet in best.packets:
            if whole.add(packet):
                break
        _compare_request(result, record, *whole.request())
        reading = read_outcome(best, record["client_timeout"] or math.inf)
        result.class_agree += reading.outcome == record["outcome"]
        if reading.end is None or not math.isfinite(record["t_end"] or math.nan):
            result.ends_not_on_wire += 1
        else:
            result.end_deltas.append(abs(record["t_end"] - reading.end))
    result.missing_in_records = sum(id(c) not in taken for c in connections)
    return result


def figures(agreement: TrialAgreement) -> dict:
    return {k: v for k, v in agreement.to_dict().items() if k != "mismatches"}


@pytest.mark.needs_lab
def test_streaming_agrees_with_reading_the_whole_capture(tmp_path):
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    scenario, text, digest = load_scenario(path)
    # verify=False: the run's own check would read the pcaps once more; verify_run below is it.
    with figures_not_drawn():
        outcome = Runner(scenario, text, digest, path, tmp_path / "reports", verify=False).run()
    assert outcome.complete, outcome.errors
    directory = outcome.directory
    streamed = {t.trial: t for t in verify_run(directory).trials}
    records = run_records(directory)
    trials = [row.trial for row in outcome.rows]
    assert list(streamed) == trials
    for trial, name in zip(trials, unique_names(trials, ".pcap"), strict=True):
        mine = [r for r in records if r["trial"] == trial]
        whole = whole_file_agreement(trial, mine, directory / "pcaps" / name)
        assert len(mine) > 1000, trial  # many connections, many of a port again
        assert figures(streamed[trial]) == figures(whole), trial
        assert sorted(streamed[trial].end_deltas) == sorted(whole.end_deltas)


def sequential_connections(path: Path, count: int, every_s: float) -> None:
    """A pcap of `count` connections one after another from 50 ports in turn: a request and
    the server's FIN; every tenth SYN unanswered, and sent again a second later."""
    frames = []

    def add(t: float, src: str, dst: str, sport: int, dport: int, flags: str, seq: int, data=b""):
        frame = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq)
        frame.time = t
        frames.append(frame / Raw(data) if data else frame)

    for i in range(count):
        t, port, seq = 1000.0 + i * every_s, 40_000 + i % 50, 1000 * i
        out = (t, CLIENT, SERVER, port, PORT)
        back = (SERVER, CLIENT, PORT, port)
        add(*out, "S", seq)
        if i % 10 == 9:
            add(t + 1.0, CLIENT, SERVER, port, PORT, "S", seq)
            continue
        add(t + 0.001, *back, "SA", 77)
        add(t + 0.002, CLIENT, SERVER, port, PORT, "PA", seq + 1, b"GET /")
        add(t + 0.003, *back, "FA", 78)
        add(t + 0.004, CLIENT, SERVER, port, PORT, "FA", seq + 6)  # after the reading is final
    frames.sort(key=lambda frame: frame.time)
    wrpcap(str(path), frames)


def test_the_stream_lets_go_of_ended_connections(tmp_path):
    pcap = tmp_path / "sequential.pcap"
    count, every_s = 400, 0.05
    sequential_connections(pcap, count, every_s)
    follower = ConnectionFollower(idle_s=2.0, tail_s=0.5, keep_packets=False)
    found, most_open, most_held = [], 0, 0
    for connection in follower.follow(pcap):
        found.append(connection)
        most_open = max(most_open, len(follower.open))
        most_held = max(most_held, follower.held)
    # Unanswered SYNs stay open for idle_s, the ended ones tail_s: a few dozen, never all 400.
    assert most_open <= 2.0 / (10 * every_s) + 2
    assert most_held <= 2.0 / (10 * every_s) + 0.5 / every_s + 2
    assert follower.held == 0
    assert len(found) == count and all(not c.packets for c in found)
    # Read whole, the same connections and the same readings.
    whole = read_wire(pcap)
    by_index = {c.index: c for c in found}
    assert [c.index for c in whole] == list(range(count))
    for connection in whole:
        streamed = by_index[connection.index]
        assert (streamed.client, streamed.syn_t) == (connection.client, connection.syn_t)
        assert streamed.reading.outcome(10.0) == read_outcome(connection, 10.0)
    outcomes = [read_outcome(c, 10.0).outcome for c in whole]
    assert outcomes.count("syn-timeout") == count // 10 and outcomes.count("fin") == count * 9 // 10

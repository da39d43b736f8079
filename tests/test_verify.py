"""`closebench verify`: records against the pcaps, on a small real run kept whole in tests/data
(a kernel spammer, curl and a legitimate client against graceful, repair and fw-drop). No lab."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from closebench.cli import main
from closebench.core.file_names import safe_stem, unique_names
from closebench.core.outcomes import Attempt, Outcome
from closebench.results.dpkt_wire import read_outcome, read_wire
from closebench.results.records import (
    ATTEMPTS_DIR,
    SUFFIX,
    run_records,
    write_attempts_file,
)
from closebench.results.verify import verify_run
from closebench.wire import pcap as wire_pcap
from closebench.wire.classify import classify
from closebench.wire.pcap import Endpoint, PcapFollower, connections

RUN = Path(__file__).parent / "data" / "verify-sample"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    directory = tmp_path / RUN.name
    shutil.copytree(RUN, directory)
    return directory


def records(directory: Path) -> list[dict]:
    return run_records(directory)


def rewrite(directory: Path, lines: list[dict]) -> None:
    """The run's attempts files made of `lines` (each trial's file, as the runner names it)."""
    shutil.rmtree(directory / ATTEMPTS_DIR)
    trials = [row["trial"] for row in json.loads((directory / "summary.json").read_text())["rows"]]
    for trial, name in zip(trials, unique_names(trials, SUFFIX), strict=True):
        mine = [Attempt.from_dict(line) for line in lines if line["trial"] == trial]
        write_attempts_file(directory / ATTEMPTS_DIR / name, trial, mine)


def verify(capsys, directory: Path) -> tuple[int, str]:
    status = main(["verify", str(directory)])
    return status, " ".join(capsys.readouterr().out.split())


def test_the_sample_run_agrees_with_its_wire(capsys, run_dir):
    status, out = verify(capsys, run_dir)
    assert status == 0, out
    total = len(records(run_dir))
    assert f"{total} of {total} attempts joined" in out and "every class agrees" in out
    agreement = verify_run(run_dir)
    assert agreement.ok
    # fw-drop's dropped SYNs end at the client's own timeout: no packet marks it.
    [fw_drop] = [t for t in agreement.trials if t.trial == "fw-drop"]
    syn_timeouts = [r for r in records(run_dir) if r["outcome"] == "syn-timeout"]
    assert fw_drop.ends_not_on_wire == len(syn_timeouts) > 0


def test_a_wrong_class_is_caught(capsys, run_dir):
    lines = records(run_dir)
    wrong = next(r for r in lines if r["trial"] == "repair" and r["outcome"] == "silent")
    wrong["outcome"] = "rst"
    rewrite(run_dir, lines)
    status, out = verify(capsys, run_dir)
    assert status == 1
    assert f"{wrong['src']}:{wrong['sport']}: record says rst, wire says silent" in out
    assert "FLAGGED" in out and "1 class mismatch(es)" in out


def test_an_end_time_off_by_more_than_the_tolerance_is_caught(capsys, run_dir):
    lines = records(run_dir)
    loud = [r for r in lines if r["trial"] == "graceful" and r["outcome"] == "fin"]
    # p95 is what counts: more than 5% of the trial's ends must be off.
    for record in loud[: len(loud) // 4 + 1]:
        record["t_end"] += 0.050
    rewrite(run_dir, lines)
    status, out = verify(capsys, run_dir)
    assert status == 1
    assert f"{loud[0]['src']}:{loud[0]['sport']}: end +50.0 ms from the wire's" in out
    assert "every class agrees" in out  # only the times are wrong


def test_connections_missing_on_either_side_are_caught(capsys, run_dir):
    lines = records(run_dir)
    dropped = lines.pop(0)  # a connection on the wire that no record accounts for
    invented = {**lines[0], "sport": 9, "t_syn": lines[0]["t_syn"] + 0.5}  # and the reverse
    rewrite(run_dir, [*lines, invented])
    status, out = verify(capsys, run_dir)
    assert status == 1
    assert "1 record(s) not on the wire, 1 connection(s) unrecorded" in out
    assert f"{dropped['src']}:{dropped['sport']}: missing in the records" in out


def test_not_a_run_directory_is_a_usage_error(capsys, tmp_path):
    assert main(["verify", str(tmp_path)]) == 2
    assert "is not a closebench run directory" in capsys.readouterr().err


def test_the_two_readers_agree_on_every_connection():
    """closebench/wire/ (scapy) and closebench/results/verify.py (dpkt) read the same packets
    apart."""
    lines = records(RUN)
    by_client = {(r["src"], r["sport"]): r for r in lines}
    compared = 0
    for pcap in sorted((RUN / "pcaps").glob("*.pcap")):
        trial = next(r for r in lines if safe_stem(r["trial"]) == pcap.stem)
        server = Endpoint(trial["dst"], trial["dport"])
        mine = {(c.address, c.port): events for c, events in connections(str(pcap), server)}
        for connection in read_wire(pcap):
            record = by_client[connection.client]
            theirs = read_outcome(connection, record["client_timeout"])
            attempt = classify(mine[connection.client], Attempt.from_dict(record))
            assert attempt.outcome.value == theirs.outcome, connection.client
            if theirs.end is not None:
                assert attempt.t_end == pytest.approx(theirs.end, abs=1e-6)
            compared += 1
    assert compared == len(lines)


def test_a_keepalive_that_meets_no_socket_keeps_the_class_silent():
    """A real page load of headless Chromium against `repair` (tests/data/wire): the request's
    connection hears nothing until Chromium's own TCP keepalive, 45 s later, draws the RST of a
    socket the server dropped without a word; Chromium retries once, the same way; a spare
    connection that never carried a request is closed by the server when idle."""
    pcap = Path(__file__).parent / "data" / "wire" / "chromium-repair.pcap"
    server = Endpoint("198.18.0.2", 8080)
    found = []
    for (client, events), connection in zip(
        connections(str(pcap), server), read_wire(pcap), strict=True
    ):
        record = Attempt("browser", 4, client.address, client.port, server.address, 8080, 150.0,
                         Outcome.SYN_TIMEOUT, events[0].t)  # fmt: skip
        classify(events, record)
        theirs = read_outcome(connection, 150.0)
        assert (record.outcome.value, record.t_end) == (theirs.outcome, pytest.approx(theirs.end))
        found.append((record.outcome.value, record.detail[:32], round(record.hang_s or 0)))
    assert found == [
        ("silent", "RST to the client's keepalive at", 47),
        ("fin", "", 0),  # no request: the server's idle close
        ("silent", "RST to the client's keepalive at", 45),
    ]


def test_the_wire_reader_takes_a_capture_a_chunk_at_a_time(monkeypatch):
    """closebench/wire/pcap.py reads a flood's capture in chunks, not whole: a frame cut by a
    chunk's end comes out whole, and a second read starts where the first ended."""
    path = RUN / "pcaps" / "graceful.pcap"
    whole = list(PcapFollower(str(path)).frames())
    monkeypatch.setattr(wire_pcap, "READ_CHUNK", 37)  # shorter than most frames
    follower = PcapFollower(str(path))
    assert list(follower.frames()) == whole and len(whole) > 100
    assert list(follower.frames()) == []  # nothing new since

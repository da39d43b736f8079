"""What the abuser learned: the bytes the server sent before it closed and their first line (the
excerpt), read from the attacker-side pcap by both readers, checked by verify, summed per trial;
in a lab, a server that answers shows its status line and one that closes without a word shows
none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from closebench.attackers.policy import Policy
from closebench.core.file_names import safe_stem
from closebench.core.outcomes import Attempt, Outcome, server_excerpt
from closebench.core.summary import summarize
from closebench.results.dpkt_wire import read_outcome, read_wire
from closebench.results.report.columns import COLUMN_BY_KEY
from closebench.results.verify import verify_run
from closebench.wire.classify import classify
from closebench.wire.pcap import Endpoint, connections
from tests.test_attack import _config, run_attack
from tests.test_verify import RUN, records, rewrite, run_dir  # noqa: F401 (a fixture)


def test_an_excerpt_is_the_first_line_printable_and_cut():
    assert server_excerpt(b"HTTP/1.1 429 Too Many Requests\r\nServer: x\r\n") == (
        "HTTP/1.1 429 Too Many Requests"
    )
    assert server_excerpt(b"SSH-2.0-\x00\xffbanner\n") == "SSH-2.0-..banner"
    assert len(server_excerpt(b"x" * 500)) == 64
    assert server_excerpt(b"") == ""


def test_both_readers_read_what_the_server_said_in_the_sample_pcaps():
    """The committed sample run (no lab): the legitimate client's connections got an HTTP
    status line and its bytes, the abuser's (graceful, repair, fw-drop) nothing; scapy's reading
    and dpkt's agree on every connection, and with the records' byte counts."""
    lines = records(RUN)
    by_client = {(r["src"], r["sport"]): r for r in lines}
    learned: Counter[tuple[str, str]] = Counter()
    for pcap in sorted((RUN / "pcaps").glob("*.pcap")):
        first = next(r for r in lines if safe_stem(r["trial"]) == pcap.stem)
        server = Endpoint(first["dst"], first["dport"])
        mine = {(c.address, c.port): events for c, events in connections(str(pcap), server)}
        for connection in read_wire(pcap):
            record = by_client[connection.client]
            theirs = read_outcome(connection, record["client_timeout"])
            attempt = classify(mine[connection.client], Attempt.from_dict(record))
            assert attempt.bytes_received == theirs.received == record["bytes_received"]
            assert attempt.excerpt == server_excerpt(theirs.head)
            learned[(record["attacker"], attempt.excerpt)] += 1
    assert {excerpt for (who, excerpt) in learned if who == "legit"} == {"HTTP/1.1 200 OK"}
    assert {excerpt for (who, excerpt) in learned if who != "legit"} == {""}


def test_verify_compares_what_was_received_and_who_closed(capsys, run_dir):  # noqa: F811
    """Quiet on the unchanged sample; a byte count, an excerpt or a closed_by changed in one
    record each is caught, and named."""
    assert verify_run(run_dir).ok
    lines = records(run_dir)
    legit = [r for r in lines if r["attacker"] == "legit"]
    legit[0]["bytes_received"] += 1
    legit[1]["excerpt"] = "HTTP/1.1 500 Oops"
    silent = next(r for r in lines if r["outcome"] == "silent" and r["attacker"] == "curl")
    silent["closed_by"] = "server"
    for record in legit[2:]:
        record["excerpt"] = "HTTP/1.1 200 OK"  # the truth: quiet
    rewrite(run_dir, lines)
    agreement = verify_run(run_dir)
    assert not agreement.ok
    totals = agreement.to_dict()
    assert totals["received_mismatches"] == 2 and totals["closer_mismatches"] == 1
    said = [m for t in agreement.trials for m in t.to_dict()["mismatches"]]
    assert any("excerpt: record says 'HTTP/1.1 500 Oops'" in m for m in said)
    assert any("closed by: record says 'server', wire says 'client'" in m for m in said)


def test_the_summary_and_the_table_show_the_share_and_the_commonest_line():
    def attempt(excerpt: str, received: int) -> Attempt:
        record = Attempt("a", 4, "198.18.0.1", 1, "198.18.0.2", 80, 2.0, Outcome.FIN, 1.0)
        record.t_end, record.excerpt = 1.5, excerpt
        record.bytes_received, record.data_first = received, received > 0
        return record

    summary = summarize("a", [attempt("", 0), attempt("HTTP/1.1 200 OK", 90)] * 2, 10.0)
    assert summary.received_share == 0.5
    assert (summary.common_excerpt, summary.common_excerpt_attempts) == ("HTTP/1.1 200 OK", 2)
    row = {"received_share": 0.5, "common_excerpt": summary.common_excerpt}
    assert COLUMN_BY_KEY["received_share"].cell(row) == '50.0% "HTTP/1.1 200 OK"'
    silent = summarize("a", [attempt("", 0)], 10.0)
    assert silent.received_share == 0.0 and silent.common_excerpt is None
    assert COLUMN_BY_KEY["received_share"].cell(silent.to_dict()) == "0.0%"


@pytest.mark.needs_lab
@pytest.mark.parametrize(
    ("strategy", "path", "said"),
    [
        ("nginx-444", "/spam", ""),  # `return 444`: it closes without a word
        ("graceful", "/", "HTTP/1.1 200 OK"),  # a page it serves: the status line, then FIN
    ],
)
def test_a_server_that_answers_shows_its_status_line(strategy, path, said):
    """Against nginx's `return 444` the abusive path learns nothing (a FIN, no byte), while a
    page the reference server serves shows its status line: the records' excerpt is the
    wire's, and the trial's figures count it."""
    from closebench.servers.strategies import parse_spec
    from tests.test_peers import skip_missing_peer

    skip_missing_peer(parse_spec(strategy))
    policy = Policy(timeout=2.0, reconnect=True, concurrency=2, duration=1)
    result = run_attack(_config(strategy, "kernel", policy, path=path))
    attempts = [a for a in result.attempts if a.t_end is not None]
    assert attempts
    assert {a.excerpt for a in attempts} == {said}
    summary = result.summary
    if said:
        assert all(a.bytes_received > len(said) for a in attempts)
        assert summary.common_excerpt == said and summary.received_share == 1.0
    else:
        assert all(a.bytes_received == 0 for a in attempts)
        assert summary.common_excerpt is None and summary.received_share == 0.0


def test_older_records_have_no_excerpt(tmp_path: Path):
    """An attempts file from before the excerpt reads it as null (not compared), not as ''."""
    from closebench.results.records import read_table

    table = read_table(next((RUN / "attempts").glob("*.parquet")), ["excerpt", "closed_by"])
    assert set(table["excerpt"].to_pylist()) == {None}

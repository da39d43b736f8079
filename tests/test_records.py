"""The attempt record: its derived times, its addresses, its serialisation, and the figures
summed from it. No lab: records as the attackers write them."""

from __future__ import annotations

import io
import json

import pytest

from harness.core.addresses import canonical, same
from harness.core.outcomes import Attempt, Outcome
from harness.core.summary import summarize
from harness.results.records import read_records, write_records
from harness.wire.pcap import Endpoint

T0 = 1_800_000_000.0  # Unix times: sub-microsecond differences are float noise


def approx(value):
    return pytest.approx(value, abs=1e-6)


def attempt(outcome: Outcome, **times) -> Attempt:
    return Attempt(
        "kernel", 6, "2001:2:0:0::1", 40000, "2001:2:0:0::2", 8080, 3.0, outcome, T0, **times
    )


def test_addresses_are_kept_canonical():
    record = attempt(Outcome.FIN)
    assert (record.src, record.dst) == ("2001:2::1", "2001:2::2")
    assert canonical("::ffff:198.18.0.1") == "198.18.0.1"
    assert same("2001:2:0:0::1", "2001:2::1") and not same("2001:2::1", "2001:2::2")
    assert Endpoint("2001:2:0:0::1", 80) == Endpoint("2001:2::1", 80)
    assert canonical("not an address") == "not an address"


def test_a_told_attempt_waits_little():
    record = attempt(Outcome.FIN, t_established=T0 + 0.001, t_request=T0 + 0.002, t_end=T0 + 0.004)
    assert record.connect_wait_s == approx(0.001)
    assert record.hang_s == approx(0.002)
    assert record.slot_s == approx(0.004)
    assert record.waited_s == record.hang_s


def test_a_dropped_syn_waits_in_connect():
    record = attempt(Outcome.SYN_TIMEOUT, t_end=T0 + 3.0)
    assert record.hang_s is None  # no request was ever sent...
    assert record.connect_wait_s == record.slot_s == record.waited_s == approx(3.0)


def test_the_record_round_trips_with_its_derived_times():
    record = attempt(Outcome.SILENT, t_established=T0 + 0.1, t_request=T0 + 0.2, t_end=T0 + 3.2)
    record.run, record.run_exit_status, record.run_error = 4, 28, "curl: (28) timed out"
    stream = io.StringIO()
    write_records(stream, [record], trial="repair")
    line = json.loads(stream.getvalue())
    assert line["trial"] == "repair"
    assert (line["hang_s"], line["connect_wait_s"], line["slot_s"]) == approx((3.0, 0.1, 3.2))
    assert line["run"] == 4 and line["run_error"] == "curl: (28) timed out"
    assert Attempt.from_dict(line) == record


def test_unreadable_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "attempts.jsonl"
    path.write_text('{"trial": "x", "outcome": "fin"}\n[1, 2]\n{"cut sh')
    found = read_records(path)
    assert len(found.records) == 1 and found.unreadable == 2


def test_every_second_counts_whatever_the_outcome():
    # fw-drop as measured: one request reset (and banned), then SYNs dropped for 3 s each.
    told = attempt(Outcome.RST, t_established=T0, t_request=T0 + 0.001, t_end=T0 + 0.005)
    dropped = [
        Attempt("kernel", 4, "198.18.0.1", 40001 + i, "198.18.0.2", 8080, 3.0,
                Outcome.SYN_TIMEOUT, T0 + 3 * i, t_end=T0 + 3 * i + 3.0)
        for i in range(1, 5)
    ]  # fmt: skip
    summary = summarize("kernel", [told, *dropped], duration_s=15.0)
    assert summary.attacker_seconds_wasted == approx(12.005)
    assert summary.hang_median_s == approx(3.0)  # connect waits count, as such
    assert summary.connect_waits == 4
    assert summary.connect_wait_median_s == approx(3.0)
    assert summary.slot_median_s == approx(3.0)
    assert summary.runs is None


def test_runs_are_counted_from_the_command_attackers_report():
    records = [attempt(Outcome.FIN, t_request=T0, t_end=T0 + 0.1) for _ in range(6)]
    summary = summarize("browser", records, duration_s=2.0, cost={"runs": 2})
    assert (summary.attempts_per_s, summary.runs, summary.runs_per_s) == (3.0, 2, 1.0)

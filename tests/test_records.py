"""The attempt record: its derived times, its addresses, its serialisation (JSON lines, and the
Parquet files of a run), and the figures summed from it. No lab: records as the attackers write
them."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from closebench.cli import main
from closebench.core.addresses import canonical, same
from closebench.core.outcomes import Attempt, Outcome
from closebench.core.summary import summarize
from closebench.results.records import (
    ATTEMPT_SCHEMA,
    AttemptWriter,
    DamagedAttempts,
    export_jsonl,
    read_attempts,
    read_records,
    read_table,
    write_attempts_file,
    write_records,
)
from closebench.wire.pcap import Endpoint

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
    # closed_by "" (not said) is written as what its class implies
    assert line["closed_by"] == "client"
    assert Attempt.from_dict(line) == dataclasses.replace(record, closed_by="client")


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


# on disk: the Parquet files of a run (closebench/results/records.py)


def varied_attempts() -> list[Attempt]:
    """Records as the attackers leave them: every outcome, times missing, command runs."""
    told = attempt(Outcome.FIN, t_established=T0 + 0.1, t_request=T0 + 0.2, t_end=T0 + 0.3)
    silent = attempt(Outcome.SILENT, t_established=T0 + 0.1, t_request=T0 + 0.2, t_end=T0 + 3.2)
    silent.bytes_received, silent.data_first, silent.http_status = 17, True, 200
    dropped = Attempt("volume", 4, "198.18.0.1", 1, "198.18.0.2", 80, 2.0, Outcome.SYN_TIMEOUT, T0)
    command = attempt(Outcome.RST, t_established=T0 + 0.1, t_request=T0 + 0.1, t_end=T0 + 0.2)
    command.run, command.run_exit_status, command.run_duration_s = 3, 56, 0.25
    command.run_error, command.detail = "curl: (56) Recv failure", "reset after 0 bytes"
    silent.closed_by, dropped.closed_by = "closebench", "client"  # told, command: by their class
    told.closed_by, command.closed_by = "server", "server"
    return [told, silent, dropped, command]


def test_the_file_schema_is_the_attempt_record():
    assert ATTEMPT_SCHEMA.names == ["trial", *(f.name for f in fields(Attempt))]
    assert ATTEMPT_SCHEMA.field("t_end").nullable and not ATTEMPT_SCHEMA.field("t_syn").nullable


def test_an_older_file_without_closed_by_reads_with_it_empty(tmp_path):
    """Run directories written before closed_by: the column is filled with "" (its class then
    says who closed), not called damaged."""
    path = tmp_path / "old.parquet"
    write_attempts_file(path, "graceful", varied_attempts())
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["closed_by"]), path)
    assert [a.closer.value for a in read_attempts(path)] == ["server", "client", "client", "server"]
    assert read_table(path, ["closed_by"])["closed_by"].to_pylist() == [""] * 4


def test_records_round_trip_through_parquet(tmp_path):
    path = tmp_path / "attempts" / "graceful.parquet"
    write_attempts_file(path, "graceful", varied_attempts())
    assert read_attempts(path) == varied_attempts()
    assert read_table(path, ["trial"])["trial"].to_pylist() == ["graceful"] * 4


def test_exported_lines_are_the_records_lines(tmp_path):
    path = tmp_path / "repair.parquet"
    write_attempts_file(path, "repair", varied_attempts())
    exported, written = io.StringIO(), io.StringIO()
    assert export_jsonl([path], exported) == 4
    write_records(written, varied_attempts(), trial="repair")
    assert exported.getvalue() == written.getvalue()  # derived times included, to the bit


def test_the_streamed_writer_holds_one_batch_at_most(tmp_path):
    path = tmp_path / "volume.parquet"
    writer = AttemptWriter(path, "volume", batch_rows=100)
    template = varied_attempts()[2]
    for i in range(250):
        writer.add(replace(template, sport=i + 1, t_syn=T0 + i))
        assert writer.pending < 100  # a full batch goes to disk at once
    assert writer.written == 200 and path.stat().st_size > 0
    writer.close()
    found = pq.ParquetFile(path)
    assert found.metadata.num_row_groups == 3 and found.metadata.num_rows == 250
    assert read_table(path, ["sport"])["sport"].to_pylist() == list(range(1, 251))


@pytest.mark.parametrize("damage", ["cut", "not parquet"])
def test_a_damaged_file_is_one_clear_error(tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "verify-sample", run)
    path = run / "attempts" / "repair.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "cut" else b"{not parquet}\n" * 10)
    with pytest.raises(DamagedAttempts) as error:
        read_table(path)
    assert str(error.value).startswith(f"{path} is not a readable Parquet file (")
    assert main(["export", str(run), "--jsonl", "--out", str(tmp_path / "out.jsonl")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert str(path) in line and "re-run the scenario" in line
    assert not list(tmp_path.glob("*.jsonl")) and not list(tmp_path.glob(".*"))  # no half file


def test_export_writes_the_runs_attempts_jsonl(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "verify-sample", run)
    summary = json.loads((run / "summary.json").read_text())
    assert main(["export", str(run), "--jsonl"]) == 0
    lines = [json.loads(line) for line in (run / "attempts.jsonl").open()]
    assert len(lines) == sum(r["attempts"] + (r["legit_requests"] or 0) for r in summary["rows"])
    assert [line["trial"] for line in lines] == sorted(  # the run's order of trials
        (line["trial"] for line in lines), key=[r["trial"] for r in summary["rows"]].index
    )
    assert main(["export", str(run), "--jsonl", "--out", "-"]) == 0
    assert capsys.readouterr().out == (run / "attempts.jsonl").read_text()
    shutil.rmtree(run / "attempts")
    assert main(["export", str(run), "--jsonl"]) == 2  # an older run: nothing to export
    assert "has no attempts/ to export (it has attempts.jsonl already)" in capsys.readouterr().err

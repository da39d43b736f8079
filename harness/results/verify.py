"""`closebench verify RUN`: every attempt record of a run, proved against the run's pcaps.

The records come from the attackers (a kernel socket's API, a packet engine, harness/wire/pcap.py's
scapy reading). This re-reads each trial's attacker-side pcap with another parser (dpkt) and its own
reading of the outcome rules, joins each record to its connection on source address, port and SYN
time, and reports how many joined, whether the classes agree, how far the end times are apart, and
the connections found on only one side.

The rules, as the README states them: a connection starts with the client's SYN; a reset of the SYN
is `refused`, an ICMP error `icmp`; once established, the server's FIN is `fin` and its RST `rst`,
except an RST that answers the client's own later segment (a keepalive probe, a retransmission,
its FIN), which leaves the connection `silent` and ends it when the client learnt (at its FIN: when
it stopped waiting). A client that closes at 90% of its timeout or later gave up: the connection is
`silent` (or `syn-timeout` if never established) and ends there; without a packet to mark its end
(a SYN never answered) the end is the client's own and the wire cannot show it.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from harness.core.errors import UsageError
from harness.core.file_names import unique_names
from harness.results.dpkt_wire import WireConnection, read_outcome, read_wire
from harness.results.records import ATTEMPTS_DIR, BATCH_ROWS, trial_tables
from harness.results.run_directory import PCAP_DIR

END_TOLERANCE_P95_S = 0.002  # |Δ end| p95 beyond this is a disagreement
JOIN_WINDOW_S = 5.0  # a record's t_syn and its connection's first SYN are at most this far apart
SHOWN_MISMATCHES = 20  # mismatches kept per trial in the result
# What the join reads of each record.
RECORD_COLUMNS = ["trial", "src", "sport", "t_syn", "t_end", "outcome", "client_timeout"]


# joining records and connections


@dataclass
class Mismatch:
    src: str
    sport: int
    t_syn: float
    what: str  # "class", "end", "missing on the wire", "missing in the records"
    record: str | None  # the record's outcome
    wire: str | None  # the wire's
    end_delta_s: float | None = None

    def describe(self) -> str:
        where = f"[{self.src}]:{self.sport}" if ":" in self.src else f"{self.src}:{self.sport}"
        if self.what == "class":
            return f"{where}: record says {self.record}, wire says {self.wire}"
        if self.what == "end":
            return f"{where}: end {1000 * self.end_delta_s:+.1f} ms from the wire's"
        return f"{where}: {self.what}"


@dataclass
class TrialAgreement:
    trial: str
    records: int
    joined: int = 0
    class_agree: int = 0
    ends_not_on_wire: int = 0  # joined records whose end no packet marks
    missing_on_wire: int = 0  # records with no connection in the pcap
    missing_in_records: int = 0  # connections in the pcap with no record
    end_deltas: list[float] = field(default_factory=list)  # |record end - wire end|, s
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None  # why the trial could not be checked

    @property
    def end_delta_p95_s(self) -> float | None:
        return _percentile(self.end_deltas, 95)

    @property
    def ok(self) -> bool:
        p95 = self.end_delta_p95_s
        return (
            self.error is None
            and self.joined == self.records
            and self.class_agree == self.joined
            and self.missing_in_records == 0
            and (p95 is None or p95 <= END_TOLERANCE_P95_S)
        )

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "records": self.records,
            "joined": self.joined,
            "class_agreement": self.class_agree / self.joined if self.joined else None,
            "class_mismatches": self.joined - self.class_agree,
            "end_delta_median_s": _percentile(self.end_deltas, 50),
            "end_delta_p95_s": self.end_delta_p95_s,
            "end_delta_max_s": max(self.end_deltas, default=None),
            "ends_not_on_wire": self.ends_not_on_wire,
            "missing_on_wire": self.missing_on_wire,
            "missing_in_records": self.missing_in_records,
            "mismatches": [m.describe() for m in self.mismatches[:SHOWN_MISMATCHES]],
            "error": self.error,
        }


def verify_trial(trial: str, records: Sequence[dict] | pa.Table, pcap: Path) -> TrialAgreement:
    """One trial's records (dicts, or a table of RECORD_COLUMNS, turned into dicts a batch at a
    time) against its pcap."""
    result = TrialAgreement(trial, len(records))
    try:
        wire = read_wire(pcap)
    except FileNotFoundError:
        result.error = f"no capture {pcap.name}"
        return result
    except (OSError, ValueError) as error:
        result.error = f"{pcap.name} is unreadable: {error}"
        return result
    by_client: dict[tuple[str, int], list[WireConnection]] = defaultdict(list)
    for connection in wire:
        by_client[connection.client].append(connection)
    joined: set[int] = set()
    for record in _records(records):
        connection = _nearest(by_client.get(_client(record), []), record, joined)
        if connection is None:
            result.missing_on_wire += 1
            result.mismatches.append(_mismatch(record, "missing on the wire", None))
            continue
        joined.add(id(connection))
        result.joined += 1
        reading = read_outcome(connection, float(record.get("client_timeout") or math.inf))
        if reading.outcome == record.get("outcome"):
            result.class_agree += 1
        else:
            result.mismatches.append(_mismatch(record, "class", reading.outcome))
        if reading.end is None or not _number(record.get("t_end")):
            result.ends_not_on_wire += 1
            continue
        delta = record["t_end"] - reading.end
        result.end_deltas.append(abs(delta))
        if abs(delta) > END_TOLERANCE_P95_S:
            result.mismatches.append(_mismatch(record, "end", reading.outcome, delta))
    for connection in wire:
        if id(connection) not in joined:
            result.missing_in_records += 1
            (address, port), t = connection.client, connection.syn_t
            result.mismatches.append(
                Mismatch(address, port, t, "missing in the records", None, None)
            )
    return result


def _records(records: Sequence[dict] | pa.Table) -> Iterator[dict]:
    if not isinstance(records, pa.Table):
        yield from records
        return
    for batch in records.to_batches(BATCH_ROWS):
        yield from batch.to_pylist()


def _client(record: dict) -> tuple[str, int]:
    try:
        address = str(ipaddress.ip_address(str(record.get("src"))))
    except ValueError:
        address = str(record.get("src"))
    return address, record.get("sport")


def _nearest(candidates: list[WireConnection], record: dict, taken: set[int]):
    t_syn = record.get("t_syn")
    if not _number(t_syn):
        return None
    best, gap = None, JOIN_WINDOW_S
    for connection in candidates:
        if id(connection) not in taken and abs(connection.syn_t - t_syn) <= gap:
            best, gap = connection, abs(connection.syn_t - t_syn)
    return best


def _mismatch(record: dict, what: str, wire: str | None, delta: float | None = None) -> Mismatch:
    return Mismatch(
        str(record.get("src")),
        record.get("sport") or 0,
        record.get("t_syn") or 0.0,
        what,
        record.get("outcome"),
        wire,
        delta,
    )


# a whole run


@dataclass
class RunAgreement:
    trials: list[TrialAgreement]

    @property
    def ok(self) -> bool:
        return bool(self.trials) and all(trial.ok for trial in self.trials)

    def to_dict(self) -> dict:
        """Totals over every trial (each trial's own figures go in its summary row)."""
        if not self.trials:
            return {"ok": False, "error": "nothing to verify: no trial has records or a capture"}
        joined = sum(t.joined for t in self.trials)
        agree = sum(t.class_agree for t in self.trials)
        deltas = [d for t in self.trials for d in t.end_deltas]
        return {
            "ok": self.ok,
            "reader": _reader(),
            "end_tolerance_p95_s": END_TOLERANCE_P95_S,
            "records": sum(t.records for t in self.trials),
            "joined": joined,
            "class_agreement": agree / joined if joined else None,
            "class_mismatches": joined - agree,
            "end_delta_median_s": _percentile(deltas, 50),
            "end_delta_p95_s": _percentile(deltas, 95),
            "end_delta_max_s": max(deltas, default=None),
            "ends_not_on_wire": sum(t.ends_not_on_wire for t in self.trials),
            "missing_on_wire": sum(t.missing_on_wire for t in self.trials),
            "missing_in_records": sum(t.missing_in_records for t in self.trials),
            "flagged": [t.trial for t in self.trials if not t.ok],
        }


def verify_run(directory: Path) -> RunAgreement:
    """Check every trial of a run directory; UsageError when it is not one."""
    directory = Path(directory)
    try:
        summary = json.loads((directory / "summary.json").read_text())
        trials = [row["trial"] for row in summary["rows"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"{directory} is not a closebench run directory ({error}); give one that "
            "`closebench run` wrote, e.g. reports/latest"
        ) from None
    return verify_trials(directory, trials)


def verify_trials(directory: Path, trials: list[str]) -> RunAgreement:
    """Check the named trials of a run directory (in the run's order: it names their pcaps)
    against its pcaps/, one trial's records in memory at a time."""
    pcaps = dict(zip(trials, unique_names(trials, ".pcap"), strict=True))
    checked: dict[str, TrialAgreement] = {}
    try:
        for trial, table in trial_tables(directory, RECORD_COLUMNS):
            if trial in pcaps:
                pcap = directory / PCAP_DIR / pcaps[trial]
                checked[trial] = verify_trial(trial, table, pcap)
    except FileNotFoundError:
        raise UsageError(f"{directory} has no {ATTEMPTS_DIR}/: nothing to verify") from None
    for trial, name in pcaps.items():  # a capture without records: every connection missing
        if trial not in checked and (directory / PCAP_DIR / name).exists():
            checked[trial] = verify_trial(trial, [], directory / PCAP_DIR / name)
    return RunAgreement([checked[trial] for trial in trials if trial in checked])


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest rank, as harness.core.summary.percentile (restated: this module reads on its own)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _reader() -> str:
    import dpkt

    return f"dpkt {dpkt.__version__}"


def agreement_text(figures: dict) -> str:
    """One sentence for a wire_agreement dict (a trial's, or a run's totals)."""
    if figures.get("error"):
        return f"not verified: {figures['error']}"
    records, joined = figures.get("records") or 0, figures.get("joined") or 0
    parts = [f"{joined} of {records} attempts joined to their connection"]
    mismatches = figures.get("class_mismatches") or 0
    parts.append(f"{mismatches} class mismatch(es)" if mismatches else "every class agrees")
    if figures.get("end_delta_p95_s") is not None:
        parts.append(
            "|Δ end| median {:.2f} ms, p95 {:.2f} ms, max {:.2f} ms".format(
                *(1000 * (figures.get(key) or 0.0) for key in _DELTAS)
            )
        )
    if figures.get("ends_not_on_wire"):
        parts.append(f"{figures['ends_not_on_wire']} end(s) no packet marks (a client's timeout)")
    missing = figures.get("missing_on_wire") or 0, figures.get("missing_in_records") or 0
    if any(missing):
        parts.append(
            f"{missing[0]} record(s) not on the wire, {missing[1]} connection(s) unrecorded"
        )
    else:
        parts.append("no connection missing on either side")
    return "; ".join(parts)


_DELTAS = ("end_delta_median_s", "end_delta_p95_s", "end_delta_max_s")

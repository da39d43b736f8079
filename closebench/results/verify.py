"""`closebench verify RUN`: every attempt record of a run, proved against the run's pcaps.

The records come from the attackers (a kernel socket's API, a packet engine,
closebench/wire/pcap.py's scapy reading). This re-reads each trial's attacker-side pcap with another
parser (dpkt) and its own reading of the outcome rules, joins each record to its connection on
source address, port and SYN time, and reports how many joined, whether the classes agree, how far
the end times are apart, and the connections found on only one side. It compares, too, when each
request left, who closed (the server, or the client: its own close or timeout, or closebench
stopping it, which the wire shows as the client's), and what the abuser learned: the bytes the
server sent before the end, and the first line of them (the record's excerpt).

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
import math
import os
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow as pa

from closebench.core.errors import ClosebenchError, UsageError
from closebench.core.file_names import unique_names
from closebench.core.input_files import SUMMARY_BYTES, TABLE_BYTES, check_regular, read_json
from closebench.core.outcomes import LEGIT_CLIENT
from closebench.results.dpkt_wire import (
    GaveUp,
    WireConnection,
    WireReading,
    outcome_for,
    stream_wire,
)
from closebench.results.drop_check import add_drop_checks, drop_texts
from closebench.results.records import ATTEMPTS_DIR, BATCH_ROWS, trial_tables
from closebench.results.run_directory import PCAP_DIR
from closebench.results.tool_check import ToolProgress, check_tools
from closebench.results.verify_fields import (
    Mismatch,
    closer_mismatch,
    received_mismatch,
)
from closebench.results.verify_fields import (
    mismatch as _mismatch,
)

END_TOLERANCE_P95_S = 0.002  # |Δ end| p95 beyond this is a disagreement
JOIN_WINDOW_S = 5.0  # a record's t_syn and its connection's first SYN are at most this far apart
# A connection the server ended is kept this long for its SYN sent again (Linux: after 1 s, 3 s).
TAIL_S = 3.0
SHOWN_MISMATCHES = 20  # mismatches kept per trial in the result
# What the join reads of each record.
RECORD_COLUMNS = ["trial", "src", "sport", "t_syn", "t_end", "outcome", "client_timeout"]
RECORD_COLUMNS += ["t_request", "closed_by", "bytes_received", "excerpt", "attacker"]


# joining records and connections


@dataclass
class TrialAgreement:
    trial: str
    records: int
    joined: int = 0
    class_agree: int = 0
    ends_not_on_wire: int = 0  # joined records whose end no packet marks
    missing_on_wire: int = 0  # records with no connection in the pcap
    missing_in_records: int = 0  # connections in the pcap with no record
    end_deltas: array = field(default_factory=lambda: array("d"))  # |record end - wire end|, s
    request_deltas: array = field(default_factory=lambda: array("d"))  # the same, of t_request
    request_mismatches: int = 0  # a request on one side only
    closer_mismatches: int = 0  # the record's closed_by is not the wire's
    received_mismatches: int = 0  # the server's bytes, or its first line, differ
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None  # why the trial could not be checked
    # The wire's count of what a tool counts as its tries: its connections (a scanner's
    # probes), or its requests the server answered or closed on (a brute-forcer's pairs).
    wire_connections: int = 0
    wire_answered: int = 0
    tool: ToolProgress | None = None  # the tool's own count against the wire's (tool_check.py)
    drops: dict | None = None  # xdp-drop, tc-drop: their counter against the capture (drop_check)

    @property
    def end_delta_p95_s(self) -> float | None:
        return _percentile(self.end_deltas, 95)

    @property
    def ok(self) -> bool:
        p95, request_p95 = self.end_delta_p95_s, _percentile(self.request_deltas, 95)
        return (
            self.error is None
            and self.joined == self.records
            and self.class_agree == self.joined
            and self.missing_in_records == 0
            and (p95 is None or p95 <= END_TOLERANCE_P95_S)
            and self.request_mismatches == 0
            and self.closer_mismatches == 0
            and self.received_mismatches == 0
            and (request_p95 is None or request_p95 <= END_TOLERANCE_P95_S)
            and (self.drops is None or self.drops["ok"])
        )  # a tool's own count (self.tool) is the tool's claim, not the records': told apart

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
            "request_delta_p95_s": _percentile(self.request_deltas, 95),
            "request_delta_max_s": max(self.request_deltas, default=None),
            "request_mismatches": self.request_mismatches,
            "closer_mismatches": self.closer_mismatches,
            "received_mismatches": self.received_mismatches,
            "missing_on_wire": self.missing_on_wire,
            "missing_in_records": self.missing_in_records,
            "mismatches": [m.describe() for m in self.mismatches[:SHOWN_MISMATCHES]],
            "error": self.error,
            "tool_progress": None if self.tool is None else self.tool.to_dict(),
            "drops": self.drops,
        }


def verify_trial(trial: str, records: Sequence[dict] | pa.Table, pcap: Path) -> TrialAgreement:
    """One trial's records (dicts, or a table of RECORD_COLUMNS, turned into dicts a batch at a
    time) against its pcap, read once in time order: a connection is kept whole only while it
    is open, then as a row of WireTable."""
    result = TrialAgreement(trial, len(records))
    try:
        if os.path.lexists(pcap):  # a FIFO there would block the reader for ever
            check_regular(pcap, "capture", TABLE_BYTES)
        wire = WireTable.read(pcap, idle_s=JOIN_WINDOW_S + _longest_timeout(records))
    except FileNotFoundError:
        result.error = f"no capture {pcap.name}"
        return result
    except (OSError, ValueError, ClosebenchError) as error:
        result.error = f"{pcap.name} is unreadable: {error}"
        return result
    attackers: set[str] = set()  # the attackers' addresses (not the legitimate client's)
    for record in _records(records):
        if record.get("attacker") != LEGIT_CLIENT:
            attackers.add(str(record.get("src")))
        row = wire.nearest(_client(record), record.get("t_syn"))
        if row is None:
            result.missing_on_wire += 1
            result.mismatches.append(_mismatch(record, "missing on the wire", None))
            continue
        result.joined += 1
        reading = wire.reading(row, float(record.get("client_timeout") or math.inf))
        _compare_request(result, record, *wire.request(row))
        if (wrong := closer_mismatch(record, reading)) is not None:
            result.closer_mismatches += 1
            result.mismatches.append(wrong)
        if (wrong := received_mismatch(record, reading)) is not None:
            result.received_mismatches += 1
            result.mismatches.append(wrong)
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
    result.wire_connections, result.wire_answered = wire.counts(attackers)
    for (address, port), t in wire.unjoined():
        result.missing_in_records += 1
        result.mismatches.append(Mismatch(address, port, t, "missing in the records", None, None))
    return result


def _compare_request(
    result: TrialAgreement, record: dict, on_wire: float | None, held: bool
) -> None:
    """The record's request against the wire's: where the wire shows one, at its time; where
    it shows none, none in the record either, unless the window was zero from the SYN-ACK on
    (a request written then never leaves the client)."""
    t_request = record.get("t_request")
    has = _number(t_request)
    if on_wire is None:
        if has and not held:
            result.request_mismatches += 1
            result.mismatches.append(_mismatch(record, "request", "none"))
            result.mismatches[-1].record = "sent"
        return
    if not _number(t_request):  # not `has`: this narrows t_request to a number below
        result.request_mismatches += 1
        result.mismatches.append(_mismatch(record, "request", "sent"))
        result.mismatches[-1].record = "none"
        return
    delta = t_request - on_wire
    result.request_deltas.append(abs(delta))  # judged as the ends are: by their p95
    if abs(delta) > END_TOLERANCE_P95_S:
        result.mismatches.append(_mismatch(record, "request", None, delta))


class WireTable:
    """A pcap's connections as columns, a row each once its reading is final (dpkt_wire's
    stream_wire): about 50 bytes a connection where its packets took 2.4 KB. A row keeps its
    client, first SYN, how it ended and its client's FINs and RSTs (which end it as `silent`
    for a client that gives up soon enough: a record's timeout decides, at the join)."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, int], int] = {}  # each (address, port) once
        self.client_names: list[tuple[str, int]] = []
        self.client = array("q")
        self.index = array("q")  # the rank of its first SYN in the capture
        self.syn_t = array("d")
        self.outcome = array("b")  # into names: how the server ended it (or did not)
        self.end = array("d")  # nan: no packet marks the end
        self.closer = array("b")  # 1: the client's packet or its timeout ended it; 0: the server's
        self.requested = array("d")  # the request's time on the wire; nan: none left
        self.held = array("b")  # 1: none left, and the window was zero from the SYN-ACK on
        self.received = array("q")  # the server's payload bytes before the end
        self.head = array("l")  # into heads: the server's first bytes (most rows share a few)
        self.heads: dict[bytes, int] = {}
        self.gave_up: dict[int, list[GaveUp]] = {}  # rows with a client FIN or RST
        self.names: list[str] = []

    @classmethod
    def read(cls, pcap: Path, idle_s: float) -> WireTable:
        table = cls()
        for connection in stream_wire(pcap, idle_s=idle_s, tail_s=TAIL_S):
            table.add(connection)
        table._index()
        return table

    def add(self, connection: WireConnection) -> None:
        client = self.clients.setdefault(connection.client, len(self.clients))
        if client == len(self.client_names):
            self.client_names.append(connection.client)
        reading = connection.reading
        ended = reading.final or reading.unfinished()
        if ended.outcome not in self.names:
            self.names.append(ended.outcome)
        if reading.gave_up:
            self.gave_up[len(self.index)] = reading.gave_up
        self.client.append(client)
        self.index.append(connection.index)
        self.syn_t.append(connection.syn_t)
        self.outcome.append(self.names.index(ended.outcome))
        self.end.append(math.nan if ended.end is None else ended.end)
        self.closer.append(ended.closed_by == "client")
        requested, held = reading.request()
        self.requested.append(math.nan if requested is None else requested)
        self.held.append(held)
        self.received.append(ended.received)
        self.head.append(self.heads.setdefault(ended.head, len(self.heads)))

    def _index(self) -> None:
        """Rows by client, then in capture order; whether each has joined a record."""
        client, index = np.frombuffer(self.client, np.int64), np.frombuffer(self.index, np.int64)
        self.order = np.lexsort((index, client))
        self.sorted_clients = client[self.order]
        self.syn = np.frombuffer(self.syn_t, np.float64)
        self.taken = np.zeros(len(self.index), bool)
        self.head_of = list(self.heads)  # dicts keep their order: index -> head

    def nearest(self, client: tuple[str, int], t_syn: object) -> int | None:
        """The row of the client's connection whose first SYN is nearest t_syn (within
        JOIN_WINDOW_S; the later on a tie) and not yet joined, now joined; None if none."""
        number = self.clients.get(client)
        if number is None or not _number(t_syn):
            return None
        lo, hi = np.searchsorted(self.sorted_clients, [number, number + 1])
        rows = self.order[lo:hi]
        gaps = np.abs(self.syn[rows] - t_syn)
        free = ~self.taken[rows] & (gaps <= JOIN_WINDOW_S)
        if not free.any():
            return None
        best = gaps[free].min()
        row = int(rows[np.flatnonzero(free & (gaps == best))[-1]])
        self.taken[row] = True
        return row

    def reading(self, row: int, client_timeout: float) -> WireReading:
        end = self.end[row]
        closer = "client" if self.closer[row] else "server"
        ended = WireReading(
            self.names[self.outcome[row]],
            None if math.isnan(end) else end,
            closer,
            self.received[row],
            self.head_of[self.head[row]],
        )
        return outcome_for(self.gave_up.get(row, []), ended, client_timeout)

    def request(self, row: int) -> tuple[float | None, bool]:
        """The row's request time on the wire (None: none left), and whether one may have been
        held back by a zero window."""
        requested = self.requested[row]
        return (None if math.isnan(requested) else requested), bool(self.held[row])

    def counts(self, addresses: set[str]) -> tuple[int, int]:
        """The connections from `addresses`, and those whose request the server answered or
        closed on."""
        named = [name[0] in addresses for name in self.client_names]
        mine = np.array(named, bool)[np.frombuffer(self.client, np.int64)]
        requested = ~np.isnan(np.frombuffer(self.requested, np.float64))
        by_server = np.frombuffer(self.closer, np.int8) == 0
        silent = np.frombuffer(self.outcome, np.int8) == _index_of(self.names, "silent")
        return int(np.sum(mine)), int((mine & requested & by_server & ~silent).sum())

    def unjoined(self) -> Iterator[tuple[tuple[str, int], float]]:
        """(client, first SYN time) of each connection no record joined, in capture order."""
        rows = np.flatnonzero(~self.taken)
        for row in rows[np.argsort(np.frombuffer(self.index, np.int64)[rows], kind="stable")]:
            yield self.client_names[self.client[row]], self.syn_t[row]


def _index_of(names: list[str], name: str) -> int:
    return names.index(name) if name in names else -1


def _records(records: Sequence[dict] | pa.Table) -> Iterator[dict]:
    if not isinstance(records, pa.Table):
        yield from records
        return
    for batch in records.to_batches(BATCH_ROWS):
        yield from batch.to_pylist()


def _longest_timeout(records: Sequence[dict] | pa.Table) -> float:
    """The longest finite client timeout among the records (0 without one)."""
    if isinstance(records, pa.Table):
        values = records.column("client_timeout").to_numpy(zero_copy_only=False)
    else:
        values = np.array([r.get("client_timeout") for r in records], dtype=float)
    finite = values[np.isfinite(values)] if len(values) else values
    return float(finite.max()) if len(finite) else 0.0


def _client(record: dict) -> tuple[str, int]:
    try:
        address = str(ipaddress.ip_address(str(record.get("src"))))
    except ValueError:
        address = str(record.get("src"))
    sport = record.get("sport")
    return address, sport if isinstance(sport, int) else -1  # no port: it joins no connection


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
        deltas = array("d", (d for t in self.trials for d in t.end_deltas))
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
            "request_mismatches": sum(t.request_mismatches for t in self.trials),
            "closer_mismatches": sum(t.closer_mismatches for t in self.trials),
            "received_mismatches": sum(t.received_mismatches for t in self.trials),
            "missing_on_wire": sum(t.missing_on_wire for t in self.trials),
            "missing_in_records": sum(t.missing_in_records for t in self.trials),
            "flagged": [t.trial for t in self.trials if not t.ok],
            "drop_counters": [t.drops for t in self.trials if t.drops is not None],
            "tool_disagreements": sum(
                t.tool is not None and not t.tool.agrees for t in self.trials
            ),
        }


def verify_run(directory: Path) -> RunAgreement:
    """Check every trial of a run directory; UsageError when it is not one."""
    directory = Path(directory)

    def refuse(why: str) -> UsageError:
        return UsageError(
            f"{directory} is not a closebench run directory ({why}); give one that "
            "`closebench run` wrote, e.g. reports/latest"
        )

    summary = read_json(directory / "summary.json", "summary.json", SUMMARY_BYTES, refuse)
    try:
        trials = [row["trial"] for row in summary["rows"]]  # type: ignore[index]
        if not all(isinstance(trial, str) for trial in trials):
            raise TypeError("a trial name is not text")
    except (KeyError, TypeError) as error:
        raise refuse(f"summary.json has no rows of trials: {error}") from None
    rows = summary["rows"]  # type: ignore[index]
    return check_tools(add_drop_checks(verify_trials(directory, trials), directory, rows), rows)


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


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank, as closebench.core.summary.percentile (restated: this module reads on its
    own)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _number(value: object) -> TypeGuard[float]:
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
    if figures.get("request_mismatches"):
        parts.append(f"{figures['request_mismatches']} request time(s) disagree")
    if figures.get("closer_mismatches"):
        parts.append(f"{figures['closer_mismatches']} closed-by(s) disagree")
    if figures.get("received_mismatches"):
        parts.append(
            f"{figures['received_mismatches']} received byte count(s) or excerpt(s) disagree"
        )
    if figures.get("tool_disagreements"):
        parts.append(
            f"{figures['tool_disagreements']} tool(s) counted tries the wire does not show"
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
    return "; ".join(parts + drop_texts(figures))


_DELTAS = ("end_delta_median_s", "end_delta_p95_s", "end_delta_max_s")

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
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from harness.core.errors import UsageError
from harness.core.file_names import unique_names
from harness.results.records import ATTEMPTS_DIR, BATCH_ROWS, trial_tables
from harness.results.run_directory import PCAP_DIR

END_TOLERANCE_P95_S = 0.002  # |Δ end| p95 beyond this is a disagreement
JOIN_WINDOW_S = 5.0  # a record's t_syn and its connection's first SYN are at most this far apart
GAVE_UP_SHARE = 0.9  # a client closing this late into its timeout closed because of it
SHOWN_MISMATCHES = 20  # mismatches kept per trial in the result
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SEQ_MOD = 1 << 32
# What the join reads of each record.
RECORD_COLUMNS = ["trial", "src", "sport", "t_syn", "t_end", "outcome", "client_timeout"]


# reading the pcap with dpkt


@dataclass(slots=True)  # a flood's capture holds millions
class Packet:
    t: float
    outgoing: bool  # from the client
    flags: int  # TCP flags; 0 for an ICMP error
    seq: int
    length: int  # TCP payload bytes (from the IP header: the capture cuts payloads)
    icmp: bool = False
    retransmitted: bool = False


@dataclass(slots=True)
class WireConnection:
    client: tuple[str, int]
    server: tuple[str, int]
    packets: list[Packet] = field(default_factory=list)
    seen: set = field(default_factory=set)  # (seq, flags, length) of the client's segments

    @property
    def syn_t(self) -> float:
        return self.packets[0].t


def read_wire(path: Path) -> list[WireConnection]:
    """Every TCP connection in a pcap (Ethernet frames), opened by a SYN seen in it."""
    import dpkt

    connections: list[WireConnection] = []
    current: dict[tuple, WireConnection] = {}  # (client, server) -> its latest connection
    servers: set[tuple[str, int]] = set()
    with path.open("rb") as stream:
        reader = dpkt.pcap.Reader(stream)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise ValueError(f"link type {reader.datalink()}, expected Ethernet")
        for t, frame in reader:
            decoded = _decode(dpkt, frame)
            if decoded is None:
                continue
            src, dst, flags, seq, length, icmp = decoded
            if icmp:  # about a segment src -> dst of ours: the error comes towards the client
                key, outgoing = (src, dst), False
            elif flags & SYN and not flags & ACK:
                key, outgoing = (src, dst), True
                servers.add(dst)
            elif dst in servers:
                key, outgoing = (src, dst), True
            elif src in servers:
                key, outgoing = (dst, src), False
            else:
                continue
            packet = Packet(t, outgoing, flags, seq, length, icmp)
            connection = current.get(key)
            fresh_syn = outgoing and flags & SYN and not flags & ACK
            if fresh_syn and (connection is None or (seq, flags, 0) not in connection.seen):
                if connection is not None:
                    connection.seen = set()  # only the latest connection of a port needs it
                connection = WireConnection(*key)
                current[key] = connection
                connections.append(connection)
            if connection is None:
                continue  # mid-stream: its SYN was before the capture
            if outgoing:
                # A segment sent again (same sequence number, flags and length) is a retransmission.
                packet.retransmitted = (seq, flags, length) in connection.seen and bool(
                    length or flags & (SYN | FIN)
                )
                connection.seen.add((seq, flags, length))
            connection.packets.append(packet)
    for connection in current.values():
        connection.seen = set()
    return connections


def _decode(dpkt, frame: bytes):
    """(src, dst, flags, seq, payload length, is_icmp_error) of a TCP segment or of the segment an
    ICMP error quotes; None for anything else."""
    try:
        ethernet = dpkt.ethernet.Ethernet(frame)
    except dpkt.dpkt.UnpackError:
        return None
    ip = ethernet.data
    if isinstance(ip, dpkt.ip.IP):
        payload_total = ip.len - ip.hl * 4
        error_types = (dpkt.icmp.ICMP_UNREACH, dpkt.icmp.ICMP_TIMEXCEED)
        icmp_class = dpkt.icmp.ICMP
    elif isinstance(ip, dpkt.ip6.IP6):
        payload_total = ip.plen
        error_types = (dpkt.icmp6.ICMP6_DST_UNREACH, dpkt.icmp6.ICMP6_TIME_EXCEEDED)
        icmp_class = dpkt.icmp6.ICMP6
    else:
        return None
    segment = ip.data
    if isinstance(segment, icmp_class):
        if segment.type not in error_types:
            return None
        quoted = _quoted(bytes(segment.data)[4:])  # past the unused word
        return None if quoted is None else (*quoted, 0, 0, 0, True)
    if not isinstance(segment, dpkt.tcp.TCP):
        return None
    src = (_address(ip.src), segment.sport)
    dst = (_address(ip.dst), segment.dport)
    length = payload_total - segment.off * 4
    return src, dst, segment.flags, segment.seq, max(length, 0), False


def _quoted(data: bytes):
    """(src, dst) of the TCP segment an ICMP error quotes (its IP header and first 4 bytes)."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        header = (data[0] & 0x0F) * 4
        if data[9] != 6 or len(data) < header + 4:
            return None
        src, dst, ports = data[12:16], data[16:20], data[header : header + 4]
    elif version == 6 and len(data) >= 44:
        if data[6] != 6:
            return None
        src, dst, ports = data[8:24], data[24:40], data[40:44]
    else:
        return None
    sport, dport = struct.unpack("!HH", ports)
    return (_address(src), sport), (_address(dst), dport)


def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


# the rules


@dataclass
class WireReading:
    outcome: str
    end: float | None  # None: the wire shows no packet at the end (a client's own timeout)


def read_outcome(connection: WireConnection, client_timeout: float) -> WireReading:
    """The class and end time of one connection, by the rules in this module's docstring."""
    established = requested = None
    sent_to = None  # the client's next sequence number (after everything it sent)
    pending: Packet | None = None  # the client's latest segment since the server last spoke
    for packet in connection.packets:
        if packet.outgoing:
            if established is not None and packet.length and requested is None:
                requested = packet.t
            if established is not None and packet.flags & (FIN | RST):
                started = requested if requested is not None else established
                if packet.t - started >= GAVE_UP_SHARE * client_timeout:
                    return WireReading("silent", packet.t)  # the client gave up
            end = (packet.seq + packet.length + bool(packet.flags & (SYN | FIN))) % SEQ_MOD
            if sent_to is None or 0 < (end - sent_to) % SEQ_MOD < SEQ_MOD // 2:
                sent_to = end
            pending = packet
            continue
        answered, pending = pending, None
        if packet.icmp:
            return WireReading("icmp", packet.t)
        if packet.flags & SYN and packet.flags & ACK and established is None:
            established = packet.t
        if packet.flags & RST:
            if established is None:
                return WireReading("refused", packet.t)
            reason = _answered(answered, sent_to)
            if reason == "FIN":
                return WireReading("silent", answered.t)
            if reason:
                return WireReading("silent", packet.t)
            return WireReading("rst", packet.t)
        if packet.flags & FIN:
            return WireReading("fin", packet.t)
    return WireReading("silent" if established is not None else "syn-timeout", None)


def _answered(segment: Packet | None, sent_to: int | None) -> str | None:
    if segment is None:
        return None
    if segment.flags & FIN:
        return "FIN"
    keepalive = segment.flags == ACK and segment.length <= 1
    if keepalive and sent_to is not None and segment.seq == (sent_to - 1) % SEQ_MOD:
        return "keepalive"
    if segment.retransmitted:
        return "retransmission"
    return None


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

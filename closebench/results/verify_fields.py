"""What `closebench verify` finds wrong in one record (results/verify.py): a Mismatch, and the
comparisons of who closed and of what the abuser learned, field by field."""

from __future__ import annotations

from dataclasses import dataclass

from closebench.core.outcomes import server_excerpt
from closebench.results.dpkt_wire import WireReading

CLIENT, CLOSEBENCH = "client", "closebench"  # closed_by values (core/outcomes.py's ClosedBy)


@dataclass
class Mismatch:
    src: str
    sport: int
    t_syn: float
    # "class", "end", "request", "closed by", "received", "excerpt", "missing on the wire",
    # "missing in the records"
    what: str
    record: str | None  # the record's outcome
    wire: str | None  # the wire's
    end_delta_s: float | None = None

    def describe(self) -> str:
        where = f"[{self.src}]:{self.sport}" if ":" in self.src else f"{self.src}:{self.sport}"
        if self.what == "class":
            return f"{where}: record says {self.record}, wire says {self.wire}"
        if self.what == "end" and self.end_delta_s is not None:
            return f"{where}: end {1000 * self.end_delta_s:+.1f} ms from the wire's"
        if self.what in ("closed by", "received", "excerpt"):
            return f"{where}: {self.what}: record says {self.record!r}, wire says {self.wire!r}"
        if self.what == "request":
            if self.end_delta_s is None:
                return f"{where}: request {self.record}, wire {self.wire}"
            return f"{where}: request {1000 * self.end_delta_s:+.1f} ms from the wire's"
        return f"{where}: {self.what}"


def mismatch(record: dict, what: str, wire: str | None, delta: float | None = None) -> Mismatch:
    return Mismatch(
        str(record.get("src")),
        record.get("sport") or 0,
        record.get("t_syn") or 0.0,
        what,
        record.get("outcome"),
        wire,
        delta,
    )


def closer_mismatch(record: dict, reading: WireReading) -> Mismatch | None:
    """Who closed, by the record and by the wire. closebench stopping a client shows on the wire
    as the client's close (or as no end at all); a record without closed_by (an older
    version's) is not compared."""
    said = record.get("closed_by")
    if not said or (CLIENT if said == CLOSEBENCH else said) == reading.closed_by:
        return None
    found = mismatch(record, "closed by", reading.closed_by)
    found.record = str(said)
    return found


def received_mismatch(record: dict, reading: WireReading) -> Mismatch | None:
    """What the abuser learned, by the record and by the wire: the server's bytes before the
    end, and the first line of them (not compared where the record has none: older ones)."""
    received = record.get("bytes_received")
    if isinstance(received, int) and received != reading.received:
        found = mismatch(record, "received", f"{reading.received} bytes")
        found.record = f"{received} bytes"
        return found
    excerpt, on_wire = record.get("excerpt"), server_excerpt(reading.head)
    if isinstance(excerpt, str) and excerpt != on_wire:
        found = mismatch(record, "excerpt", on_wire)
        found.record = excerpt
        return found
    return None

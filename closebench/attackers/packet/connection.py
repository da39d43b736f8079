"""The engine's parts other than its transitions.

A connection (Conn), the settings and profile, the counters, ISNs, and the Outbox: the Wire the
engine is given, with what goes out counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b
from typing import NamedTuple, Protocol

from closebench.attackers.packet.segments import (
    ACK,
    FIN,
    HEAD_BYTES,
    RST,
    SEQ_MASK,
    SYN,
    Kind,
    Segment,
    seq_add,
    seq_delta,
)
from closebench.attackers.packet.states import State
from closebench.core.outcomes import Outcome, http_status

SYN_RTO = 1.0  # Linux's initial retransmission timeout
RTO_MIN = 0.2  # Linux's minimum retransmission timeout
PROBE_MAX = 120.0  # Linux's longest interval between zero-window probes (TCP_RTO_MAX)
FIN_RETRIES = 3  # our FIN is sent again this often at most, then the connection is forgotten
WINDOW = 65535  # how far past rcv_nxt an RST may start and still be for this connection


@dataclass(frozen=True)
class Profile:
    """What sets one packet attacker apart from the other."""

    give_up: Kind = Kind.RST_ACK  # sent at our timeout: RST (aborting client) or FIN (close())
    retransmits: bool = True  # send the request and our FIN again until acknowledged


@dataclass(frozen=True)
class Settings:
    timeout: float
    request_len: int
    low: int  # our source ports
    high: int
    sources: tuple[str, ...]  # our source addresses
    request_delay: float = 0.0
    profile: Profile = field(default_factory=Profile)
    isn_key: bytes = b"closebench"  # keys the ISNs (the child uses the boot's id)


@dataclass
class Counters:
    """What the engine did and saw, beyond the attempts themselves."""

    connections_started: int = 0
    connections_established: int = 0
    connections_ended: int = 0  # one Attempt each
    connections_abandoned: int = 0  # open when the attack was stopped: no Attempt
    peak_in_flight: int = 0
    syns_sent: int = 0
    syn_retransmits_sent: int = 0
    requests_sent: int = 0
    data_retransmits_sent: int = 0
    fin_retransmits_sent: int = 0
    rsts_sent: int = 0
    send_errors: int = 0
    synacks_received: int = 0
    data_segments: int = 0
    fins_received: int = 0
    rsts_received: int = 0
    icmp_errors_seen: int = 0
    odd_segments_seen: int = 0
    retransmissions_seen: int = 0  # segments from the server that carried nothing new
    duplicate_fins_seen: int = 0  # of which FINs already received
    out_of_order_seen: int = 0
    late_packets_seen: int = 0  # for attempts already over
    unhandled_events: int = 0  # (state, event) pairs the engine's table lacks: a bug, not noise
    unknown_packets_seen: int = 0  # for ports with no connection of ours
    bad_acks_seen: int = 0  # acknowledging something we never sent (an older attempt's)
    requests_held: int = 0  # written while the server's window was 0: kept, not sent
    window_probes_sent: int = 0  # persist-timer probes of a zero window


class Wire(Protocol):
    """What the engine sends through: one prebuilt packet of `kind`, patched. A wire may raise
    OSError at once (a lost packet) or queue it and report it later (LostSend, send_batch.py)."""

    def send(self, kind: Kind, src: int, port: int, seq: int, ack: int) -> None: ...


class LostSend(NamedTuple):
    """A queued packet the kernel refused when it went out."""

    kind: Kind
    src: int  # index of our source address
    port: int
    seq: int
    error: OSError


@dataclass(slots=True, eq=False)
class Conn:
    """One attempt's connection, from its SYN until its slot (source, port) is used again."""

    slot: int
    src: int  # index of our source address
    port: int
    iss: int
    t_syn: float
    state: State
    snd_una: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    rto: float = SYN_RTO
    syns_sent: int = 1
    fin_retries: int = 0
    retransmissions_seen: int = 0  # while the attempt ran
    deadline: int = 0  # token of the armed TIMEOUT (0: none)
    retry: int = 0  # token of the armed SYN_RTO, REQUEST_DUE or RTO (0: none)
    t_established: float | None = None
    t_request: float | None = None
    t_first_byte: float | None = None
    t_end: float | None = None
    bytes_received: int = 0
    head: bytes = b""  # the response's first bytes
    outcome: Outcome = Outcome.SYN_TIMEOUT  # until something better is known
    notes: list[str] = field(default_factory=list)
    request_resent: float | None = None  # when we last sent the request again
    snd_wnd: int = 65535  # the server's window, as its last segment advertised it
    held: bool = False  # the request is written but waits for the window to open

    def take_ack(self, seg: Segment) -> None:
        """Move snd_una on to what `seg` acknowledges, if that is something we sent."""
        if seg.flags & ACK and 0 < seq_delta(seg.ack, self.snd_una) <= seq_delta(
            self.snd_nxt, self.snd_una
        ):
            self.snd_una = seg.ack
            if self.snd_una == self.snd_nxt:
                self.retry = 0  # all we sent has arrived: nothing to send again

    def take_data(self, seg: Segment, skip: int) -> None:
        """Take the payload of `seg` past its first `skip` bytes (received before)."""
        taken = seg.length - skip
        if taken <= 0:
            return
        self.rcv_nxt = seq_add(self.rcv_nxt, taken)
        if not self.bytes_received:
            self.t_first_byte = seg.t
        self.bytes_received += taken
        if len(self.head) < HEAD_BYTES:
            self.head = (self.head + seg.head[skip:])[:HEAD_BYTES]

    @property
    def http_status(self) -> int | None:
        return http_status(self.head)

    @property
    def detail(self) -> str:
        if not (self.notes or self.retransmissions_seen or self.syns_sent > 1):
            return ""
        notes = list(self.notes)
        if self.syns_sent > 1:
            notes.append(f"SYN sent {self.syns_sent} times")
        if self.retransmissions_seen:
            notes.append(f"segments retransmitted by the server: {self.retransmissions_seen}")
        return "; ".join(notes)


class InitialSequence:
    """ISNs as SYN cookies make them: a keyed offset per (source, port) plus a microsecond clock
    (the time of the SYN, from the engine's clock, as Linux reads the real-time clock for its ISNs).

    A port's next SYN is then always ahead of its last connection, even one of an earlier run
    or of the other packet attacker (the child keys it with the boot's id, not the run's), so a
    server socket still in TIME-WAIT accepts it.
    """

    def __init__(self, key: bytes) -> None:
        self.key = key[:64]
        self._offsets: dict[tuple[str, int], int] = {}

    def __call__(self, source: str, port: int, t: float) -> int:
        offset = self._offsets.get((source, port))
        if offset is None:
            digest = blake2b(f"{source} {port}".encode(), key=self.key, digest_size=4).digest()
            offset = self._offsets[source, port] = int.from_bytes(digest, "big")
        return (offset + int(t * 1_000_000)) & SEQ_MASK


class Outbox:
    """Sends through the wire and counts it; a failed send is a lost packet, as TCP sees it."""

    def __init__(self, wire: Wire, counters: Counters) -> None:
        self.wire_send = wire.send
        self.counters = counters

    def send(self, conn: Conn, kind: Kind, seq: int, ack: int) -> OSError | None:
        try:
            self.wire_send(kind, conn.src, conn.port, seq, ack)
        except OSError as error:  # ENOBUFS, no route...: the packet is lost
            self.counters.send_errors += 1
            return error
        if kind >= Kind.RST:
            self.counters.rsts_sent += 1
        return None

    def ack(self, conn: Conn) -> None:
        try:
            self.wire_send(Kind.ACK, conn.src, conn.port, conn.snd_nxt, conn.rcv_nxt)
        except OSError:
            self.counters.send_errors += 1

    def answer_without_socket(self, seg: Segment) -> None:
        """What a kernel with no socket for the port does: RST anything but an RST."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            kind, seq, ack = Kind.RST, seg.ack, 0
        else:
            length = seg.length + bool(seg.flags & SYN) + bool(seg.flags & FIN)
            kind, seq, ack = Kind.RST_ACK, 0, seq_add(seg.seq, length)
        try:
            self.wire_send(kind, seg.src, seg.port, seq, ack)
        except OSError:
            self.counters.send_errors += 1
            return
        self.counters.rsts_sent += 1

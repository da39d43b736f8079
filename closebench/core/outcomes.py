"""How an attempt ended, in one vocabulary used everywhere, and the attempt record itself."""

from __future__ import annotations

import enum
import errno
import math
from dataclasses import asdict, dataclass, fields

from closebench.core.addresses import canonical

LEGIT_CLIENT = "legit"  # the legitimate client's name in attempt records (attacker)
# A client of closebench's own that closes after this share of its timeout closed because of it:
# it gave up (docs/explanation/outcomes.md). The one definition: every reader imports it.
GAVE_UP_SHARE = 0.9


def gave_up(waited_s: float, client_timeout: float) -> bool:
    """Whether a client that closed `waited_s` after its request (or its connection, without
    one) closed because its timeout ran out. A timeout closebench does not know (inf: another
    program's) never does: such a client's close is its own."""
    return math.isfinite(client_timeout) and waited_s >= GAVE_UP_SHARE * client_timeout


class Outcome(enum.StrEnum):
    """What ended one connection attempt, as seen by the client."""

    FIN = "fin"  # the server closed politely: the client learns at once
    RST = "rst"  # the server reset an established connection
    REFUSED = "refused"  # RST in answer to the SYN: nothing listens (or a firewall rejects)
    ICMP = "icmp"  # an ICMP error ended it (unreachable, time exceeded...)
    SYN_TIMEOUT = "syn-timeout"  # the handshake never completed
    # Established, then nothing the server did unprompted ended it: the client's own timeout did,
    # or an RST the server's kernel sent only in reply to the client's own later segment.
    SILENT = "silent"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    Outcome.FIN: "FIN from the server: the client learns at once and can reconnect",
    Outcome.RST: "RST from the server: the client learns at once and can reconnect",
    Outcome.REFUSED: "the SYN was answered with RST: connection refused",
    Outcome.ICMP: "an ICMP error ended the attempt",
    Outcome.SYN_TIMEOUT: "the handshake never completed before the client's timeout",
    Outcome.SILENT: "nothing came back: the client hung until its own timeout (or until its own "
    "keepalive, retransmission or FIN drew the RST of a socket that no longer exists)",
}


class ClosedBy(enum.StrEnum):
    """Whose packet (or whose decision) ended an attempt."""

    SERVER = "server"  # its FIN, its RST, the RST of its kernel, an ICMP error on the way
    CLIENT = "client"  # the client's own FIN or RST, or its own timeout
    CLOSEBENCH = "closebench"  # still open when closebench stopped the client: outlasted

    @classmethod
    def of(cls, outcome: Outcome) -> ClosedBy:
        """Who ended an attempt of this class, when nothing more is known: the client's own
        timeout ends `silent` and `syn-timeout`, the server (or the way to it) the rest. A silent
        connection ended by the RST that the client's retransmission or keepalive drew is the
        server's: whoever knows it says so."""
        return cls.CLIENT if outcome in (Outcome.SILENT, Outcome.SYN_TIMEOUT) else cls.SERVER


@dataclass
class Attempt:
    """One connection attempt, the record every attacker and the probe produce.

    Times are seconds since the Unix epoch; None where the event did not happen. Addresses are
    kept in their canonical text (closebench/core/addresses.py).
    """

    attacker: str
    family: int
    src: str
    sport: int
    dst: str
    dport: int
    client_timeout: float
    outcome: Outcome
    t_syn: float
    t_established: float | None = None
    t_request: float | None = None
    t_first_byte: float | None = None
    t_end: float | None = None
    bytes_received: int = 0
    data_first: bool = False  # response bytes arrived before whatever ended the attempt
    http_status: int | None = None  # from the response's status line, when one came
    detail: str = ""
    # Command attackers (curl, a browser...): the run of the command this connection belongs to.
    run: int | None = None  # numbered from 1 per attacker
    run_exit_status: int | None = None
    run_duration_s: float | None = None
    run_error: str = ""  # the last line the command wrote on stderr
    # A ClosedBy value; "" until the reader that classified it says: ClosedBy.of(outcome) then.
    closed_by: str = ""
    # What the abuser learned: the first line the server sent before it closed (a banner, a
    # status line), printable and cut (server_excerpt); "" when nothing came, None where it was
    # not read (records of older versions).
    excerpt: str | None = None

    def __post_init__(self) -> None:
        self.src, self.dst = canonical(self.src), canonical(self.dst)

    @property
    def closer(self) -> ClosedBy:
        """Who ended it: closed_by as given, or as its class implies."""
        return ClosedBy(self.closed_by) if self.closed_by else ClosedBy.of(self.outcome)

    @property
    def outlasted(self) -> bool:
        """Still open when closebench stopped its client: its times are closebench's, not the
        client's, and stay out of the hang figures."""
        return self.closer is ClosedBy.CLOSEBENCH

    @property
    def hang_s(self) -> float | None:
        """How long the client waited after its request before it learnt (or gave up)."""
        if self.t_request is None or self.t_end is None:
            return None
        return max(0.0, self.t_end - self.t_request)

    @property
    def connect_wait_s(self) -> float | None:
        """From the first SYN to the handshake's end, or to the attempt's end if it never ended."""
        end = self.t_established if self.t_established is not None else self.t_end
        return None if end is None else max(0.0, end - self.t_syn)

    @property
    def slot_s(self) -> float | None:
        """The whole attempt, first SYN to its end: what it cost the attacker."""
        return None if self.t_end is None else max(0.0, self.t_end - self.t_syn)

    @property
    def waited_s(self) -> float | None:
        return waited(self.hang_s, self.connect_wait_s)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["outcome"] = self.outcome.value
        record["closed_by"] = self.closer.value
        record["hang_s"] = self.hang_s
        record["connect_wait_s"] = self.connect_wait_s
        record["slot_s"] = self.slot_s
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Attempt:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


def waited(hang_s: float | None, connect_wait_s: float | None) -> float | None:
    """What the hang figures count for one attempt: its wait for an answer after its request, or,
    for an attempt that never sent one, its wait to connect (for a SYN never answered: all of it),
    shown as such."""
    return hang_s if hang_s is not None else connect_wait_s


ICMP_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EPROTO}
)


def outcome_of_error(error: OSError, established: bool) -> Outcome | None:
    """What a socket error means for an attempt, as a kernel-socket client learns it."""
    if isinstance(error, TimeoutError):
        return Outcome.SILENT if established else Outcome.SYN_TIMEOUT
    if isinstance(error, ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        # Even inside connect(): ECONNRESET means the handshake completed and then a reset came
        # (a refused SYN is ECONNREFUSED, above).
        return Outcome.RST
    if error.errno in ICMP_ERRNOS:
        return Outcome.ICMP
    return None


EXCERPT_BYTES = 64  # of the server's first payload: a banner or a status line fits


def server_excerpt(head: bytes) -> str:
    """The first line of what the server sent (`head`: its first payload bytes), at most
    EXCERPT_BYTES of it, each byte outside printable ASCII shown as "."."""
    line = head[:EXCERPT_BYTES].split(b"\n", 1)[0].rstrip(b"\r")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in line)


def http_status(head: bytes) -> int | None:
    """The status code of an HTTP/1.x response's first line, if `head` starts with one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None

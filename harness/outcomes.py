"""How an attempt ended, in one vocabulary used everywhere, and the attempt record itself."""

from __future__ import annotations

import enum
import errno
from dataclasses import asdict, dataclass, fields


class Outcome(enum.StrEnum):
    """What ended one connection attempt, as seen by the client."""

    FIN = "fin"  # the server closed politely: the client learns at once
    RST = "rst"  # the server reset an established connection
    REFUSED = "refused"  # RST in answer to the SYN: nothing listens (or a firewall rejects)
    ICMP = "icmp"  # an ICMP error ended it (unreachable, time exceeded...)
    SYN_TIMEOUT = "syn-timeout"  # the handshake never completed
    SILENT = "silent"  # established, request sent, then nothing ended it but the client's timeout

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    Outcome.FIN: "FIN from the server: the client learns at once and can reconnect",
    Outcome.RST: "RST from the server: the client learns at once and can reconnect",
    Outcome.REFUSED: "the SYN was answered with RST: connection refused",
    Outcome.ICMP: "an ICMP error ended the attempt",
    Outcome.SYN_TIMEOUT: "the handshake never completed before the client's timeout",
    Outcome.SILENT: "nothing came back: the client hung until its own timeout",
}


@dataclass
class Attempt:
    """One connection attempt, the record every attacker and the probe produce.

    Times are seconds since the Unix epoch; None where the event did not happen.
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

    @property
    def hang_s(self) -> float | None:
        """How long the client waited after its request before it learnt (or gave up)."""
        if self.t_request is None or self.t_end is None:
            return None
        return max(0.0, self.t_end - self.t_request)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["outcome"] = self.outcome.value
        record["hang_s"] = self.hang_s
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Attempt:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


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


def http_status(head: bytes) -> int | None:
    """The status code of an HTTP/1.x response's first line, if `head` starts with one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None

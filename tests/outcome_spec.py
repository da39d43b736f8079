"""One outcome specification for the four readers of the outcome rules (see
docs/explanation/outcomes.md).

Each Case is a connection told once, as what the server does and when, and what the client does
of its own (its timeout, or an early close); its expectation is the class, the end, who closed
and when the request left. Each reader gets the case in its own input:

- the capture readers (closebench/wire/classify.py and verify's closebench/results/dpkt_wire.py):
  the packets of both sides, written to a real pcap (IPv4 or IPv6), as wire_frames() draws them;
- the packet engine (closebench/attackers/packet/engine.py): the server's segments on the clock
  they come at, through tests/playbook.py;
- the kernel conversation (closebench/attackers/conversation.py): the results of its socket
  operations, without a socket, on a fake clock.

A case a reader cannot be given (the engine and the conversation never close early, a kernel
socket cannot tell an RST that answered its retransmission) names the readers it is for.
Times are seconds after the client's first SYN; the client's timeout is TIMEOUT unless the case
says `timeout=inf` (a program whose timeout closebench does not know).
"""

from __future__ import annotations

import errno
import math
from dataclasses import dataclass

from closebench.core.outcomes import ClosedBy, Outcome

TIMEOUT = 2.0
SA_AT = 0.001  # the SYN-ACK's time in most cases (the request leaves at once)
ALL = frozenset({"classify", "dpkt", "engine", "conversation"})
WIRE = frozenset({"classify", "dpkt"})
NO_SOCKET = frozenset({"classify", "dpkt", "engine"})  # a socket would say ECONNRESET: rst


@dataclass(frozen=True)
class Server:
    """What the server (or the way to it) does at `t`: "SA" (its SYN-ACK), "SA0" (a SYN-ACK
    with a zero window), "data" (response bytes), "FIN", "RST", "refuse" (RST to the SYN),
    "icmp" (an unreachable error quoting our segment)."""

    t: float
    what: str


@dataclass(frozen=True)
class Case:
    name: str
    server: tuple[Server, ...]
    outcome: Outcome
    end: float | None  # None: no packet marks it; the client's own clock (its timeout) does
    closed_by: ClosedBy
    request: float | None  # when the request left (or, held by a zero window, was written)
    timeout: float = TIMEOUT
    close: tuple[str, float] | None = None  # the client's own "F"/"R" at t, before its timeout
    sends_request: bool = True
    acks_request: bool = True  # False: the server never acknowledges it (the client resends)
    give_up: str = "R"  # what the client sends when its timeout ends it ("R" or "F")
    readers: frozenset[str] = ALL

    @property
    def established(self) -> float | None:
        return next((s.t for s in self.server if s.what.startswith("SA")), None)

    @property
    def zero_window(self) -> bool:
        return any(s.what == "SA0" for s in self.server)

    def own_end(self) -> float:
        """When the client's own timeout ends it: from its request, or from its SYN."""
        start = self.established if self.established is not None else 0.0
        return start + self.timeout if self.established is not None else self.timeout


def gave_up_at(share: float) -> float:
    """The time of a close `share` of the way into the client's timeout (from its request)."""
    return round(SA_AT + share * TIMEOUT, 3)


def _s(*steps: tuple[float, str]) -> tuple[Server, ...]:
    return tuple(Server(t, what) for t, what in steps)


CASES = [
    # the server ends it: its FIN, its RST, a refused SYN, an ICMP error
    Case(
        "fin after the response",
        _s((SA_AT, "SA"), (0.05, "data"), (0.05, "FIN")),
        Outcome.FIN,
        0.05,
        ClosedBy.SERVER,
        SA_AT,
    ),
    Case(
        "fin without a response",
        _s((SA_AT, "SA"), (0.3, "FIN")),
        Outcome.FIN,
        0.3,
        ClosedBy.SERVER,
        SA_AT,
    ),
    Case("rst", _s((SA_AT, "SA"), (0.2, "RST")), Outcome.RST, 0.2, ClosedBy.SERVER, SA_AT),
    Case("refused", _s((SA_AT, "refuse")), Outcome.REFUSED, SA_AT, ClosedBy.SERVER, None),
    Case("icmp to the syn", _s((0.004, "icmp")), Outcome.ICMP, 0.004, ClosedBy.SERVER, None),
    # nothing answers: the client's own timeout ends it
    Case("syn-timeout", (), Outcome.SYN_TIMEOUT, None, ClosedBy.CLIENT, None),
    Case(
        "silent: the client gives up at its timeout",
        _s((SA_AT, "SA")),
        Outcome.SILENT,
        SA_AT + TIMEOUT,
        ClosedBy.CLIENT,
        SA_AT,
    ),
    Case(
        "silent: the client gives up with a FIN, answered by RST",
        _s((SA_AT, "SA"), (SA_AT + TIMEOUT + 0.001, "RST")),
        Outcome.SILENT,
        SA_AT + TIMEOUT,
        ClosedBy.CLIENT,
        SA_AT,
        give_up="F",
        readers=WIRE | {"conversation"},
    ),
    Case(
        "silent: a zero window holds the request",
        _s((SA_AT, "SA0")),
        Outcome.SILENT,
        SA_AT + TIMEOUT,
        ClosedBy.CLIENT,
        SA_AT,
        readers=NO_SOCKET,
    ),
    # a silent close the client learns of by the RST its resent request draws
    Case(
        "silent: the rst answers the client's retransmission",
        _s((SA_AT, "SA"), (0.3, "RST")),
        Outcome.SILENT,
        0.3,
        ClosedBy.SERVER,
        SA_AT,
        acks_request=False,
        readers=NO_SOCKET,
    ),
    # the give-up rule, both sides: an own client's FIN before 0.9 x its timeout is a half-close
    # (it reads on: the server's later answer counts), at or after it the end
    Case(
        "below the give-up line: the server's answer after the client's fin counts",
        _s((SA_AT, "SA"), (1.9, "data"), (1.9, "FIN")),
        Outcome.FIN,
        1.9,
        ClosedBy.SERVER,
        SA_AT,
        close=("F", gave_up_at(0.85)),
        readers=WIRE,
    ),
    Case(
        "at the give-up line: the client's fin ends it",
        _s((SA_AT, "SA"), (1.95, "data"), (1.95, "FIN")),
        Outcome.SILENT,
        gave_up_at(0.9),
        ClosedBy.CLIENT,
        SA_AT,
        close=("F", gave_up_at(0.9)),
        readers=WIRE,
    ),
    Case(
        "a server fin that only answers the client's fin is not the server's",
        _s((SA_AT, "SA"), (0.5001, "FIN")),
        Outcome.SILENT,
        0.5,
        ClosedBy.CLIENT,
        SA_AT,
        close=("F", 0.5),
        readers=WIRE,
    ),
    # another program, whose timeout closebench does not know: its own close ends it
    Case(
        "a port scanner's connect and rst (nmap -sT)",
        _s((SA_AT, "SA"), (0.05, "FIN")),
        Outcome.SILENT,
        0.0014,
        ClosedBy.CLIENT,
        None,
        timeout=math.inf,
        close=("R", 0.0014),
        sends_request=False,
        readers=WIRE,
    ),
    Case(
        "another program's early fin, answered by the server's fin",
        _s((SA_AT, "SA"), (0.0101, "FIN")),
        Outcome.SILENT,
        0.01,
        ClosedBy.CLIENT,
        SA_AT,
        timeout=math.inf,
        close=("F", 0.01),
        readers=WIRE,
    ),
    Case(
        "a zero window and a client that writes nothing: no request",
        _s((SA_AT, "SA0")),
        Outcome.SILENT,
        0.5,
        ClosedBy.CLIENT,
        None,
        timeout=math.inf,
        close=("R", 0.5),
        sends_request=False,
        readers=WIRE,
    ),
]

ICMP_ERRNO = errno.EHOSTUNREACH

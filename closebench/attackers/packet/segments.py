"""What the engine is fed and what it sends: TCP flags, packet kinds, sequence arithmetic."""

from __future__ import annotations

import enum
from typing import NamedTuple

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
SEQ_MASK = 0xFFFFFFFF
HEAD_BYTES = 64  # payload bytes kept per segment: enough for an HTTP status line


class Kind(enum.IntEnum):
    """The packets the engine sends; each is a prebuilt template (templates.py)."""

    SYN = 0  # with an MSS option
    REQUEST = 1  # PSH+ACK with the request
    ACK = 2
    FIN = 3  # FIN+ACK
    RST = 4  # RST alone: the answer to a segment that acknowledged something
    RST_ACK = 5  # RST+ACK: aborting our own connection, or answering a segment without ACK


KIND_FLAGS = {
    Kind.SYN: SYN,
    Kind.REQUEST: PSH | ACK,
    Kind.ACK: ACK,
    Kind.FIN: FIN | ACK,
    Kind.RST: RST,
    Kind.RST_ACK: RST | ACK,
}


class Segment(NamedTuple):
    """A TCP segment from the server to one of our (source, port) pairs."""

    t: float  # kernel receive time, Unix seconds
    src: int  # which of our source addresses it was sent to
    port: int  # our port
    seq: int
    ack: int
    flags: int
    length: int = 0  # payload bytes
    head: bytes = b""  # the payload's first HEAD_BYTES
    odd: str = ""  # set when the flags are unusual: scapy's name for them
    window: int = 65535  # the window the server advertises (0: a zero-window tarpit's)


class IcmpError(NamedTuple):
    """An ICMP(v6) error quoting one of our segments."""

    t: float
    src: int
    port: int  # our port, from the quoted segment
    what: str  # "icmp 3/1" or "icmpv6 1/4"
    sender: str


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_delta(a: int, b: int) -> int:
    """a - b as a signed distance in sequence space."""
    d = (a - b) & SEQ_MASK
    return d - (1 << 32) if d >= 1 << 31 else d


def flag_names(flags: int) -> str:
    """Flags as tcpdump and scapy write them: S, SA, PA, FA, R..."""
    names = "FSRPAUEC"
    return "".join(name for bit, name in enumerate(names) if flags & (1 << bit))

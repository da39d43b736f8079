"""A playbook for the packet engine: feed it segments, move its clock, check what it sends.

No socket, no lab, no root: the engine gets a FakeWire that keeps what it would have sent, and
a clock the test moves; it runs in strict mode (a hole in its table raises). A test reads like
the exchange it checks:

    play = Playbook()
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss)
    play.server(SYN | ACK, seq=1000)
    play.sent(Kind.REQUEST, ack=1001)
    play.server(FIN | ACK, seq=1001)
    play.sent(Kind.FIN, ack=1002)
    [attempt] = play.attempts()    # read back through the child's lines, as the runner does
"""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

from closebench.attackers.packet.child_config import ChildConfig
from closebench.attackers.packet.child_output import Relay, attempt_line
from closebench.attackers.packet.connection import Conn, Profile, Settings
from closebench.attackers.packet.engine import Engine
from closebench.attackers.packet.segments import IcmpError, Kind, Segment
from closebench.attackers.policy import Policy
from closebench.core.outcomes import Attempt

REQUEST = b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n"
SOURCES = ("198.18.0.1", "198.18.0.5")
SERVER = "198.19.0.2"
PORT = 8080
LOW, HIGH = 61000, 61009
START = 1_700_000_000.0  # the fake clock's Unix time at the start


class Sent(NamedTuple):
    kind: Kind
    src: int
    port: int
    seq: int
    ack: int


class FakeWire:
    """Keeps what the engine sends; fails the sends of the kinds in `failing` with `error`."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.failing: set[Kind] = set()
        self.error = errno.ENOBUFS

    def send(self, kind: Kind, src: int, port: int, seq: int, ack: int) -> None:
        if kind in self.failing:
            raise OSError(self.error, os.strerror(self.error))
        self.sent.append(Sent(kind, src, port, seq, ack))


class Playbook:
    def __init__(
        self,
        timeout: float = 10.0,
        request_delay: float = 0.0,
        profile: Profile | None = None,
        sources: int = 1,
        strict: bool = True,
    ) -> None:
        self.t = START
        self.wire = FakeWire()
        self.settings = Settings(
            timeout=timeout,
            request_len=len(REQUEST),
            low=LOW,
            high=HIGH,
            sources=SOURCES[:sources],
            request_delay=request_delay,
            profile=profile or Profile(),
        )
        self.lines: list[str] = []
        # Strict: a (state, event) pair missing from the engine's table raises, so a playbook
        # that reaches a hole fails rather than count it.
        self.engine = Engine(
            self.wire, self.settings, self._emit, clock=lambda: self.t, strict=strict
        )
        self._checked = 0
        self.conn: Conn | None = None  # the latest attempt opened

    def _emit(self, conn: Conn) -> None:
        self.lines.append(attempt_line(conn, START).rstrip("\n"))

    @property
    def counters(self):
        return self.engine.counters

    # --- moves

    def connect(self) -> Conn:
        conn = self.engine.open()
        assert conn is not None, "no free slot"
        self.conn = conn
        return conn

    def later(self, seconds: float) -> None:
        """Move the clock on; the timers that come due fire."""
        self.t += seconds
        self.engine.fire_timers()

    def server(
        self,
        flags: int,
        seq: int,
        ack: int | None = None,
        payload: bytes = b"",
        conn: Conn | None = None,
        port: int | None = None,
        odd: str = "",
        window: int = 65535,
    ) -> None:
        """A segment from the server to `conn` (default: the latest), acknowledging all we sent,
        advertising `window`."""
        conn = conn or self.conn
        assert conn is not None or port is not None
        segment = Segment(
            t=self.t,
            src=conn.src if conn else 0,
            port=port if port is not None else conn.port,
            seq=seq,
            ack=conn.snd_nxt if ack is None else ack,
            flags=flags,
            length=len(payload),
            head=payload[:64],
            odd=odd,
            window=window,
        )
        self.engine.receive(segment)

    def icmp(self, what: str = "icmp 3/13", sender: str = "198.18.0.254") -> None:
        assert self.conn is not None
        self.engine.receive(IcmpError(self.t, self.conn.src, self.conn.port, what, sender))

    # --- checks

    def sent(self, kind: Kind, **fields: int) -> Sent:
        """The next packet the engine sent that no check has looked at: of `kind`, with `fields`."""
        assert self._checked < len(self.wire.sent), f"nothing more was sent; expected {kind.name}"
        packet = self.wire.sent[self._checked]
        self._checked += 1
        assert packet.kind is kind, f"sent {packet}, expected {kind.name}"
        for name, value in fields.items():
            assert getattr(packet, name) == value, f"sent {packet}, expected {name}={value}"
        return packet

    def quiet(self) -> None:
        """Nothing was sent since the last check."""
        assert self._checked == len(self.wire.sent), f"also sent {self.wire.sent[self._checked :]}"

    def attempts(self) -> list[Attempt]:
        """The attempts emitted so far, read back as the runner reads the child's lines."""
        config = ChildConfig(
            family=4,
            sources=list(self.settings.sources),
            dst=SERVER,
            dport=PORT,
            templates=[],
            bpf=[],
            request_len=len(REQUEST),
            policy={"timeout": self.settings.timeout, "request_delay": 0.0},
            ports=f"{LOW}-{HIGH}",
            give_up="rst",
            retransmits=True,
            base_time=START,
        )
        relay = Relay(lambda attempt: None, "playbook", config)
        return [relay.attempt(line) for line in self.lines]


def policy(**fields) -> Policy:
    return Policy(**{"duration": 10.0, **fields})

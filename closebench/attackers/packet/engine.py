"""The TCP client both packet attackers run: a state machine over a wire it is given.

The engine does no I/O. The loop hands it what arrived (Segment, IcmpError) and tells it when
timers may be due; it sends through its Wire (raw sockets in the child, a fake in tests: see
tests/playbook.py). Each attempt is one connection, a Conn, in one of the States (states.py).

TRANSITIONS is the whole of it: for each state and event, the action that runs (actions.py),
the state that follows and the outcome the attempt ends with, if this ends it. Nothing else
writes a connection's state or outcome. An action may answer IGNORE (the event turns out not to
concern the connection: a segment outside the window, a SYN-ACK for an older attempt); nothing
then changes. It may hand on an event, fired at once after its own entry applies. Every segment
has an entry in every state (after the end, most count as late packets); a pair missing from the
table is a hole in it: in strict mode (the tests') it raises MissingTransition, otherwise it is
counted in unhandled_events, apart from the network's late packets.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from closebench.attackers.packet.actions import (
    ack_again,
    acknowledged,
    check_refusal,
    end,
    establish,
    fin_acknowledged,
    fin_again,
    give_up,
    judge_reset,
    late,
    late_reset,
    note_dropped_socket,
    note_odd,
    note_send_failed,
    probe_window,
    reject_ack,
    request_again,
    resend_fin,
    resend_request,
    resend_syn,
    reset_stray,
    send_fin,
    send_request,
    send_syn,
    stop,
    stop_reset,
    take_data,
    take_fin,
    unreachable,
    unreachable_reset,
)
from closebench.attackers.packet.connection import (
    RTO_MIN,
    SYN_RTO,
    Conn,
    Counters,
    InitialSequence,
    LostSend,
    Outbox,
    Settings,
    Wire,
)
from closebench.attackers.packet.segments import (
    FIN,
    RST,
    SYN,
    IcmpError,
    Kind,
    Segment,
    seq_add,
)
from closebench.attackers.packet.states import IGNORE, OPEN, Event, State, Step
from closebench.attackers.packet.timers import Timers
from closebench.core.outcomes import ICMP_ERRNOS, Outcome

__all__ = ["OPEN", "TRANSITIONS", "Engine", "Event", "MissingTransition", "State", "Transition"]

Action = Callable[..., Step]  # (engine, conn, segment or ICMP error or None) -> Step


class Transition(NamedTuple):
    action: Action
    next_state: State
    outcome: Outcome | None = None  # the attempt ends here, with this outcome


S, E, T = State, Event, Transition
TRANSITIONS: dict[tuple[State, Event], Transition] = {
    # (state, event): (action, next state[, outcome])
    (S.SYN_SENT, E.START): T(send_syn, S.SYN_SENT),
    (S.SYN_SENT, E.SYN_RTO): T(resend_syn, S.SYN_SENT),
    (S.SYN_SENT, E.SEND_FAILED): T(end, S.ABORTED, Outcome.ICMP),
    (S.SYN_SENT, E.SYN_ACK): T(establish, S.ESTABLISHED),
    (S.SYN_SENT, E.ACK): T(reject_ack, S.SYN_SENT),
    (S.SYN_SENT, E.DATA): T(reject_ack, S.SYN_SENT),
    (S.SYN_SENT, E.FIN): T(reject_ack, S.SYN_SENT),
    (S.SYN_SENT, E.RST): T(check_refusal, S.ABORTED, Outcome.REFUSED),
    (S.SYN_SENT, E.ODD): T(note_odd, S.SYN_SENT),
    (S.SYN_SENT, E.ICMP): T(unreachable, S.ABORTED, Outcome.ICMP),
    (S.SYN_SENT, E.TIMEOUT): T(end, S.ABORTED, Outcome.SYN_TIMEOUT),
    (S.SYN_SENT, E.STOP): T(stop, S.ABORTED),
    (S.ESTABLISHED, E.REQUEST_DUE): T(send_request, S.REQUESTED),
    (S.ESTABLISHED, E.SYN_ACK): T(ack_again, S.ESTABLISHED),
    (S.ESTABLISHED, E.ACK): T(acknowledged, S.ESTABLISHED),
    (S.ESTABLISHED, E.DATA): T(take_data, S.ESTABLISHED),
    (S.ESTABLISHED, E.FIN): T(take_fin, S.LAST_ACK, Outcome.FIN),
    (S.ESTABLISHED, E.RST): T(judge_reset, S.ESTABLISHED),
    (S.ESTABLISHED, E.RESET): T(end, S.ABORTED, Outcome.RST),
    (S.ESTABLISHED, E.ODD): T(note_odd, S.ESTABLISHED),
    (S.ESTABLISHED, E.ICMP): T(unreachable_reset, S.ABORTED, Outcome.ICMP),
    (S.ESTABLISHED, E.STOP): T(stop_reset, S.ABORTED),
    (S.REQUESTED, E.SYN_ACK): T(request_again, S.REQUESTED),
    (S.REQUESTED, E.ACK): T(acknowledged, S.REQUESTED),
    (S.REQUESTED, E.DATA): T(take_data, S.REQUESTED),
    (S.REQUESTED, E.FIN): T(take_fin, S.LAST_ACK, Outcome.FIN),
    (S.REQUESTED, E.RST): T(judge_reset, S.REQUESTED),
    (S.REQUESTED, E.RESET): T(end, S.ABORTED, Outcome.RST),
    (S.REQUESTED, E.RESET_RESENT): T(note_dropped_socket, S.ABORTED, Outcome.SILENT),
    (S.REQUESTED, E.ODD): T(note_odd, S.REQUESTED),
    (S.REQUESTED, E.ICMP): T(unreachable_reset, S.ABORTED, Outcome.ICMP),
    (S.REQUESTED, E.RTO): T(resend_request, S.REQUESTED),
    (S.REQUESTED, E.PROBE): T(probe_window, S.REQUESTED),
    (S.REQUESTED, E.TIMEOUT): T(give_up, S.GAVE_UP, Outcome.SILENT),
    (S.REQUESTED, E.STOP): T(stop_reset, S.ABORTED),
    # The attempt is over; the connection lives on until the slot's reuse.
    (S.LAST_ACK, E.CLOSE): T(send_fin, S.LAST_ACK),
    (S.LAST_ACK, E.SYN_ACK): T(late, S.LAST_ACK),
    (S.LAST_ACK, E.ACK): T(fin_acknowledged, S.CLOSED),
    (S.LAST_ACK, E.DATA): T(ack_again, S.LAST_ACK),
    (S.LAST_ACK, E.FIN): T(fin_again, S.LAST_ACK),
    (S.LAST_ACK, E.RST): T(late_reset, S.ABORTED),
    (S.LAST_ACK, E.ODD): T(late, S.LAST_ACK),
    (S.LAST_ACK, E.ICMP): T(late, S.LAST_ACK),
    (S.LAST_ACK, E.RTO): T(resend_fin, S.LAST_ACK),
    (S.CLOSED, E.SYN_ACK): T(late, S.CLOSED),
    (S.CLOSED, E.ACK): T(late, S.CLOSED),
    (S.CLOSED, E.DATA): T(ack_again, S.CLOSED),
    (S.CLOSED, E.FIN): T(ack_again, S.CLOSED),
    (S.CLOSED, E.RST): T(late_reset, S.ABORTED),
    (S.CLOSED, E.ODD): T(late, S.CLOSED),
    (S.CLOSED, E.ICMP): T(late, S.CLOSED),
    (S.GAVE_UP, E.SYN_ACK): T(late, S.GAVE_UP),
    (S.GAVE_UP, E.ACK): T(late, S.GAVE_UP),
    (S.GAVE_UP, E.DATA): T(late, S.GAVE_UP),
    (S.GAVE_UP, E.FIN): T(ack_again, S.GAVE_UP),
    (S.GAVE_UP, E.RST): T(late_reset, S.ABORTED),
    (S.GAVE_UP, E.ODD): T(late, S.GAVE_UP),
    (S.GAVE_UP, E.ICMP): T(late, S.GAVE_UP),
    (S.ABORTED, E.SYN_ACK): T(reset_stray, S.ABORTED),
    (S.ABORTED, E.ACK): T(reset_stray, S.ABORTED),
    (S.ABORTED, E.DATA): T(reset_stray, S.ABORTED),
    (S.ABORTED, E.FIN): T(reset_stray, S.ABORTED),
    (S.ABORTED, E.RST): T(late, S.ABORTED),
    (S.ABORTED, E.ODD): T(late, S.ABORTED),
    (S.ABORTED, E.ICMP): T(late, S.ABORTED),
}


class MissingTransition(LookupError):
    """A (state, event) pair the table lacks, in strict mode: the table has a hole."""


class Engine:
    """Opens attempts on free slots, runs each through TRANSITIONS, emits each as it ends."""

    def __init__(
        self,
        wire: Wire,
        settings: Settings,
        emit: Callable[[Conn], None],
        clock: Callable[[], float] = time.time,
        strict: bool = False,
    ) -> None:
        self.settings = settings
        self.counters = Counters()
        self.out = Outbox(wire, self.counters)
        self.profile = settings.profile
        self.emit = emit
        self.clock = clock  # Unix time, as the kernel stamps the segments it hands us
        self.strict = strict  # raise on a pair missing from TRANSITIONS, rather than count it
        self.now = clock()
        self.in_flight = 0
        self.sources = len(settings.sources)
        slots = (settings.high - settings.low + 1) * self.sources
        self.conns: list[Conn | None] = [None] * slots  # kept after the end, until the slot's reuse
        # Slot = port index * sources + source: handed out oldest first, so a port is reused as
        # late as possible and the sources take turns, as a botnet's would.
        self.free = deque(range(slots))
        fixed = [settings.timeout, settings.request_delay, RTO_MIN]
        fixed += [SYN_RTO * 2**n for n in range(int(math.log2(max(settings.timeout, 1))) + 1)]
        self.timers = Timers(self.conns, fixed, RTO_MIN)
        self._isn = InitialSequence(settings.isn_key)
        # TRANSITIONS, read once per engine into a list indexed by state << 5 | event (looked up
        # per packet: faster than a dict of pairs).
        self._table: list[Transition | None] = [None] * (max(State) + 1 << 5)
        for (state, event), entry in TRANSITIONS.items():
            self._table[state << 5 | event] = entry

    # --- what the loop calls

    def open(self) -> Conn | None:
        """Start an attempt on the slot free the longest: its SYN goes out. None: none is free."""
        if not self.free:
            return None
        self.now = now = self.clock()
        slot = self.free.popleft()
        s = self.settings
        src, port = slot % self.sources, s.low + slot // self.sources
        iss = self._isn(s.sources[src], port, now)
        conn = Conn(slot, src, port, iss, now, State.SYN_SENT, snd_una=iss, snd_nxt=seq_add(iss, 1))
        self.conns[slot] = conn
        c = self.counters
        c.connections_started += 1
        self.in_flight += 1
        c.peak_in_flight = max(c.peak_in_flight, self.in_flight)
        # One handshake timer at a time: SYN retransmissions while they fit, then the timeout.
        if s.timeout > SYN_RTO:
            conn.retry = self.timers.add(now, SYN_RTO, slot, Event.SYN_RTO)
        else:
            conn.deadline = self.timers.add(now, s.timeout, slot, Event.TIMEOUT)
        self._fire(conn, Event.START, None)
        return conn

    def receive(self, item: Segment | IcmpError) -> None:
        """A packet from the server (or an ICMP error about ours) for one of our slots."""
        self.now = self.clock()
        c = self.counters
        slot = (item.port - self.settings.low) * self.sources + item.src
        if isinstance(item, IcmpError):
            c.icmp_errors_seen += 1
            conn = self.conns[slot]
            if conn is not None:
                self._fire(conn, Event.ICMP, item)
            return
        flags = item.flags
        if item.odd:
            event = Event.ODD
            c.odd_segments_seen += 1
        elif flags & RST:
            event = Event.RST
            c.rsts_received += 1
        elif flags & SYN:  # with ACK: a SYN without it is odd
            event = Event.SYN_ACK
            c.synacks_received += 1
        elif flags & FIN:
            event = Event.FIN
            c.fins_received += 1
        elif item.length:
            event = Event.DATA
            c.data_segments += 1
        else:
            event = Event.ACK
        conn = self.conns[slot]
        if conn is None:
            c.unknown_packets_seen += 1
            self.out.answer_without_socket(item)
        else:
            self._fire(conn, event, item)

    def send_lost(self, lost: LostSend) -> None:
        """A packet the wire had queued was refused when it went out: lost, as a send that fails
        at once is, and a SYN refused for want of a route ends its attempt as in send_syn."""
        self.now = self.clock()
        c = self.counters
        c.send_errors += 1
        if lost.kind >= Kind.RST:
            c.rsts_sent -= 1  # counted when it was queued
        if lost.kind is not Kind.SYN or lost.error.errno not in ICMP_ERRNOS:
            return
        conn = self.conns[(lost.port - self.settings.low) * self.sources + lost.src]
        if conn is None or conn.iss != lost.seq:
            return  # the SYN of an attempt already over
        # In every state where the table says what a refused SYN means (the handshake's):
        if self._table[conn.state << 5 | Event.SEND_FAILED] is not None:
            note_send_failed(conn, lost.error)
            self._fire(conn, Event.SEND_FAILED, None)

    def fire_timers(self) -> None:
        """Run every timer that is due."""
        self.now = self.clock()
        for conn, event in self.timers.due(self.now):
            self._fire(conn, event, None)

    def next_timer(self) -> float:
        """When fire_timers() may next have something to do (a clock() time)."""
        return self.timers.next_due()

    def settling(self) -> bool:
        """Whether some FIN of ours still waits for its acknowledgement and may be sent again."""
        return any(
            conn is not None and conn.state is State.LAST_ACK and conn.retry for conn in self.conns
        )

    def abandon(self) -> None:
        """The attack is stopped: reset what is established, report nothing that is open."""
        self.now = self.clock()
        for conn in self.conns:
            if conn is not None and conn.state in OPEN:
                self._fire(conn, Event.STOP, None)

    # --- the machinery

    def _fire(self, conn: Conn, event: Event, item: Segment | IcmpError | None) -> None:
        """Run the table's entry for the connection's state and `event`, and what it hands on."""
        table = self._table
        while True:
            entry = table[conn.state << 5 | event]
            if entry is None:
                self._hole(conn, event)
                return
            action, after, outcome = entry
            follow = action(self, conn, item)
            if follow is IGNORE:
                return
            conn.state = after
            if outcome is not None:
                self._end(conn, outcome, self.now if item is None else item.t)
            if follow is None:
                return
            event = follow

    def _hole(self, conn: Conn, event: Event) -> None:
        if self.strict:
            raise MissingTransition(f"no transition for {conn.state.name} on {event.name}")
        self.counters.unhandled_events += 1

    def _end(self, conn: Conn, outcome: Outcome, t: float) -> None:
        """The attempt is over: its outcome is final, whatever comes later."""
        conn.outcome, conn.t_end = outcome, t
        conn.deadline = conn.retry = 0
        self.in_flight -= 1
        self.counters.connections_ended += 1
        self.free.append(conn.slot)
        self.emit(conn)

"""The TCP client both packet attackers run: a state machine over a wire it is given.

The engine does no I/O. The loop hands it what arrived (Segment, IcmpError) and tells it when
timers may be due; it sends through its Wire (raw sockets in the child, a fake in tests: see
tests/playbook.py). Each attempt is one connection, a Conn, in one of the States below.
TRANSITIONS says, for each state and event, which action runs and which state follows. An action
may turn its event down (it returns REFUSED: a segment outside the window, a SYN-ACK for an older
attempt); the state then stays. It may also hand on a follow-up event, fired at once. A segment
whose pair is missing is a late one (the attempt is over); a timer whose pair is missing is stale.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable

from closebench.attackers.packet.connection import (
    SYN_RTO,
    Conn,
    Counters,
    InitialSequence,
    Outbox,
    Settings,
    Wire,
)
from closebench.attackers.packet.segments import (
    ACK,
    FIN,
    RST,
    SYN,
    IcmpError,
    Kind,
    Segment,
    seq_add,
    seq_delta,
)
from closebench.attackers.packet.timers import Timers
from closebench.core.outcomes import ICMP_ERRNOS, Outcome


class State(enum.IntEnum):  # ints: the table is looked up per packet
    SYN_SENT = 1  # our SYN is out
    ESTABLISHED = 2  # handshake done; the request waits for its delay
    REQUESTED = 3  # the request is out: what comes next ends the attempt
    LAST_ACK = 4  # the server's FIN ended it; our FIN is not yet acknowledged
    CLOSED = 5  # our FIN was acknowledged too
    GAVE_UP = 6  # our own timeout ended it; we sent RST or FIN (the profile's choice)
    ABORTED = 7  # reset, refused, unreachable or never established


class Event(enum.IntEnum):
    SYN_ACK = 1
    ACK = 2  # nothing but an acknowledgement
    DATA = 3  # payload without FIN
    FIN = 4  # FIN, with or without payload
    RST = 5
    ODD = 6  # flags no server sends in the normal course (decoded by scapy)
    ICMP = 7  # an ICMP error quoting one of our segments
    SYN_RTO = 8  # time to send the SYN again
    REQUEST_DUE = 9  # the handshake is done and request_delay has passed
    RTO = 10  # time to send the unacknowledged request or FIN again
    TIMEOUT = 11  # the client's own timeout
    PROBE = 12  # the persist timer: time to probe the server's zero window again


S, E = State, Event
TRANSITIONS: dict[tuple[State, Event], tuple[str, State]] = {
    # (state, event): (action, next state)
    (S.SYN_SENT, E.SYN_ACK): ("establish", S.ESTABLISHED),
    (S.SYN_SENT, E.ACK): ("reject_ack", S.SYN_SENT),
    (S.SYN_SENT, E.DATA): ("reject_ack", S.SYN_SENT),
    (S.SYN_SENT, E.FIN): ("reject_ack", S.SYN_SENT),
    (S.SYN_SENT, E.RST): ("refused", S.ABORTED),
    (S.SYN_SENT, E.ICMP): ("unreachable", S.ABORTED),
    (S.SYN_SENT, E.ODD): ("note_odd", S.SYN_SENT),
    (S.SYN_SENT, E.SYN_RTO): ("resend_syn", S.SYN_SENT),
    (S.SYN_SENT, E.TIMEOUT): ("give_up", S.ABORTED),
    (S.ESTABLISHED, E.REQUEST_DUE): ("send_request", S.REQUESTED),
    (S.ESTABLISHED, E.SYN_ACK): ("ack_again", S.ESTABLISHED),
    (S.ESTABLISHED, E.ACK): ("acknowledged", S.ESTABLISHED),
    (S.ESTABLISHED, E.DATA): ("take_data", S.ESTABLISHED),
    (S.ESTABLISHED, E.FIN): ("closed_by_server", S.LAST_ACK),
    (S.ESTABLISHED, E.RST): ("reset", S.ABORTED),
    (S.ESTABLISHED, E.ICMP): ("unreachable", S.ABORTED),
    (S.ESTABLISHED, E.ODD): ("note_odd", S.ESTABLISHED),
    (S.REQUESTED, E.SYN_ACK): ("request_again", S.REQUESTED),
    (S.REQUESTED, E.ACK): ("acknowledged", S.REQUESTED),
    (S.REQUESTED, E.DATA): ("take_data", S.REQUESTED),
    (S.REQUESTED, E.FIN): ("closed_by_server", S.LAST_ACK),
    (S.REQUESTED, E.RST): ("reset", S.ABORTED),
    (S.REQUESTED, E.ICMP): ("unreachable", S.ABORTED),
    (S.REQUESTED, E.ODD): ("note_odd", S.REQUESTED),
    (S.REQUESTED, E.RTO): ("resend_request", S.REQUESTED),
    (S.REQUESTED, E.PROBE): ("probe_window", S.REQUESTED),
    (S.REQUESTED, E.TIMEOUT): ("give_up", S.GAVE_UP),
    (S.LAST_ACK, E.ACK): ("fin_acknowledged", S.CLOSED),
    (S.LAST_ACK, E.DATA): ("ack_again", S.LAST_ACK),
    (S.LAST_ACK, E.FIN): ("fin_again", S.LAST_ACK),
    (S.LAST_ACK, E.RST): ("late_reset", S.ABORTED),
    (S.LAST_ACK, E.RTO): ("resend_fin", S.LAST_ACK),
    (S.CLOSED, E.DATA): ("ack_again", S.CLOSED),
    (S.CLOSED, E.FIN): ("ack_again", S.CLOSED),
    (S.CLOSED, E.RST): ("late_reset", S.ABORTED),
    (S.GAVE_UP, E.FIN): ("ack_again", S.GAVE_UP),
    (S.GAVE_UP, E.RST): ("late_reset", S.ABORTED),
    (S.ABORTED, E.SYN_ACK): ("reset_stray", S.ABORTED),
    (S.ABORTED, E.ACK): ("reset_stray", S.ABORTED),
    (S.ABORTED, E.DATA): ("reset_stray", S.ABORTED),
    (S.ABORTED, E.FIN): ("reset_stray", S.ABORTED),
}
OPEN = frozenset({S.SYN_SENT, S.ESTABLISHED, S.REQUESTED})  # the attempt still runs
REFUSED = False  # an action's answer when its event does not apply after all

RTO_MIN = 0.2  # Linux's minimum retransmission timeout
PROBE_MAX = 120.0  # Linux's longest interval between zero-window probes (TCP_RTO_MAX)
FIN_RETRIES = 3  # our FIN is sent again this often at most, then the connection is forgotten
WINDOW = 65535  # how far past rcv_nxt an RST may start and still be for this connection


class Engine:
    """Opens attempts on free slots, runs each through TRANSITIONS, emits each as it ends."""

    def __init__(
        self,
        wire: Wire,
        settings: Settings,
        emit: Callable[[Conn], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.counters = Counters()
        self.out = Outbox(wire, self.counters)
        self.profile = settings.profile
        self.emit = emit
        self.clock = clock
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
        self._actions = {
            key: (getattr(self, action), after) for key, (action, after) in TRANSITIONS.items()
        }

    # --- what the loop calls

    def open(self) -> Conn | None:
        """Start an attempt on the slot free the longest: its SYN goes out. None: none is free."""
        if not self.free:
            return None
        self.now = now = self.clock()
        slot = self.free.popleft()
        s = self.settings
        src, port = slot % self.sources, s.low + slot // self.sources
        iss = self._isn(s.sources[src], port)
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
        self._send_syn(conn)
        return conn

    def receive(self, item: Segment | IcmpError) -> None:
        """A packet from the server (or an ICMP error about ours) for one of our slots."""
        self.now = self.clock()
        c = self.counters
        slot = (item.port - self.settings.low) * self.sources + item.src
        if type(item) is IcmpError:
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
        for conn in self.conns:
            if conn is None or conn.state not in OPEN:
                continue
            if conn.state is not State.SYN_SENT:
                self.out.send(conn, Kind.RST_ACK, conn.snd_nxt, conn.rcv_nxt)
            conn.state = State.ABORTED
            conn.deadline = conn.retry = 0
            self.in_flight -= 1
            self.counters.connections_abandoned += 1

    # --- the machinery

    def _fire(self, conn: Conn, event: Event, item: Segment | IcmpError | None) -> None:
        while True:
            entry = self._actions.get((conn.state, event))
            if entry is None:
                if item is not None:  # a timer without an entry is a stale one
                    self.counters.late_packets_seen += 1
                return
            action, after = entry
            follow = action(conn, item)
            if follow is REFUSED:
                return
            conn.state = after
            if follow is None:
                return
            event, item = follow, None

    def _send_syn(self, conn: Conn) -> None:
        self.counters.syns_sent += 1
        error = self.out.send(conn, Kind.SYN, conn.iss, 0)
        if error is not None and error.errno in ICMP_ERRNOS:  # no route: as connect() fails
            self._end(conn, Outcome.ICMP, self.now, f"send failed: {error.strerror}")
            conn.state = State.ABORTED

    def _end(self, conn: Conn, outcome: Outcome, t: float, note: str = "") -> None:
        """The attempt is over: its outcome is final, whatever comes later."""
        conn.outcome, conn.t_end = outcome, t
        if note:
            conn.notes.append(note)
        conn.deadline = conn.retry = 0
        self.in_flight -= 1
        self.counters.connections_ended += 1
        self.free.append(conn.slot)
        self.emit(conn)

    def _seen_again(self, conn: Conn) -> None:
        self.counters.retransmissions_seen += 1
        if conn.state in OPEN:
            conn.retransmissions_seen += 1

    def _new_data(self, conn: Conn, seg: Segment, fin: int) -> bool:
        """Take the segment's new bytes; False (and acknowledged again) if it brings none."""
        end = seq_add(seg.seq, seg.length + fin)
        if seq_delta(end, conn.rcv_nxt) <= 0:
            self._seen_again(conn)  # nothing new: a retransmission
            self.out.ack(conn)
            return False
        if seq_delta(seg.seq, conn.rcv_nxt) > 0:
            self.counters.out_of_order_seen += 1  # a gap: we keep in-order data only
            self.out.ack(conn)
            return False
        skip = seq_delta(conn.rcv_nxt, seg.seq)
        if skip:
            self._seen_again(conn)  # partly old: only its new bytes count
        conn.take_data(seg, skip)
        return True

    # --- the actions of TRANSITIONS: (conn, segment or ICMP error or None for a timer)

    def establish(self, conn: Conn, seg: Segment) -> Event | bool | None:
        if seg.ack != conn.snd_nxt:
            return self.reject_ack(conn, seg)  # a SYN-ACK for an older attempt on this port
        conn.rcv_nxt, conn.snd_una = seq_add(seg.seq, 1), seg.ack
        conn.snd_wnd = seg.window
        conn.t_established = seg.t
        conn.deadline = conn.retry = 0  # the handshake's timers
        if conn.syns_sent == 1:  # Linux: RTO = srtt + 4 * rttvar = 3 * the first RTT
            conn.rto = max(RTO_MIN, 3 * (seg.t - conn.t_syn))
        else:
            conn.rto = max(RTO_MIN, conn.rto)
        self.counters.connections_established += 1
        delay = self.settings.request_delay
        if not delay:
            return Event.REQUEST_DUE  # the request completes the handshake
        self.out.ack(conn)
        conn.retry = self.timers.add(self.now, delay, conn.slot, Event.REQUEST_DUE)
        return None

    def reject_ack(self, conn: Conn, seg: Segment) -> bool:
        """In SYN-SENT, a segment acknowledging something else: RST it (RFC 793)."""
        if seg.flags & ACK and seg.ack != conn.snd_nxt:
            self.counters.bad_acks_seen += 1
            self.out.answer_without_socket(seg)
        return REFUSED

    def refused(self, conn: Conn, seg: Segment) -> bool | None:
        if not seg.flags & ACK or seg.ack != conn.snd_nxt:
            return REFUSED  # not about our SYN
        self._end(conn, Outcome.REFUSED, seg.t)
        return None

    def unreachable(self, conn: Conn, error: IcmpError) -> None:
        self._end(conn, Outcome.ICMP, error.t, f"{error.what} from {error.sender}")
        if conn.state is not State.SYN_SENT:
            self.out.send(
                conn, Kind.RST_ACK, conn.snd_nxt, conn.rcv_nxt
            )  # leave the server nothing

    def note_odd(self, conn: Conn, seg: Segment) -> bool:
        conn.notes.append(f"odd segment from the server: {seg.odd}")
        return REFUSED

    def resend_syn(self, conn: Conn, _: None) -> bool | None:
        conn.syns_sent += 1
        self.counters.syn_retransmits_sent += 1
        self._send_syn(conn)
        if conn.state is not State.SYN_SENT:
            return REFUSED  # the send failed for good
        conn.rto *= 2
        remaining = conn.t_syn + self.settings.timeout - self.now
        if conn.rto < remaining:
            conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.SYN_RTO)
        else:
            conn.deadline = self.timers.add(self.now, remaining, conn.slot, Event.TIMEOUT)
        return None

    def give_up(self, conn: Conn, _: None) -> None:
        if conn.state is State.SYN_SENT:
            self._end(conn, Outcome.SYN_TIMEOUT, self.now)
            return
        self._end(conn, Outcome.SILENT, self.now)
        kind = self.profile.give_up
        self.out.send(conn, kind, conn.snd_nxt, conn.rcv_nxt)
        if kind is Kind.FIN:
            conn.snd_nxt = seq_add(conn.snd_nxt, 1)

    def send_request(self, conn: Conn, _: None) -> None:
        """The request is written (its timeout starts); it goes out if the window allows."""
        conn.t_request = self.now
        conn.deadline = self.timers.add(self.now, self.settings.timeout, conn.slot, Event.TIMEOUT)
        if conn.snd_wnd == 0:
            # A zero window (a tarpit's): keep the request as a kernel's send buffer would, and
            # probe the window on the persist timer (RFC 1122 4.2.2.17); volume only waits.
            conn.held = True
            self.counters.requests_held += 1
            if not self.settings.request_delay:
                self.out.ack(conn)  # the request would have completed the handshake
            if self.profile.retransmits:
                conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.PROBE)
            return
        self._transmit_request(conn)

    def _transmit_request(self, conn: Conn) -> None:
        conn.held = False
        self.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
        conn.snd_nxt = seq_add(conn.iss, 1 + self.settings.request_len)
        self.counters.requests_sent += 1
        if self.profile.retransmits:
            conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.RTO)
        else:
            conn.retry = 0

    def probe_window(self, conn: Conn, _: None) -> None:
        """Linux's zero-window probe (an empty ACK one byte back); the interval doubles."""
        self.out.send(conn, Kind.ACK, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
        self.counters.window_probes_sent += 1
        conn.rto = min(2 * conn.rto, PROBE_MAX)
        conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.PROBE)

    def resend_request(self, conn: Conn, _: None) -> None:
        """Our request again (the whole of it), with exponential backoff."""
        conn.request_resent = self.now
        self.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
        self.counters.data_retransmits_sent += 1
        conn.rto *= 2
        conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.RTO)

    def request_again(self, conn: Conn, seg: Segment) -> None:
        """The SYN-ACK again: our request, which also acknowledged it, did not arrive."""
        self._seen_again(conn)
        if conn.held:  # the request waits for the window: only our ACK was lost
            self.out.ack(conn)
            return
        conn.request_resent = self.now
        self.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
        self.counters.data_retransmits_sent += 1

    def ack_again(self, conn: Conn, seg: Segment) -> None:
        """Nothing new (a FIN among them is a duplicate FIN): acknowledge it again."""
        self._seen_again(conn)
        if seg.flags & FIN:
            self.counters.duplicate_fins_seen += 1
        self.out.ack(conn)

    def acknowledged(self, conn: Conn, seg: Segment) -> None:
        conn.take_ack(seg)
        conn.snd_wnd = seg.window
        if conn.held and seg.window:  # the window opened: the request may go now
            self._transmit_request(conn)

    def take_data(self, conn: Conn, seg: Segment) -> None:
        conn.take_ack(seg)
        if self._new_data(conn, seg, 0):
            self.out.ack(conn)

    def closed_by_server(self, conn: Conn, seg: Segment) -> bool | None:
        conn.take_ack(seg)
        if not self._new_data(conn, seg, 1):
            return REFUSED
        conn.rcv_nxt = seq_add(conn.rcv_nxt, 1)
        self._end(conn, Outcome.FIN, seg.t)
        # Like close() after reading EOF: our FIN, acknowledging theirs.
        self.out.send(conn, Kind.FIN, conn.snd_nxt, conn.rcv_nxt)
        conn.snd_nxt = seq_add(conn.snd_nxt, 1)
        if self.profile.retransmits:
            conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.RTO)
        return None

    def fin_acknowledged(self, conn: Conn, seg: Segment) -> bool | None:
        conn.take_ack(seg)
        return None if conn.snd_una == conn.snd_nxt else REFUSED

    def fin_again(self, conn: Conn, seg: Segment) -> None:
        """Their FIN again: they never had our answer to it. Send our FIN again."""
        self._seen_again(conn)
        self.counters.duplicate_fins_seen += 1
        self.out.send(conn, Kind.FIN, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
        self.counters.fin_retransmits_sent += 1

    def resend_fin(self, conn: Conn, _: None) -> bool | None:
        if conn.fin_retries >= FIN_RETRIES:
            conn.retry = 0
            return REFUSED  # forget it, like a kernel giving up on LAST-ACK
        conn.fin_retries += 1
        self.out.send(conn, Kind.FIN, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
        self.counters.fin_retransmits_sent += 1
        conn.rto *= 2
        conn.retry = self.timers.add(self.now, conn.rto, conn.slot, Event.RTO)
        return None

    def reset(self, conn: Conn, seg: Segment) -> bool | None:
        if not 0 <= seq_delta(seg.seq, conn.rcv_nxt) < WINDOW:
            return REFUSED  # outside our window: not for this connection
        if conn.request_resent is not None and conn.snd_una != conn.snd_nxt:
            # It answers our resent request, never acknowledged: the server had dropped the
            # socket without a word, and we learn only now (closebench/wire/pcap.py's one rule).
            since = seg.t - (conn.t_request or conn.t_syn)
            conn.notes.append(f"RST to the client's retransmission at +{since:.1f} s")
            self._end(conn, Outcome.SILENT, seg.t)
            return None
        self._end(conn, Outcome.RST, seg.t)
        return None

    def late_reset(self, conn: Conn, seg: Segment) -> bool | None:
        """An RST after the end changes nothing: the server's answer to what we sent since."""
        self.counters.late_packets_seen += 1
        if not 0 <= seq_delta(seg.seq, conn.rcv_nxt) < WINDOW:
            return REFUSED
        conn.retry = 0
        return None

    def reset_stray(self, conn: Conn, seg: Segment) -> None:
        """A segment for an aborted connection: answered as the kernel would, with RST."""
        self.counters.late_packets_seen += 1
        self.out.answer_without_socket(seg)

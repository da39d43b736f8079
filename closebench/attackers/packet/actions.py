"""What the packet engine does on each transition of its table (engine.TRANSITIONS).

Each action is called as action(engine, conn, item), item being the segment or ICMP error that
came in, or None for a timer or an event of our own. It sends, arms timers and takes data; it
never writes the connection's state or outcome: the table's entry does, once the action returns
None. IGNORE says the event turned out not to concern the connection (the entry does not apply);
an Event is handed on (the entry applies, then that event fires at once, with the same item).
"""

from __future__ import annotations

from typing import Protocol

from closebench.attackers.packet.connection import (
    FIN_RETRIES,
    PROBE_MAX,
    RTO_MIN,
    WINDOW,
    Conn,
    Counters,
    Outbox,
    Profile,
    Settings,
)
from closebench.attackers.packet.segments import (
    ACK,
    FIN,
    IcmpError,
    Kind,
    Segment,
    seq_add,
    seq_delta,
)
from closebench.attackers.packet.states import IGNORE, OPEN, Event, Ignore
from closebench.attackers.packet.timers import Timers
from closebench.core.outcomes import ICMP_ERRNOS


class Machine(Protocol):
    """What the actions use of the engine that runs them (engine.Engine)."""

    settings: Settings
    profile: Profile
    counters: Counters
    out: Outbox
    timers: Timers
    now: float
    in_flight: int


# --- the handshake


def send_syn(engine: Machine, conn: Conn, _: None) -> Event | None:
    """Our SYN goes out; a send refused for want of a route is handed on as SEND_FAILED."""
    engine.counters.syns_sent += 1
    error = engine.out.send(conn, Kind.SYN, conn.iss, 0)
    if error is not None and error.errno in ICMP_ERRNOS:  # no route: as connect() fails
        note_send_failed(conn, error)
        return Event.SEND_FAILED
    return None  # sent, or lost on the way (ENOBUFS...): the SYN timer will tell


def note_send_failed(conn: Conn, error: OSError) -> None:
    """Our SYN could not be sent: noted in the attempt's detail (Engine.send_lost too)."""
    conn.notes.append(f"send failed: {error.strerror}")


def resend_syn(engine: Machine, conn: Conn, _: None) -> Event | None:
    """The SYN again, as Linux: its timer doubles while it fits before our timeout."""
    conn.syns_sent += 1
    engine.counters.syn_retransmits_sent += 1
    failed = send_syn(engine, conn, None)
    if failed is not None:
        return failed
    conn.rto *= 2
    remaining = conn.t_syn + engine.settings.timeout - engine.now
    if conn.rto < remaining:
        conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.SYN_RTO)
    else:
        conn.deadline = engine.timers.add(engine.now, remaining, conn.slot, Event.TIMEOUT)
    return None


def establish(engine: Machine, conn: Conn, seg: Segment) -> Event | Ignore | None:
    """The SYN-ACK to our SYN (any other is reset and ignored): the request is due, at once
    (handed on) or after request_delay (a timer; our ACK completes the handshake meanwhile)."""
    if seg.ack != conn.snd_nxt:
        reject_ack(engine, conn, seg)  # a SYN-ACK for an older attempt on this port
        return IGNORE
    conn.rcv_nxt, conn.snd_una = seq_add(seg.seq, 1), seg.ack
    conn.snd_wnd = seg.window
    conn.t_established = seg.t
    conn.deadline = conn.retry = 0  # the handshake's timers
    if conn.syns_sent == 1:  # Linux: RTO = srtt + 4 * rttvar = 3 * the first RTT
        conn.rto = max(RTO_MIN, 3 * (seg.t - conn.t_syn))
    else:
        conn.rto = max(RTO_MIN, conn.rto)
    engine.counters.connections_established += 1
    delay = engine.settings.request_delay
    if not delay:
        return Event.REQUEST_DUE  # the request completes the handshake
    engine.out.ack(conn)
    conn.retry = engine.timers.add(engine.now, delay, conn.slot, Event.REQUEST_DUE)
    return None


def reject_ack(engine: Machine, conn: Conn, seg: Segment) -> None:
    """In SYN-SENT, a segment acknowledging something else: RST it (RFC 793)."""
    if seg.flags & ACK and seg.ack != conn.snd_nxt:
        engine.counters.bad_acks_seen += 1
        engine.out.answer_without_socket(seg)


def check_refusal(engine: Machine, conn: Conn, seg: Segment) -> Ignore | None:
    """An RST refuses our SYN only if it acknowledges it; any other is not about this attempt."""
    if seg.flags & ACK and seg.ack == conn.snd_nxt:
        return None
    return IGNORE


# --- the request


def send_request(engine: Machine, conn: Conn, _: object) -> None:
    """The request is written (its timeout starts); it goes out if the window allows."""
    conn.t_request = engine.now
    conn.deadline = engine.timers.add(engine.now, engine.settings.timeout, conn.slot, Event.TIMEOUT)
    if conn.snd_wnd == 0:
        # A zero window (a tarpit's): keep the request as a kernel's send buffer would, and
        # probe the window on the persist timer (RFC 1122 4.2.2.17); volume only waits.
        conn.held = True
        engine.counters.requests_held += 1
        if not engine.settings.request_delay:
            engine.out.ack(conn)  # the request would have completed the handshake
        if engine.profile.retransmits:
            conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.PROBE)
        return
    _transmit_request(engine, conn)


def _transmit_request(engine: Machine, conn: Conn) -> None:
    conn.held = False
    engine.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
    conn.snd_nxt = seq_add(conn.iss, 1 + engine.settings.request_len)
    engine.counters.requests_sent += 1
    if engine.profile.retransmits:
        conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.RTO)
    else:
        conn.retry = 0


def probe_window(engine: Machine, conn: Conn, _: None) -> None:
    """Linux's zero-window probe (an empty ACK one byte back); the interval doubles."""
    engine.out.send(conn, Kind.ACK, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
    engine.counters.window_probes_sent += 1
    conn.rto = min(2 * conn.rto, PROBE_MAX)
    conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.PROBE)


def resend_request(engine: Machine, conn: Conn, _: None) -> None:
    """Our request again (the whole of it), with exponential backoff."""
    conn.request_resent = engine.now
    engine.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
    engine.counters.data_retransmits_sent += 1
    conn.rto *= 2
    conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.RTO)


def request_again(engine: Machine, conn: Conn, seg: Segment) -> None:
    """The SYN-ACK again: our request, which also acknowledged it, did not arrive."""
    _seen_again(engine, conn)
    if conn.held:  # the request waits for the window: only our ACK was lost
        engine.out.ack(conn)
        return
    conn.request_resent = engine.now
    engine.out.send(conn, Kind.REQUEST, seq_add(conn.iss, 1), conn.rcv_nxt)
    engine.counters.data_retransmits_sent += 1


def give_up(engine: Machine, conn: Conn, _: None) -> None:
    """Our timeout: the profile's RST (an aborting client) or FIN (close())."""
    kind = engine.profile.give_up
    engine.out.send(conn, kind, conn.snd_nxt, conn.rcv_nxt)
    if kind is Kind.FIN:
        conn.snd_nxt = seq_add(conn.snd_nxt, 1)


# --- what the server sends


def acknowledged(engine: Machine, conn: Conn, seg: Segment) -> None:
    """An ACK: what it acknowledges, the window it opens (a held request then goes)."""
    conn.take_ack(seg)
    conn.snd_wnd = seg.window
    if conn.held and seg.window:  # the window opened: the request may go now
        _transmit_request(engine, conn)


def take_data(engine: Machine, conn: Conn, seg: Segment) -> None:
    """The response's bytes, in order; acknowledged."""
    conn.take_ack(seg)
    if _new_data(engine, conn, seg, 0):
        engine.out.ack(conn)


def ack_again(engine: Machine, conn: Conn, seg: Segment) -> None:
    """Nothing new (a FIN among them is a duplicate FIN): acknowledge it again."""
    _seen_again(engine, conn)
    if seg.flags & FIN:
        engine.counters.duplicate_fins_seen += 1
    engine.out.ack(conn)


def note_odd(engine: Machine, conn: Conn, seg: Segment) -> None:
    """Noted in the attempt's detail, not obeyed."""
    conn.notes.append(f"odd segment from the server: {seg.odd}")


def unreachable(engine: Machine, conn: Conn, error: IcmpError) -> None:
    """The ICMP error is noted in the attempt's detail: what it was, who sent it."""
    conn.notes.append(f"{error.what} from {error.sender}")


def unreachable_reset(engine: Machine, conn: Conn, error: IcmpError) -> None:
    """The ICMP error noted, and an RST: after the handshake, the server may hold a socket."""
    unreachable(engine, conn, error)
    engine.out.send(conn, Kind.RST_ACK, conn.snd_nxt, conn.rcv_nxt)


def judge_reset(engine: Machine, conn: Conn, seg: Segment) -> Event | Ignore:
    """An RST outside our window is not for this connection; one in it is handed on as what it
    means: a reset, or the RST of a socket the server had dropped without a word."""
    if not 0 <= seq_delta(seg.seq, conn.rcv_nxt) < WINDOW:
        return IGNORE
    if conn.request_resent is not None and conn.snd_una != conn.snd_nxt:
        # It answers our resent request, never acknowledged: the server had dropped the socket
        # silently, and we learn only now (closebench/wire/pcap.py's one rule).
        return Event.RESET_RESENT
    return Event.RESET


def note_dropped_socket(engine: Machine, conn: Conn, seg: Segment) -> None:
    """Noted in the detail: the server dropped the socket silently; we learn it only now."""
    since = seg.t - (conn.t_request or conn.t_syn)
    conn.notes.append(f"RST to the client's retransmission at +{since:.1f} s")


def take_fin(engine: Machine, conn: Conn, seg: Segment) -> Event | Ignore:
    """The server's FIN ends the attempt if it follows all we have; then we close."""
    conn.take_ack(seg)
    if not _new_data(engine, conn, seg, 1):
        return IGNORE  # a FIN we had, or one beyond a gap
    conn.rcv_nxt = seq_add(conn.rcv_nxt, 1)
    return Event.CLOSE


# --- our close, and after the end


def send_fin(engine: Machine, conn: Conn, _: object) -> None:
    """Like close() after reading EOF: our FIN, acknowledging theirs."""
    engine.out.send(conn, Kind.FIN, conn.snd_nxt, conn.rcv_nxt)
    conn.snd_nxt = seq_add(conn.snd_nxt, 1)
    if engine.profile.retransmits:
        conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.RTO)


def fin_acknowledged(engine: Machine, conn: Conn, seg: Segment) -> Ignore | None:
    """Closed once our FIN is acknowledged; an ACK short of it is ignored."""
    conn.take_ack(seg)
    return None if conn.snd_una == conn.snd_nxt else IGNORE  # not (yet) our FIN


def fin_again(engine: Machine, conn: Conn, seg: Segment) -> None:
    """Their FIN again: they never had our answer to it. Send our FIN again."""
    _seen_again(engine, conn)
    engine.counters.duplicate_fins_seen += 1
    engine.out.send(conn, Kind.FIN, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
    engine.counters.fin_retransmits_sent += 1


def resend_fin(engine: Machine, conn: Conn, _: None) -> None:
    """Our FIN again, with backoff, FIN_RETRIES times; then it is forgotten."""
    if conn.fin_retries >= FIN_RETRIES:
        conn.retry = 0  # forget it, like a kernel giving up on LAST-ACK
        return
    conn.fin_retries += 1
    engine.out.send(conn, Kind.FIN, seq_add(conn.snd_nxt, -1), conn.rcv_nxt)
    engine.counters.fin_retransmits_sent += 1
    conn.rto *= 2
    conn.retry = engine.timers.add(engine.now, conn.rto, conn.slot, Event.RTO)


def late(engine: Machine, conn: Conn, _: object) -> None:
    """The attempt is over: what comes now changes nothing."""
    engine.counters.late_packets_seen += 1


def late_reset(engine: Machine, conn: Conn, seg: Segment) -> Ignore | None:
    """An RST after the end changes nothing: the server's answer to what we sent since."""
    engine.counters.late_packets_seen += 1
    if not 0 <= seq_delta(seg.seq, conn.rcv_nxt) < WINDOW:
        return IGNORE
    conn.retry = 0
    return None


def reset_stray(engine: Machine, conn: Conn, seg: Segment) -> None:
    """A segment for an aborted connection: answered as the kernel would, with RST."""
    engine.counters.late_packets_seen += 1
    engine.out.answer_without_socket(seg)


def end(engine: Machine, conn: Conn, _: object) -> None:
    """Nothing to do but what the entry says: its next state and its outcome."""


def stop(engine: Machine, conn: Conn, _: None) -> None:
    """The attack is stopped: the attempt is dropped, its timers with it, and not reported."""
    conn.deadline = conn.retry = 0
    engine.in_flight -= 1
    engine.counters.connections_abandoned += 1


def stop_reset(engine: Machine, conn: Conn, _: None) -> None:
    """Stopped after the handshake: reset it, so that the server keeps nothing of ours."""
    engine.out.send(conn, Kind.RST_ACK, conn.snd_nxt, conn.rcv_nxt)
    stop(engine, conn, None)


# --- helpers of the actions above


def _seen_again(engine: Machine, conn: Conn) -> None:
    engine.counters.retransmissions_seen += 1
    if conn.state in OPEN:
        conn.retransmissions_seen += 1


def _new_data(engine: Machine, conn: Conn, seg: Segment, fin: int) -> bool:
    """Take the segment's new bytes; False (and acknowledged again) if it brings none."""
    end = seq_add(seg.seq, seg.length + fin)
    if seq_delta(end, conn.rcv_nxt) <= 0:
        _seen_again(engine, conn)  # nothing new: a retransmission
        engine.out.ack(conn)
        return False
    if seq_delta(seg.seq, conn.rcv_nxt) > 0:
        engine.counters.out_of_order_seen += 1  # a gap: we keep in-order data only
        engine.out.ack(conn)
        return False
    skip = seq_delta(conn.rcv_nxt, seg.seq)
    if skip:
        _seen_again(engine, conn)  # partly old: only its new bytes count
    conn.take_data(seg, skip)
    return True

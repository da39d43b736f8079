"""The packet engine's transitions, segment by segment, with no socket and no lab (playbook.py)."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

from closebench.attackers.packet.connection import FIN_RETRIES, Profile
from closebench.attackers.packet.engine import OPEN, TRANSITIONS, Event, MissingTransition, State
from closebench.attackers.packet.segments import ACK, FIN, PSH, RST, SYN, Kind, seq_add
from closebench.core.outcomes import Outcome
from tests.playbook import HIGH, LOW, REQUEST, START, Playbook

SERVER_ISN = 5000
PACKET = Path(__file__).resolve().parent.parent / "closebench/attackers/packet"
VOLUME = Profile(give_up=Kind.FIN, retransmits=False)


def established(play: Playbook, rtt: float = 0.001):
    """Open an attempt and complete its handshake; the request is out."""
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss, ack=0)
    play.t += rtt
    play.server(SYN | ACK, seq=SERVER_ISN)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    return conn


SEGMENT_EVENTS = (Event.SYN_ACK, Event.ACK, Event.DATA, Event.FIN, Event.RST, Event.ODD, Event.ICMP)


def test_the_table_is_whole_for_what_the_network_can_send_and_reaches_every_state():
    for (state, event), (action, after, outcome) in TRANSITIONS.items():
        assert callable(action), (state, event)
        assert isinstance(state, State) and isinstance(event, Event) and isinstance(after, State)
        assert outcome is None or isinstance(outcome, Outcome)
    reached = {State.SYN_SENT} | {entry.next_state for entry in TRANSITIONS.values()}
    assert reached == set(State)
    # A segment or ICMP error may come in any state: every state says what it does, none is
    # left to a missing entry.
    for state in State:
        missing = [event.name for event in SEGMENT_EVENTS if (state, event) not in TRANSITIONS]
        assert not missing, (state.name, missing)
    for state in OPEN:
        assert (state, Event.STOP) in TRANSITIONS, state


def test_an_attempt_ends_with_one_outcome_and_only_where_the_table_says():
    # Leaving the open states means an outcome, save for the stop; no entry after the end
    # gives a second one.
    for (state, event), entry in TRANSITIONS.items():
        leaves = state in OPEN and entry.next_state not in OPEN
        if leaves and event is not Event.STOP:
            assert entry.outcome is not None, (state.name, event.name)
        if not leaves:
            assert entry.outcome is None, (state.name, event.name)
    assert TRANSITIONS[State.SYN_SENT, Event.STOP].outcome is None


@pytest.mark.parametrize("strict", [True, False])
def test_a_hole_in_the_table_raises_in_strict_mode_and_is_not_counted_as_late(strict, monkeypatch):
    monkeypatch.delitem(TRANSITIONS, (State.REQUESTED, Event.ACK))
    play = Playbook(strict=strict)
    conn = established(play)
    if strict:
        with pytest.raises(MissingTransition, match="no transition for REQUESTED on ACK"):
            play.server(ACK, seq=SERVER_ISN + 1)
        return
    play.server(ACK, seq=SERVER_ISN + 1)
    assert play.counters.unhandled_events == 1 and play.counters.late_packets_seen == 0
    assert conn.state is State.REQUESTED and conn.snd_una != conn.snd_nxt  # nothing ran


def test_state_and_outcome_are_written_only_by_the_tables_dispatch():
    written = {}
    for path in sorted(PACKET.glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Attribute) and name.attr in ("state", "outcome"):
                            written.setdefault(f"{path.name}:{function.name}", set()).add(name.attr)
    assert written == {"engine.py:_fire": {"state"}, "engine.py:_end": {"outcome"}}


def test_graceful_close_is_fin_answered_with_our_fin():
    play = Playbook()
    conn = established(play, rtt=0.002)
    play.server(FIN | ACK, seq=SERVER_ISN + 1)
    play.sent(Kind.FIN, seq=seq_add(conn.iss, 1 + len(REQUEST)), ack=SERVER_ISN + 2)
    assert conn.state is State.LAST_ACK
    play.server(ACK, seq=SERVER_ISN + 2)
    assert conn.state is State.CLOSED and not play.engine.settling()
    play.quiet()
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.FIN and attempt.sport == conn.port
    assert attempt.t_syn == pytest.approx(START)
    assert attempt.t_established == pytest.approx(START + 0.002)
    assert attempt.hang_s == pytest.approx(0.0) and not attempt.data_first
    assert attempt.detail == ""
    assert play.engine.in_flight == 0


def test_request_delay_acknowledges_first_then_sends_the_request():
    play = Playbook(request_delay=0.3)
    conn = play.connect()
    play.sent(Kind.SYN)
    play.server(SYN | ACK, seq=SERVER_ISN)
    play.sent(Kind.ACK, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    assert conn.state is State.ESTABLISHED
    play.later(0.25)
    play.quiet()
    play.later(0.1)  # (times off the exact due ones: the clock is a float)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    assert conn.state is State.REQUESTED and conn.t_request == pytest.approx(START + 0.35)


def test_served_response_then_fin_has_its_status_and_data_first():
    play = Playbook()
    established(play)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    play.server(PSH | ACK, seq=SERVER_ISN + 1, payload=response)
    play.sent(Kind.ACK, ack=SERVER_ISN + 1 + len(response))
    play.server(FIN | ACK, seq=SERVER_ISN + 1 + len(response))
    play.sent(Kind.FIN, ack=SERVER_ISN + 2 + len(response))
    [attempt] = play.attempts()
    assert (attempt.outcome, attempt.http_status) == (Outcome.FIN, 200)
    assert attempt.data_first and attempt.bytes_received == len(response)


def test_refused_only_by_an_rst_that_acknowledges_our_syn():
    play = Playbook()
    conn = play.connect()
    play.server(RST | ACK, seq=0, ack=conn.iss)  # acknowledges something else: not for us
    assert conn.state is State.SYN_SENT
    play.server(RST | ACK, seq=0, ack=seq_add(conn.iss, 1))
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.REFUSED and attempt.t_established is None


def test_unanswered_syn_is_sent_again_then_times_out():
    play = Playbook(timeout=4.0)
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss)
    play.later(1.01)
    play.sent(Kind.SYN, seq=conn.iss)  # after 1 s, then 2 s later, as Linux
    play.later(1.9)
    play.quiet()
    play.later(0.1)
    play.sent(Kind.SYN, seq=conn.iss)
    play.later(0.98)  # the next would be 4 s later, after the timeout: none
    play.quiet()
    assert play.attempts() == []
    play.later(0.02)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SYN_TIMEOUT
    assert attempt.t_end == pytest.approx(START + 4.01)
    assert attempt.detail == "SYN sent 3 times"
    assert play.counters.syn_retransmits_sent == 2


@pytest.mark.parametrize(
    ("profile", "gives_up_with"), [(Profile(), Kind.RST_ACK), (VOLUME, Kind.FIN)]
)
def test_silence_ends_at_our_timeout_and_what_follows_changes_nothing(profile, gives_up_with):
    play = Playbook(timeout=2.0, profile=profile)
    conn = established(play)
    play.server(ACK, seq=SERVER_ISN + 1)  # the server read the request, then went silent
    play.later(1.95)
    play.quiet()
    play.later(0.1)
    play.sent(gives_up_with, seq=seq_add(conn.iss, 1 + len(REQUEST)), ack=SERVER_ISN + 1)
    assert conn.state is State.GAVE_UP
    # The defender's kernel answers what we sent after our timeout with RST (a silently closed
    # socket): still silent, as capture.py classifies the same exchange.
    play.server(RST, seq=SERVER_ISN + 1)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SILENT and attempt.hang_s == pytest.approx(2.05, abs=1e-5)
    assert play.counters.late_packets_seen == 1 and conn.state is State.ABORTED


def test_rst_after_the_request_is_rst_unless_outside_the_window():
    play = Playbook()
    conn = established(play)
    play.server(RST, seq=SERVER_ISN + 1 + 70000)  # not in our window: someone else's
    assert conn.state is State.REQUESTED
    play.server(RST, seq=SERVER_ISN + 1)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.RST
    play.quiet()  # nothing to answer an RST with


def test_tarpit_drip_is_silent_with_data_first():
    play = Playbook(timeout=3.0)
    established(play)
    play.server(ACK, seq=SERVER_ISN + 1)  # the request arrived
    for n in range(2):
        play.later(1.0)
        play.server(PSH | ACK, seq=SERVER_ISN + 1 + n, payload=b"x")
        play.sent(Kind.ACK, ack=SERVER_ISN + 2 + n)
    play.later(1.1)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SILENT and attempt.data_first
    assert attempt.bytes_received == 2 and attempt.http_status is None
    assert attempt.t_first_byte == pytest.approx(START + 0.001 + 1.0)


def test_retransmitted_data_is_counted_once_and_acknowledged_again():
    play = Playbook()
    conn = established(play)
    data = b"HTTP/1.1 200 OK\r\n"
    for _ in range(2):
        play.server(PSH | ACK, seq=SERVER_ISN + 1, payload=data)
        play.sent(Kind.ACK, ack=SERVER_ISN + 1 + len(data))
    assert conn.bytes_received == len(data) and conn.state is State.REQUESTED
    assert play.counters.retransmissions_seen == 1
    # Partly old: only its new bytes count.
    play.server(PSH | ACK, seq=SERVER_ISN + 1, payload=data + b"more")
    assert conn.bytes_received == len(data) + 4
    play.server(FIN | ACK, seq=SERVER_ISN + 1 + len(data) + 4)
    [attempt] = play.attempts()
    assert attempt.detail == "segments retransmitted by the server: 2"


def test_out_of_order_data_is_not_taken_and_acknowledged_at_the_gap():
    play = Playbook()
    conn = established(play)
    play.server(PSH | ACK, seq=SERVER_ISN + 10, payload=b"later")
    play.sent(Kind.ACK, ack=SERVER_ISN + 1)
    assert conn.bytes_received == 0 and play.counters.out_of_order_seen == 1
    play.server(FIN | ACK, seq=SERVER_ISN + 10)  # a FIN beyond a gap does not end it either
    play.sent(Kind.ACK, ack=SERVER_ISN + 1)
    assert conn.state is State.REQUESTED


def test_duplicate_fin_is_not_a_new_end():
    play = Playbook()
    conn = established(play)
    play.server(FIN | ACK, seq=SERVER_ISN + 1, ack=seq_add(conn.iss, 1 + len(REQUEST)))
    our_fin = play.sent(Kind.FIN, ack=SERVER_ISN + 2)
    first_end = conn.t_end
    play.later(0.01)
    play.server(FIN | ACK, seq=SERVER_ISN + 1)  # they never had our FIN: it goes again
    play.sent(Kind.FIN, seq=our_fin.seq, ack=SERVER_ISN + 2)
    assert play.counters.duplicate_fins_seen == 1 and conn.t_end == first_end
    play.server(ACK, seq=SERVER_ISN + 2)
    assert conn.state is State.CLOSED
    play.server(FIN | ACK, seq=SERVER_ISN + 1)  # crossed with our FIN: acknowledged, nothing more
    play.sent(Kind.ACK, ack=SERVER_ISN + 2)
    assert play.counters.duplicate_fins_seen == 2 and len(play.attempts()) == 1


def test_retransmitted_syn_ack_gets_the_request_again_not_a_new_attempt():
    play = Playbook()
    conn = established(play)
    t_established = conn.t_established
    play.server(SYN | ACK, seq=SERVER_ISN)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    assert conn.t_established == t_established and conn.state is State.REQUESTED
    assert play.counters.retransmissions_seen == 1


def test_an_rst_to_our_resent_request_leaves_it_silent():
    # The server dropped the socket before acknowledging the request, without a word: only our
    # retransmission draws the RST of a socket that is gone (closebench/wire/pcap.py's one rule).
    play = Playbook(timeout=5.0)
    conn = established(play, rtt=0.1)
    play.later(0.31)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1))
    play.server(RST, seq=SERVER_ISN + 1)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SILENT
    assert attempt.detail.startswith("RST to the client's retransmission at +0.3 s")
    assert attempt.hang_s == pytest.approx(0.31, abs=1e-3)  # it learnt at the RST


def test_unacknowledged_request_is_sent_again_with_backoff():
    play = Playbook(timeout=5.0)
    conn = established(play, rtt=0.1)  # RTO: three times the first round trip, 0.3 s
    play.later(0.29)
    play.quiet()
    play.later(0.02)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1))
    play.later(0.57)  # then twice that, from then on
    play.quiet()
    play.later(0.05)
    play.sent(Kind.REQUEST)
    play.server(ACK, seq=SERVER_ISN + 1)
    play.later(3.0)
    play.quiet()  # acknowledged: no more
    assert play.counters.data_retransmits_sent == 2


def test_the_volume_profile_never_sends_its_request_again():
    play = Playbook(timeout=3.0, profile=VOLUME)
    established(play)
    play.later(2.9)
    play.quiet()


def test_our_fin_is_sent_again_a_few_times_then_forgotten():
    play = Playbook(timeout=60.0)
    conn = established(play, rtt=0.1)
    play.server(FIN | ACK, seq=SERVER_ISN + 1)
    play.sent(Kind.FIN)
    for _ in range(FIN_RETRIES):
        assert play.engine.settling()
        play.later(60.0)
        play.sent(Kind.FIN, ack=SERVER_ISN + 2)
    play.later(60.0)
    play.quiet()
    assert conn.state is State.LAST_ACK and not play.engine.settling()


def test_icmp_error_ends_the_attempt_in_the_handshake_and_after():
    play = Playbook()
    play.connect()
    play.sent(Kind.SYN)
    play.icmp("icmp 3/13", "198.18.0.254")
    play.quiet()
    conn = established(play)
    play.icmp("icmp 3/1", "198.18.0.254")
    play.sent(Kind.RST_ACK, seq=seq_add(conn.iss, 1 + len(REQUEST)))  # the server keeps nothing
    outcomes = [(a.outcome, a.detail) for a in play.attempts()]
    assert outcomes == [
        (Outcome.ICMP, "icmp 3/13 from 198.18.0.254"),
        (Outcome.ICMP, "icmp 3/1 from 198.18.0.254"),
    ]


def test_a_syn_that_cannot_be_sent_for_want_of_a_route_is_icmp():
    play = Playbook()
    play.wire.failing, play.wire.error = {Kind.SYN}, errno.ENETUNREACH
    conn = play.connect()
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.ICMP and attempt.detail.startswith("send failed")
    assert conn.state is State.ABORTED and play.engine.in_flight == 0


def test_a_resent_syn_that_cannot_be_sent_for_want_of_a_route_ends_it_then():
    play = Playbook(timeout=4.0)
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss)
    play.wire.failing, play.wire.error = {Kind.SYN}, errno.EHOSTUNREACH
    play.later(1.01)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.ICMP and attempt.t_end == pytest.approx(START + 1.01)
    assert attempt.detail == "send failed: No route to host; SYN sent 2 times"
    assert conn.state is State.ABORTED and play.engine.in_flight == 0
    play.later(5.0)  # its timers went with it
    play.quiet()
    assert len(play.attempts()) == 1 and play.counters.syn_retransmits_sent == 1


def test_a_lost_send_is_counted_and_the_attempt_goes_on():
    play = Playbook()
    play.wire.failing = {Kind.REQUEST}  # ENOBUFS
    conn = play.connect()
    play.server(SYN | ACK, seq=SERVER_ISN)
    assert conn.state is State.REQUESTED and play.counters.send_errors == 1


def test_late_segments_of_an_aborted_connection_get_rst_as_from_a_kernel():
    play = Playbook()
    conn = established(play)
    play.server(RST, seq=SERVER_ISN + 1)
    play.server(PSH | ACK, seq=SERVER_ISN + 1, payload=b"late")
    play.sent(Kind.RST, seq=conn.snd_nxt, ack=0)
    assert play.counters.late_packets_seen == 1
    assert conn.bytes_received == 0


def test_segment_for_a_port_never_used_gets_rst():
    play = Playbook()
    play.server(SYN | ACK, seq=SERVER_ISN, ack=1234, port=HIGH)
    play.sent(Kind.RST, port=HIGH, seq=1234)
    play.server(FIN, seq=77, ack=0, port=HIGH, odd="F")  # no ACK: the RST acknowledges it
    play.sent(Kind.RST_ACK, port=HIGH, seq=0, ack=78)
    assert play.counters.unknown_packets_seen == 2


def test_syn_ack_for_an_older_attempt_on_the_port_is_reset():
    play = Playbook()
    conn = play.connect()
    play.sent(Kind.SYN)
    play.server(SYN | ACK, seq=SERVER_ISN, ack=seq_add(conn.iss, -100))
    play.sent(Kind.RST, seq=seq_add(conn.iss, -100))
    assert conn.state is State.SYN_SENT and play.counters.bad_acks_seen == 1
    play.server(SYN | ACK, seq=SERVER_ISN)  # then the right one
    assert conn.state is State.REQUESTED


def test_odd_flags_are_noted_not_obeyed():
    play = Playbook()
    conn = established(play)
    play.server(SYN | FIN | ACK, seq=SERVER_ISN + 1, odd="FSA")
    assert conn.state is State.REQUESTED and play.counters.odd_segments_seen == 1
    play.quiet()
    play.server(RST, seq=SERVER_ISN + 1)
    [attempt] = play.attempts()
    assert attempt.detail == "odd segment from the server: FSA"


def test_stopping_resets_what_is_established_and_reports_nothing_open():
    play = Playbook()
    play.connect()
    play.sent(Kind.SYN)
    opened = established(play)
    play.engine.abandon()
    play.sent(Kind.RST_ACK, port=opened.port)
    play.quiet()
    assert play.attempts() == [] and play.engine.in_flight == 0
    assert play.counters.connections_abandoned == 2


def test_slots_are_reused_oldest_first_and_sources_take_turns():
    play = Playbook(sources=2)
    first = [play.connect() for _ in range(4)]
    assert [(c.src, c.port) for c in first] == [(0, LOW), (1, LOW), (0, LOW + 1), (1, LOW + 1)]
    for conn in first:
        play.server(RST | ACK, seq=0, conn=conn)  # refused: the slots are free again
    slots = (HIGH - LOW + 1) * 2
    opened = [play.connect() for _ in range(slots - 4)]
    play.t += 0.25
    again = play.connect()  # every never-used slot went first; then the oldest freed one
    assert (opened[-1].src, opened[-1].port) == (1, HIGH)
    assert (again.src, again.port) == (0, LOW)
    assert again.iss == seq_add(first[0].iss, 250_000)  # the ISN moves on a microsecond a tick
    assert [play.connect().port for _ in range(3)] == [LOW, LOW + 1, LOW + 1]
    assert play.engine.open() is None  # every slot is in use


# A zero-window tarpit (closebench/servers/zero_window.py): a SYN-ACK advertising a window of 0, and
# an ACK of the SYN alone, still with a window of 0, to each probe. Like a kernel, the engine keeps
# its request, probes the window with backoff and waits out its own timeout.
def test_a_zero_window_holds_the_request_and_probes_until_the_timeout():
    play = Playbook(timeout=5.0)
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss)
    play.t += 0.1
    play.server(SYN | ACK, seq=SERVER_ISN, window=0)
    play.sent(Kind.ACK, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)  # no request: no window
    play.quiet()
    probes = []
    for interval in (0.3, 0.6, 1.2, 2.4):  # the RTO (3 x 0.1 s), doubling
        play.later(interval - 0.01)
        play.quiet()
        play.later(0.01)
        probes.append(play.sent(Kind.ACK, seq=conn.iss, ack=SERVER_ISN + 1))  # snd_nxt - 1
        play.server(ACK, seq=SERVER_ISN + 1, ack=seq_add(conn.iss, 1), window=0)
        play.quiet()  # the answer keeps the window shut
    assert len(probes) == 4
    play.later(0.49)  # at 4.6 s; the request was written at 0.1 s, its timeout is 5 s
    play.quiet()
    play.later(0.02)
    play.sent(Kind.RST_ACK, seq=seq_add(conn.iss, 1))  # the timeout: nothing of the request sent
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SILENT and attempt.bytes_received == 0
    assert attempt.hang_s == pytest.approx(5.0, abs=0.02)  # from the request's write
    counters = play.counters
    assert (counters.requests_held, counters.requests_sent, counters.window_probes_sent) == (
        1,
        0,
        4,
    )
    assert counters.data_retransmits_sent == 0 and counters.bad_acks_seen == 0


def test_the_held_request_goes_once_the_window_opens():
    play = Playbook(timeout=5.0)
    conn = play.connect()
    play.sent(Kind.SYN)
    play.server(SYN | ACK, seq=SERVER_ISN, window=0)
    play.sent(Kind.ACK)
    play.server(SYN | ACK, seq=SERVER_ISN, window=0)  # our ACK was lost: only it again
    play.sent(Kind.ACK, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    play.server(ACK, seq=SERVER_ISN + 1, ack=seq_add(conn.iss, 1), window=1000)
    play.sent(Kind.REQUEST, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    play.server(FIN | ACK, seq=SERVER_ISN + 1, payload=b"HTTP/1.1 200 OK\r\n\r\n")
    play.sent(Kind.FIN)
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.FIN and attempt.bytes_received == 19


def test_the_volume_profile_holds_its_request_without_probing():
    play = Playbook(timeout=3.0, profile=VOLUME)
    conn = play.connect()
    play.sent(Kind.SYN)
    play.server(SYN | ACK, seq=SERVER_ISN, window=0)
    play.sent(Kind.ACK, seq=seq_add(conn.iss, 1), ack=SERVER_ISN + 1)
    play.later(2.99)
    play.quiet()  # no probe, no request
    play.later(0.02)
    play.sent(Kind.FIN, seq=seq_add(conn.iss, 1))  # its close() at the timeout
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.SILENT
    assert (play.counters.requests_held, play.counters.window_probes_sent) == (1, 0)


# A SYN flood (Profile.syn_only): the syn-flood attacker

FLOOD = Profile(give_up=Kind.RST, retransmits=False, syn_only=True)


def test_a_syn_flood_never_answers_the_syn_ack_and_resets_it_at_its_timeout():
    play = Playbook(timeout=3.0, profile=FLOOD)
    conn = play.connect()
    play.sent(Kind.SYN, seq=conn.iss, ack=0)
    assert conn.state is State.SYN_ONLY
    play.t += 0.001
    play.server(SYN | ACK, seq=SERVER_ISN)
    play.quiet()  # no ACK, no request: the server keeps a half-open connection
    assert conn.state is State.HALF_OPEN and play.counters.half_open == 1
    play.later(1.0)
    play.server(SYN | ACK, seq=SERVER_ISN)  # the server sends its SYN-ACK again
    play.quiet()
    play.later(2.0)  # our timeout, from the SYN: the half-open connection is reset
    play.sent(Kind.RST, seq=seq_add(conn.iss, 1))  # no ACK: synproxy would take it as one
    play.quiet()
    assert conn.state is State.GAVE_UP
    [attempt] = play.attempts()
    # As the wire reads it: the SYN was answered, and nobody ended the connection.
    assert attempt.outcome is Outcome.SILENT and conn.retransmissions_seen == 1
    assert attempt.t_established == pytest.approx(START + 0.001)
    assert attempt.t_end == pytest.approx(START + 3.0)
    assert play.counters.requests_sent == 0 and play.counters.connections_established == 0


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [(None, Outcome.SYN_TIMEOUT), (RST | ACK, Outcome.REFUSED)],
)
def test_a_syn_flood_dropped_is_syn_timeout_and_refused_is_refused(answer, outcome):
    play = Playbook(timeout=0.5, profile=FLOOD)  # under the SYN RTO: one SYN per attempt
    conn = play.connect()
    play.sent(Kind.SYN)
    if answer is not None:
        play.server(answer, seq=0)
    play.later(0.5)
    play.quiet()
    [attempt] = play.attempts()
    assert attempt.outcome is outcome and conn.state is State.ABORTED


def test_a_syn_flood_stopped_resets_what_the_server_answered():
    play = Playbook(timeout=3.0, profile=FLOOD)
    conn = play.connect()
    play.sent(Kind.SYN)
    play.server(SYN | ACK, seq=SERVER_ISN)
    play.engine.abandon()
    play.sent(Kind.RST, seq=seq_add(conn.iss, 1))
    play.quiet()
    assert play.attempts() == [] and play.counters.connections_abandoned == 1

"""The packet engine's vocabulary: its states, its events, and what an action may answer.

engine.TRANSITIONS is written in these words; actions.py hands events on in them. Apart so that
both modules can use them without importing each other.
"""

from __future__ import annotations

import enum


class State(enum.IntEnum):  # ints: the table is looked up per packet
    SYN_SENT = 1  # our SYN is out
    ESTABLISHED = 2  # handshake done; the request waits for its delay
    REQUESTED = 3  # the request is out: what comes next ends the attempt
    LAST_ACK = 4  # the server's FIN ended it; our FIN is not yet acknowledged
    CLOSED = 5  # our FIN was acknowledged too
    GAVE_UP = 6  # our own timeout ended it; we sent RST or FIN (the profile's; a flood: nothing)
    ABORTED = 7  # reset, refused, unreachable, never established, or stopped
    SYN_ONLY = 8  # a SYN flood's SYN is out (Profile.syn_only): no handshake will be completed
    HALF_OPEN = 9  # the server (or its SYN proxy) answered the flood's SYN; we never answer it


class Event(enum.IntEnum):
    # A segment from the server, or an ICMP error about ours: they may come in any state.
    SYN_ACK = 1  # the server's answer to our SYN, or that answer again
    ACK = 2  # nothing but an acknowledgement
    DATA = 3  # payload without FIN
    FIN = 4  # FIN, with or without payload
    RST = 5  # weighed by its state's action: is it for this connection, what does it mean
    ODD = 6  # flags no server sends in the normal course (decoded by scapy)
    ICMP = 7  # an ICMP error quoting one of our segments
    # A timer of the connection's.
    SYN_RTO = 8  # time to send the SYN again
    REQUEST_DUE = 9  # the handshake is done and request_delay has passed (or there is none)
    RTO = 10  # time to send the unacknowledged request or FIN again
    TIMEOUT = 11  # the client's own timeout
    PROBE = 12  # the persist timer: time to probe the server's zero window again
    # Our own doing, or the attack's.
    START = 13  # a free slot: the attempt begins, its SYN goes out
    SEND_FAILED = 14  # our SYN could not be sent for want of a route (as connect() fails)
    CLOSE = 15  # the server's FIN was read: we close, as close() after EOF does
    STOP = 16  # the attack is stopped: what is still open is dropped, not reported
    # An RST weighed by the action of the RST's entry (judge_reset), handed on as one of these.
    RESET = 17  # in our window: the server reset the connection
    RESET_RESENT = 18  # in our window, answering our resent, never acknowledged request


class Ignore(enum.Enum):
    """An action's answer when its event turns out not to concern the connection."""

    IGNORE = "ignore"


# The state and outcome of the table's entry do not apply: nothing changes (an RST outside our
# window, a FIN that brings nothing new, an ACK that does not cover our FIN...).
IGNORE = Ignore.IGNORE

# What an action returns: None (its entry applies), IGNORE, or an Event to hand on (its entry
# applies, then that event is fired at once with the same segment).
Step = Event | Ignore | None

assert max(Event) < 32  # the engine indexes its table by state << 5 | event

# The attempt still runs.
OPEN = frozenset(
    {State.SYN_SENT, State.ESTABLISHED, State.REQUESTED, State.SYN_ONLY, State.HALF_OPEN}
)

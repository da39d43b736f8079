"""An attempt's outcome from its connection's packets: the rules of the README's Outcomes, applied
to a pcap (the attacker-side capture of a trial or a probe)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from closebench.core.outcomes import (
    EXCERPT_BYTES,
    Attempt,
    ClosedBy,
    Outcome,
    gave_up,
    http_status,
    server_excerpt,
)
from closebench.wire.pcap import Endpoint, WireEvent, connections

SEQ_SPACE = 1 << 32
# s: a record's t_syn and its connection's first SYN on the wire are this close. A client reads its
# clock before connect(); an event loop starved by hundreds of sockets on a loaded machine has been
# seen to send the SYN 1.3 s later.
JOIN_WINDOW = 5.0
ZERO_WINDOW_NOTE = "the request never left the client: the server's window stayed zero"


def split_at_client_end(
    events: list[WireEvent], client_timeout: float
) -> tuple[list[WireEvent], list[WireEvent]]:
    """Split a connection's events where the client ended it: its own RST once established, or
    its FIN, unless a client of closebench's own sent that FIN before its timeout ran out
    (core/outcomes.gave_up: a half-close, after which it still reads).

    What the server sends after that, such as the RST a silently closed socket's kernel answers to
    the client's FIN, did not reach a client that was waiting.
    """
    established = requested = None
    for index, event in enumerate(events):
        if event.direction == "in" and "S" in event.what and "A" in event.what:
            established = established or event.t
        elif event.direction != "out" or established is None:
            continue
        elif event.length:
            requested = requested or event.t
        elif "F" in event.what or "R" in event.what:
            waited = event.t - (requested or established)  # the timeout runs from the request
            if client_ends(event.what, waited, client_timeout):
                return events[:index], events[index:]
    return events, []


def client_ends(what: str, waited: float, client_timeout: float) -> bool:
    """Whether a client's FIN or RST (flags `what`), `waited` s after its request, ends its
    attempt: an RST always; a FIN unless the client is one of closebench's own (its timeout
    known) that had not given up, which half-closes and reads on."""
    return "R" in what or not math.isfinite(client_timeout) or gave_up(waited, client_timeout)


def prompting_segment(last_out: WireEvent | None, sent_until: int | None) -> str | None:
    """What an RST after `last_out` answered, when it answered the client rather than ending the
    connection of the server's own accord: the client's "FIN", "keepalive" or "retransmission".

    A server's kernel that resets only such a late segment had dropped the socket without a word
    (a silent close): until that segment the client knew nothing. An RST answering the request
    itself (or sent unprompted) tells the client at once.
    """
    if last_out is None:
        return None
    if "F" in last_out.what:
        return "FIN"
    if is_window_probe(last_out, sent_until):
        return "keepalive"
    if last_out.retransmission:
        return "retransmission"
    return None


def is_window_probe(event: WireEvent, sent_until: int | None) -> bool:
    """A keepalive or zero-window probe: an empty ACK (or one byte) repeating the last byte
    already sent, its sequence number one below the next."""
    return (
        event.direction == "out"
        and event.what == "A"
        and event.length <= 1
        and sent_until is not None
        and event.seq == (sent_until - 1) % SEQ_SPACE
    )


@dataclass
class _Reading:
    """What classify() has read so far of one connection."""

    established: bool = False
    syn_seen: bool = False
    request_seen: bool = False
    zero_window: bool = False  # the SYN-ACK advertised no window
    probed: bool = False  # the client probed a window: it had written something
    bytes_in: int = 0
    head: bytes = b""  # the server's first payload bytes, up to EXCERPT_BYTES
    half_closed: WireEvent | None = None  # an own client's early FIN: it still reads
    data_since_close: bool = False  # the server sent bytes after that FIN
    last_out: WireEvent | None = None  # the client's latest segment, until the server answers
    sent_until: int | None = None  # the sequence number after the last byte the client sent
    note: str = ""


def classify(
    events: list[WireEvent], attempt: Attempt, unmarked: ClosedBy = ClosedBy.CLIENT
) -> Attempt:
    """Fill `attempt`'s outcome, times and closed_by from the wire: the first thing the server
    did of its own accord ends it; if nothing did, the client's own end (its close, its timeout)
    did. `unmarked`: who ended a connection no packet shows the end of (the client's own
    timeout; closebench, for a client it stopped)."""
    r = _Reading()
    ending: tuple[Outcome, float, ClosedBy] | None = None
    timeline, after = split_at_client_end(events, attempt.client_timeout)
    for event in timeline:
        # Wire times replace the client's own clock readings where the wire has them.
        if event.direction == "out":
            _client_segment(r, event, attempt)
            continue
        ending = _server_segment(r, event, attempt)
        if ending is not None:
            break
    attempt.bytes_received = r.bytes_in
    attempt.excerpt = server_excerpt(r.head)
    attempt.data_first = r.bytes_in > 0
    if r.zero_window and not r.request_seen and r.probed:
        # A zero window from the SYN-ACK on (a zero-window tarpit), and a client probing it:
        # the request it wrote never left its send buffer, so the wire has no time for it; it
        # wrote it as soon as it could, once connected. A client that probes nothing wrote
        # nothing: it has no request (a port scanner's connect).
        attempt.t_request = attempt.t_request or attempt.t_established
        if ZERO_WINDOW_NOTE not in attempt.detail:
            attempt.detail = "; ".join(filter(None, [attempt.detail, ZERO_WINDOW_NOTE]))
    if ending is not None:
        attempt.outcome, attempt.t_end, closed_by = ending
    else:
        # Nothing the server did ended it: the client did, with its FIN or RST, or its own
        # timeout, which no packet marks (a SYN never answered): the client's clock stands.
        attempt.outcome = Outcome.SILENT if r.established else Outcome.SYN_TIMEOUT
        closed_by = unmarked
        if after and r.established:
            attempt.t_end, closed_by = after[0].t, ClosedBy.CLIENT
            answer = next((e for e in after[1:] if e.direction == "in"), None)
            if answer is not None and "R" in answer.what and "F" in after[0].what:
                r.note = _rst_note("FIN", answer.t, attempt)
    attempt.closed_by = closed_by.value
    if r.note:
        attempt.detail = f"{attempt.detail}; {r.note}" if attempt.detail else r.note
    return attempt


def _client_segment(r: _Reading, event: WireEvent, attempt: Attempt) -> None:
    if event.what == "S" and not r.syn_seen:
        r.syn_seen, attempt.t_syn = True, event.t
    elif event.length and not r.request_seen:
        r.request_seen, attempt.t_request = True, event.t
    if r.established and is_window_probe(event, r.sent_until):
        r.probed = True
    if r.established and "F" in event.what and r.half_closed is None:
        r.half_closed = event
    r.last_out = event
    r.sent_until = _advance(r.sent_until, event)


def _server_segment(
    r: _Reading, event: WireEvent, attempt: Attempt
) -> tuple[Outcome, float, ClosedBy] | None:
    """The attempt's end if this segment from the server (or ICMP error) ends it."""
    answered, r.last_out = r.last_out, None
    prompt = prompting_segment(answered, r.sent_until)
    if event.what.startswith("icmp"):
        return Outcome.ICMP, event.t, ClosedBy.SERVER
    if "S" in event.what and "A" in event.what and not r.established:
        r.established, attempt.t_established = True, event.t
        r.zero_window = event.window == 0
    if event.length and not event.retransmission:
        if not r.bytes_in:
            attempt.t_first_byte = event.t
            attempt.http_status = http_status(event.head)
        r.bytes_in += event.length
        if len(r.head) < EXCERPT_BYTES:
            r.head = (r.head + event.head)[:EXCERPT_BYTES]
        r.data_since_close = r.half_closed is not None
    if not ("R" in event.what or "F" in event.what):
        return None
    if r.established and r.half_closed is not None and not r.data_since_close:
        # It only answers the client's own close: the client ended it, at its FIN.
        if "R" in event.what:
            r.note = _rst_note("FIN", event.t, attempt)
        return Outcome.SILENT, r.half_closed.t, ClosedBy.CLIENT
    if "R" in event.what:
        if r.established and prompt is not None:
            # The server's kernel answered the client's keepalive or retransmission: the
            # client learnt only then that its socket had been dropped without a word.
            r.note = _rst_note(prompt, event.t, attempt)
            return Outcome.SILENT, event.t, ClosedBy.SERVER
        return (Outcome.RST if r.established else Outcome.REFUSED), event.t, ClosedBy.SERVER
    return Outcome.FIN, event.t, ClosedBy.SERVER


def _advance(sent_until: int | None, event: WireEvent) -> int | None:
    if event.seq < 0:
        return sent_until
    end = (event.seq + event.length + ("S" in event.what) + ("F" in event.what)) % SEQ_SPACE
    if sent_until is None or 0 < (end - sent_until) % SEQ_SPACE < SEQ_SPACE // 2:
        return end
    return sent_until


def _rst_note(prompt: str, t: float, attempt: Attempt) -> str:
    since = attempt.t_request or attempt.t_established or attempt.t_syn
    return f"RST to the client's {prompt} at +{t - since:.1f} s"


def reconcile(attempts: list[Attempt], path: str, server: Endpoint) -> int:
    """Give records that a kernel-socket client kept by its own clock the wire's classes and
    times, from the trial's capture. Returns how many records found their connection.

    Where the wire and the client's socket disagree on the class, the wire's stands (the one rule
    every attacker follows) and the record's detail says what the socket reported.
    """
    by_client: dict[Endpoint, list[list[WireEvent]]] = defaultdict(list)
    for client, connection in connections(path, server, {a.src for a in attempts}):
        by_client[client].append(connection)
    joined = 0
    for attempt in attempts:
        candidates = by_client.get(Endpoint(attempt.src, attempt.sport), [])
        events = nearest_connection(candidates, attempt)
        if events is None:
            continue
        candidates.remove(events)  # one record per connection
        joined += 1
        said, stopped = attempt.outcome, attempt.outlasted
        classify(events, attempt)
        if stopped and attempt.closer is ClosedBy.CLIENT:
            # The client's close was closebench stopping it (a bot past the attack's end).
            attempt.closed_by = ClosedBy.CLOSEBENCH.value
        if attempt.outcome is not said:
            note = f"the client's socket reported {said.value}"
            attempt.detail = f"{attempt.detail}; {note}" if attempt.detail else note
    return joined


def nearest_connection(
    candidates: list[list[WireEvent]], attempt: Attempt
) -> list[WireEvent] | None:
    """The connection whose first SYN is closest to the record's t_syn, within JOIN_WINDOW."""
    best, best_gap = None, JOIN_WINDOW
    for events in candidates:
        syn = next((e.t for e in events if e.direction == "out" and e.what == "S"), None)
        if syn is not None and abs(syn - attempt.t_syn) <= best_gap:
            best, best_gap = events, abs(syn - attempt.t_syn)
    return best

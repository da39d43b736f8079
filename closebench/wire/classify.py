"""An attempt's outcome from its connection's packets: the rules of the README's Outcomes, applied
to a pcap (the attacker-side capture of a trial or a probe)."""

from __future__ import annotations

from collections import defaultdict

from closebench.core.outcomes import Attempt, Outcome, http_status
from closebench.wire.pcap import Endpoint, WireEvent, connections

SEQ_SPACE = 1 << 32
# s: a record's t_syn and its connection's first SYN on the wire are this close. A client reads its
# clock before connect(); an event loop starved by hundreds of sockets on a loaded machine has been
# seen to send the SYN 1.3 s later.
JOIN_WINDOW = 5.0
ZERO_WINDOW_NOTE = "the request never left the client: the server's window stayed zero"


GAVE_UP = 0.9  # a client that closes after this share of its timeout closed because of it


def split_at_client_end(
    events: list[WireEvent], client_timeout: float
) -> tuple[list[WireEvent], list[WireEvent]]:
    """Split a connection's events where the client gave up: its own FIN or RST, once established,
    sent at its timeout.

    What the server sends after that, such as the RST a silently closed socket's kernel answers to
    the client's FIN, did not reach the client while it was still waiting. A client that closes
    early (it had its whole response, or disliked it) did not give up: the server's answer to that
    close still counts, save an RST (see prompting_segment).
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
            if waited >= GAVE_UP * client_timeout:
                return events[:index], events[index:]
    return events, []


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
    # A keepalive probe repeats the last byte already sent: sequence number one below the next.
    if (
        last_out.what == "A"
        and last_out.length <= 1
        and sent_until is not None
        and last_out.seq == (sent_until - 1) % SEQ_SPACE
    ):
        return "keepalive"
    if last_out.retransmission:
        return "retransmission"
    return None


def classify(events: list[WireEvent], attempt: Attempt) -> Attempt:
    """Fill `attempt`'s outcome and times from the wire: the first thing the server did of its
    own accord ends it; if nothing did, the client's own end (its timeout, its close) did."""
    established = syn_seen = request_seen = zero_window = False
    bytes_in = 0
    ending: tuple[Outcome, float] | None = None
    note = ""
    last_out: WireEvent | None = None  # the client's latest segment, until the server answers
    sent_until: int | None = None  # the sequence number after the last byte the client sent
    timeline, after = split_at_client_end(events, attempt.client_timeout)
    for event in timeline:
        # Wire times replace the client's own clock readings where the wire has them.
        if event.direction == "out":
            if event.what == "S" and not syn_seen:
                syn_seen, attempt.t_syn = True, event.t
            elif event.length and not request_seen:
                request_seen, attempt.t_request = True, event.t
            last_out = event
            sent_until = _advance(sent_until, event)
            continue
        answered, last_out = last_out, None
        prompt = prompting_segment(answered, sent_until)
        if event.what.startswith("icmp"):
            ending = (Outcome.ICMP, event.t)
            break
        if "S" in event.what and "A" in event.what and not established:
            established, attempt.t_established = True, event.t
            zero_window = event.window == 0
        if event.length and not event.retransmission:
            if not bytes_in:
                attempt.t_first_byte = event.t
                attempt.http_status = http_status(event.head)
            bytes_in += event.length
        if "R" in event.what:
            if established and answered is not None and prompt is not None:
                note = _rst_note(prompt, event.t, attempt)
                # The client learnt at the RST; one that had sent its FIN had stopped waiting.
                ending = (Outcome.SILENT, answered.t if prompt == "FIN" else event.t)
            else:
                ending = (Outcome.RST if established else Outcome.REFUSED, event.t)
            break
        if "F" in event.what:
            ending = (Outcome.FIN, event.t)
            break
    attempt.bytes_received = bytes_in
    attempt.data_first = bytes_in > 0
    if zero_window and not request_seen:
        # A zero window from the SYN-ACK on (a zero-window tarpit): the request the client wrote
        # never left its send buffer, so the wire has no time for it; the client wrote it as
        # soon as it could, once connected.
        attempt.t_request = attempt.t_request or attempt.t_established
        if ZERO_WINDOW_NOTE not in attempt.detail:
            attempt.detail = "; ".join(filter(None, [attempt.detail, ZERO_WINDOW_NOTE]))
    if ending is not None:
        attempt.outcome, attempt.t_end = ending
    else:
        # Nothing the server did ended it: the client's own timeout did. Its FIN or RST then is
        # the wire's time of that; without one (a SYN never answered) the client's clock stands.
        attempt.outcome = Outcome.SILENT if established else Outcome.SYN_TIMEOUT
        if after and established:
            attempt.t_end = after[0].t
            answer = next((e for e in after[1:] if e.direction == "in"), None)
            if answer is not None and "R" in answer.what and "F" in after[0].what:
                note = _rst_note("FIN", answer.t, attempt)
    if note:
        attempt.detail = f"{attempt.detail}; {note}" if attempt.detail else note
    return attempt


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
        said = attempt.outcome
        classify(events, attempt)
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

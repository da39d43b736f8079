"""Packet capture on a lab host, and what one connection looked like on the wire."""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from harness.core.addresses import canonical
from harness.core.errors import LabError
from harness.core.outcomes import Attempt, Outcome, http_status
from harness.lab import Host
from harness.lab.privileges import IN_USERNS_ENV

SNAPLEN = 256  # headers plus the start of the payload; enough to read every decision
HEAD_BYTES = 32  # payload bytes kept per packet: enough for an HTTP status line
SEQ_SPACE = 1 << 32
# s: a record's t_syn and its connection's first SYN on the wire are this close. A client reads its
# clock before connect(); an event loop starved by hundreds of sockets on a loaded machine has been
# seen to send the SYN 1.3 s later.
JOIN_WINDOW = 5.0
LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Endpoint:
    address: str  # kept canonical: endpoints compare as addresses, not as texts
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", canonical(self.address))


@dataclass(frozen=True)
class WireEvent:
    """One packet of a connection (or an ICMP error about it), as the client's host saw it."""

    t: float
    direction: str  # "out": from the client; "in": towards the client
    what: str  # TCP flags such as "S", "SA", "PA", "FA", "R", or "icmp <type>/<code>"
    length: int  # TCP payload bytes
    ttl: int
    retransmission: bool = False
    head: bytes = field(default=b"", compare=False, repr=False)  # the payload's first bytes
    seq: int = field(default=-1, compare=False, repr=False)  # TCP sequence number; -1: ICMP
    window: int | None = None  # the TCP window advertised (None for ICMP)

    def to_dict(self) -> dict:
        return {
            "t": self.t,
            "direction": self.direction,
            "what": self.what,
            "length": self.length,
            "ttl": self.ttl,
            "retransmission": self.retransmission,
            "window": self.window,
        }


class Capture:
    """tcpdump on one interface of a host, writing a pcap file until stop()."""

    def __init__(self, host: Host, interface: str, bpf: str, path: str) -> None:
        self.path = path
        # --immediate-mode: without it libpcap hands packets over in blocks, and whatever is still
        # in the ring when tcpdump is stopped is lost.
        self._process = host.spawn(
            capture_argv(interface, path, bpf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        # tcpdump says "listening on" once its socket is bound: packets from then on are kept.
        deadline = time.monotonic() + 10
        stream = self._process.stderr
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], 0.1)
            if ready:
                chunk = os.read(stream.fileno(), 4096)
                seen += chunk
                if b"listening on" in seen:
                    return
                if not chunk:
                    break
        self._process.kill()
        self._process.wait()
        raise LabError(f"tcpdump did not start capturing: {seen.decode(errors='replace').strip()}")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stderr.close()


def capture_argv(interface: str, path: str, bpf: str) -> list[str]:
    if os.environ.get(IN_USERNS_ENV):
        # tcpdump cannot drop privileges in a user namespace that maps only root.
        return [sys.executable, "-m", "harness.lab.sniffer", interface, path, str(SNAPLEN), bpf]
    return [
        *("tcpdump", "-i", interface, "--immediate-mode", "-U", "-n", "-Z", "root"),
        *("-s", str(SNAPLEN), "-w", path, bpf),
    ]


def connection_events(path: str, client: Endpoint, server: Endpoint) -> list[WireEvent]:
    """Every packet of the client<->server connection in a pcap, plus ICMP errors quoting it."""
    events: list[WireEvent] = []
    for endpoint, each in connections(path, server):
        if endpoint == client:
            events.extend(each)
    return events


def connections(
    path: str, server: Endpoint, clients: set[str] | None = None
) -> list[tuple[Endpoint, list[WireEvent]]]:
    """Every connection to `server` in a pcap, in the order their first packet was seen; only
    those from `clients` (addresses) when given.

    A new SYN from a client port already seen starts a new connection (a reused port).
    """
    book = ConnectionBook(server, clients)
    book.read(PcapFollower(path))
    return book.found


class ConnectionBook:
    """Connections to one server, built up packet by packet (from a whole pcap, or from one that
    is still being written); only those from `clients` (addresses) when given."""

    def __init__(self, server: Endpoint, clients: set[str] | None = None) -> None:
        self.server = server
        self.found: list[tuple[Endpoint, list[WireEvent]]] = []
        self._current: dict[Endpoint, tuple[list[WireEvent], set]] = {}
        self._clients = None if clients is None else {_packed(a) for a in clients}

    def read(self, follower: PcapFollower) -> list[tuple[Endpoint, list[WireEvent]]]:
        """Add the packets the follower has not read yet; returns the connections they started."""
        first_new = len(self.found)
        for t, frame in follower.frames():
            # Dissecting a packet costs scapy ~100 µs: skip other clients' (a flood) before that.
            if self._clients is not None and not self._clients & _frame_addresses(frame):
                continue
            decoded = _decode(t, frame, self.server)
            if decoded is not None:
                self._add(*decoded)
        return self.found[first_new:]

    def _add(self, client: Endpoint, event: WireEvent) -> None:
        events, seen = self._current.get(client, (None, set()))
        key = (event.direction, event.seq, event.what, event.length)
        fresh_syn = event.direction == "out" and event.what == "S" and key not in seen
        if events is None or fresh_syn:
            events, seen = [], set()
            self._current[client] = (events, seen)
            self.found.append((client, events))
        # A segment seen again with the same sequence number and flags is a retransmission.
        retransmitted = key in seen and (event.length > 0 or "F" in event.what or "S" in event.what)
        seen.add(key)
        events.append(replace(event, retransmission=retransmitted) if retransmitted else event)


class PcapFollower:
    """The frames of a pcap file, read as far as complete records go: reading again later returns
    what was written since (tcpdump -U writes whole packets, but may be caught mid-write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._record: struct.Struct | None = None
        self._scale = 1e-6  # microsecond timestamps; 1e-9 for the nanosecond format

    def frames(self) -> Iterator[tuple[float, bytes]]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except FileNotFoundError:
            return
        position = 0
        if self._record is None:
            if len(data) < 24:
                return
            self._parse_header(data[:24])
            position = 24
        record = self._record
        assert record is not None
        while position + record.size <= len(data):
            seconds, fraction, captured, _ = record.unpack_from(data, position)
            end = position + record.size + captured
            if end > len(data):
                break
            yield seconds + fraction * self._scale, data[position + record.size : end]
            position = end
        self._offset += position

    def _parse_header(self, header: bytes) -> None:
        magic = header[:4]
        formats = {
            b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
            b"\xa1\xb2\xc3\xd4": (">", 1e-6),
            b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
            b"\xa1\xb2\x3c\x4d": (">", 1e-9),
        }
        if magic not in formats:
            raise LabError(f"{self.path} is not a pcap file (pcapng is not read here)")
        order, self._scale = formats[magic]
        linktype = struct.unpack(order + "I", header[20:24])[0]
        if linktype != LINKTYPE_ETHERNET:
            raise LabError(f"{self.path}: link type {linktype}, expected Ethernet (1)")
        self._record = struct.Struct(order + "IIII")


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _frame_addresses(frame: bytes) -> set[bytes]:
    """The source and destination addresses of an Ethernet frame's IPv4 or IPv6 header."""
    kind = frame[12:14]
    if kind == b"\x08\x00":
        return {frame[26:30], frame[30:34]}
    if kind == b"\x86\xdd":
        return {frame[22:38], frame[38:54]}
    return set()


def _decode(t: float, frame: bytes, server: Endpoint) -> tuple[Endpoint, WireEvent] | None:
    """(client, event) for a frame to or from `server`, ICMP errors about it included."""
    from scapy.layers.inet import IP, TCP, IPerror, TCPerror
    from scapy.layers.inet6 import IPerror6, IPv6
    from scapy.layers.l2 import Ether

    packet = Ether(frame)
    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    if ip is None:
        return None
    ttl = ip.ttl if isinstance(ip, IP) else ip.hlim
    if packet.haslayer(TCPerror):
        # An ICMP(v6) error quoting one of our segments: the ICMP header follows the IP one.
        quoted = packet.getlayer(IPerror) or packet.getlayer(IPerror6)
        tcp = packet[TCPerror]
        if Endpoint(quoted.dst, tcp.dport) != server:
            return None
        icmp = ip.payload
        what = f"icmp{'' if isinstance(ip, IP) else 'v6'} {icmp.type}/{icmp.code}"
        return Endpoint(quoted.src, tcp.sport), WireEvent(t, "in", what, 0, ttl)
    if not packet.haslayer(TCP):
        return None
    tcp = packet[TCP]
    payload = bytes(tcp.payload)
    if Endpoint(ip.dst, tcp.dport) == server:
        client, direction = Endpoint(ip.src, tcp.sport), "out"
    elif Endpoint(ip.src, tcp.sport) == server:
        client, direction = Endpoint(ip.dst, tcp.dport), "in"
    else:
        return None
    # The capture's snap length cuts payloads: the IP header says how long the segment was.
    length = _tcp_payload_length(ip, tcp, len(payload))
    head = payload[:HEAD_BYTES] if length else b""
    return client, WireEvent(
        t, direction, str(tcp.flags), length, ttl, head=head, seq=tcp.seq, window=tcp.window
    )


def _tcp_payload_length(ip, tcp, captured: int) -> int:
    from scapy.layers.inet import IP

    # (IPv6: no extension headers in the lab's traffic.)
    total = ip.len - 4 * ip.ihl if isinstance(ip, IP) else ip.plen
    return max(captured, total - 4 * tcp.dataofs) if total else captured


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
    for client, events in connections(path, server, {a.src for a in attempts}):
        by_client[client].append(events)
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

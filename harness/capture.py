"""Packet capture on a lab host, and what one connection looked like on the wire."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from harness.errors import LabError
from harness.lab import Host
from harness.outcomes import Attempt, Outcome, http_status
from harness.privileges import IN_USERNS_ENV

SNAPLEN = 256  # headers plus the start of the payload; enough to read every decision
HEAD_BYTES = 32  # payload bytes kept per packet: enough for an HTTP status line


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


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
        return [sys.executable, "-m", "harness.sniffer", interface, path, str(SNAPLEN), bpf]
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


def connections(path: str, server: Endpoint) -> list[tuple[Endpoint, list[WireEvent]]]:
    """Every connection to `server` in a pcap, in the order their first packet was seen.

    A new SYN from a client port already seen starts a new connection (a reused port).
    """
    found: list[tuple[Endpoint, list[WireEvent]]] = []
    current: dict[Endpoint, tuple[list[WireEvent], set]] = {}
    for client, event, seq in _segments(path, server):
        events, seen = current.get(client, (None, set()))
        key = (event.direction, seq, event.what, event.length)
        fresh_syn = event.direction == "out" and event.what == "S" and key not in seen
        if events is None or fresh_syn:
            events, seen = [], set()
            current[client] = (events, seen)
            found.append((client, events))
        # A segment seen again with the same sequence number and flags is a retransmission.
        retransmitted = key in seen and (event.length > 0 or "F" in event.what or "S" in event.what)
        seen.add(key)
        events.append(replace(event, retransmission=retransmitted) if retransmitted else event)
    return found


def _segments(path: str, server: Endpoint) -> Iterator[tuple[Endpoint, WireEvent, int]]:
    """(client, event, sequence number) per packet to or from `server`, ICMP errors included."""
    from scapy.layers.inet import IP, TCP, IPerror, TCPerror
    from scapy.layers.inet6 import IPerror6, IPv6
    from scapy.utils import PcapReader

    with PcapReader(path) as packets:
        for packet in packets:
            ip = packet.getlayer(IP) or packet.getlayer(IPv6)
            if ip is None:
                continue
            ttl = ip.ttl if isinstance(ip, IP) else ip.hlim
            t = float(packet.time)
            if packet.haslayer(TCPerror):
                # An ICMP(v6) error quoting one of our segments: the ICMP header follows the IP one.
                quoted = packet.getlayer(IPerror) or packet.getlayer(IPerror6)
                tcp = packet[TCPerror]
                if Endpoint(quoted.dst, tcp.dport) == server:
                    icmp = ip.payload
                    what = f"icmp{'' if isinstance(ip, IP) else 'v6'} {icmp.type}/{icmp.code}"
                    yield Endpoint(quoted.src, tcp.sport), WireEvent(t, "in", what, 0, ttl), -1
                continue
            if not packet.haslayer(TCP):
                continue
            tcp = packet[TCP]
            length = len(bytes(tcp.payload))
            if Endpoint(ip.dst, tcp.dport) == server:
                client, direction = Endpoint(ip.src, tcp.sport), "out"
            elif Endpoint(ip.src, tcp.sport) == server:
                client, direction = Endpoint(ip.dst, tcp.dport), "in"
            else:
                continue
            head = bytes(tcp.payload)[:HEAD_BYTES] if length else b""
            event = WireEvent(
                t, direction, str(tcp.flags), length, ttl, head=head, window=tcp.window
            )
            yield client, event, tcp.seq


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
    close still counts.
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


def classify(events: list[WireEvent], attempt: Attempt) -> Attempt:
    """Fill `attempt`'s outcome and times from the wire: the first thing that ended it wins."""
    established = syn_seen = request_seen = zero_window = False
    bytes_in = 0
    ending: tuple[Outcome, float] | None = None
    for event in split_at_client_end(events, attempt.client_timeout)[0]:
        # Wire times replace the client's own clock readings where the wire has them.
        if event.direction == "out":
            if event.what == "S" and not syn_seen:
                syn_seen, attempt.t_syn = True, event.t
            elif event.length and not request_seen:
                request_seen, attempt.t_request = True, event.t
            continue
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
        # Nothing ended it: the client's own timeout did (t_end was set by the client).
        attempt.outcome = Outcome.SILENT if established else Outcome.SYN_TIMEOUT
    return attempt

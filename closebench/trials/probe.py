"""`closebench probe`: one request per strategy, and what the abuser's wire saw in answer."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from closebench.core.errors import ClosebenchError
from closebench.core.file_names import unique_names
from closebench.core.outcomes import Attempt, Outcome
from closebench.core.safe_files import shown
from closebench.defender import LISTEN_TIMEOUT, Defender, ServerConfig
from closebench.defender.peers import peer_for
from closebench.lab import Lab
from closebench.lab.capture import Capture
from closebench.lab.socket_table import tcp_sockets
from closebench.servers.strategies import STRATEGIES, parse_spec
from closebench.wire.classify import classify
from closebench.wire.pcap import Endpoint, WireEvent, connection_events

DEFAULT_TIMEOUT = 10.0
SETTLE = 0.3  # keep capturing this long after the client ends, for late answers


@dataclass(frozen=True)
class ProbeCase:
    """One probe: which server, across a router hop or not, over IPv4 or IPv6."""

    server: ServerConfig
    routed: bool = False
    family: int = 4
    request_delay: float = 0.0  # seconds between the handshake and the request

    @property
    def label(self) -> str:
        late = f" (request {self.request_delay:g} s late)" if self.request_delay else ""
        return self.server.label + (" (via router)" if self.routed else "") + late


@dataclass
class ProbeResult:
    case: ProbeCase
    attempt: Attempt | None = None
    timeline: list[WireEvent] = field(default_factory=list)
    client_saw: str = ""
    server_stats: dict = field(default_factory=dict)
    error: str = ""
    pcap: str | None = None
    # The defender's kernel sockets for the connection (their states) when the client stopped
    # waiting: [] when the defender kept nothing.
    defender_sockets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        server = self.case.server
        return {
            "case": self.case.label,
            "strategy": str(server.spec) if server.spec else None,
            "command": server.command or None,
            "routed": self.case.routed,
            "request_delay": self.case.request_delay,
            "family": self.case.family,
            "port": server.port,
            "outcome": self.attempt.outcome.value if self.attempt else None,
            "data_first": self.attempt.data_first if self.attempt else None,
            "hang_s": self.attempt.hang_s if self.attempt else None,
            "client_saw": self.client_saw,
            "attempt": self.attempt.to_dict() if self.attempt else None,
            "timeline": [event.to_dict() for event in self.timeline],
            "server_stats": self.server_stats,
            "defender_sockets": self.defender_sockets,
            "pcap": self.pcap,
            "error": self.error or None,
        }


def default_cases(port: int, family: int) -> list[ProbeCase]:
    """Every strategy once, plus the contrasts the seed cares about."""
    cases = [ProbeCase(ServerConfig(port, parse_spec(name)), family=family) for name in STRATEGIES]
    # The seed's trap: a request that arrives after the silent close meets no socket. A request
    # sent at once may still beat the server's accept(), so this one comes a little late.
    unread = ServerConfig(port, parse_spec("repair:read_first=false"))
    cases.insert(3, ProbeCase(unread, family=family, request_delay=0.5))
    # The TTL tricks are silent only with a router hop in between, where their packet dies.
    for name in ("ttl-drop", "rst-ttl"):
        cases.append(ProbeCase(ServerConfig(port, parse_spec(name)), routed=True, family=family))
    # HAProxy's silent-drop without CAP_NET_ADMIN, and its reject after reading the request.
    for name, contrast in (
        ("haproxy-silent-drop", "haproxy-silent-drop:net_admin=false"),
        ("haproxy-reject", "haproxy-reject:read_first=true"),
    ):
        case = ProbeCase(ServerConfig(port, parse_spec(contrast)), family=family)
        cases.insert(cases.index(_case(name, cases)) + 1, case)
    return cases


def _case(name: str, cases: list[ProbeCase]) -> ProbeCase:
    return next(case for case in cases if str(case.server.spec) == name)


def request_bytes(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: closebench-probe\r\n\r\n".encode()


class Probe:
    """Runs probe cases, each in a lab of its own, several at once."""

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        path: str = "/spam",
        pcap_dir: str | None = None,
        listen_timeout: float = LISTEN_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.listen_timeout = listen_timeout
        self.path = path
        self.pcap_dir = pcap_dir
        self.cancel = threading.Event()

    def run_all(self, cases: list[ProbeCase], jobs: int) -> list[ProbeResult]:
        # Each lab lives and dies inside one worker task: its keepers die with the thread that made
        # them (PR_SET_PDEATHSIG), so no lab may outlive the task that built it.
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            names = unique_names([_pcap_label(case) for case in cases], ".pcap")
            futures = [
                pool.submit(self.run, case, name) for case, name in zip(cases, names, strict=True)
            ]
            try:
                return [future.result() for future in futures]
            except BaseException:
                self.cancel.set()
                for future in futures:
                    future.cancel()
                raise

    def run(self, case: ProbeCase, pcap_name: str | None = None) -> ProbeResult:
        result = ProbeResult(case)
        try:
            with Lab(routed=case.routed) as lab:
                self._run_in(lab, case, result, pcap_name)
        except ClosebenchError as error:
            result.error = str(error)
        return result

    def _run_in(
        self, lab: Lab, case: ProbeCase, result: ProbeResult, pcap_name: str | None
    ) -> None:
        server = case.server.with_attacker_rule(lab.attacker_ip(case.family))
        if self.pcap_dir and peer_for(server.spec):  # its generated config beside the capture
            name = pcap_name or unique_names([_pcap_label(case)], ".pcap")[0]
            # The real path: its server may run as a user who cannot reach an anchor.
            files = os.path.join(os.path.realpath(self.pcap_dir), name.removesuffix(".pcap"))
            server = replace(server, files=files)
        defender = Defender(lab, server, self.listen_timeout)
        try:
            self.observe(lab, case, server.port, result, pcap_name)
        finally:
            result.server_stats = defender.stop()
            defender.close()

    def observe(
        self,
        lab: Lab,
        case: ProbeCase,
        port: int,
        result: ProbeResult,
        pcap_name: str | None = None,  # unique among the cases of one run_all
    ) -> None:
        """One attempt from the attacker host to the defender's `port`, captured and classified."""
        with tempfile.TemporaryDirectory(prefix="closebench-probe-") as scratch:
            name = pcap_name or unique_names([_pcap_label(case)], ".pcap")[0]
            pcap = os.path.join(self.pcap_dir or scratch, name)
            capture = Capture(lab.attacker, "eth0", f"tcp port {port} or icmp or icmp6", pcap)
            try:
                attempt, result.client_saw, result.defender_sockets = self._attempt(lab, case, port)
                time.sleep(SETTLE)
            finally:
                capture.stop()
            client = Endpoint(attempt.src, attempt.sport)
            result.timeline = connection_events(pcap, client, Endpoint(attempt.dst, attempt.dport))
            result.attempt = classify(result.timeline, attempt)
            result.pcap = shown(pcap) if self.pcap_dir else None

    def _attempt(self, lab: Lab, case: ProbeCase, port: int) -> tuple[Attempt, str, list[str]]:
        """One request from a kernel socket in the attacker host, as an ordinary client makes it;
        also what the defender's kernel held for it when the client stopped waiting."""
        family = case.family
        src, dst = lab.attacker_ip(family), lab.defender_ip(family)
        with lab.attacker.entered():
            sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6)
        with sock:
            sock.bind((src, 0))
            attempt = Attempt(
                attacker="probe",
                family=family,
                src=src,
                sport=sock.getsockname()[1],
                dst=dst,
                dport=port,
                client_timeout=self.timeout,
                outcome=Outcome.SILENT,
                t_syn=time.time(),
            )
            saw = self._converse(sock, attempt, case.request_delay)
            attempt.t_end = attempt.t_end or time.time()
            client = (attempt.src, attempt.sport)
            held = [
                s.state + (" (orphan)" if s.orphan else "")
                for s in tcp_sockets(lab.defender)
                if s.remote == client
            ]
        return attempt, saw, held

    def _converse(self, sock: socket.socket, attempt: Attempt, request_delay: float) -> str:
        """Connect, send the request, read until the server ends it or the timeout. Returns what
        the client's socket API reported."""
        try:
            sock.settimeout(self.timeout)
            sock.connect((attempt.dst, attempt.dport))
            self.cancel.wait(request_delay)
            sock.sendall(request_bytes(self.path, attempt.dst))
            attempt.t_request = time.time()
            deadline = time.monotonic() + self.timeout
            received = 0
            while not self.cancel.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return f"no end within {self.timeout:g} s ({received} bytes read)"
                sock.settimeout(min(remaining, 0.2))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    attempt.t_end = time.time()
                    return f"end of stream after {received} bytes"
                received += len(chunk)
            return "cancelled"
        except TimeoutError:
            return f"connect timed out after {self.timeout:g} s"
        except OSError as error:
            attempt.t_end = time.time()
            return f"{errno.errorcode.get(error.errno, 'error')}: {error.strerror}"


def _pcap_label(case: ProbeCase) -> str:
    return f"probe-{case.label}-ipv{case.family}"

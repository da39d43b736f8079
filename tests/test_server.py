"""The reference server's costs on the defender side, and its errors, on real sockets in a lab."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psutil
import pytest

from closebench.core.errors import LabError
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.lab.socket_table import tcp_counters, tcp_sockets
from closebench.servers.strategies import parse_spec
from tests.conftest import wait_until

PORT = 8080


def _client(lab: Lab, family: int = 4) -> socket.socket:
    with lab.attacker.entered():
        sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6)
    sock.settimeout(5)
    sock.connect((lab.defender_ip(family), PORT))
    return sock


def _get(lab: Lab, path: str) -> bytes:
    with _client(lab) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


def _connection(lab: Lab, client: socket.socket) -> list:
    port = client.getsockname()[1]
    return [s for s in tcp_sockets(lab.defender) if s.remote[1] == port]


@pytest.fixture
def serve(request):
    """Start a reference server in a lab: serve(spec, routed=False, **config) -> (lab, defender)."""
    started: list[tuple[Lab, Defender]] = []

    def start(spec: str, routed: bool = False, **config) -> tuple[Lab, Defender]:
        lab = Lab(routed=routed)
        try:
            defender = Defender(lab, ServerConfig(PORT, parse_spec(spec), **config))
        except BaseException:
            lab.close()
            raise
        started.append((lab, defender))
        return lab, defender

    yield start
    for lab, defender in started:
        defender.close()
        lab.close()


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_legitimate_requests_get_200(serve, family):
    lab, _ = serve("rst")
    with _client(lab, family) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.needs_lab
def test_repair_keeps_no_socket_for_the_connection(serve):
    lab, _ = serve("repair")
    client = _client(lab)
    with client:
        client.sendall(b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n")
        assert wait_until(lambda: not _connection(lab, client))
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(1)  # while the server forgot it, the client still waits


@pytest.mark.needs_lab
def test_ttl_drop_across_a_router_leaves_an_orphan_retransmitting_its_fin(serve):
    lab, _ = serve("ttl-drop", routed=True)
    retransmitted = tcp_counters(lab.defender)["RetransSegs"]
    client = _client(lab)
    with client:
        client.sendall(b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n")
        # The FIN dies at the router: the defender's kernel keeps the closed socket in FIN-WAIT-1
        # and retransmits it, a cost no fd count shows.
        assert wait_until(
            lambda: any(s.orphan and s.state == "FIN-WAIT-1" for s in _connection(lab, client))
        )
        assert wait_until(lambda: tcp_counters(lab.defender)["RetransSegs"] > retransmitted)


def _accept_queue(lab: Lab) -> int:
    """Connections waiting in the defender's listen queues: a LISTEN socket's rx_queue in the
    kernel's socket table (/proc/net/tcp, tcp6)."""
    waiting = 0
    for table in ("tcp", "tcp6"):
        for line in lab.defender.proc_net(table).splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


@pytest.mark.needs_lab
def test_never_survives_fd_exhaustion_and_still_answers(serve):
    nofile, clients = 64, 100
    lab, defender = serve("never", nofile=nofile)
    server = psutil.Process(defender.server_pid)
    spare = nofile - server.num_fds()  # what is left for clients once it listens
    held = []
    try:
        for _ in range(clients):
            sock = _client(lab)
            sock.sendall(b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n")
            held.append(sock)
        # Events, not a sleep: the server said it ran out, and every connection left the
        # kernel's listen queue (held, or refused with a 503).
        assert wait_until(lambda: "out of file descriptors" in defender.log(), timeout=30)
        assert wait_until(lambda: _accept_queue(lab) == 0, timeout=30)
        assert server.num_fds() == nofile
        assert _get(lab, "/").startswith(b"HTTP/1.1 503"), "a full server must still say 503"
        assert defender.alive()
        # Not spinning: a busy loop would burn a whole core while it cannot accept.
        before = sum(server.cpu_times()[:2])
        time.sleep(1.0)
        assert sum(server.cpu_times()[:2]) - before < 0.5
        stats = defender.stop()  # while the clients are still there: `held` is then exact
    finally:
        for sock in held:
            sock.close()
    assert stats["held"] == spare
    assert stats["refused_emfile"] == clients - spare + 1  # the others, and the GET /


@pytest.mark.needs_lab
def test_busy_port_is_a_clear_error(serve):
    lab, _ = serve("graceful")
    with pytest.raises(LabError, match=r"port 8080 .*(in use|busy)"):
        Defender(lab, ServerConfig(PORT, parse_spec("graceful")))


@pytest.mark.needs_lab
def test_repair_without_cap_net_admin_says_so(serve):
    lab = Lab()
    try:
        command = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
        command += ServerConfig(PORT, parse_spec("repair")).argv()
        with pytest.raises(LabError, match="CAP_NET_ADMIN"):
            Defender(lab, ServerConfig(PORT, command=command))
    finally:
        lab.close()


def test_read_first_false_needs_an_address_rule():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "closebench.servers.reference",
            "--strategy",
            "rst:read_first=false",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "--abuse-source" in result.stderr

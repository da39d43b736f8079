"""One conversation, two drivers: the asyncio spammer and a blocking-style socket (the Locust
user's gevent sockets are those) classify the same real loopback connections alike."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

import pytest

from closebench.attackers.conversation import conversation, drive_blocking, new_attempt
from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Policy, Target
from closebench.core.outcomes import Attempt, Outcome

TIMEOUT = 0.5


class Server:
    """A loopback listener that treats every connection as `behaviour` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                conn.recv(4096)  # the request first, as the reference server does
                if self.behaviour == "fin":
                    conn.close()
                elif self.behaviour == "rst":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                elif self.behaviour == "ok":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    conn.close()
                else:  # silent: hold it, say nothing
                    self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def blocking(target: Target) -> Attempt:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        attempt = new_attempt("blocking", target, sock, TIMEOUT)
        drive_blocking(sock, conversation(attempt, target, request_delay=0.0))
    return attempt


def with_asyncio(target: Target) -> Attempt:
    policy = Policy(timeout=TIMEOUT, duration=1.0)
    return asyncio.run(KernelSpammer("asyncio").attempt(target, policy, "127.0.0.1", TIMEOUT))


@pytest.mark.parametrize("drive", [blocking, with_asyncio], ids=["blocking", "asyncio"])
@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [("fin", Outcome.FIN), ("rst", Outcome.RST), ("silent", Outcome.SILENT), ("ok", Outcome.FIN)],
)
def test_both_drivers_classify_alike(drive, behaviour, outcome):
    server = Server(behaviour)
    try:
        attempt = drive(Target("127.0.0.1", server.port))
    finally:
        server.close()
    assert attempt.outcome == outcome, attempt
    assert attempt.t_syn <= attempt.t_established <= attempt.t_request <= attempt.t_end
    hang = attempt.hang_s
    assert hang >= TIMEOUT if outcome == Outcome.SILENT else hang < TIMEOUT
    assert attempt.sport > 0 and attempt.src == "127.0.0.1"
    if behaviour == "ok":
        assert attempt.http_status == 200 and attempt.data_first
    else:
        assert attempt.bytes_received == 0 and attempt.http_status is None


@pytest.mark.parametrize("drive", [blocking, with_asyncio], ids=["blocking", "asyncio"])
def test_both_drivers_see_a_refused_connection(drive):
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        attempt = drive(Target("127.0.0.1", port))
    assert attempt.outcome == Outcome.REFUSED
    assert attempt.t_established is None and attempt.t_request is None and attempt.hang_s is None

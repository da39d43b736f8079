"""Locust's web UI, served by the master inside the lab, reachable from this machine's loopback.

The master listens on its lab address (the lab's namespaces are unreachable from outside), so
closebench listens on 127.0.0.1 and relays each connection into the lab host: a browser on this
machine gets the live UI while the attack runs, and nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from closebench.core.errors import UsageError
from closebench.lab import Host

ACCEPT_POLL = 0.2  # seconds between looks at the stop flag
CHUNK = 65536


def loopback_listener(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`; UsageError (exit 2) when the port is taken."""
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError as error:
        raise UsageError(
            f"--locust-ui: cannot listen on 127.0.0.1:{port} ({error.strerror}): "
            "stop what uses that port, or run without --locust-ui"
        ) from None


class Forwarder:
    """Relays connections accepted on `listener` to `target` inside `host`, until close()."""

    def __init__(self, listener: socket.socket, host: Host, target: tuple[str, int]) -> None:
        self.listener = listener
        self.host = host
        self.target = target
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()  # relayed connections, ended by close()
        self.listener.settimeout(ACCEPT_POLL)
        self._thread = threading.Thread(target=self._accept, name="locust-ui", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        with self.host.entered():
            upstream = socket.socket(family, socket.SOCK_STREAM)
        self._open.update((client, upstream))
        with client, upstream:
            try:
                upstream.connect(self.target)
            except OSError:
                return  # the master is not serving (yet, or any more): the browser sees a reset
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
        self._open.difference_update((client, upstream))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s sending side."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(CHUNK):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)

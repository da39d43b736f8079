"""Socket operations of the close strategies: closing with FIN or RST, the hop limit of the next
packets, the sockets a strategy holds, a reserve descriptor for when the others run out."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import threading

from closebench.servers.reference.log import log

TCP_REPAIR = 19  # linux/tcp.h; Python's socket module does not export it
DRAIN_LIMIT = 16  # recv() calls spent emptying a receive queue before a FIN close


def drain_input(sock: socket.socket) -> None:
    """Read and discard what is queued on a non-blocking socket."""
    try:
        for _ in range(DRAIN_LIMIT):
            if not sock.recv(65536):
                return
    except OSError:
        pass  # BlockingIOError: queue empty; anything else: nothing left worth reading


def close_with_fin(sock: socket.socket) -> None:
    # Linux answers close() with RST, not FIN, while unread input is queued (RFC 2525 2.17),
    # e.g. a request that arrived before a read_first=false close: empty the queue first.
    drain_input(sock)
    sock.close()


def close_with_rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def kill_with_ss(sock: socket.socket) -> None:
    """ss-kill: another process (`ss -K`, SOCK_DESTROY through inet_diag) destroys the
    connection, as a detector outside the server would; the kernel sends the peer an RST and the
    server's socket is left dead (ECONNABORTED), to be closed without another packet. If that
    did not happen (no ss, a kernel without CONFIG_INET_DIAG_DESTROY), an RST close instead."""
    try:
        local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
        where = ["src", format_address(*local), "dst", format_address(*remote)]
        subprocess.run(["ss", "-K", "-t", *where], capture_output=True, timeout=5)
        killed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNABORTED
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"!!! ss -K failed ({exc})")
        killed = False
    if not killed:
        log("!!! ss -K left the connection alive; closing with RST instead")
        close_with_rst(sock)
        return
    sock.close()


def set_hop_limit(sock: socket.socket, hops: int) -> None:
    """Give the socket's next packets this TTL (IPv4) or hop limit (IPv6)."""
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
    except OSError as exc:
        log(f"cannot set the hop limit to {hops} ({exc}); the packet leaves with the default")


def open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Held:
    """Sockets a strategy keeps open. delayed-thread workers remove theirs, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def __len__(self) -> int:
        with self._lock:
            return len(self._socks)

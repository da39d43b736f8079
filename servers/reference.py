"""The closebench reference server: one event loop that closes abusive clients a chosen way.

Run ``python -m servers.reference --strategy SPEC``. Legitimate requests get a tiny 200; abusive
ones (by request path or source address) are handed to the close strategy named in SPEC, whose
names and options live in servers/strategies.py. A ban strategy (blacklist, fw-drop, fw-reject)
also bans the abusive address (servers/bans.py) and closes with its `then` strategy. zero-window
traps the --abuse-source addresses before the kernel's TCP sees them (servers/zero_window.py);
an abusive request that still reaches the server (another source) is closed with RST.

stdout: exactly one ``listening on ...`` line once ready, and one JSON line of counters after
SIGTERM/SIGINT. stderr: short log lines prefixed ``closebench-server:``. Exit status 2 on bad
options or a startup problem (busy port, no CAP_NET_ADMIN for repair), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import ipaddress
import itertools
import json
import os
import queue
import random
import re
import resource
import selectors
import signal
import socket
import string
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from servers.bans import BanBook, BanError, BanPolicy, NftBanner
from servers.strategies import CLOSE_NAMES, STRATEGIES, Option, StrategySpec, parse_spec

if TYPE_CHECKING:  # imported by zero-window only: the other strategies need no dpkt
    from servers.zero_window import ZeroWindowTarpit

PROG = "closebench-server"
TCP_REPAIR = 19  # linux/tcp.h; Python's socket module does not export it
REQUEST_CAP = 8 * 1024
IDLE_TIMEOUT = 10.0  # seconds from accept for a request to be complete
LINGER_TIMEOUT = 2.0  # seconds to wait for a served client's own close
PAUSE_ACCEPT = 0.1  # seconds to stop listening when even the reserve fd cannot help
ACCEPT_BATCH = 64  # accepts per readiness event, so one busy listener cannot starve the rest
DRAIN_LIMIT = 16  # recv() calls spent emptying a receive queue before a FIN close
MIN_NOFILE = 16  # stdio, two listeners, epoll, the signal wakeup pair, the reserve, headroom
LETTERS = string.ascii_letters.encode()

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Action = Callable[[], None]


class StartupError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def http_response(status: str, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(payload)}\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


OK_200 = http_response("200 OK", "ok\n")
BAD_REQUEST_400 = http_response("400 Bad Request", "bad request\n")
TOO_LARGE_431 = http_response("431 Request Header Fields Too Large", "request too large\n")
REFUSED_503 = http_response("503 Service Unavailable", "out of file descriptors\n")


# --- timers ------------------------------------------------------------------------------------


class Timer:
    """One scheduled action. cancel() leaves it in the heap as a no-op: cheaper than removal."""

    __slots__ = ("action", "cancelled")

    def __init__(self, action: Action) -> None:
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One min-heap of due times; the loop sleeps in select() until the earliest is due.

    Cancelled entries stay until their due time, so the heap holds at most the timers scheduled
    in the last IDLE_TIMEOUT (or delay) seconds.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()  # tie-breaker, so Timers themselves are never compared

    def after(self, delay: float, action: Action) -> Timer:
        timer = Timer(action)
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), timer))
        return timer

    def timeout(self) -> float | None:
        """Seconds until the next live timer, or None to block until I/O."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def run_due(self) -> None:
        # Timers added while running are due strictly after `now`, so this always ends.
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                timer.cancelled = True
                timer.action()


# --- what counts as abuse ----------------------------------------------------------------------


@dataclass(frozen=True)
class AbuseRules:
    path: re.Pattern[str]
    sources: tuple[IPNetwork, ...]

    def source_matches(self, host: str) -> bool:
        if not self.sources:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            candidates.append(address.ipv4_mapped)  # ::ffff:a.b.c.d matches a.b.c.d/n rules
        return any(a in net for a in candidates for net in self.sources)

    def path_matches(self, target: str | None) -> bool:
        return target is not None and self.path.search(target) is not None


def request_target(head: bytes) -> str | None:
    """The request-target of a complete request line, else None."""
    line, newline, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if not newline or len(parts) != 3 or not parts[1]:
        return None
    return parts[1].decode("latin-1")


# --- socket helpers ----------------------------------------------------------------------------


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


# --- the server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    spec: StrategySpec
    port: int
    bind4: str
    bind6: str | None  # None: --no-ipv6
    rules: AbuseRules
    backlog: int
    ban_netns: str | None = None  # fw-*: enforce bans in this network namespace (a router's)


@dataclass
class Counters:
    served: int = 0
    abusive: int = 0
    refused_emfile: int = 0
    repair_fallbacks: int = 0


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    flagged: bool  # the source address matches --abuse-source
    buf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    timer: Timer | None = None
    host: str = ""  # the client's address
    banned: bool = False  # blacklist with read_banned: closed once its request is read


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


class Server:
    def __init__(self, config: Config, listeners: Sequence[socket.socket]) -> None:
        self.config = config
        self.spec = config.spec
        self.read_first = bool(self.spec.options.get("read_first", True))
        bans = STRATEGIES[self.spec.name].bans
        # A ban strategy closes abusive connections with its `then` close strategy; zero-window
        # closes those it did not trap (another source) with RST.
        self.close_name = str(self.spec.options["then"]) if bans else self.spec.name
        if self.spec.name == "zero-window":
            self.close_name = "rst"
        self.tarpit: ZeroWindowTarpit | None = None  # zero-window: see attach_tarpit()
        self.book = BanBook(BanPolicy.from_options(self.spec.options)) if bans else None
        self.blacklist = self.spec.name == "blacklist"
        self.turned_away = 0  # blacklist: connections of banned addresses closed at once
        self.banner: NftBanner | None = None  # fw-*: see start_banner()
        self._done: queue.SimpleQueue[Action] = queue.SimpleQueue()
        self.listeners = list(listeners)
        self.sel = selectors.DefaultSelector()
        self.timers = Timers()
        self.counters = Counters()
        self.held = Held()
        # Taken before any client arrives: it is what lets us answer 503 once `never` (or a
        # flood) has eaten every other descriptor.
        self.reserve = open_reserve()
        self.paused = False
        self.stopping = False
        self.emfile_events = 0
        self.emfile_logged_at = -1.0e9
        self.wakeup: tuple[socket.socket, socket.socket] | None = None
        # Names come from servers/strategies.py; the check below catches one left unimplemented.
        self.strategies: dict[str, Callable[[socket.socket], None]] = {
            "graceful": close_with_fin,
            "rst": close_with_rst,
            "repair": self._repair,
            "never": self.held.add,
            "delayed-thread": self._delayed_thread,
            "delayed-reaper": self._delayed_reaper,
            "tarpit": self._tarpit,
            "ttl-drop": self._ttl_drop,
            "rst-ttl": self._rst_ttl,
        }
        missing = set(CLOSE_NAMES) - self.strategies.keys()
        if missing:
            raise RuntimeError(f"strategies without an implementation: {sorted(missing)}")

    # loop

    def start_banner(self) -> None:
        """fw-*: start the thread that adds bans to the nftables set; BanError if it cannot."""
        verdict = "drop" if self.spec.name == "fw-drop" else "reject"
        self.banner = NftBanner(verdict, self._call_soon)
        self.banner.start(self.config.ban_netns)

    def attach_tarpit(self, tarpit: ZeroWindowTarpit) -> None:
        """zero-window: answer the trapped sources' packets from this loop."""
        self.tarpit = tarpit
        self.sel.register(tarpit.fileno(), selectors.EVENT_READ, tarpit.on_readable)

    def run(self) -> dict[str, object]:
        """Serve until SIGTERM/SIGINT; return the counters."""
        self._install_signal_handlers()
        self._listen()
        print(self.ready_line(), flush=True)
        while not self.stopping:
            for key, _ in self.sel.select(self.timers.timeout()):
                key.data()
            self.timers.run_due()
            self._run_done()
        for listener in self.listeners:
            listener.close()
        summary = {**asdict(self.counters), "held": len(self.held), "strategy": str(self.spec)}
        if self.tarpit is not None:
            self.tarpit.close()
            summary.update({f"zw_{name}": value for name, value in self.tarpit.stats().items()})
        if self.book is not None:
            if self.banner is not None:
                self.banner.stop()
                summary.update(self.banner.stats())
            summary["bans"] = len(self.book.log)
            summary["turned_away"] = self.turned_away
            summary["ban_log"] = [ban.to_dict() for ban in self.book.log]
        return summary

    def _call_soon(self, action: Action) -> None:
        """From another thread: run `action` in the event loop (the signal wakeup fd wakes it)."""
        self._done.put(action)
        if self.wakeup is not None:
            with contextlib.suppress(OSError):  # full: the loop is awake already
                self.wakeup[1].send(b"\0")

    def _run_done(self) -> None:
        while True:
            try:
                action = self._done.get_nowait()
            except queue.Empty:
                return
            action()

    def ready_line(self) -> str:
        addresses = " ".join(format_address(*s.getsockname()[:2]) for s in self.listeners)
        return f"listening on {addresses} strategy={self.spec}"

    def _install_signal_handlers(self) -> None:
        # Python retries epoll_wait after a signal handler returns (PEP 475), so a handler that
        # only sets a flag would wait for the next event; the wakeup fd makes select() return.
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.sel.register(reader, selectors.EVENT_READ, partial(drain_input, reader))
        self.wakeup = (reader, writer)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    # accepting

    def _listen(self) -> None:
        for listener in self.listeners:
            self.sel.register(listener, selectors.EVENT_READ, partial(self._on_accept, listener))

    def _pause_accepting(self) -> None:
        if self.paused:
            return
        self.paused = True
        for listener in self.listeners:
            self.sel.unregister(listener)
        self.timers.after(PAUSE_ACCEPT, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self.paused = False
        self._listen()

    def _on_accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._on_accept_error(listener, exc)
                return
            self._admit(sock, address[0])

    def _on_accept_error(self, listener: socket.socket, exc: OSError) -> None:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            self._note_fd_exhaustion()
            if not self._refuse_one(listener):
                self._pause_accepting()
        elif exc.errno not in (errno.ECONNABORTED, errno.EPROTO):  # those: the client gave up
            log(f"accept failed: {exc}; not accepting for {PAUSE_ACCEPT * 1000:.0f} ms")
            self._pause_accepting()

    def _note_fd_exhaustion(self) -> None:
        self.emfile_events += 1
        now = time.monotonic()
        if now - self.emfile_logged_at >= 1.0:  # a flood would otherwise flood stderr too
            self.emfile_logged_at = now
            log(
                f"out of file descriptors (EMFILE/ENFILE) x{self.emfile_events}; "
                f"{self.counters.refused_emfile} clients refused with 503 so far"
            )

    def _refuse_one(self, listener: socket.socket) -> bool:
        """Spend the reserve fd on one pending client to tell it 503; False if that failed."""
        if self.reserve is None:
            self.reserve = open_reserve()
            return False
        os.close(self.reserve)
        self.reserve = None
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return True  # the client gave up meanwhile
        except OSError:
            return False
        else:
            self._send_refusal(sock)
            return True
        finally:
            self.reserve = open_reserve()

    def _send_refusal(self, sock: socket.socket) -> None:
        self.counters.refused_emfile += 1
        sock.setblocking(False)
        drain_input(sock)  # so that close() sends FIN after the 503, not RST
        with contextlib.suppress(OSError):  # best effort; 100-odd bytes fit any send buffer
            sock.send(REFUSED_503)
        close_with_fin(sock)

    def _admit(self, sock: socket.socket, host: str) -> None:
        sock.setblocking(False)  # accept() hands back a blocking socket
        conn = Conn(sock, flagged=self.config.rules.source_matches(host), host=host)
        if self.blacklist and self.book is not None and self.book.banned(host):
            self.turned_away += 1
            if not self.spec.options["read_banned"]:
                self.strategies[self.close_name](sock)
                return
            conn.banned = True
        elif conn.flagged and not self.read_first:
            self._punish(sock, host)
            return
        conn.timer = self.timers.after(IDLE_TIMEOUT, partial(self._on_idle, conn))
        self.sel.register(sock, selectors.EVENT_READ, partial(self._on_read, conn))

    # legitimate traffic

    def _on_read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(REQUEST_CAP - len(conn.buf))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        if b"\r\n\r\n" in conn.buf or len(conn.buf) >= REQUEST_CAP:
            self._on_request(conn)

    def _on_request(self, conn: Conn) -> None:
        target = request_target(conn.buf)
        if conn.banned:
            self._detach(conn)
            self.strategies[self.close_name](conn.sock)
        elif conn.flagged or self.config.rules.path_matches(target):
            self._detach(conn)
            self._punish(conn.sock, conn.host)
        elif b"\r\n\r\n" not in conn.buf:
            self._respond(conn, TOO_LARGE_431)
        elif target is None:
            self._respond(conn, BAD_REQUEST_400)
        else:
            self.counters.served += 1
            self._respond(conn, OK_200)

    def _on_idle(self, conn: Conn) -> None:
        conn.timer = None
        if conn.banned:
            self._detach(conn)
            self.strategies[self.close_name](conn.sock)
        elif conn.flagged or self.config.rules.path_matches(request_target(conn.buf)):
            self._detach(conn)
            self._punish(conn.sock, conn.host)  # a flagged client that sends nothing still is
        else:
            self._drop(conn)

    def _respond(self, conn: Conn, reply: bytes) -> None:
        conn.out = reply
        self._on_writable(conn)

    def _on_writable(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self.sel.modify(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
        else:
            self._linger(conn)

    def _linger(self, conn: Conn) -> None:
        # Half-close and wait for the client's own close: a close() racing a late client byte
        # would turn into an RST that can destroy the response before the client reads it.
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = self.timers.after(LINGER_TIMEOUT, partial(self._drop, conn))
        self.sel.modify(conn.sock, selectors.EVENT_READ, partial(self._on_linger_read, conn))

    def _on_linger_read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)

    def _detach(self, conn: Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        with contextlib.suppress(KeyError, ValueError):  # not registered (any more)
            self.sel.unregister(conn.sock)

    def _drop(self, conn: Conn) -> None:
        self._detach(conn)
        conn.sock.close()

    # strategies: each takes an accepted socket that is no longer in the selector

    def _punish(self, sock: socket.socket, host: str) -> None:
        self.counters.abusive += 1
        close = partial(self.strategies[self.close_name], sock)
        ban = self.book.offend(host) if self.book is not None else None
        if ban is None:
            close()
        elif self.banner is None:
            ban.t_effective = ban.t_detected  # blacklist: in force as soon as it is written down
            close()
        else:
            # Close once the firewall stands, so the abuser's immediate reconnect meets it.
            family = 6 if ":" in host else 4
            self.banner.ban(ban, family, close)

    def _repair(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        except OSError as exc:
            self.counters.repair_fallbacks += 1
            log(
                f"!!! TCP_REPAIR failed ({exc}); closing with RST instead "
                f"(fallback #{self.counters.repair_fallbacks})"
            )
            close_with_rst(sock)
            return
        sock.close()  # in repair mode the kernel drops the socket without a packet

    def _delayed_thread(self, sock: socket.socket) -> None:
        self.held.add(sock)
        worker = threading.Thread(target=self._close_later, args=(sock,), daemon=True)
        try:
            worker.start()
        except RuntimeError as exc:  # "can't start new thread": out of memory or pids
            log(f"cannot start a delayed-close thread ({exc}); closing now")
            self.held.discard(sock)
            close_with_fin(sock)

    def _close_later(self, sock: socket.socket) -> None:
        time.sleep(float(self.spec.options["delay"]))
        close_with_fin(sock)
        self.held.discard(sock)

    def _delayed_reaper(self, sock: socket.socket) -> None:
        self.held.add(sock)
        self.timers.after(float(self.spec.options["delay"]), partial(self._reap, sock))

    def _reap(self, sock: socket.socket) -> None:
        close_with_fin(sock)
        self.held.discard(sock)

    def _tarpit(self, sock: socket.socket) -> None:
        self.held.add(sock)
        conn = Conn(sock, flagged=True)
        self._schedule_drip(conn)
        # Still read, to notice the client leaving and forget it then.
        self.sel.register(sock, selectors.EVENT_READ, partial(self._on_tarpit_read, conn))

    def _schedule_drip(self, conn: Conn) -> None:
        conn.timer = self.timers.after(
            float(self.spec.options["interval"]), partial(self._drip, conn)
        )

    def _drip(self, conn: Conn) -> None:
        try:
            conn.sock.send(bytes([random.choice(LETTERS)]))
        except BlockingIOError:
            pass  # the client stopped reading and its window is full: skip this byte
        except OSError:
            self._release(conn)
            return
        self._schedule_drip(conn)

    def _on_tarpit_read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._release(conn)

    def _release(self, conn: Conn) -> None:
        self.held.discard(conn.sock)
        self._drop(conn)

    def _ttl_drop(self, sock: socket.socket) -> None:
        set_hop_limit(sock, 1)
        close_with_fin(sock)

    def _rst_ttl(self, sock: socket.socket) -> None:
        # The RST is the socket's last packet: with a small TTL it dies at a router, whose
        # connection tracking has seen it go by and forgets the connection.
        set_hop_limit(sock, int(self.spec.options["ttl"]))
        close_with_rst(sock)


# --- startup -----------------------------------------------------------------------------------


def listen_on(family: socket.AddressFamily, host: str, port: int, backlog: int) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        hint = "; use --no-ipv6" if family == socket.AF_INET6 else ""
        raise StartupError(f"cannot create a socket for {host}: {exc.strerror}{hint}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # v4 has its own socket
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartupError(bind_error(exc, host, port)) from None
    return sock


def bind_error(exc: OSError, host: str, port: int) -> str:
    where = format_address(host, port)
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on {host}; choose another with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        flag = "--bind6 (or --no-ipv6)" if ":" in host else "--bind4"
        return f"address {host} is not configured on this host; choose another with {flag}"
    if exc.errno == errno.EACCES:
        return f"not allowed to bind {where} (ports below 1024 need root); choose another --port"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def bind_listeners(config: Config) -> list[socket.socket]:
    listeners = [listen_on(socket.AF_INET, config.bind4, config.port, config.backlog)]
    if config.bind6 is not None:
        port = listeners[0].getsockname()[1]  # with --port 0, v6 takes the port v4 got
        try:
            listeners.append(listen_on(socket.AF_INET6, config.bind6, port, config.backlog))
        except StartupError:
            listeners[0].close()
            raise
    return listeners


def check_tcp_repair() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except PermissionError:
        raise StartupError(
            "strategy repair needs CAP_NET_ADMIN for TCP_REPAIR: run as root, "
            "or without sudo under `unshare -Urnm`"
        ) from None
    except OSError as exc:
        raise StartupError(f"strategy repair: this kernel refuses TCP_REPAIR ({exc})") from None
    finally:
        probe.close()


def open_tarpit(config: Config) -> ZeroWindowTarpit:
    """zero-window: the tarpit's sockets, opened; StartupError if they cannot be."""
    from servers.zero_window import TarpitError, ZeroWindowTarpit  # dpkt: for this one only

    tarpit = ZeroWindowTarpit(config.port, config.rules.sources)
    try:
        tarpit.open()
    except TarpitError as exc:
        raise StartupError(str(exc)) from None
    return tarpit


def set_nofile(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        hard = limit  # raising the hard limit needs CAP_SYS_RESOURCE; the error says so
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot set the open-file limit to {limit}: {exc}") from None


# --- command line ------------------------------------------------------------------------------


def _checked(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Turn a parser's ValueError into an argparse error that shows its message."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}, got {value}")
        return value

    return parse


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"bad regular expression {text!r}: {exc}") from None


def _literal(
    kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
) -> Callable[[str], str]:
    def parse(text: str) -> str:
        return str(kind(text))  # AddressValueError is a ValueError

    return parse


def strategies_epilog() -> str:
    def show(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    lines = ["strategies (SPEC is NAME[:key=value,...], e.g. repair:read_first=false):"]
    options: dict[str, Option] = {}  # each option once, though most strategies share them
    for strategy in STRATEGIES.values():
        lines.append(f"  {strategy.name:18}{strategy.summary}")
        options.update({o.name: o for o in strategy.options})
    lines.append("strategy options:")
    lines += [f"  {o.name + '=' + show(o.default):18}{o.help}" for o in options.values()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="closebench reference server: serves 'ok' and closes abusive clients "
        "with the chosen strategy.",
        epilog=strategies_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--strategy", required=True, metavar="SPEC", type=_checked(parse_spec), help="see below")
    add("--port", type=_checked(_int_at_least(0, 65535)), default=8080, help="default 8080")
    add(
        "--bind4", type=_checked(_literal(ipaddress.IPv4Address)), default="0.0.0.0", metavar="ADDR"
    )
    add("--bind6", type=_checked(_literal(ipaddress.IPv6Address)), default="::", metavar="ADDR")
    add("--no-ipv6", action="store_true", help="do not listen on IPv6")
    add(
        "--abuse-path",
        type=_checked(_regex),
        default="^/spam",
        metavar="REGEX",
        help="requests whose target matches (re.search) are abusive; default ^/spam",
    )
    add(
        "--abuse-source",
        type=_checked(partial(ipaddress.ip_network, strict=False)),
        action="append",
        default=[],
        metavar="CIDR",
        help="treat clients from this network as abusive (repeatable, IPv4 or IPv6)",
    )
    add("--nofile", type=_checked(_int_at_least(MIN_NOFILE)), metavar="N", help="set RLIMIT_NOFILE")
    add(
        "--backlog", type=_checked(_int_at_least(1)), default=1024, metavar="N", help="default 1024"
    )
    add(
        "--ban-netns",
        metavar="PATH",
        help="fw-drop/fw-reject: add bans to the nftables sets of this network namespace (e.g. "
        "/proc/PID/ns/net of a router) instead of the server's own",
    )
    return parser


def make_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    spec: StrategySpec = args.strategy
    if spec.by_address and not args.abuse_source:
        when = "on the SYN" if spec.name == "zero-window" else "at accept"
        parser.error(
            f"{spec} acts {when}, before the request is read, so it needs "
            "--abuse-source CIDR (path rules need the request)"
        )
    firewall = spec.name in ("fw-drop", "fw-reject")
    if args.ban_netns and not firewall:
        parser.error("--ban-netns goes with fw-drop or fw-reject")
    if firewall and spec.options["where"] == "router" and not args.ban_netns:
        parser.error(
            "where=router bans on the router: give its network namespace with --ban-netns PATH "
            "(closebench does)"
        )
    return Config(
        spec=spec,
        port=args.port,
        bind4=args.bind4,
        bind6=None if args.no_ipv6 else args.bind6,
        rules=AbuseRules(args.abuse_path, tuple(args.abuse_source)),
        backlog=args.backlog,
        ban_netns=args.ban_netns,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = make_config(parser, args)
    tarpit = None
    try:
        if args.nofile is not None:
            set_nofile(args.nofile)
        if "repair" in (config.spec.name, config.spec.options.get("then")):
            check_tcp_repair()
        if config.spec.name == "zero-window":
            # Before listening: whoever sees the port listen may send its SYN at once.
            tarpit = open_tarpit(config)
        listeners = bind_listeners(config)
    except StartupError as exc:
        if tarpit is not None:
            tarpit.close()
        log(f"error: {exc}")
        return 2
    server = Server(config, listeners)
    if tarpit is not None:
        server.attach_tarpit(tarpit)
    if config.spec.name in ("fw-drop", "fw-reject"):
        try:
            server.start_banner()
        except BanError as exc:
            log(f"error: {exc}")
            return 2
    summary = server.run()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

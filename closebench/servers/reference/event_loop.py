"""The reference server's event loop and its close strategies (the package's docstring says
what it serves and how it reports)."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import random
import selectors
import signal
import socket
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from closebench.servers.bans import BanBook, BanPolicy, NftBanner
from closebench.servers.bpf_maps import BpfBanner
from closebench.servers.reference.deadlines import Timer, Timers
from closebench.servers.reference.log import count_thread_crashes, log
from closebench.servers.reference.protocol import (
    BAD_REQUEST_400,
    OK_200,
    REFUSED_503,
    TOO_LARGE_431,
    Config,
    request_target,
)
from closebench.servers.reference.sockets import (
    TCP_REPAIR,
    Held,
    close_with_fin,
    close_with_rst,
    drain_input,
    format_address,
    kill_with_ss,
    open_reserve,
    set_hop_limit,
)
from closebench.servers.strategies import CLOSE_NAMES, STRATEGIES

if TYPE_CHECKING:  # imported by zero-window only: the other strategies need no dpkt
    from closebench.servers.zero_window import ZeroWindowTarpit

REQUEST_CAP = 8 * 1024
IDLE_TIMEOUT = 10.0  # seconds from accept for a request to be complete
LINGER_TIMEOUT = 2.0  # seconds to wait for a served client's own close
PAUSE_ACCEPT = 0.1  # seconds to stop listening when even the reserve fd cannot help
ACCEPT_BATCH = 64  # accepts per readiness event, so one busy listener cannot starve the rest
LETTERS = string.ascii_letters.encode()

Action = Callable[[], None]


@dataclass
class Counters:
    accepted: int = 0  # connections admitted from accept(): each one woke the server
    served: int = 0
    abusive: int = 0
    refused_emfile: int = 0
    repair_fallbacks: int = 0
    thread_crashes: int = 0  # threads that died of an exception; thread_crash: the first's
    thread_crash: str | None = None


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    flagged: bool  # the source address matches --abuse-source
    buf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    timer: Timer | None = None
    host: str = ""  # the client's address
    banned: bool = False  # blacklist with read_banned: closed once its request is read


class Server:
    def __init__(self, config: Config, listeners: Sequence[socket.socket]) -> None:
        self.config = config
        self.spec = config.spec
        self.read_first = bool(self.spec.options.get("read_first", True))
        bans = STRATEGIES[self.spec.name].bans
        # A ban or cap strategy closes abusive connections with its `then` close strategy;
        # zero-window closes those it did not trap (another source) with RST.
        then = self.spec.options.get("then")
        self.close_name = str(then) if then else self.spec.name
        if self.spec.name == "zero-window":
            self.close_name = "rst"
        self.tarpit: ZeroWindowTarpit | None = None  # zero-window: see attach_tarpit()
        self.book = BanBook(BanPolicy.from_options(self.spec.options)) if bans else None
        self.blacklist = self.spec.name == "blacklist"
        self.turned_away = 0  # blacklist: connections of banned addresses closed at once
        self.banner: NftBanner | BpfBanner | None = None  # see start_banner()
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
        # Names come from closebench/servers/strategies.py; the check below catches one left
        # unimplemented.
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
            "ss-kill": kill_with_ss,
        }
        missing = set(CLOSE_NAMES) - self.strategies.keys()
        if missing:
            raise RuntimeError(f"strategies without an implementation: {sorted(missing)}")

    # loop

    def start_banner(self) -> None:
        """fw-*: start the thread that adds bans to the nftables set (xdp-drop, tc-drop: open
        the BPF ban maps); BanError or BpfError if it cannot."""
        if self.config.bpf_maps is not None:
            self.banner = BpfBanner(self.config.bpf_maps)
        else:
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
        count_thread_crashes(self.counters)
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
        self.counters.accepted += 1
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
            if (reply := self.config.rules.auth_reply(conn.buf, conn.flagged)) is not None:
                self._respond(conn, reply)  # basic auth on the path: 401 for no pair, 200 right
            else:
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
        self.sel.modify(
            conn.sock, selectors.EVENT_READ, partial(self._discard_until_eof, conn, self._drop)
        )

    def _discard_until_eof(self, conn: Conn, at_eof: Callable[[Conn], None]) -> None:
        """Read and throw away what a held client sends; `at_eof` once it has gone."""
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            at_eof(conn)

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
        self.sel.register(
            sock, selectors.EVENT_READ, partial(self._discard_until_eof, conn, self._release)
        )

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

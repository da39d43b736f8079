"""Starting the server: its listening sockets, its open-file limit, TCP_REPAIR and the zero-window
tarpit checked first. Each problem is a StartupError: one line, exit status 2."""

from __future__ import annotations

import errno
import resource
import socket
from typing import TYPE_CHECKING

from closebench.servers.reference.protocol import Config
from closebench.servers.reference.sockets import TCP_REPAIR, format_address

if TYPE_CHECKING:  # imported by zero-window only: the other strategies need no dpkt
    from closebench.servers.zero_window import ZeroWindowTarpit


class StartupError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def tcp_options(config: Config) -> list[tuple[int, int]]:
    """The listener's TCP options from the strategy (accepted sockets inherit them)."""
    options = config.spec.options
    found = []
    if int(options.get("defer_accept", 0)):
        found.append((socket.TCP_DEFER_ACCEPT, int(options["defer_accept"])))
    if float(options.get("user_timeout", 0.0)):
        milliseconds = max(1, round(float(options["user_timeout"]) * 1000))
        found.append((socket.TCP_USER_TIMEOUT, milliseconds))
    return found


def listen_on(
    family: socket.AddressFamily,
    host: str,
    port: int,
    backlog: int,
    options: list[tuple[int, int]] | None = None,
) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        hint = "; use --no-ipv6" if family == socket.AF_INET6 else ""
        raise StartupError(f"cannot create a socket for {host}: {exc.strerror}{hint}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # v4 has its own socket
        for option, value in options or ():
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
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
    options = tcp_options(config)
    listeners = [listen_on(socket.AF_INET, config.bind4, config.port, config.backlog, options)]
    if config.bind6 is not None:
        port = listeners[0].getsockname()[1]  # with --port 0, v6 takes the port v4 got
        try:
            listeners.append(
                listen_on(socket.AF_INET6, config.bind6, port, config.backlog, options)
            )
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
    from closebench.servers.zero_window import (  # dpkt: for this one only
        TarpitError,
        ZeroWindowTarpit,
    )

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

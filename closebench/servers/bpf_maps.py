"""The ban maps of xdp-drop and tc-drop (closebench/defender/bpf/ban_drop.c), read and written
with the bpf(2) system call: no process per ban, and no bpftool needed once they are loaded.

The maps are pinned in a bpf filesystem that closebench mounts for the trial
(closebench/defender/bpf_drop.py): ban4 (IPv4 address -> ban), ban6 (IPv6 address -> ban) and
stats (SYNs dropped in all). A ban is its expiry on CLOCK_MONOTONIC, which the program reads with
bpf_ktime_get_ns(), and the SYNs it dropped.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import platform
import struct
import sys
import time
from collections.abc import Callable, Iterator

from closebench.servers.bans import Ban

# bpf(2) commands (linux/bpf.h)
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_GET_NEXT_KEY, OBJ_GET = 1, 2, 4, 7
SYSCALL = {"x86_64": 321, "aarch64": 280}  # __NR_bpf
ATTR_SIZE = 128  # bpf_attr is larger; the kernel wants the bytes past what it reads to be zero
BAN = struct.Struct("=QQ")  # struct ban: expires_ns, drops
MAPS = {4: "ban4", 6: "ban6"}
STATS = "stats"

_libc = ctypes.CDLL(None, use_errno=True)


class BpfError(Exception):
    """A bpf(2) call failed: one line, with the kernel's reason."""


def _bpf(command: int, attr: ctypes.Array) -> int:
    number = SYSCALL.get(platform.machine())
    if number is None:
        raise BpfError(f"closebench knows bpf(2) on {', '.join(SYSCALL)}, not {platform.machine()}")
    result = _libc.syscall(number, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        error = ctypes.get_errno()
        raise BpfError(os.strerror(error))
    return result


def open_pinned(path: str) -> int:
    """A descriptor of the map pinned at `path`."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=Q", attr, 0, ctypes.addressof(name))
    try:
        return _bpf(OBJ_GET, attr)
    except BpfError as error:
        raise BpfError(f"cannot open the pinned map {path}: {error}") from None


def _element(command: int, fd: int, key: bytes, value: ctypes.Array, flags: int = 0) -> None:
    key_buffer = ctypes.create_string_buffer(key, len(key))
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=IIQQQ", attr, 0, fd, 0, ctypes.addressof(key_buffer),
                     ctypes.addressof(value), flags)  # fmt: skip
    _bpf(command, attr)


def address_key(address: str) -> bytes:
    return ipaddress.ip_address(address).packed  # network order, as the packet carries it


def add_ban(fd: int, address: str, seconds: float) -> None:
    """Ban `address` for `seconds` from now (its drop count starts again at 0)."""
    expires = time.monotonic_ns() + round(seconds * 1e9)  # CLOCK_MONOTONIC, as the program's
    value = ctypes.create_string_buffer(BAN.pack(expires, 0), BAN.size)
    _element(MAP_UPDATE_ELEM, fd, address_key(address), value)


def lookup(fd: int, key: bytes, size: int) -> bytes | None:
    value = ctypes.create_string_buffer(size)
    try:
        _element(MAP_LOOKUP_ELEM, fd, key, value)
    except BpfError:
        return None  # ENOENT: not in the map
    return value.raw


def keys(fd: int, size: int) -> Iterator[bytes]:
    """Every key of a hash map (those present as it is walked)."""
    current: bytes | None = None
    while True:
        following = ctypes.create_string_buffer(size)
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        key_buffer = ctypes.create_string_buffer(current or bytes(size), size)
        # No key at first: the kernel answers with the map's first key.
        key_address = ctypes.addressof(key_buffer) if current is not None else 0
        struct.pack_into("=IIQQ", attr, 0, fd, 0, key_address, ctypes.addressof(following))
        try:
            _bpf(MAP_GET_NEXT_KEY, attr)
        except BpfError:
            return  # ENOENT: the last key
        current = following.raw
        yield current


def total_dropped(fd: int) -> int:
    """The program's count of SYNs it dropped (stats[0])."""
    raw = lookup(fd, bytes(4), 8)
    return struct.unpack("=Q", raw)[0] if raw else 0


def bans(fd: int, family: int) -> dict[str, tuple[int, int]]:
    """address -> (expires_ns, drops) of every ban in the map, expired ones included."""
    size = 4 if family == 4 else 16
    found = {}
    for key in keys(fd, size):
        raw = lookup(fd, key, BAN.size)
        if raw is not None:
            found[str(ipaddress.ip_address(key))] = BAN.unpack(raw)
    return found


class BpfBanner:
    """Adds bans to the pinned ban maps: one bpf(2) call per ban, in the server's event loop (no
    thread, no process: microseconds). The same interface as bans.NftBanner."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.calls = 0
        self.seconds = 0.0
        self.errors = 0
        self._fds: dict[int, int] = {}

    def start(self, netns: str | None = None) -> None:
        """Open the maps; BpfError says what is missing. (The maps are the same whatever the
        network namespace: `netns` is not needed.)"""
        for family, name in MAPS.items():
            self._fds[family] = open_pinned(f"{self.directory}/{name}")

    def ban(self, ban: Ban, family: int, done: Callable[[], None]) -> None:
        """Put `ban` in force; `done` runs at once (the map is written when this returns)."""
        started = time.perf_counter()
        try:
            add_ban(self._fds[family], ban.address, ban.duration_s)
            ban.t_effective = time.time()
        except BpfError as error:
            self.errors += 1
            message = f"closebench-server: !!! cannot ban {ban.address}: {error}"
            print(message, file=sys.stderr, flush=True)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        done()

    def stop(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def stats(self) -> dict[str, object]:
        seconds = round(self.seconds, 6)
        return {"bpf_calls": self.calls, "bpf_seconds": seconds, "ban_errors": self.errors}

"""Packets sent many per system call: sendmmsg(2) over a buffer of fixed slots.

The engine's packets are written (templates.Template.write_into) into the next slot of one
ctypes buffer; `flush` hands every filled slot to the kernel in one sendmmsg() on the connected
raw socket, which sends each as its own datagram. Nothing per packet is allocated: the slots,
their iovecs and message headers are made once. Python's socket module has no sendmmsg and no
well-kept binding for it exists, so libc's is called through ctypes (one call per batch).

A send that fails (no route, ENOBUFS...) is only known at the flush: sendmmsg stops at the first
failing message, so the flush asks again from the next one, and hands back the failed ones (which
kind, source index, port, sequence number, the error) for the engine to learn late
(Engine.send_lost).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from closebench.attackers.packet.connection import LostSend
from closebench.attackers.packet.segments import Kind
from closebench.attackers.packet.templates import Template

BATCH = 32  # packets per sendmmsg: a packet waits for at most this many others (tens of µs)
SEQ_AT = 4  # the sequence number's offset in the TCP header
PORT_SEQ = struct.Struct("!H2xI")  # source port, then (after the destination port) seq


class Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class Msghdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class Mmsghdr(ctypes.Structure):
    _fields_ = (("hdr", Msghdr), ("len", ctypes.c_uint))


def _sendmmsg() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc
    function = libc.sendmmsg
    function.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


class SendBatch:
    """Up to `size` packets of at most `slot_bytes` each, waiting for one sendmmsg()."""

    def __init__(self, fd: int, slot_bytes: int, size: int = BATCH) -> None:
        self.fd = fd
        self.size = size
        self.slot_bytes = slot_bytes
        self.area = ctypes.create_string_buffer(size * slot_bytes)
        self.view = memoryview(self.area).cast("B")  # where write_into writes
        self.iovecs = (Iovec * size)()
        self.messages = (Mmsghdr * size)()
        base = ctypes.addressof(self.area)
        for n in range(size):
            self.iovecs[n].base = base + n * slot_bytes
            self.messages[n].hdr.iov = ctypes.pointer(self.iovecs[n])
            self.messages[n].hdr.iovlen = 1
        # The iovecs as unsigned longs (size_t and pointers on Linux): [base, len, base, len...],
        # so that a length is set with no ctypes object made.
        self.lengths = memoryview(self.iovecs).cast("B").cast("L")
        self.address = ctypes.addressof(self.messages)
        self.message_bytes = ctypes.sizeof(Mmsghdr)
        self.kinds: list[Kind] = [Kind.SYN] * size  # what each slot holds, for a failed send
        self.sources = [0] * size
        self.tcp_at = [0] * size
        self.count = 0
        self.queued_bytes = 0
        self.packets_sent = self.bytes_sent = 0
        self.sendmmsg = _sendmmsg()

    def put(self, template: Template, kind: Kind, src: int, port: int, seq: int, ack: int) -> bool:
        """Write the template's packet, patched, into the next slot; whether the batch is full."""
        n = self.count
        length = template.write_into(self.view, n * self.slot_bytes, port, seq, ack)
        self.lengths[2 * n + 1] = length
        self.kinds[n], self.sources[n], self.tcp_at[n] = kind, src, template.tcp_at
        self.queued_bytes += length
        self.count = n + 1
        return n + 1 == self.size

    def flush(self) -> list[LostSend]:
        """Send what waits; the packets the kernel refused, with its errors."""
        count, done = self.count, 0
        lost: list[LostSend] = []
        sent_bytes = self.queued_bytes
        while done < count:
            result = self.sendmmsg(
                self.fd, self.address + done * self.message_bytes, count - done, 0
            )
            if result > 0:
                done += result
                continue
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            lost.append(self._lost(done, OSError(code, os.strerror(code))))
            sent_bytes -= self.lengths[2 * done + 1]
            done += 1
        self.packets_sent += count - len(lost)
        self.bytes_sent += sent_bytes
        self.count = self.queued_bytes = 0
        return lost

    def _lost(self, n: int, error: OSError) -> LostSend:
        port, seq = PORT_SEQ.unpack_from(self.view, n * self.slot_bytes + self.tcp_at[n])
        return LostSend(self.kinds[n], self.sources[n], port, seq, error)

"""Waiting for a file descriptor to become readable, whatever its number.

select.select() refuses descriptors of 1024 and above, and a runner whose attackers hold
thousands of sockets opens its pipes above that: poll() has no such limit.
"""

from __future__ import annotations

import select


def readable(fd: int, timeout: float) -> bool:
    """True once `fd` has something to read (or its writer closed it), False after `timeout` s."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))

"""IP addresses as addresses, not strings: one canonical text for each (RFC 5952 for IPv6).

`2001:2:0:0::1` and `2001:2::1` are one address; records, captures, verification and bans must
agree that they are, so every address closebench writes or compares goes through here.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def canonical(address: str) -> str:
    """The canonical text of an address (IPv4-mapped IPv6 becomes IPv4); anything that is not an
    address is returned unchanged, so a caller's own error can name it."""
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    return str(parsed)


def same(a: str, b: str) -> bool:
    return a == b or canonical(a) == canonical(b)


def family(address: str) -> int:
    return 6 if ":" in canonical(address) else 4

"""The HTTP the reference server speaks: the request line it reads, the few answers it sends, and
what counts as abuse (the request's path, or the client's address)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass

from closebench.servers.strategies import StrategySpec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
# Asked of a client on the abuse path without credentials, when the path needs basic auth.
UNAUTHORIZED_401 = http_response("401 Unauthorized", "credentials needed\n").replace(
    b"\r\n\r\n", b'\r\nWWW-Authenticate: Basic realm="closebench"\r\n\r\n', 1
)
AUTHORIZATION = re.compile(rb"^authorization:[ \t]*basic[ \t]+(\S+)[ \t]*$", re.I | re.M)


@dataclass(frozen=True)
class AbuseRules:
    path: re.Pattern[str]
    sources: tuple[IPNetwork, ...]
    # USER:PASSWORD: the abuse path asks for HTTP basic auth; a wrong pair is the abuse (a
    # brute-forcer's try), none is asked for (401), the right one is served.
    basic_auth: str | None = None

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

    def auth_reply(self, head: bytes | bytearray, flagged: bool) -> bytes | None:
        """With basic auth on the abuse path: 401 to a request without credentials, 200 to the
        right pair; None: the request is the abuse (a wrong pair, or no basic auth at all)."""
        if self.basic_auth is None or flagged:
            return None
        given = basic_credentials(head)
        if given is None:
            return UNAUTHORIZED_401
        return OK_200 if given == self.basic_auth else None


@dataclass(frozen=True)
class Config:
    """What the server is told (options.py): its strategy, where it listens, what is abuse."""

    spec: StrategySpec
    port: int
    bind4: str
    bind6: str | None  # None: --no-ipv6
    rules: AbuseRules
    backlog: int
    ban_netns: str | None = None  # fw-*: enforce bans in this network namespace (a router's)
    bpf_maps: str | None = None  # xdp-drop, tc-drop: where the ban maps are pinned


def request_target(head: bytes | bytearray) -> str | None:
    """The request-target of a complete request line, else None."""
    line, newline, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if not newline or len(parts) != 3 or not parts[1]:
        return None
    return parts[1].decode("latin-1")


def basic_credentials(head: bytes | bytearray) -> str | None:
    """The USER:PASSWORD of a request's `Authorization: Basic` header (None: none, or not
    readable, which counts as a wrong pair)."""
    match = AUTHORIZATION.search(bytes(head).replace(b"\r\n", b"\n"))
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(1), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return ""

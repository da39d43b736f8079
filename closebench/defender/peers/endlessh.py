"""endlessh: the SSH tarpit, pointed at the HTTP port. It never reads the request and drips a
random line every `delay`, to every client alike (it serves no one: there is no backend).

Its log (verbose, on stdout) claims how long it held each client: `CLOSE host=... port=...
time=S bytes=N`, and `TOTALS connects=N seconds=S bytes=N` when it exits (closing every client
still connected). It learns that a client has gone only when a write fails, and the first write
after the client's close still succeeds (the client's kernel answers it with an RST), so each
claim runs one to two delays past the client's end; `claims_against()` puts the claims next to
what the attackers measured.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from closebench.core.outcomes import Attempt
from closebench.defender.peers.base import Peer, PeerSetup, header

MAX_CLIENTS = 4096  # endlessh's own default
LINE_LENGTH = 32  # endlessh's own default
_FIELDS = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Claim:
    """One CLOSE line: endlessh says it held host:port for `seconds` and sent it `sent` bytes."""

    host: str
    port: int
    seconds: float
    sent: int


def _host(text: str) -> str:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def parse_log(text: str) -> tuple[list[Claim], dict]:
    """The CLOSE lines as claims, and the TOTALS line's figures (empty if it never exited)."""
    claims: list[Claim] = []
    totals: dict = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) < 3 or parts[1] not in ("CLOSE", "TOTALS"):
            continue
        fields = dict(_FIELDS.findall(parts[2]))
        try:
            if parts[1] == "CLOSE":
                claims.append(
                    Claim(
                        _host(fields["host"]),
                        int(fields["port"]),
                        float(fields["time"]),
                        int(fields["bytes"]),
                    )
                )
            else:
                totals = {
                    "connections": int(fields["connects"]),
                    "trapped_s_claimed": float(fields["seconds"]),
                    "bytes_sent": int(fields["bytes"]),
                }
        except (KeyError, ValueError):
            continue  # a line of another version's format: the figures it gives stay unclaimed
    return claims, totals


def claims_against(claims: list[dict], attempts: list[Attempt]) -> dict:
    """endlessh's claims for the attackers' connections next to what the attackers measured.

    `attacker_trapped_s_claimed`: what endlessh claims for them; `attacker_connected_s`: how long
    they were connected by their own clocks (end minus handshake, the span endlessh times);
    `claim_late_max_s`: the most one claim ran past the client's own end.
    """
    held = {
        (a.src, a.sport): a.t_end - a.t_established
        for a in attempts
        if a.t_established is not None and a.t_end is not None
    }
    matched = [
        (claim, held[key]) for claim in claims if (key := (claim["host"], claim["port"])) in held
    ]
    return {
        "attacker_connections_claimed": len(matched),
        "attacker_trapped_s_claimed": sum(claim["seconds"] for claim, _ in matched),
        "attacker_connected_s": sum(span for _, span in matched),
        "claim_late_max_s": max((claim["seconds"] - span for claim, span in matched), default=None),
    }


class Endlessh(Peer):
    binary = "endlessh"
    package = "endlessh"
    config_name = "endlessh.conf"
    uses_backend = False

    def argv(self, setup: PeerSetup, config: Path, directory: Path) -> list[str]:
        return [self.binary, "-f", str(config)]

    def config(self, setup: PeerSetup, directory: Path) -> str:
        delay_ms = max(1, round(float(setup.spec.options["delay"]) * 1000))
        lines = [
            f"Port {setup.port}",
            f"Delay {delay_ms}",
            f"MaxLineLength {LINE_LENGTH}",
            f"MaxClients {MAX_CLIENTS}",
            "# one line per connection, and the totals at exit",
            "LogLevel 1",
            "# IPv6 and IPv4-mapped addresses",
            "BindFamily 0",
        ]
        return header(setup) + "\n".join(lines) + "\n"

    def stats(self, stdout: str) -> dict:
        claims, totals = parse_log(stdout)
        if not totals:  # killed before it could print its totals: add up the claims instead
            totals = {
                "connections": len(claims),
                "trapped_s_claimed": sum(c.seconds for c in claims),
                "bytes_sent": sum(c.sent for c in claims),
            }
        return {**totals, "claims": [asdict(claim) for claim in claims]}

    def account(self, stats: dict, attempts: list[Attempt]) -> dict:
        """The per-connection claims give way to their sum over the attackers' connections."""
        claims = stats.pop("claims", [])
        return {**stats, **claims_against(claims, attempts)}

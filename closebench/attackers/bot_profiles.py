"""The bot profiles' timers and habits, each from its source (attackers/bots.py runs them; the
CLI and scenarios read the names and defaults here, without the sockets)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BotProfile:
    name: str
    connect_timeout_s: float  # a SYN unanswered this long: the target is dropped
    idle_timeout_s: float  # connected, no byte for this long: the try is over
    tries_per_target: int  # connections spent on one target before the next
    slots: int  # connections going at once (the default concurrency)
    probe_s: float | None = None  # a tarpit detector looks for a tarpit's marks this long in
    drip_bytes: int = 0  # fewer bytes than this by then, and no end: a drip
    source: str = ""

    def client_timeout(self) -> float:
        """The patience its records carry (core/outcomes.gave_up): a detector's decision comes
        at its probe time; a brute-forcer's at its no-data timeout."""
        return self.probe_s if self.probe_s is not None else self.idle_timeout_s


PROFILES = {
    "mirai": BotProfile(
        "mirai",
        connect_timeout_s=5.0,
        idle_timeout_s=30.0,
        tries_per_target=10,
        slots=128,
        source="Mirai's published source, mirai/bot/scanner.c and scanner.h",
    ),
    "degreaser": BotProfile(
        "degreaser",
        connect_timeout_s=5.0,
        idle_timeout_s=10.0,
        tries_per_target=1,
        slots=1,
        probe_s=1.5,
        drip_bytes=16,
        source="Alt, Beverly, Dainotti, Uncovering Network Tarpits with Degreaser, ACSAC 2014",
    ),
}

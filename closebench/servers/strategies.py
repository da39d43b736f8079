"""The strategies: names, options and defaults.

This is the single source of truth for strategy names. The reference server implements them
(closebench/servers/reference.py) and the harness validates user input against them. Close
strategies end an abusive connection one way or another; ban strategies (kind "ban") also refuse the
abuser's further connections for a while, in the application (blacklist) or in an nftables set
(fw-*), and end the connection that triggered the ban with a close strategy of their own (`then`).
Peer strategies (kind "peer") run real software instead (HAProxy, nginx, endlessh) with a config the
harness writes (closebench/defender/peers/). A packet strategy (kind "packet": zero-window) answers
an abusive source's packets itself, before the kernel's TCP sees them, so it picks its abusers by
address. A kill strategy (kind "kill": ss-kill) ends the connection from outside the server,
as a detector would. A cap strategy (kind "cap": conn-cap, synproxy) keeps connections from the
server in nftables (over a count per source; until the handshake completes), while the server
closes the abusive requests that get through with `then`.

Every reference-server strategy also takes the listening socket's TCP options `defer_accept`
(TCP_DEFER_ACCEPT: a connection wakes the server only once data arrives) and `user_timeout`
(TCP_USER_TIMEOUT: unacknowledged data ends the connection after that long, not after ~15 minutes
of retransmissions); both are off (0) by default. `syncookies` (off, on, always) sets SYN cookies
in the defender host for the trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The largest value of an option that sets none of its own: a day of seconds (a delay of 1e300 s
# crashes a server thread), and a count no trial comes near.
LARGEST: dict[type, float] = {float: 86400.0, int: 1_000_000}


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: OptionValue
    help: str
    choices: tuple[str, ...] = ()  # the values allowed, when it is one of a few words
    minimum: float | None = None  # the smallest value allowed (numbers are never negative)
    maximum: float | None = None  # the largest value allowed
    positive: bool = False  # 0 is not allowed either


# What an option's value can be (options are parsed from text by _convert)
OptionValue = bool | int | float | str


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    options: tuple[Option, ...] = ()
    # or "ban" (refuses the address's later connections), "peer", "packet", "cap"
    kind: str = "close"

    @property
    def bans(self) -> bool:
        return self.kind == "ban"

    @property
    def peer(self) -> bool:
        """Real software (HAProxy, nginx, endlessh), not the reference server."""
        return self.kind == "peer"


@dataclass(frozen=True)
class StrategySpec:
    """A strategy with its options resolved, e.g. from ``repair:read_first=false``."""

    name: str
    options: dict[str, OptionValue] = field(default_factory=dict)

    def __str__(self) -> str:
        strategy = STRATEGIES[self.name]
        changed = [
            f"{o.name}={_format(self.options[o.name])}"
            for o in strategy.options
            if self.options.get(o.name, o.default) != o.default
        ]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def by_address(self) -> bool:
        """Acts before any request is read, so it needs an address rule (--abuse-source)."""
        return STRATEGIES[self.name].kind == "packet" or self.options.get("read_first") is False


READ_FIRST = Option(
    "read_first",
    bool,
    True,
    "wait for the request before acting; false acts at accept (needs an address rule)",
)
DELAY = Option("delay", float, 3.0, "seconds to hold the socket before close()")
INTERVAL = Option("interval", float, 2.0, "seconds between dripped bytes", positive=True)
# The listening socket's TCP options, inherited by every accepted socket (0: off).
DEFER_ACCEPT = Option(
    "defer_accept",
    int,
    0,
    "TCP_DEFER_ACCEPT seconds: accept() only once the client sends data (the kernel rounds it "
    "up to its SYN-ACK retransmission times: 5 -> 7)",
    maximum=3600,
)
USER_TIMEOUT = Option(
    "user_timeout",
    float,
    0.0,
    "TCP_USER_TIMEOUT seconds: data unacknowledged this long ends the connection (ETIMEDOUT)",
    maximum=2**31 / 1000,
)
# SYN cookies in the defender's namespace for the trial (net.ipv4.tcp_syncookies 0, 1, 2), so that
# one run compares them against a SYN flood; `kernel` leaves the knob as [defender.sysctl] or the
# kernel has it.
SYNCOOKIES_VALUES = {"off": 0, "on": 1, "always": 2}
SYNCOOKIES = Option(
    "syncookies",
    str,
    "kernel",
    "SYN cookies in the defender host: off, on (once the SYN queue overflows), always, or kernel "
    "(as [defender.sysctl] or the kernel has it)",
    choices=("kernel", *SYNCOOKIES_VALUES),
)
LISTEN_OPTIONS = (DEFER_ACCEPT, USER_TIMEOUT, SYNCOOKIES)

CLOSE_NAMES = (
    "graceful",
    "rst",
    "repair",
    "never",
    "delayed-thread",
    "delayed-reaper",
    "tarpit",
    "ttl-drop",
    "rst-ttl",
)

# Ban bookkeeping as fail2ban does it (closebench/servers/bans.py): `maxretry` abusive requests
# within `findtime` seconds ban the address for `bantime` seconds; its n-th ban lasts
# bantime * factor**(n-1), at most `maxtime` (fail2ban's bantime.increment).
THEN = Option(
    "then",
    str,
    "rst",
    "close strategy for abusive requests that got through (the one that triggers the ban)",
    choices=CLOSE_NAMES,
)
BAN_OPTIONS = (
    READ_FIRST,
    THEN,
    DELAY,
    INTERVAL,
    Option("bantime", float, 30.0, "seconds the first ban lasts", minimum=0.01),
    Option(
        "factor", float, 1.0, "each further ban of an address lasts this much longer", minimum=1.0
    ),
    Option("maxtime", float, 3600.0, "the longest ban, in seconds", minimum=0.01),
    Option("findtime", float, 60.0, "seconds in which maxretry abusive requests ban"),
    Option(
        "maxretry", int, 1, "abusive requests within findtime that ban (1: the first)", minimum=1
    ),
)
WHERE = Option(
    "where",
    str,
    "local",
    "the nftables set: in the defender host (local) or on the router in front of it (router)",
    choices=("local", "router"),
)

BPF_WHERE = Option(
    "where",
    str,
    "local",
    "the BPF program: on the defender host's interface (local) or the router's interface facing "
    "the attackers (router)",
    choices=("local", "router"),
)

# The peers: their abusive-request rule is the reference server's (the abuse path; with
# read_first=false, the abusive addresses at accept), and a plain backend serves the rest.
PEER_READ_FIRST = Option(
    "read_first",
    bool,
    False,
    "false: `tcp-request connection reject` on the abusive addresses at accept (RST); "
    "true: `http-request reject` on the abuse path once the request is read",
)
PEERS = (
    Strategy(
        "haproxy-silent-drop",
        "HAProxy `http-request silent-drop`: TCP_REPAIR, nothing on the wire (runs as root)",
        (
            Option(
                "net_admin",
                bool,
                True,
                "false: HAProxy runs without CAP_NET_ADMIN and falls back to an RST with TTL 1",
            ),
        ),
        kind="peer",
    ),
    Strategy(
        "haproxy-reject", "HAProxy `tcp-request connection reject`", (PEER_READ_FIRST,), "peer"
    ),
    Strategy(
        "haproxy-tarpit",
        "HAProxy `http-request tarpit`: hold the request, then answer 500",
        (Option("timeout", float, 30.0, "HAProxy's `timeout tarpit`, seconds", positive=True),),
        "peer",
    ),
    Strategy("nginx-444", "nginx `return 444`: close without an answer", kind="peer"),
    Strategy(
        "nginx-limit-conn",
        "nginx limit_req and limit_conn per address on the abuse path: 429 (or 503) over the limit",
        (
            Option(
                "rate", float, 1.0, "abusive requests per second an address may make", positive=True
            ),
            Option("conn", int, 1, "abusive requests an address may have in flight", minimum=1),
            Option("status", str, "429", "the status over the limit", choices=("429", "503")),
        ),
        "peer",
    ),
    Strategy(
        "endlessh",
        "Debian's endlessh: drips a random banner line every delay, never reads, serves nothing",
        (
            Option(
                "delay",
                float,
                2.0,
                "seconds between lines (endlessh -d, in ms; endlessh's own default is 10 s)",
                minimum=0.001,
            ),
        ),
        "peer",
    ),
)

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("graceful", "close(): the kernel sends FIN", (READ_FIRST, *LISTEN_OPTIONS)),
        Strategy(
            "rst",
            "SO_LINGER {1,0} then close(): the kernel sends RST",
            (READ_FIRST, *LISTEN_OPTIONS),
        ),
        Strategy(
            "repair",
            "TCP_REPAIR on, then close(): nothing on the wire (needs CAP_NET_ADMIN)",
            (READ_FIRST, *LISTEN_OPTIONS),
        ),
        Strategy(
            "never", "keep the socket open for ever (fds run out)", (READ_FIRST, *LISTEN_OPTIONS)
        ),
        Strategy(
            "delayed-thread",
            "a thread per socket sleeps, then closes",
            (READ_FIRST, DELAY, *LISTEN_OPTIONS),
        ),
        Strategy(
            "delayed-reaper",
            "one timer structure closes sockets when due",
            (READ_FIRST, DELAY, *LISTEN_OPTIONS),
        ),
        Strategy(
            "tarpit",
            "hold the connection and drip one byte every interval (endlessh-style)",
            (READ_FIRST, INTERVAL, *LISTEN_OPTIONS),
        ),
        Strategy(
            "ttl-drop",
            "IP_TTL/IPV6_UNICAST_HOPS 1 then close(): the FIN dies at the first router",
            (READ_FIRST, *LISTEN_OPTIONS),
        ),
        Strategy(
            "rst-ttl",
            "IP_TTL/IPV6_UNICAST_HOPS `ttl`, then an RST (SO_LINGER {1,0}): it dies at the "
            "first router, which forgets the connection (HAProxy's silent-drop without "
            "TCP_REPAIR)",
            (
                READ_FIRST,
                Option(
                    "ttl",
                    int,
                    1,
                    "the RST's TTL / hop limit: it reaches ttl-1 routers",
                    minimum=1,
                    maximum=255,
                ),
                *LISTEN_OPTIONS,
            ),
        ),
        Strategy(
            "ss-kill",
            "a detector outside the server destroys the connection with `ss -K` (SOCK_DESTROY): "
            "the kernel sends the abuser an RST, the server closes a dead socket",
            (READ_FIRST, *LISTEN_OPTIONS),
            kind="kill",
        ),
        Strategy(
            "zero-window",
            "a stateless tarpit (LaBrea, TARPIT): abusive sources' SYNs get a zero-window "
            "SYN-ACK and their probes an ACK, from a raw socket; no fd, no kernel socket",
            kind="packet",
        ),
        Strategy(
            "blacklist",
            "ban in the application: a banned address's connections meet `then` at accept",
            (
                *BAN_OPTIONS,
                Option(
                    "read_banned",
                    bool,
                    False,
                    "read a banned client's request before closing it (false: close at accept)",
                ),
                *LISTEN_OPTIONS,
            ),
            kind="ban",
        ),
        Strategy(
            "fw-drop",
            "ban the address in an nftables set with a timeout: its SYNs are dropped",
            (*BAN_OPTIONS, WHERE, *LISTEN_OPTIONS),
            kind="ban",
        ),
        Strategy(
            "fw-reject",
            "ban the address in an nftables set with a timeout: its SYNs are answered with RST",
            (*BAN_OPTIONS, WHERE, *LISTEN_OPTIONS),
            kind="ban",
        ),
        Strategy(
            "xdp-drop",
            "ban the address in a BPF map with an expiry: an XDP program (generic, on the "
            "interface facing the attackers) drops its SYNs before the IP stack",
            (*BAN_OPTIONS, BPF_WHERE, *LISTEN_OPTIONS),
            kind="ban",
        ),
        Strategy(
            "tc-drop",
            "ban the address in a BPF map with an expiry: a tc ingress classifier "
            "(direct-action) drops its SYNs",
            (*BAN_OPTIONS, BPF_WHERE, *LISTEN_OPTIONS),
            kind="ban",
        ),
        Strategy(
            "synproxy",
            "nftables synproxy in front of the server: the kernel answers SYNs with a cookie, "
            "and only a completed handshake reaches the server; abusive requests meet `then`",
            (
                Option(
                    "then",
                    str,
                    "rst",
                    "close strategy for the abusive requests that reach the server",
                    choices=CLOSE_NAMES,
                ),
                DELAY,
                INTERVAL,
                *LISTEN_OPTIONS,
            ),
            kind="cap",
        ),
        Strategy(
            "conn-cap",
            "nftables `ct count over N` per source address: its connections beyond `count` at "
            "once are refused (reject: RST; drop: its SYNs vanish)",
            (
                Option("count", int, 2, "connections one address may have at once", minimum=1),
                Option(
                    "verdict",
                    str,
                    "reject",
                    "what meets a connection over the cap: reject (RST) or drop",
                    choices=("reject", "drop"),
                ),
                Option(
                    "then",
                    str,
                    "rst",
                    "close strategy for the abusive requests of connections within the cap",
                    choices=CLOSE_NAMES,
                ),
                DELAY,
                INTERVAL,
                *LISTEN_OPTIONS,
            ),
            kind="cap",
        ),
        *PEERS,
    )
}
BAN_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.bans)
PEER_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.peer)
if set(CLOSE_NAMES) != {name for name, s in STRATEGIES.items() if s.kind == "close"}:
    raise RuntimeError("CLOSE_NAMES must list every close strategy")


def _format(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _convert(option: Option, text: str) -> OptionValue:
    if option.choices:
        value = text.strip()
        if value not in option.choices:
            allowed = ", ".join(option.choices)
            raise ValueError(f"option {option.name!r} takes one of {allowed}; not {text!r}")
        return value
    if option.type is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"option {option.name!r} takes true or false, not {text!r}")
    try:
        value = option.type(text)
    except ValueError:
        raise ValueError(
            f"option {option.name!r} takes a {option.type.__name__}, not {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes `value < 0`
        raise ValueError(f"option {option.name!r} takes a finite number, not {text!r}")
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError(f"option {option.name!r} must not be negative, got {text!r}")
    if option.positive and value == 0:
        raise ValueError(f"option {option.name!r} must be greater than 0, got {text!r}")
    if option.minimum is not None and value < option.minimum:
        raise ValueError(
            f"option {option.name!r} must be at least {option.minimum:g}, got {text!r}"
        )
    maximum = option.maximum if option.maximum is not None else LARGEST[option.type]
    if value > maximum:
        shown = f"{maximum:g}" if isinstance(maximum, float) else str(maximum)
        raise ValueError(f"option {option.name!r} must be at most {shown}, got {text!r}")
    return value


def parse_spec(text: str) -> StrategySpec:
    """Parse ``NAME[:key=value,...]`` into a StrategySpec; ValueError names what is wrong."""
    name, _, rest = text.strip().partition(":")
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    strategy = STRATEGIES[name]
    known = {o.name: o for o in strategy.options}
    options = {o.name: o.default for o in strategy.options}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"strategy option {item!r} must be written key=value")
        key = key.strip()
        if key not in known:
            allowed = ", ".join(known) or "none"
            raise ValueError(f"strategy {name!r} has no option {key!r}; its options: {allowed}")
        options[key] = _convert(known[key], value)
    return StrategySpec(name, options)

"""The close strategies: names, options and defaults.

This is the single source of truth for strategy names. The reference server implements them
(servers/reference.py) and the harness validates user input against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: object
    help: str


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class StrategySpec:
    """A strategy with its options resolved, e.g. from ``repair:read_first=false``."""

    name: str
    options: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        strategy = STRATEGIES[self.name]
        changed = [
            f"{o.name}={_format(self.options[o.name])}"
            for o in strategy.options
            if self.options.get(o.name, o.default) != o.default
        ]
        return self.name + (":" + ",".join(changed) if changed else "")


READ_FIRST = Option(
    "read_first",
    bool,
    True,
    "wait for the request before acting; false acts at accept (needs an address rule)",
)
DELAY = Option("delay", float, 3.0, "seconds to hold the socket before close()")

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("graceful", "close(): the kernel sends FIN", (READ_FIRST,)),
        Strategy("rst", "SO_LINGER {1,0} then close(): the kernel sends RST", (READ_FIRST,)),
        Strategy(
            "repair",
            "TCP_REPAIR on, then close(): nothing on the wire (needs CAP_NET_ADMIN)",
            (READ_FIRST,),
        ),
        Strategy("never", "keep the socket open for ever (fds run out)", (READ_FIRST,)),
        Strategy("delayed-thread", "a thread per socket sleeps, then closes", (READ_FIRST, DELAY)),
        Strategy(
            "delayed-reaper", "one timer structure closes sockets when due", (READ_FIRST, DELAY)
        ),
        Strategy(
            "tarpit",
            "hold the connection and drip one byte every interval (endlessh-style)",
            (READ_FIRST, Option("interval", float, 2.0, "seconds between dripped bytes")),
        ),
        Strategy(
            "ttl-drop",
            "IP_TTL/IPV6_UNICAST_HOPS 1 then close(): the FIN dies at the first router",
            (READ_FIRST,),
        ),
    )
}


def _format(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _convert(option: Option, text: str) -> object:
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
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError(f"option {option.name!r} must not be negative, got {text!r}")
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

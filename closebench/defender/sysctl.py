"""The defender host's TCP knobs a scenario may set (`[defender.sysctl]`), set inside the
defender's network namespace only, never the machine's.

Only knobs the kernel keeps per network namespace are allowed: on Linux 6.x net.ipv4.tcp_* of
ipv4_net_table, net.core.somaxconn and conntrack's net.netfilter.nf_conntrack_tcp_loose.
tcp_max_orphans is machine-wide (a fresh namespace has no /proc/sys/net/ipv4/tcp_max_orphans), so
setting it would change the host: it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from closebench.core.errors import LabError
from closebench.lab import Host
from closebench.servers.strategies import SYNCOOKIES_VALUES, StrategySpec

# name in the scenario -> its sysctl key (per network namespace)
PER_NAMESPACE = {
    "tcp_orphan_retries": "net.ipv4.tcp_orphan_retries",
    "tcp_fin_timeout": "net.ipv4.tcp_fin_timeout",
    "tcp_max_syn_backlog": "net.ipv4.tcp_max_syn_backlog",
    "somaxconn": "net.core.somaxconn",
    # SYN cookies (0 off, 1 when the SYN queue overflows, 2 always) and whether conntrack picks
    # up connections it did not see start (nftables synproxy needs 0).
    "tcp_syncookies": "net.ipv4.tcp_syncookies",
    "nf_conntrack_tcp_loose": "net.netfilter.nf_conntrack_tcp_loose",
}
# knobs that exist but cannot be set for the defender alone
REFUSED = {
    "tcp_max_orphans": "net.ipv4.tcp_max_orphans is machine-wide (the kernel keeps no copy per "
    "network namespace), so setting it would change the host, not the defender: leave it out",
}
ALLOWED = (*PER_NAMESPACE, *REFUSED)


def problem(name: str, value: object) -> str | None:
    """Why `name = value` cannot be set, or None."""
    if name in REFUSED:
        return REFUSED[name]
    if name not in PER_NAMESPACE:
        return f"not a knob closebench sets; allowed: {', '.join(PER_NAMESPACE)}"
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        return f"must be a whole number from 0 to {2**31 - 1}, not {value!r}"
    return None


def apply(host: Host, settings: dict[str, int]) -> None:
    """Set each knob in the host's network namespace and read it back; LabError if the kernel
    refuses one (a value out of its range)."""
    for name, value in settings.items():
        key = PER_NAMESPACE[name]
        host.run(["sysctl", "-q", "-w", f"{key}={value}"])
        found = host.run(["sysctl", "-n", key]).strip()
        if found != str(value):
            raise LabError(f"{key}: set to {value} in the defender host, the kernel kept {found}")


def for_trial(knobs: Iterable[tuple[str, int]], spec: StrategySpec | None) -> dict[str, int]:
    """The knobs to set: the scenario's, with the strategy's `syncookies` option over them."""
    settings = dict(knobs)
    cookies = spec.options.get("syncookies") if spec is not None else None
    if isinstance(cookies, str) and cookies in SYNCOOKIES_VALUES:
        settings["tcp_syncookies"] = SYNCOOKIES_VALUES[cookies]
    return settings

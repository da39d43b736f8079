"""Peer strategies: real software (HAProxy, nginx, endlessh) in the defender host, with a config
closebench writes. Names and options live in closebench/servers/strategies.py like every other
strategy's.

    peer = peer_for(spec)                 # None for the reference server's strategies
    launches = peer.launches(setup, dir)  # writes the config, returns the processes to start
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from closebench.core.errors import EnvironmentProblem
from closebench.core.outcomes import Attempt
from closebench.defender.peers.base import Launch, Peer, PeerSetup
from closebench.defender.peers.endlessh import Endlessh
from closebench.defender.peers.haproxy import HAProxy
from closebench.defender.peers.nginx import Nginx
from closebench.servers.strategies import PEER_STRATEGIES, StrategySpec

__all__ = [
    "PEERS",
    "Launch",
    "Peer",
    "PeerSetup",
    "account",
    "missing_message",
    "peer_for",
    "require",
    "skip_missing",
    "skipped_error",
]

_HAPROXY, _NGINX = HAProxy(), Nginx()
PEERS: dict[str, Peer] = {
    "haproxy-silent-drop": _HAPROXY,
    "haproxy-reject": _HAPROXY,
    "haproxy-tarpit": _HAPROXY,
    "nginx-444": _NGINX,
    "nginx-limit-conn": _NGINX,
    "endlessh": Endlessh(),
}
if set(PEERS) != set(PEER_STRATEGIES):
    raise RuntimeError(
        "every peer strategy of closebench/servers/strategies.py needs its Peer here"
    )


def peer_for(spec: StrategySpec | None) -> Peer | None:
    return PEERS.get(spec.name) if spec else None


def account(spec: StrategySpec | None, stats: dict, attempts: list[Attempt]) -> dict:
    """A peer's own claims (endlessh's log) next to what the attempts measured."""
    peer = peer_for(spec)
    return peer.account(stats, attempts) if peer else stats


def missing_message(peer: Peer, names: Iterable[str]) -> str:
    """One line: which binary is missing, which strategies need it, and how to get it."""
    needing = ", ".join(names)
    return f"{peer.binary} is not installed, and {needing} run(s) it: {peer.install_hint()}"


def require(spec: StrategySpec | None) -> None:
    """EnvironmentProblem when `spec` is a peer whose software is not installed."""
    peer = peer_for(spec)
    if spec is not None and peer is not None and not peer.installed():
        raise EnvironmentProblem(missing_message(peer, [spec.name]))


def skipped_error(peer: Peer) -> str:
    """A skipped trial's error in summary.json: short, with the fix."""
    return f"skipped: {peer.binary} is not installed (apt-get install {peer.package})"


def skip_missing(specs: Iterable[StrategySpec], warn: Callable[[str], None]) -> dict[str, str]:
    """The names among `specs` whose peer software is missing, to be skipped, each with its
    skipped_error, and one warning per binary. An error instead when nothing would be left, or
    when the CI environment variable is set: a CI that lost a package must not pass by
    skipping."""
    specs = list(specs)
    missing: dict[Peer, list[str]] = {}
    for spec in specs:
        peer = peer_for(spec)
        if peer is not None and not peer.installed() and spec.name not in missing.get(peer, []):
            missing.setdefault(peer, []).append(spec.name)
    messages = [missing_message(peer, names) for peer, names in missing.items()]
    skipped = {name: skipped_error(peer) for peer, names in missing.items() for name in names}
    if messages and os.environ.get("CI"):
        raise EnvironmentProblem("; ".join(messages) + " (CI is set: nothing is skipped)")
    if messages and all(spec.name in skipped for spec in specs):
        raise EnvironmentProblem("; ".join(messages))
    for message in messages:
        warn(f"{message}; skipped")
    return skipped

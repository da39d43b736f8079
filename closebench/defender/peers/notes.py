"""What a report says about a peer's trial, from its summary row alone (no lab, no files)."""

from __future__ import annotations

from closebench.defender.peers import peer_for
from closebench.servers.strategies import StrategySpec

PROCESSES = {
    "haproxy": "HAProxy's master and worker",
    "nginx": "nginx's master and workers",
    "endlessh": "endlessh's one process",
}


def peer_note(spec: StrategySpec, row: dict) -> str | None:
    """One paragraph: what ran and what the defender's figures count; for endlessh, its own
    claim next to the attackers' measurement; for silent-drop, what it needs."""
    peer = peer_for(spec)
    if peer is None:
        return None
    counted = PROCESSES[peer.binary] + (" and the backend" if peer.uses_backend else "")
    text = f"Real {peer.binary} (config in peers/ of the run): the defender figures sum {counted}."
    if spec.name == "haproxy-silent-drop" and spec.options["net_admin"] is False:
        text += (
            " It ran without CAP_NET_ADMIN (setpriv): silent-drop fell back to an RST with TTL 1,"
            " which reaches a client on the same link and dies at the first router."
        )
    elif spec.name == "haproxy-silent-drop":
        text += (
            " silent-drop puts the socket in TCP_REPAIR mode, which needs CAP_NET_ADMIN: HAProxy"
            " ran as root here; without it, it sends an RST with TTL 1, which a client on the same"
            " link still receives."
        )
    claim = claim_text(row.get("server_stats") or {}, spec)
    return text + (" " + claim if claim else "")


def claim_text(stats: dict, spec: StrategySpec) -> str:
    """endlessh's claim for the attackers' connections next to their own measurement."""
    claimed = stats.get("attacker_trapped_s_claimed")
    if claimed is None or not stats.get("attacker_connections_claimed"):
        return ""
    text = (
        f"endlessh's log claims {claimed:.1f} s trapped for the "
        f"{stats['attacker_connections_claimed']} attacker connection(s) it closed; by their own "
        f"clocks they were connected {stats['attacker_connected_s']:.1f} s"
    )
    late = stats.get("claim_late_max_s")
    delay = float(spec.options.get("delay", 0))
    if late is not None and late > 0:
        text += (
            ". It learns a client has gone only when a write fails, and its first write after"
            " the client's close still succeeds (the client's kernel answers it with an RST):"
            f" a claim runs one to two delays ({delay:g} s) late; here at most {late:.2f} s"
        )
    return text + "."

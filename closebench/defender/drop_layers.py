"""What each layer in front of the server dropped in a trial, read from the layers' own counters,
and what the defender's connection tracking holds.

Layers, as summary.json's `drops_by_layer` names them:
- `xdp`, `tc`: SYNs the BPF program of xdp-drop or tc-drop dropped (its stats map);
- `nft-ban`: SYNs the fw-* ban table dropped or rejected (its nftables counters);
- `conn-cap`: SYNs over the `ct count` cap;
- `synproxy`: packets that reached nftables' SYN proxy rule instead of the server: untracked
  SYNs (each answered with a cookie), the ACKs that complete a handshake, and invalid packets
  (a flood's RSTs), dropped.

Conntrack: the entries the defender's namespace tracks for the port, and the kernel memory they
take at least, at the slab's object size (/proc/slabinfo `nf_conntrack`; an entry's extensions,
allocated apart, come on top).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from closebench.core.errors import LabError
from closebench.defender import bpf_drop, conn_cap, firewall, synproxy
from closebench.lab import Host, Lab, conntrack
from closebench.servers.strategies import StrategySpec

SLABINFO = "/proc/slabinfo"
CONNTRACK_SLAB = "nf_conntrack"


@dataclass
class LayerReading:
    drops: dict[str, int] = field(default_factory=dict)  # layer -> packets it dropped or answered
    conntrack_entries: int | None = None  # None: the namespace tracks nothing (no ct in use)
    conntrack_bytes: int | None = None


def read(
    lab: Lab, port: int, spec: StrategySpec | None, loaded: bpf_drop.Loaded | None
) -> LayerReading:
    """Every layer's counter that the strategy `spec` put in front of the server (`loaded`: its
    BPF program), and the defender's conntrack for `port`."""
    reading = LayerReading()
    if loaded is not None:
        reading.drops[loaded.attach] = bpf_drop.dropped(loaded)
    ban_host = firewall.ban_host(lab, spec)
    if ban_host is not None:
        reading.drops["nft-ban"] = firewall.read(ban_host).syns_dropped
    name = spec.name if spec is not None else None
    if name == conn_cap.STRATEGY:
        reading.drops["conn-cap"] = conn_cap.refused(lab.defender)
    if name == synproxy.STRATEGY:
        reading.drops["synproxy"] = synproxy.proxied(lab.defender)
    entries = tracked(lab.defender, port)
    if entries is not None:
        reading.conntrack_entries = entries
        reading.conntrack_bytes = entries * slab_object_size()
    return reading


def tracked(host: Host, port: int) -> int | None:
    """Connections to `port` the host's conntrack holds; None where its table cannot be read."""
    try:
        return conntrack.read(host, port).entries
    except (OSError, LabError):
        return None


def slab_object_size(text: str | None = None) -> int:
    """Bytes of one conntrack entry in the kernel's slab (0 where slabinfo does not say)."""
    if text is None:
        try:
            with open(SLABINFO) as handle:
                text = handle.read()
        except OSError:
            return 0
    for line in text.splitlines():
        fields = line.split()
        # name active_objs num_objs objsize objperslab pagesperslab : ...
        if len(fields) > 3 and fields[0] == CONNTRACK_SLAB and fields[3].isdigit():
            return int(fields[3])
    return 0

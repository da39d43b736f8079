"""The nftables table of the zero-window strategy in the defender host: made before the server
starts.

It drops the trapped sources' packets to the server's port at prerouting, before the kernel's TCP
and connection tracking see them; the server's packet socket has its copy by then and answers
(closebench/servers/zero_window.py). The table lives in the lab's defender namespace and goes with
it: the host's own firewall is never touched.
"""

from __future__ import annotations

from closebench.core.errors import LabError
from closebench.defender.config import ServerConfig
from closebench.lab import Lab
from closebench.lab.privileges import require_tools
from closebench.servers.zero_window import COUNTER, TABLE, ruleset


def prepare(lab: Lab, config: ServerConfig) -> None:
    """Load the steering table a zero-window server needs (nothing for other strategies)."""
    if config.spec is None or config.spec.name != "zero-window":
        return
    require_tools("nft")
    if not config.abuse_sources:
        raise LabError("zero-window traps sources by address, and none was given")
    try:
        lab.defender.run(["nft", "-f", "-"], stdin=ruleset(config.port, config.abuse_sources))
    except LabError as error:
        raise LabError(f"cannot load the steering table inet {TABLE}: {error}") from None


def steered(lab: Lab) -> int:
    """Packets the table has kept from the defender's TCP so far (its counter)."""
    text = lab.defender.run(["nft", "list", "counter", "inet", TABLE, COUNTER])
    words = text.split()
    return int(words[words.index("packets") + 1])

"""The defender's side: the server under test in the lab's defender host, and what it costs.

    config.py      ServerConfig: what to start (a strategy, a peer or a command) and its limits
    server.py      Defender: starting it, waiting for it to listen, stopping it, its output
    peers/         the peer strategies: HAProxy, nginx, endlessh with a generated config
    firewall.py    the ban table of the fw-* strategies
    conn_cap.py    conn-cap's table: `ct count over N` per source address
    capabilities.py  what the kernel can run, probed once per run; strategies it cannot, skipped
    steering.py    zero-window's table, keeping the trapped sources' packets from the kernel's TCP
    metrics.py     the defender sampler (process tree and socket table) and the costs derived

Imports closebench.core and closebench.lab (and servers/, the strategies). Other stages import the
names below from `closebench.defender`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closebench.core.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for type checkers and readers: the names come from _EXPORTS at run time
    from closebench.defender.config import DEFAULT_ABUSE_PATH as DEFAULT_ABUSE_PATH
    from closebench.defender.config import DEFAULT_PORT as DEFAULT_PORT
    from closebench.defender.config import ServerConfig as ServerConfig
    from closebench.defender.server import LISTEN_TIMEOUT as LISTEN_TIMEOUT
    from closebench.defender.server import Defender as Defender

# Loaded on first use, as in closebench/lab/: the command line imports the peers' names and must not
# load the server's start-up (psutil, the zero-window tarpit's dpkt) to print its help.
_EXPORTS = {
    "DEFAULT_ABUSE_PATH": "config",
    "DEFAULT_PORT": "config",
    "ServerConfig": "config",
    "LISTEN_TIMEOUT": "server",
    "Defender": "server",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

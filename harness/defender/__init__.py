"""The defender's side: the server under test in the lab's defender host, and what it costs.

    config.py      ServerConfig: what to start (a strategy, a peer or a command) and its limits
    server.py      Defender: starting it, waiting for it to listen, stopping it, its output
    peers/         the peer strategies: HAProxy, nginx, endlessh with a generated config
    firewall.py    the ban table of the fw-* strategies
    steering.py    zero-window's table, keeping the trapped sources' packets from the kernel's TCP
    metrics.py     the defender sampler (process tree and socket table) and the costs derived

Imports harness.core and harness.lab (and servers/, the strategies). Other stages import the
names below from `harness.defender`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for type checkers and readers: the names come from _EXPORTS at run time
    from harness.defender.config import DEFAULT_ABUSE_PATH as DEFAULT_ABUSE_PATH
    from harness.defender.config import DEFAULT_PORT as DEFAULT_PORT
    from harness.defender.config import ServerConfig as ServerConfig
    from harness.defender.server import LISTEN_TIMEOUT as LISTEN_TIMEOUT
    from harness.defender.server import Defender as Defender

# Loaded on first use, as in harness/lab/: the command line imports the peers' names and must not
# load the server's start-up (psutil, the zero-window tarpit's dpkt) to print its help.
_EXPORTS = {
    "DEFAULT_ABUSE_PATH": "config",
    "DEFAULT_PORT": "config",
    "ServerConfig": "config",
    "LISTEN_TIMEOUT": "server",
    "Defender": "server",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

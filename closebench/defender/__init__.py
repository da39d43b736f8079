"""The defender's side: the server under test in the lab's defender host (a strategy, a peer or
a command), the kernel rules some strategies need, and what it costs. Imports closebench.core and
closebench.lab; other stages import the names below from `closebench.defender`."""

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

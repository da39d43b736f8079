"""The defender's side: the server under test in the lab's defender host, and what it costs."""

from harness.defender.server import (
    DEFAULT_ABUSE_PATH,
    DEFAULT_PORT,
    LISTEN_TIMEOUT,
    Defender,
    ServerConfig,
)

__all__ = ["DEFAULT_ABUSE_PATH", "DEFAULT_PORT", "LISTEN_TIMEOUT", "Defender", "ServerConfig"]

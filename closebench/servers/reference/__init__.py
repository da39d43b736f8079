"""The closebench reference server: one event loop that closes abusive clients a chosen way.

Run ``python -m closebench.servers.reference --strategy SPEC``. Legitimate requests get a tiny 200;
abusive ones (by request path or source address) are handed to the close strategy named in SPEC,
whose names and options live in closebench/servers/strategies.py. A ban strategy (blacklist,
fw-drop, fw-reject) also bans the abusive address (closebench/servers/bans.py) and closes with its
`then` strategy. zero-window traps the --abuse-source addresses before the kernel's TCP sees them
(closebench/servers/zero_window.py); an abusive request that still reaches the server (another
source) is closed with RST.

stdout: exactly one ``listening on ...`` line once ready, and one JSON line of counters after
SIGTERM/SIGINT. stderr: short log lines prefixed ``closebench-server:``. Exit status 2 on bad
options or a startup problem (busy port, no CAP_NET_ADMIN for repair), else 0.
"""

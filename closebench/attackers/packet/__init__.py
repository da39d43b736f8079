"""The packet-level TCP client behind the `scapy` and `volume` attackers.

Neither attacker holds a kernel socket: both craft every segment and read the server's replies
from a packet socket, in a child process inside the attacker host. They share everything below
and differ only in a Profile (how they give up, whether they retransmit) and in their runner
(source addresses, the nft rule that keeps the attacker kernel's RSTs out).

    supervisor.py   parent side: nft rule, child process, its lines -> Attempts (PacketAttacker)
    child_config.py what the runner hands the child (JSON on its stdin)
    child_output.py the child's output lines: one per attempt, ready, final counters
    __main__.py     the child's entry point: python -m closebench.attackers.packet
    loop.py         the child's event loop: pacing starts, polling the wire, timers, flushing
    engine.py       the TCP state machine: its transition table (TRANSITIONS) and its dispatch
    states.py       the engine's states and events, and IGNORE
    actions.py      what the engine does on each transition; does no I/O but through the Wire
    connection.py   a connection, the settings and Profile, the counters, ISNs, the Outbox
    timers.py       the connections' timers: a FIFO per fixed delay, a heap for the rest
    raw_sockets.py  raw socket out, AF_PACKET ring + BPF in: the Wire the engine is given
    templates.py    packets built once with scapy, patched per connection (ports, numbers, checksum)
    decode.py       received packets -> Segment/IcmpError: struct for the common, scapy for the rest
    segments.py     TCP flags, sequence arithmetic, what the engine is fed
"""

"""The packet-level TCP client behind the `scapy` and `volume` attackers.

Neither attacker holds a kernel socket: both craft every segment and read the server's replies
from a packet socket, in a child process inside the attacker host. They share this package's
modules and differ only in a Profile (how they give up, whether they retransmit) and in their
runner (source addresses, the nft rule that keeps the attacker kernel's RSTs out).
"""

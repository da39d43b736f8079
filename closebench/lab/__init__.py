"""The lab: network namespaces on this machine, the hosts in them, and what is read from them.

    netns.py       namespaces owned by keeper processes; entering them from a thread
    nsexec.py      runs a command as a member of a host (python -m closebench.lab.nsexec)
    privileges.py  capabilities, user namespaces, required tools
    hosts.py       a host: commands, spawned processes, its /proc/net
    topology.py    the Lab: attacker, defender, router and switch hosts, veths, addresses
    sockets.py     a host's kernel TCP sockets: states, orphans, counters
    conntrack.py   the lab router's connection tracking
    capture.py     tcpdump on a host's interface (sniffer.py: its stand-in in a user namespace)
    cleanup.py     closebench lab clean
    cpus.py        each side's CPUs (placement, RPS masks) and what they did (/proc/stat)

Imports closebench.core only. Other stages import the names below from `closebench.lab`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closebench.core.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for type checkers and readers: the names come from _EXPORTS at run time
    from closebench.lab.hosts import Host as Host
    from closebench.lab.hosts import stop_processes as stop_processes
    from closebench.lab.topology import MAX_ATTACKER_HOSTS as MAX_ATTACKER_HOSTS
    from closebench.lab.topology import MAX_EXTRA_ADDRESSES as MAX_EXTRA_ADDRESSES
    from closebench.lab.topology import ROUTER_TABLE as ROUTER_TABLE
    from closebench.lab.topology import Addressing as Addressing
    from closebench.lab.topology import Lab as Lab
    from closebench.lab.topology import lab_processes as lab_processes

# Loaded on first use: the programs the lab starts for every process it spawns (nsexec.py, the
# sniffer, the packet attacker's child) import modules of this package and must start light,
# without psutil and the lab's setup code.
_EXPORTS = {
    "Host": "hosts",
    "stop_processes": "hosts",
    "Lab": "topology",
    "Addressing": "topology",
    "lab_processes": "topology",
    "ROUTER_TABLE": "topology",
    "MAX_ATTACKER_HOSTS": "topology",
    "MAX_EXTRA_ADDRESSES": "topology",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

"""The lab: network namespaces on this machine, the hosts in them and their wires, and what is
read from them (sockets, conntrack, captures, CPUs). Imports closebench.core only; other stages
import the names below from `closebench.lab`."""

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

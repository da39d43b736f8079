"""The lab: network namespaces on this machine, the hosts in them, and what is read from them."""

from __future__ import annotations

import importlib

# Loaded on first use: the programs the lab starts for every process it spawns (nsexec.py, the
# sniffer, the packet attacker's child) import modules of this package and must start light.
_EXPORTS = {
    "Host": "topology",
    "stop_processes": "topology",
    "Lab": "topology",
    "Addressing": "topology",
    "lab_processes": "topology",
    "ROUTER_TABLE": "topology",
    "MAX_ATTACKER_HOSTS": "topology",
    "MAX_EXTRA_ADDRESSES": "topology",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.lab.{module}"), name)

"""`closebench lab clean`: remove lab leftovers that a running closebench does not own.

Labs of this version cannot leak (see netns.py); this is for anything older versions or a broken
machine left: named network namespaces and host-side veths called closebench*/cb-*, and keeper
processes whose runner is gone. A lab that a live closebench run owns is never touched.
"""

from __future__ import annotations

import os
import subprocess

import psutil

from closebench.lab.topology import lab_processes

NAME_PREFIXES = ("closebench", "cb-")


def _named_netns() -> list[str]:
    try:
        return [n for n in os.listdir("/run/netns") if n.startswith(NAME_PREFIXES)]
    except FileNotFoundError:
        return []


def _host_veths() -> list[str]:
    output = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True
    ).stdout
    names = [
        line.split(":")[1].strip().split("@")[0] for line in output.splitlines() if ":" in line
    ]
    return [name for name in names if name.startswith(NAME_PREFIXES)]


def _orphaned_keepers() -> list[psutil.Process]:
    orphans = []
    for keeper in lab_processes():
        try:
            parent = keeper.parent()
            owner = parent.parent() if parent else None
            # A live lab is keeper <- unshare <- closebench; anything else lost its runner.
            if parent is None or parent.name() != "unshare" or owner is None or owner.pid == 1:
                orphans.append(keeper)
        except psutil.NoSuchProcess:
            continue
    return orphans


def clean() -> list[str]:
    """Remove leftovers; return one line per thing removed (or one saying there was nothing)."""
    done: list[str] = []
    for keeper in _orphaned_keepers():
        try:
            keeper.kill()
            done.append(f"killed orphaned lab keeper {keeper.pid}")
        except psutil.NoSuchProcess:
            pass
    for name in _named_netns():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        done.append(f"deleted network namespace {name}")
    for name in _host_veths():
        subprocess.run(["ip", "link", "delete", name], capture_output=True)
        done.append(f"deleted veth {name}")
    return done or ["nothing to clean: no lab leftovers on this machine"]

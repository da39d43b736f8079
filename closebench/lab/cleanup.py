"""`closebench lab clean`: remove lab leftovers that a running closebench does not own.

Labs of this version cannot leak (see netns.py); this is for anything older versions or a broken
machine left: named network namespaces and host-side veths called closebench*/cb-*, keeper
processes whose runner is gone, and the bpf filesystems (pinned BPF programs and maps) of
xdp-drop/tc-drop trials whose closebench died. A lab that a live closebench run owns is never
touched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import psutil

from closebench.lab.topology import lab_processes

NAME_PREFIXES = ("closebench", "cb-")
# The bpf filesystems xdp-drop and tc-drop mount for a trial (closebench/defender/bpf_drop.py):
# <tmp>/closebench-bpf-<PID of the closebench that mounted it>-<random>.
BPF_MOUNT_PREFIX = "closebench-bpf-"


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


def bpf_mounts() -> list[tuple[str, int]]:
    """(mount point, PID of its closebench) of every bpf filesystem closebench mounted."""
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3 or fields[2] != "bpf":
                continue
            point = fields[1].replace("\\040", " ")
            name = os.path.basename(point)
            if name.startswith(BPF_MOUNT_PREFIX):
                pid = name.removeprefix(BPF_MOUNT_PREFIX).split("-", 1)[0]
                found.append((point, int(pid) if pid.isdigit() else 0))
    return found


def _orphaned_bpf_mounts() -> list[str]:
    """Those whose closebench is gone: their pinned programs and maps outlived the run."""
    return [point for point, pid in bpf_mounts() if not pid or not psutil.pid_exists(pid)]


def remove_orphaned_bpf_mounts() -> list[str]:
    """Unmount the bpf filesystems of dead runs; one line per mount removed."""
    done = []
    for point in _orphaned_bpf_mounts():
        subprocess.run(["umount", point], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(point)
        done.append(f"unmounted {point} (BPF programs and maps pinned by a dead run)")
    return done


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
    done += remove_orphaned_bpf_mounts()
    return done or ["nothing to clean: no lab leftovers on this machine"]

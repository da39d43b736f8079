"""Commands from files run without root's powers.

A command that comes from a scenario file (an attacker's `command`, a strategy entry's `command`)
runs in its lab host's network namespace like everything else there, and also:

- in a mount namespace of its own, with /proc mounted for its lab host's PID namespace (it sees
  the lab's processes, not the machine's);
- with no capabilities (bounding, inheritable, ambient and permitted sets emptied) and
  `no_new_privs` (no setuid binary or file capability gives any back);
- with a clean environment (setpriv --reset-env: PATH=/usr/local/bin:/bin:/usr/bin, HOME, USER
  and SHELL of its uid, TERM kept);
- as uid/gid 65534 (nobody) where the lab runs as real root. Under `unshare -Urnm` only uid 0 is
  mapped, so it keeps that uid (the user who started closebench) and loses the capabilities.

A scenario may grant named capabilities (`capabilities = ["net_raw"]`) or `privileged = true`,
which runs the command as typed. Commands typed on the command line run as typed too.

Done by util-linux's `unshare` and `setpriv`, exec'd in turn by the lab's nsexec child: the
command keeps the PID the lab gave it, so its process tree is sampled as any server's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

NOBODY = 65534
# Linux's capability names (capabilities(7)), without the CAP_ prefix, as setpriv spells them.
CAPABILITIES = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
TOOLS = ("unshare", "setpriv")  # util-linux


def capability_problem(name: str) -> str | None:
    """Why `name` is not a capability a command can be granted (None: it is one)."""
    if name.lower().removeprefix("cap_") in CAPABILITIES:
        return None
    return f"unknown capability {name!r}; name one of capabilities(7), e.g. net_raw"


def mapped(map_file: str, id_: int) -> bool:
    """Whether `id_` is mapped in this process's user namespace (/proc/self/uid_map, gid_map)."""
    try:
        with open(map_file) as lines:
            for line in lines:
                inside, _outside, count = (int(part) for part in line.split())
                if inside <= id_ < inside + count:
                    return True
    except OSError:
        return False
    return False


@cache
def unprivileged_identity() -> tuple[int, int] | None:
    """(uid, gid) a confined command switches to; None where only our own uid is mapped (under
    `unshare -Urnm`, whose uid 0 is the unprivileged user who started closebench)."""
    if os.geteuid() != 0:
        return None
    if mapped("/proc/self/uid_map", NOBODY) and mapped("/proc/self/gid_map", NOBODY):
        return (NOBODY, NOBODY)
    return None


def root_is_the_machines() -> bool:
    """Whether our uid 0 is the machine's root though no other uid is mapped (root itself ran
    `unshare -Urnm`): a confined command then keeps root's files, lacking only capabilities."""
    try:
        with open("/proc/self/uid_map") as lines:
            entries = [tuple(int(part) for part in line.split()) for line in lines]
    except OSError:
        return False
    return os.geteuid() == 0 and entries == [(0, 0, 1)]


@dataclass(frozen=True)
class Confinement:
    """How a command from a scenario file runs: the capabilities granted to it, or everything."""

    capabilities: tuple[str, ...] = ()
    privileged: bool = False

    def __post_init__(self) -> None:
        for name in self.capabilities:
            if (problem := capability_problem(name)) is not None:
                raise ValueError(problem)

    @property
    def granted(self) -> tuple[str, ...]:
        return tuple(sorted({name.lower().removeprefix("cap_") for name in self.capabilities}))

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run confined: the command line that execs it (as typed when privileged)."""
        if self.privileged:
            return list(argv)
        caps = ",".join(["-all", *(f"+{name}" for name in self.granted)])
        setpriv = ["setpriv"]
        identity = unprivileged_identity()
        if identity is not None:
            uid, gid = identity
            setpriv += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        else:
            # uid 0 of a user namespace keeps no root privileges across exec: only the ambient set
            setpriv += ["--securebits=+noroot,+noroot_locked"]
        setpriv += [f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}"]
        # A clean environment: none of root's variables (tokens, SUDO_*), a PATH of the system's
        # directories, HOME and USER of the uid it runs as.
        setpriv += ["--reset-env", "--no-new-privs", "--"]
        return ["unshare", "--mount", "--mount-proc", "--", *setpriv, *argv]

    def describe(self) -> str:
        """Who the command runs as, for the line the run prints per command."""
        if self.privileged:
            return "as typed (privileged = true): uid 0, every capability"
        identity = unprivileged_identity()
        uid = identity[0] if identity else os.geteuid()
        caps = ", ".join(self.granted) or "none"
        text = (
            f"as uid {uid}, capabilities: {caps}; no_new_privs, a mount namespace of its own, "
            "a clean environment"
        )
        if identity is None and root_is_the_machines():
            text += (
                " (uid 0 is the machine's root here, the only uid mapped: it still owns root's "
                "files; run closebench as root without unshare, or as yourself)"
            )
        return text


AS_TYPED_LINE = "as typed (given on the command line): closebench's own uid and capabilities"


def describe(confine: Confinement | None) -> str:
    """How a command runs: confined (from a file), or as typed (None)."""
    return confine.describe() if confine is not None else AS_TYPED_LINE


def prepare_directory(path: str, confine: Confinement | None) -> None:
    """Give a confined command's scratch directory to the uid it runs as (it could not write
    its own browser profile, say, in root's 0700 temporary directory)."""
    identity = unprivileged_identity() if confine and not confine.privileged else None
    if identity is not None:
        os.chown(path, *identity)

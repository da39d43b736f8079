"""xdp-drop and tc-drop: the banned addresses' SYNs dropped by a BPF program on the interface
facing the attackers, before the kernel's IP stack (generic XDP) or at tc ingress (a classifier
in direct-action mode: this kernel has no act_gact for `action drop`).

The program is closebench/defender/bpf/ban_drop.c, compiled for the trial's port with clang into
a scratch directory (never a prebuilt object). Its maps and programs are pinned in a bpf
filesystem mounted for the trial on that scratch directory, so nothing lands in the machine's
/sys/fs/bpf and parallel trials never share a map; `remove()` unmounts it (the program detaches
when the lab's interface goes), and `closebench lab clean` unmounts any a killed run left
(MOUNT_PREFIX). The server's ban thread writes the maps (closebench/servers/bpf_maps.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from closebench.core.errors import EnvironmentProblem, LabError
from closebench.lab import Host, Lab
from closebench.lab.cleanup import BPF_MOUNT_PREFIX
from closebench.servers import bpf_maps
from closebench.servers.strategies import StrategySpec

STRATEGIES = {"xdp-drop": "xdp", "tc-drop": "tc"}  # strategy -> attach point
PROGRAMS = {"xdp": "xdp_ban_drop", "tc": "tc_ban_drop"}
MOUNT_PREFIX = BPF_MOUNT_PREFIX  # then our PID: `lab clean` tells whose it is (no dots: libbpf
# turns them into _ in pin paths)
SOURCE = "ban_drop.c"
TOOLS = {"clang": "clang", "bpftool": "bpftool"}  # tool -> Debian package (libbpf-dev: headers)


@dataclass(frozen=True)
class Loaded:
    """One trial's program: where it is pinned and where it is attached."""

    directory: str  # the mounted bpf filesystem: progs/, maps/
    host: Host
    ifname: str
    attach: str  # "xdp" or "tc"

    @property
    def maps(self) -> str:
        return f"{self.directory}/maps"

    def describe(self) -> str:
        """Where and how it was attached, for summary.json: "xdpgeneric on defender eth0"."""
        mode = "xdpgeneric" if self.attach == "xdp" else "tc ingress bpf direct-action"
        return f"{mode} on {self.host.role} {self.ifname}"


def source_path() -> Path:
    return Path(str(resources.files("closebench.defender").joinpath("bpf", SOURCE)))


def require_tools() -> None:
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise EnvironmentProblem(
                f"{tool} is not installed, and xdp-drop/tc-drop need it: apt-get install "
                f"{package} libbpf-dev, or ./setup.sh"
            )


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "strict mode" not in line]
        problem = lines[0] if lines else f"exit status {result.returncode}"
        raise LabError(f"cannot {what}: {problem}")


def compile_program(port: int, directory: str) -> str:
    """ban_drop.c built for `port` into `directory`; the object's path."""
    obj = f"{directory}/ban_drop.o"
    include = f"/usr/include/{_multiarch()}"
    argv = ["clang", "-O2", "-g", "-target", "bpf", f"-DPORT={port}", "-I", include]
    _run([*argv, "-c", str(source_path()), "-o", obj], "compile the BPF program ban_drop.c")
    return obj


def _multiarch() -> str:
    """Where asm/types.h lives (linux/bpf.h includes it): /usr/include/<triplet>."""
    result = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True)
    found = result.stdout.strip() if result.returncode == 0 else ""
    return found or "x86_64-linux-gnu"


def mount(directory: str) -> None:
    _run(["mount", "-t", "bpf", "bpf", directory], f"mount a bpf filesystem on {directory}")


def unmount(directory: str) -> None:
    subprocess.run(["umount", directory], capture_output=True, timeout=30)
    Path(directory).rmdir()


def attach_host(lab: Lab, spec: StrategySpec) -> tuple[Host, str]:
    """The host and interface whose ingress faces the attackers."""
    if spec.options.get("where") == "router":
        if lab.router is None:
            raise LabError(f"{spec} drops on the router, and this lab has none: run it routed")
        return lab.router, "to-attacker"
    return lab.defender, "eth0"


def load(lab: Lab, spec: StrategySpec, port: int) -> Loaded:
    """Compile, pin and attach the program of `spec` (xdp-drop or tc-drop) for `port`."""
    host, ifname = attach_host(lab, spec)
    loaded = Loaded(pin(port), host, ifname, STRATEGIES[spec.name])
    try:
        attach(loaded)
    except BaseException:
        unmount(loaded.directory)
        raise
    return loaded


def pin(port: int) -> str:
    """Compile the program for `port` and pin it, maps included, in a bpf filesystem mounted for
    it; that directory (progs/, maps/)."""
    require_tools()
    directory = tempfile.mkdtemp(prefix=f"{MOUNT_PREFIX}{os.getpid()}-")
    try:
        mount(directory)
    except LabError:
        Path(directory).rmdir()
        raise
    try:
        with tempfile.TemporaryDirectory(prefix="closebench-bpf-build-") as build:
            obj = compile_program(port, build)
            Path(f"{directory}/maps").mkdir()
            pins = [f"{directory}/progs", "pinmaps", f"{directory}/maps"]
            _run(["bpftool", "prog", "loadall", obj, *pins], "load the BPF program (bpftool)")
    except BaseException:
        unmount(directory)
        raise
    return directory


def attach(loaded: Loaded) -> None:
    """Attach the pinned program to the interface's ingress: generic XDP or tc."""
    program = f"{loaded.directory}/progs/{PROGRAMS[loaded.attach]}"
    if loaded.attach == "xdp":  # generic mode: a veth has no native XDP without a peer program
        loaded.host.run(
            ["ip", "link", "set", "dev", loaded.ifname, "xdpgeneric", "pinned", program]
        )
        return
    loaded.host.run(["tc", "qdisc", "add", "dev", loaded.ifname, "clsact"])
    classifier = ["bpf", "da", "object-pinned", program]  # da: its return value is the verdict
    loaded.host.run(["tc", "filter", "add", "dev", loaded.ifname, "ingress", *classifier])


def dropped(loaded: Loaded) -> int:
    """SYNs the program dropped so far (its own counter)."""
    fd = bpf_maps.open_pinned(f"{loaded.maps}/{bpf_maps.STATS}")
    try:
        return bpf_maps.total_dropped(fd)
    finally:
        os.close(fd)


def remove(loaded: Loaded) -> None:
    """Detach the program (if its interface still exists) and unmount its bpf filesystem."""
    with contextlib.suppress(LabError, OSError):  # a lab gone took the program with it
        if loaded.attach == "xdp":
            loaded.host.run(["ip", "link", "set", "dev", loaded.ifname, "xdpgeneric", "off"])
        else:
            loaded.host.run(["tc", "qdisc", "del", "dev", loaded.ifname, "clsact"])
    unmount(loaded.directory)

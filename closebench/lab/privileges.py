"""What closebench needs from the machine, checked up front with one clear error each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from closebench.core.errors import EnvironmentProblem

IN_USERNS_ENV = "CLOSEBENCH_IN_USERNS"
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21

# tool -> Debian package that brings it
TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "sysctl": "procps",
    "tcpdump": "tcpdump",
    "nft": "nftables",
    "curl": "curl",
}


def effective_capabilities() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_capability(bit: int) -> bool:
    return bool(effective_capabilities() & (1 << bit))


def unprivileged_userns_works() -> bool:
    try:
        result = subprocess.run(["unshare", "-Ur", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def ensure_privileges(argv: list[str]) -> None:
    """Return if we can build labs; re-exec under `unshare -Urnm` if that gives us the rights."""
    needed = (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN)
    if all(has_capability(bit) for bit in needed):
        return
    if os.environ.get(IN_USERNS_ENV):
        raise EnvironmentProblem(
            "even inside a user namespace closebench lacks CAP_NET_ADMIN, CAP_NET_RAW or "
            "CAP_SYS_ADMIN; run it as root (sudo closebench ...)"
        )
    if os.geteuid() != 0 and shutil.which("unshare") and unprivileged_userns_works():
        env = dict(os.environ, **{IN_USERNS_ENV: "1"})
        command = ["unshare", "-Urnm", "--", sys.executable, "-m", "closebench.cli", *argv]
        os.execvpe("unshare", command, env)
    raise EnvironmentProblem(
        "closebench needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN to build its lab of network "
        "namespaces: run it as root (sudo closebench ...), or allow unprivileged user namespaces "
        "(sysctl -w kernel.unprivileged_userns_clone=1, or on Ubuntu "
        "kernel.apparmor_restrict_unprivileged_userns=0) and run it as yourself"
    )


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({TOOLS.get(tool, tool) for tool in missing}))
        raise EnvironmentProblem(
            f"missing {', '.join(missing)}: install with `apt-get install {packages}` "
            "(or run ./setup.sh, which installs everything closebench uses)"
        )

"""What summary.json records of the machine a run ran on: its kernel, Python, CPUs, capabilities
and the versions of the tools and libraries closebench uses."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from functools import cache

from closebench.lab.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, has_capability


def machine_metadata() -> dict:
    """What summary.json records of the machine a run ran on."""
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "capabilities": {
            "CAP_NET_ADMIN": has_capability(CAP_NET_ADMIN),
            "CAP_NET_RAW": has_capability(CAP_NET_RAW),
            "CAP_SYS_ADMIN": has_capability(CAP_SYS_ADMIN),
        },
        "tools": tool_versions(),
    }


@cache  # asked for again each time a trial ends (the summary so far): the tools do not change
def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for tool in ("tcpdump", "nft", "curl", "chromium"):
        if shutil.which(tool) is None:
            versions[tool] = None
            continue
        result = subprocess.run([tool, "--version"], capture_output=True, text=True)
        versions[tool] = (result.stdout or result.stderr).splitlines()[0].strip()
    for module in ("scapy", "psutil", "pydantic", "dpkt", "pyarrow"):
        imported = sys.modules.get(module) or __import__(module)
        versions[module] = getattr(imported, "__version__", None) or getattr(
            imported, "VERSION", None
        )
    return versions

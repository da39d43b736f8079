"""Finding a Chrome or Chromium that runs: the report's page is checked in a real headless browser.

Debian ships Chromium as a package; Ubuntu (20.04 on) only as a snap, whose /usr/bin stub exits
with a message when the snap is missing; GitHub's Ubuntu runners have Google Chrome instead.
So a browser counts only once `BROWSER --version` answers like one.

Standard library only, and runnable as a script (`python3 closebench/attackers/chromium.py` prints
the path or exits 1): setup.sh asks it, with the system's Python, before the venv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BROWSER_ENV = "CLOSEBENCH_BROWSER"  # a browser to use instead of looking for one
CANDIDATES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "/snap/bin/chromium",
)


def find_browser() -> str | None:
    """The path of a working Chrome or Chromium; $CLOSEBENCH_BROWSER when set (it alone)."""
    chosen = os.environ.get(BROWSER_ENV)
    for candidate in (chosen,) if chosen else CANDIDATES:
        path = shutil.which(candidate)
        if path and runs(path):
            return path
    return None


def runs(path: str) -> bool:
    try:
        answer = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return answer.returncode == 0 and "chrom" in answer.stdout.lower()


if __name__ == "__main__":
    found = find_browser()
    if found:
        print(found)
    sys.exit(0 if found else 1)

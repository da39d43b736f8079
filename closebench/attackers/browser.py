"""The seed's abuser was Chrome: headless Chromium as the attacker, one page load per attempt slot.

A CommandClient whose command is Debian's `chromium` (or the Chrome or Chromium that
closebench/attackers/chromium.py finds, or $CLOSEBENCH_BROWSER), run as root in the attacker host
(hence no sandbox), with a fresh empty profile per page load and everything that would reach for
the internet turned off.
`--timeout` bounds the page load to the policy's timeout, as a user who gives up would; a long
timeout (`--timeout 120`) shows what the browser does left to itself. Every connection the browser
opens towards the target is an attempt (the request, its retries, spare connections).
"""

from __future__ import annotations

import re

from closebench.attackers.chromium import BROWSER_ENV, find_browser
from closebench.attackers.command import CommandClient
from closebench.core.errors import EnvironmentProblem

CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",  # root in the attacker host: Chromium's sandbox refuses to run as root
    "--disable-gpu",
    "--disable-quic",  # the target speaks TCP; QUIC would only be tried and fail
    "--no-first-run",
    # Without these Chromium fetches updates, components and sync state from the internet,
    # which the lab does not reach.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--user-data-dir={scratch}",  # a fresh empty profile: no cache, no cookies, no learnt hosts
    "--timeout={timeout_ms}",
    "--dump-dom",
    "{url}",
]
# headless_command_handler's verdict on the page load, among Chromium's other stderr lines.
PAGE_LOAD = re.compile(r"Page load (failed: \S+|timed out)")


class BrowserClient(CommandClient):
    name = "browser"

    def __init__(self, label: str | None = None) -> None:
        super().__init__([require_browser(), *CHROMIUM[1:]], label or "browser")

    def error_text(self, status: int, stdout: str, stderr: str) -> str:
        verdicts = PAGE_LOAD.findall(stderr)
        if verdicts:
            return f"Page load {verdicts[-1]}"
        if status == 0:
            return "page loaded"
        return super().error_text(status, stdout, stderr)


def require_browser() -> str:
    """The path of a Chrome or Chromium that runs; one clear error naming the package if none."""
    path = find_browser()
    if path is None:
        raise EnvironmentProblem(
            "missing chromium: the browser attacker drives a headless Chrome or Chromium and none "
            "runs here; install with `apt-get install chromium` (./setup.sh does), or name one "
            f"in ${BROWSER_ENV}"
        )
    return path

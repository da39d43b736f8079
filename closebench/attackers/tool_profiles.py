"""Real abuse tools' profiles: how each is aimed at the lab's target, its own timeouts (read from
its arguments), how its output says what it did, and where it leaves files.

A profile is data and small readers; closebench/attackers/tools.py runs it as a command attacker.
Each try is what the tool counts as one: a credential pair for the brute-forcers (hydra, medusa,
ncrack), a port probe for the scanners (nmap, masscan). The timeouts and their defaults are the
tools' own, from their manuals and sources (docs/guides/abuse-tools.md cites each).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from closebench.core.errors import EnvironmentProblem, UsageError

WORDLISTS = Path(__file__).parent / "wordlists"
# Filled in for a tool's run besides the command placeholders (attackers/__init__.py).
TOOL_PLACEHOLDERS = ("users", "passwords", "interface", "router_mac")
FINISHED, GAVE_UP, STOPPED = "finished", "gave up", "stopped"


@dataclass(frozen=True)
class ToolReading:
    """What one run of a tool said of itself."""

    tries: int  # credential pairs tried, or ports probed (the ones it began)
    successes: int  # credentials found, or open ports
    gave_up: str | None  # the line where it said it gave up (None: it did not)
    # Tries it says it began that may still be waiting for their answer when it is stopped
    # (hydra announces each try before sending it: one per task): not counted as made then.
    in_flight: int = 0


def _option(args: list[str], flag: str, default: float) -> float:
    """The number after `flag` in `args` (its last one), or `default`."""
    value = default
    for index, part in enumerate(args[:-1]):
        if part == flag:
            value = _seconds(args[index + 1], default)
    return value


def _seconds(text: str, default: float) -> float:
    """nmap's and ncrack's times: 500ms, 5s, 2m, 1h, or plain seconds."""
    match = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", text)
    if not match:
        return default
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, re.MULTILINE))


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(0).strip()[:300] if match else None


def _hydra(out: str, err: str, status: int) -> ToolReading:
    said = out + err
    gave_up = _first(r"^\[ERROR\].*$", said)
    if gave_up is None and status != 0:
        gave_up = f"exit status {status}"
    return ToolReading(
        tries=_count(r"^\[ATTEMPT\] ", said),
        successes=_count(r"^\[\d+\]\[[\w-]+\] host: ", said),
        gave_up=gave_up,
        in_flight=len(set(re.findall(r"^\[ATTEMPT\] .*\[child (\d+)\]", said, re.MULTILINE))),
    )


def _medusa(out: str, err: str, status: int) -> ToolReading:
    said = out + err
    gave_up = _first(r"^(ERROR|CRITICAL): .*$", said)
    return ToolReading(
        tries=_count(r"^ACCOUNT CHECK: ", said),
        successes=_count(r"^ACCOUNT FOUND: .*\[SUCCESS\]", said),
        gave_up=gave_up or (f"exit status {status}" if status != 0 else None),
    )


def _ncrack(out: str, err: str, status: int) -> ToolReading:
    said = out + err
    sent = re.search(r"Probes sent: (\d+)", said)
    gave_up = _first(r"^.*(too many failed|[Ee]rror|QUITTING).*$", said)
    return ToolReading(
        tries=int(sent.group(1)) if sent else 0,
        successes=_count(r"^\S+ \d+/tcp \S+: '.*' '.*'$", said),
        gave_up=gave_up or (f"exit status {status}" if status != 0 else None),
    )


def _nmap(out: str, err: str, status: int) -> ToolReading:
    said = out + err
    listed = _count(r"^\d+/tcp\s", said)
    hidden = re.search(r"Not shown: (\d+)", said)
    gave_up = _first(r"^(QUITTING!|Failed to .*|.*[Ee]rror.*)$", said)
    return ToolReading(
        tries=listed + (int(hidden.group(1)) if hidden else 0),
        successes=_count(r"^\d+/tcp\s+open\s", said),
        gave_up=gave_up or (f"exit status {status}" if status != 0 else None),
    )


def _masscan(out: str, err: str, status: int) -> ToolReading:
    said = out + err
    hosts = re.search(r"Scanning (\d+) hosts \[(\d+) ports?/host\]", said)
    gave_up = _first(r"^(FAIL|\[-\]).*$", said)
    return ToolReading(
        tries=int(hosts.group(1)) * int(hosts.group(2)) if hosts else 0,
        successes=_count(r"^Discovered open port ", said),
        gave_up=gave_up or (f"exit status {status}" if status != 0 else None),
    )


@dataclass(frozen=True)
class ToolProfile:
    name: str
    program: str
    package: str  # the Debian package that brings it
    tries_are: str  # what one try is, for tables and docs
    defaults: tuple[str, ...]  # its arguments when none are given
    # Closebench's own part of the command line: the target, wordlists, the output it reads and
    # where its files go. The user's arguments come first.
    aim: tuple[str, ...]
    # The tool's own wait for one connection (seconds) read from its arguments; inf: none.
    wait: Callable[[list[str]], float]
    timeouts: str  # its timeouts and their defaults, as its manual and source give them
    read: Callable[[str, str, int], ToolReading]
    version: tuple[str, ...]  # the arguments that make it print its version
    capabilities: tuple[str, ...] = ()  # what it needs when confined (lab/confine.py)
    binds_source: bool = False  # it takes {source}: runs of it may overlap

    def argv(self, args: list[str] | None) -> list[str]:
        """Its command line (with placeholders)."""
        return [self.program, *(self.defaults if args is None else args), *self.aim]

    def installed(self) -> bool:
        return shutil.which(self.program) is not None

    def missing(self) -> str:
        return (
            f"missing {self.program}: the {self.name} tool attacker runs it; install with "
            f"`apt-get install {self.package}` (./setup.sh does)"
        )

    def require(self) -> None:
        if not self.installed():
            raise EnvironmentProblem(self.missing())


HYDRA = ToolProfile(
    name="hydra",
    program="hydra",
    package="hydra",
    tries_are="credential pairs",
    defaults=("-t", "4", "-w", "5"),
    # -I: no waiting on an old ./hydra.restore (the run's scratch directory is its cwd);
    # -V: one [ATTEMPT] line per try.
    aim=(
        "-I",
        "-V",
        "-L",
        "{users}",
        "-P",
        "{passwords}",
        "-s",
        "{port}",
        "{address}",
        "http-get",
        "{path}",
    ),
    wait=lambda args: _option(args, "-w", 32.0),
    timeouts="-w: wait for a response, default 32 s; -W: wait between connects, default 0; "
    "-c: wait per try over all tasks (forces -t 1)",
    read=_hydra,
    version=(),  # its banner line says it: `hydra` alone prints it
)
MEDUSA = ToolProfile(
    name="medusa",
    program="medusa",
    package="medusa",
    tries_are="credential pairs",
    defaults=("-t", "4"),
    aim=(
        "-h",
        "{address}",
        "-n",
        "{port}",
        "-M",
        "http",
        "-m",
        "DIR:{path}",
        "-U",
        "{users}",
        "-P",
        "{passwords}",
    ),
    wait=lambda args: _option(args, "-g", 3.0),
    timeouts="-g: give up connecting after N s, default 3; -r: sleep between retries, default "
    "3 s; -R: retries before giving up (N + 1 tries)",
    read=_medusa,
    version=("-V",),
)
NCRACK = ToolProfile(
    name="ncrack",
    program="ncrack",
    package="ncrack",
    tries_are="credential pairs (its probes)",
    # Left to itself it opens thousands of connections a second against a server that answers
    # nothing it understands: four at a time, 50 ms apart, keeps a trial's records small; and
    # it reports its tries only when it ends: to=4s ends each run (its whole cracking time).
    defaults=("-g", "CL=4,cd=50ms,to=4s"),
    # --save: its restore file goes to the run's scratch directory, not ~/.ncrack.
    aim=(
        "-v",
        "--save",
        "{scratch}/ncrack.restore",
        "-U",
        "{users}",
        "-P",
        "{passwords}",
        "http://{address}:{port},path={path}",
    ),
    wait=lambda args: math.inf,
    timeouts="no per-connection option; -g to=TIME bounds the whole service's cracking time "
    "(default none); -T0..5 templates set the connection limits and delays",
    read=_ncrack,
    version=("-V",),
)
NMAP = ToolProfile(
    name="nmap",
    program="nmap",
    package="nmap",
    tries_are="port probes",
    defaults=("-sT",),
    aim=("-Pn", "-n", "-p", "{port}", "{address}"),
    wait=lambda args: _option(args, "--max-rtt-timeout", 10.0),
    timeouts="--max-rtt-timeout: a probe's longest wait, default 10 s (--initial-rtt-timeout "
    "1 s); --host-timeout: none by default; -sV: each service probe waits its totalwaitms "
    "(NULL probe 6 s, others 5 s unless nmap-service-probes says otherwise)",
    read=_nmap,
    version=("--version",),
)
NMAP_SV = ToolProfile(
    name="nmap-sV",
    program="nmap",
    package="nmap",
    tries_are="ports version-probed",
    defaults=("-sV",),
    aim=NMAP.aim,
    wait=lambda args: 6.0,  # the NULL probe's totalwaitms in nmap-service-probes
    timeouts=NMAP.timeouts,
    read=_nmap,
    version=NMAP.version,
)
MASSCAN = ToolProfile(
    name="masscan",
    program="masscan",
    package="masscan",
    tries_are="port probes (SYNs)",
    defaults=("--rate", "100", "--wait", "2"),
    # Its own packets from the attacker host's interface and address, to the next hop's MAC:
    # it reads neither from a route it does not have.
    aim=(
        "{address}",
        "-p",
        "{port}",
        "--adapter",
        "{interface}",
        "--adapter-ip",
        "{source}",
        "--router-mac",
        "{router_mac}",
    ),
    wait=lambda args: _option(args, "--wait", 10.0),
    timeouts="--wait: seconds it listens after its last probe, default 10; no per-connection "
    "timeout (it sends SYNs and answers nothing)",
    read=_masscan,
    version=("--version",),
    capabilities=("net_raw", "net_admin"),
    binds_source=True,
)
PROFILES = {p.name: p for p in (HYDRA, MEDUSA, NCRACK, NMAP, NMAP_SV, MASSCAN)}


def profile(name: str) -> ToolProfile:
    found = PROFILES.get(name)
    if found is None:
        raise UsageError(
            f"unknown tool {name!r}; the tool attacker knows: {', '.join(PROFILES)} "
            "(any other program runs as -a curl --attacker-command)"
        )
    return found


@cache
def version(name: str) -> str | None:
    """The installed tool's version line (None: not installed or it said none)."""
    tool = profile(name)
    if not tool.installed():
        return None
    try:
        said = subprocess.run(
            [tool.program, *tool.version], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = said.stdout + said.stderr
    match = re.search(r"\bv?(\d+\.\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def skip_missing(
    missing: dict[str, str], trials: int, warn: Callable[[str], None]
) -> dict[str, str]:
    """`missing` (trial name: why, from Scenario.tools_missing) to be skipped, with one warning
    per tool; an error instead when none of the `trials` would be left."""
    if missing and len(missing) == trials:
        raise EnvironmentProblem(next(iter(missing.values())))
    for message in sorted(set(missing.values())):
        warn(f"{message}; its trials skipped")
    return {trial: f"skipped: {why}" for trial, why in missing.items()}

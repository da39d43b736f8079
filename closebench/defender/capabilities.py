"""What this kernel can run, probed before a run: each chosen strategy's needs (an nftables
expression, a TCP socket option...) are tried once per process in a throwaway network namespace
(only those: a run of graceful and rst probes nothing), and a strategy the kernel cannot run is
skipped with the row error `skipped: this kernel lacks X`, as a missing
peer program is (peers.skip_missing).

    needs(spec)                       # the capabilities a strategy needs, by name
    findings = probe(names)           # each tried once; Finding says what is missing and why
    skipped = skip_unsupported(...)   # {str(spec): "skipped: this kernel lacks ..."}

A kernel without one of them is simulated by naming it in CLOSEBENCH_KERNEL_LACKS (a comma-separated
list): its probe then fails, so the skip path can be tested on any machine.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from closebench.core.errors import ClosebenchError, EnvironmentProblem
from closebench.defender import bpf_drop
from closebench.lab import Host
from closebench.servers.strategies import STRATEGIES, StrategySpec

SIMULATE_ENV = "CLOSEBENCH_KERNEL_LACKS"
PROBE_TABLE = "closebench_probe"
TCP_REPAIR = 19  # linux/tcp.h; Python's socket module does not export it

Check = Callable[[Host], "str | None"]  # None: it works; else what went wrong


@dataclass(frozen=True)
class Capability:
    name: str
    lacks: str  # what a row says it lacks: "this kernel lacks <lacks>"
    check: Check


@dataclass(frozen=True)
class Finding:
    name: str
    lacks: str
    available: bool
    detail: str = ""  # why not, when it is not

    def to_dict(self) -> dict:
        return asdict(self)


def _nft(rules: str) -> Check:
    """A check that loads a table with `rules` in its chain into the probe namespace."""

    def check(host: Host) -> str | None:
        if shutil.which("nft") is None:
            return "nft is not installed (apt-get install nftables)"
        table = (
            f"table inet {PROBE_TABLE} {{\n    set s4 {{ type ipv4_addr; flags dynamic; }}\n"
            f"    chain c {{ type filter hook input priority filter; policy accept;\n"
            f"        {rules}\n    }}\n}}\n"
        )
        try:
            host.run(["nft", "-f", "-"], stdin=table)
            host.run(["nft", "delete", "table", "inet", PROBE_TABLE])
        except ClosebenchError as error:
            return str(error).split(" failed: ", 1)[-1]
        return None

    return check


def _sockopt(level: int, option: int, value: int) -> Check:
    """A check that sets a TCP socket option on a fresh socket in the probe namespace."""

    def check(host: Host) -> str | None:
        with host.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            try:
                sock.setsockopt(level, option, value)
            except OSError as error:
                return error.strerror or str(error)
        return None

    return check


class _BpfProbe:
    """The shipped program compiled, loaded and pinned once per probe() (the three BPF checks
    share it), attached to a veth pair made inside the probe namespace."""

    IFNAME = "probe0"

    def __init__(self) -> None:
        self.directory: str | None = None
        self.problem: str | None = None
        self._tried = False

    def load(self, host: Host) -> str | None:
        if not self._tried:
            self._tried = True
            try:
                host.run(["ip", "link", "add", self.IFNAME, "type", "veth", "peer", "probe1"])
                host.run(["ip", "link", "set", self.IFNAME, "up"])
                self.directory = bpf_drop.pin(port=1)
            except ClosebenchError as error:
                self.problem = str(error)
        return self.problem

    def attach(self, host: Host, kind: str) -> str | None:
        problem = self.load(host)
        if problem or self.directory is None:
            return f"the program did not load ({problem})"
        try:
            bpf_drop.attach(bpf_drop.Loaded(self.directory, host, self.IFNAME, kind))
        except ClosebenchError as error:
            return str(error).split(" failed: ", 1)[-1]
        return None

    def close(self) -> None:
        if self.directory is not None:
            bpf_drop.unmount(self.directory)
            self.directory = None


_bpf_probe: _BpfProbe | None = None  # the one of the probe() running (probe() is not reentrant)


def _bpf(kind: str | None) -> Check:
    def check(host: Host) -> str | None:
        assert _bpf_probe is not None
        return _bpf_probe.load(host) if kind is None else _bpf_probe.attach(host, kind)

    return check


def _ss_kill(host: Host) -> str | None:
    """A connection over the probe namespace's loopback, destroyed with `ss -K`: the server
    side must be left aborted."""
    if shutil.which("ss") is None:
        return "ss is not installed (apt-get install iproute2)"
    try:
        host.run(["ip", "link", "set", "lo", "up"])
    except ClosebenchError as error:
        return str(error)
    with host.entered():
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
    with listener, client:
        accepted, _ = listener.accept()
        with accepted:
            port = accepted.getpeername()[1]
            try:
                host.run(["ss", "-K", "-t", "dst", f"127.0.0.1:{port}"])
            except ClosebenchError as error:
                return str(error)
            if accepted.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != errno.ECONNABORTED:
                return "ss -K ran, and the connection was still there"
    return None


CAPABILITIES = {
    c.name: c
    for c in (
        Capability("nftables", "nftables (nf_tables)", _nft("tcp dport 1 counter")),
        Capability(
            "nft-reject",
            "the nftables expression `reject with tcp reset` (nft_reject)",
            _nft("tcp dport 1 reject with tcp reset"),
        ),
        Capability(
            "nft-ct-count",
            "the nftables expression `ct count` (nft_connlimit, conntrack)",
            _nft("tcp dport 1 ct state new add @s4 { ip saddr ct count over 2 } drop"),
        ),
        Capability(
            "nft-synproxy",
            "the nftables statement `synproxy` (nft_synproxy, conntrack)",
            _nft("tcp dport 1 ct state invalid,untracked synproxy mss 1460 wscale 7"),
        ),
        Capability(
            "bpf",
            "BPF programs built and loaded by closebench (bpf(2), clang, bpftool, a bpf "
            "filesystem)",
            _bpf(None),
        ),
        Capability("xdp-generic", "generic XDP on a veth", _bpf("xdp")),
        Capability("tc-bpf", "tc BPF classifiers in direct-action mode (clsact)", _bpf("tc")),
        Capability(
            "tcp-repair",
            "TCP_REPAIR (CONFIG_CHECKPOINT_RESTORE)",
            _sockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1),
        ),
        Capability(
            "inet-diag-destroy",
            "socket destruction from outside the process (`ss -K`, CONFIG_INET_DIAG_DESTROY)",
            _ss_kill,
        ),
        Capability(
            "tcp-defer-accept",
            "TCP_DEFER_ACCEPT",
            _sockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5),
        ),
        Capability(
            "tcp-user-timeout",
            "TCP_USER_TIMEOUT",
            _sockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 30000),
        ),
    )
}
# What each strategy needs whatever its options (a peer's own needs are its program's).
STRATEGY_NEEDS: dict[str, tuple[str, ...]] = {
    "repair": ("tcp-repair",),
    "ss-kill": ("inet-diag-destroy",),
    "zero-window": ("nftables",),
    "fw-drop": ("nftables",),
    "fw-reject": ("nftables", "nft-reject"),
    "xdp-drop": ("bpf", "xdp-generic"),
    "tc-drop": ("bpf", "tc-bpf"),
    "conn-cap": ("nftables", "nft-ct-count"),
    "synproxy": ("nftables", "nft-synproxy"),
}
if not set(STRATEGY_NEEDS) <= set(STRATEGIES):
    raise RuntimeError("STRATEGY_NEEDS names a strategy closebench/servers/strategies.py lacks")


# Needs that come with an option rather than a strategy, as `closebench probe --kernel` tells them.
OPTION_NEEDS = {
    "tcp-repair": "then=repair",
    "nft-reject": "conn-cap:verdict=reject",
    "tcp-defer-accept": "defer_accept=N",
    "tcp-user-timeout": "user_timeout=S",
}


def needed_by(name: str) -> list[str]:
    """The strategies (and options) that need capability `name`."""
    found = [strategy for strategy, wanted in STRATEGY_NEEDS.items() if name in wanted]
    return found + ([OPTION_NEEDS[name]] if name in OPTION_NEEDS else [])


def needs(spec: StrategySpec) -> list[str]:
    """The capabilities `spec` needs, by name, in CAPABILITIES' order."""
    found = set(STRATEGY_NEEDS.get(spec.name, ()))
    options = spec.options
    if options.get("then") == "repair":
        found.add("tcp-repair")
    if options.get("verdict") == "reject":  # conn-cap
        found.add("nft-reject")
    if options.get("defer_accept"):
        found.add("tcp-defer-accept")
    if options.get("user_timeout"):
        found.add("tcp-user-timeout")
    return [name for name in CAPABILITIES if name in found]


def simulated_missing() -> set[str]:
    """The capabilities CLOSEBENCH_KERNEL_LACKS names; an unknown name is a usage error."""
    names = {n.strip() for n in os.environ.get(SIMULATE_ENV, "").split(",") if n.strip()}
    unknown = sorted(names - set(CAPABILITIES))
    if unknown:
        raise EnvironmentProblem(
            f"{SIMULATE_ENV} names {', '.join(unknown)}; known: {', '.join(CAPABILITIES)}"
        )
    return names


# What this process found, by capability: the kernel does not change under a running process,
# and one that runs many probes, runs and attacks (a pytest session, a sweep driven from Python)
# tries each capability once. Only in memory: nothing is written for another process to trust.
_found: dict[str, Finding] = {}


def probe(names: Iterable[str] | None = None) -> dict[str, Finding]:
    """Each capability (all by default), tried once per process in one throwaway network
    namespace; those CLOSEBENCH_KERNEL_LACKS names fail, whatever was found."""
    wanted = [name for name in CAPABILITIES if names is None or name in set(names)]
    if not wanted:
        return {}
    pretend = simulated_missing()
    untried = [name for name in wanted if name not in pretend and name not in _found]
    if untried:
        _found.update(_try(untried))
    findings: dict[str, Finding] = {}
    for name in wanted:
        if name in pretend:
            detail = f"simulated: {SIMULATE_ENV} names it"
            findings[name] = Finding(name, CAPABILITIES[name].lacks, False, detail)
        else:
            findings[name] = _found[name]
    return findings


def _try(names: list[str]) -> dict[str, Finding]:
    global _bpf_probe
    findings: dict[str, Finding] = {}
    host = Host(f"{os.getpid()}-caps", "probe")
    _bpf_probe = _BpfProbe()
    try:
        for name in names:
            capability = CAPABILITIES[name]
            problem = capability.check(host)
            findings[name] = Finding(name, capability.lacks, problem is None, problem or "")
    finally:
        _bpf_probe.close()
        _bpf_probe = None
        host.close()
    return findings


def lacking(missing: list[Finding]) -> str:
    return " and ".join(f.lacks for f in missing)


def skipped_error(missing: list[Finding]) -> str:
    """A skipped row's error: short, naming what the kernel lacks."""
    return f"skipped: this kernel lacks {lacking(missing)}"


def skip_unsupported(
    entries: Iterable[tuple[StrategySpec, bool]],
    warn: Callable[[str], None],
    findings: dict[str, Finding] | None = None,
) -> dict[str, str]:
    """The specs (by str(spec)) this kernel cannot run, each with its row error, after probing
    what `entries` (a spec, and whether its scenario says it must run) need. An error instead
    when nothing would be left, or when a spec that must run cannot and CI is set."""
    entries = list(entries)
    wanted = {name for spec, _ in entries for name in needs(spec)}
    findings = findings if findings is not None else probe(wanted)
    skipped: dict[str, str] = {}
    fatal: list[str] = []
    for spec, required in entries:
        missing = [findings[n] for n in needs(spec) if not findings[n].available]
        if not missing or str(spec) in skipped:
            continue
        skipped[str(spec)] = skipped_error(missing)
        why = "; ".join(f"{f.name}: {f.detail}" for f in missing)
        line = f"{spec}: this kernel lacks {lacking(missing)} ({why})"
        if required and os.environ.get("CI"):
            fatal.append(line + " and its scenario says it must run (CI is set)")
        else:
            warn(f"{line}; skipped")
    if fatal:
        raise EnvironmentProblem("; ".join(fatal))
    if entries and all(str(spec) in skipped for spec, _ in entries):
        raise EnvironmentProblem(
            "this kernel can run none of the strategies asked for: "
            + "; ".join(f"{spec}: {skipped[str(spec)]}" for spec, _ in entries)
        )
    return skipped


def require(spec: StrategySpec) -> None:
    """EnvironmentProblem when this kernel cannot run `spec` (a single-strategy command)."""
    findings = probe(needs(spec))
    missing = [f for f in findings.values() if not f.available]
    if missing:
        why = "; ".join(f"{f.name}: {f.detail}" for f in missing)
        raise EnvironmentProblem(f"{spec}: this kernel lacks {lacking(missing)} ({why})")

"""The child's entry point: python -m closebench.attackers.packet, in the attacker host.

It reads its ChildConfig from stdin, says it is ready, runs the loop over the engine over the
raw wire, and writes what records.py describes on stdout. SIGTERM or SIGINT, from its first
moment on, mean an orderly stop: open attempts are reset and not reported, the counters are.
"""

from __future__ import annotations

import resource
import signal
import sys
import threading
from dataclasses import asdict

from closebench.attackers.packet import loop
from closebench.attackers.packet.child_config import ChildConfig
from closebench.attackers.packet.child_output import READY, attempt_line, last_line
from closebench.attackers.packet.connection import Conn
from closebench.attackers.packet.decode import Decoder
from closebench.attackers.packet.engine import Engine
from closebench.attackers.packet.raw_sockets import RawWire

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def main() -> int:
    from closebench.lab.netns import die_with_parent

    die_with_parent()  # the nsexec launcher went away: so do we
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: cancel.set())
    out = sys.stdout
    out.write(READY + "\n")
    out.flush()
    config = ChildConfig.from_json(sys.stdin.readline())
    try:
        wire = open_wire(config)
    except OSError as error:
        out.write(last_line({"error": f"cannot open raw sockets: {error}"}))
        return 2
    lines: list[str] = []
    with open(BOOT_ID, "rb") as f:
        isn_key = b"closebench " + f.read().strip()

    def emit(conn: Conn) -> None:
        lines.append(attempt_line(conn, config.base_time))

    engine = Engine(wire, config.settings(isn_key), emit)

    def flush() -> None:
        if lines:
            out.write("".join(lines))
            out.flush()
            lines.clear()

    start = cpu_seconds()  # what starting cost: the imports, the ring
    try:
        ran = loop.run(engine, wire, config.the_policy(), cancel, flush, settle=config.retransmits)
        out.write(last_line(report(engine, wire, ran, config, start)))
    finally:
        wire.close()
    out.flush()
    return 0


def open_wire(config: ChildConfig) -> RawWire:
    low, high = config.port_range.low, config.port_range.high
    decoder = Decoder(config.family, config.dst, config.dport, config.sources, low, high)
    templates = config.the_templates()
    return RawWire(config.family, config.dst, templates, config.bpf, decoder, config.ifname)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(
    engine: Engine, wire: RawWire, ran: loop.LoopReport, config: ChildConfig, start_s: float
) -> dict:
    """What the attack cost the attacker: the engine's counters, the wire's, the loop's."""
    c = engine.counters
    usage = resource.getrusage(resource.RUSAGE_SELF)

    def per_s(count: int) -> float:
        return round(count / ran.starting_s, 1) if ran.starting_s > 0 else 0.0

    return {
        **asdict(c),
        **wire.stats(),
        **asdict(ran),
        "connections_per_s": per_s(c.connections_started),
        "established_per_s": per_s(c.connections_established),
        "kernel_sockets": 0,
        "sources": len(config.sources),
        "source_ports": config.ports,
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_system_s": round(usage.ru_stime, 3),
        "cpu_start_s": round(start_s, 3),  # of which before the attack's first packet
    }


if __name__ == "__main__":
    sys.exit(main())

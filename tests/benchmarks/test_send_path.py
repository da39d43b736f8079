"""The packet engine's send path alone: CPU per packet of three ways of sending its templates.

From the attacker host of a lab, SYNs to the defender (nothing listens: its kernel answers each
with an RST, which the attacker's kernel drops), on the raw socket the engine uses:
`bytes`, the engine before issue 19 (a bytes object built per packet, one send() each);
`patched`, the template patched into one bytearray (Template.write_into), one send() each;
`batched`, patched into SendBatch's slots, one sendmmsg() per BATCH (what the engine does now).
The ways alternate, ROUNDS each; the figure is each way's lowest CPU (user + system of this
thread, kernel work in the system calls included) per packet, in extra_info. That every packet
left is checked on the defender's IP counters; nothing asserts a time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

from closebench.attackers.packet import templates
from closebench.attackers.packet.raw_sockets import MARK
from closebench.attackers.packet.segments import Kind
from closebench.attackers.packet.send_batch import BATCH, SendBatch
from closebench.lab import Lab

pytestmark = pytest.mark.needs_lab

PACKETS = 20_000
ROUNDS = 3
PORT = 9  # nothing listens there


def ip_in_receives(lab: Lab) -> int:
    lines = [line.split() for line in lab.defender.proc_net("snmp").splitlines()]
    names, values = [line for line in lines if line[0] == "Ip:"][:2]
    return int(values[names.index("InReceives")])


def test_cpu_per_packet_of_each_way_of_sending(benchmark):
    with Lab() as lab, lab.attacker.entered():
        tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        dst = lab.defender_ip(4)
        tx.connect((dst, 0))
        made = templates.build(4, lab.attacker_ip(4), dst, PORT, b"")
        try:
            before = ip_in_receives(lab)
            figures = benchmark.pedantic(
                compare, args=(ways(tx, made[Kind.SYN]),), rounds=1, iterations=1
            )
            time.sleep(0.2)  # the last packets' softirqs
            arrived = ip_in_receives(lab) - before
        finally:
            tx.close()
    benchmark.extra_info.update(figures)
    print(figures)
    assert arrived >= 3 * ROUNDS * PACKETS  # every way sent every packet


def ways(tx: socket.socket, syn: templates.Template) -> dict[str, Callable[[int], None]]:
    buffer = bytearray(syn.size)
    batch = SendBatch(tx.fileno(), syn.size, BATCH)

    def as_bytes(n: int) -> None:
        tx.send(syn.packet(61000 + n % 4096, n, 0))

    def patched(n: int) -> None:
        syn.write_into(buffer, 0, 61000 + n % 4096, n, 0)
        tx.send(buffer)

    def batched(n: int) -> None:
        if batch.put(syn, Kind.SYN, 0, 61000 + n % 4096, n, 0):
            assert batch.flush() == []

    return {"bytes": as_bytes, "patched": patched, "batched": batched}


def compare(ways: dict[str, Callable[[int], None]]) -> dict:
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, send in ways.items():
            started = time.thread_time()
            for n in range(PACKETS):
                send(n)
            used = time.thread_time() - started
            best[name] = min(best.get(name, used), used)
    figures: dict = {
        f"{name}_cpu_us_per_packet": round(s / PACKETS * 1e6, 2) for name, s in best.items()
    }
    figures["load_average"] = round(os.getloadavg()[0], 1)
    return figures

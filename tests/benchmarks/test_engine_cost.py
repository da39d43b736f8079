"""The packet engine's own CPU time per attempt, with no lab: a graceful exchange, in memory.

Each attempt opens, gets the server's SYN-ACK, a response, its FIN, then the ACK of our FIN:
five transitions of engine.TRANSITIONS and four segments out (SYN, request, ACK, FIN), through
a wire that drops them. What is timed is the table's dispatch and its actions, without the
packet sockets around them (tests/benchmarks/test_attempt_rate.py times those, in a lab). The
figure (microseconds of CPU per attempt) goes to extra_info; nothing asserts a time.
"""

from __future__ import annotations

import time

from closebench.attackers.packet.connection import Settings
from closebench.attackers.packet.engine import Engine, State
from closebench.attackers.packet.segments import ACK, FIN, PSH, SYN, Kind, Segment
from closebench.core.outcomes import Outcome

ATTEMPTS = 5000
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
SERVER_ISN = 5000


class DroppingWire:
    def send(self, kind: Kind, src: int, port: int, seq: int, ack: int) -> None:
        pass


def graceful_attempts(count: int) -> list[Outcome]:
    clock = [1_700_000_000.0]
    settings = Settings(timeout=2.0, request_len=40, low=1000, high=1000 + count, sources=("a",))
    ended: list[Outcome] = []
    engine = Engine(DroppingWire(), settings, lambda c: ended.append(c.outcome), lambda: clock[0])
    end_of_response = SERVER_ISN + 1 + len(RESPONSE)
    for _ in range(count):
        conn = engine.open()
        assert conn is not None
        clock[0] += 0.0001
        for seq, flags, payload in (
            (SERVER_ISN, SYN | ACK, b""),
            (SERVER_ISN + 1, PSH | ACK, RESPONSE),
            (end_of_response, FIN | ACK, b""),
            (end_of_response + 1, ACK, b""),
        ):
            segment = Segment(
                clock[0], conn.src, conn.port, seq, conn.snd_nxt, flags, len(payload), payload
            )
            engine.receive(segment)
        assert conn.state is State.CLOSED
        engine.fire_timers()
    return ended


def test_engine_cpu_per_graceful_attempt(benchmark):
    cpu: list[float] = []

    def timed() -> list[Outcome]:
        started = time.process_time()
        ended = graceful_attempts(ATTEMPTS)
        cpu.append(time.process_time() - started)
        return ended

    ended = benchmark.pedantic(timed, rounds=5, iterations=1)
    assert ended == [Outcome.FIN] * ATTEMPTS
    benchmark.extra_info["cpu_us_per_attempt"] = round(min(cpu) / ATTEMPTS * 1e6, 1)
    print(benchmark.extra_info)

"""The child's output, one line each: ready, an attempt, its last word. Written here, read here.

    R                                              it now turns SIGTERM into an orderly stop
    SRC PORT OUTCOME T_SYN EST REQ FIRST END BYTES STATUS HEAD DETAIL   one finished attempt
    S {"connections_started": ..., ...}            last: what the attack cost the attacker
    S {"error": "..."}                             or why it could not run (then exit 2)

SRC is the index of the source address, T_SYN microseconds since the config's base_time, EST,
REQ, FIRST and END microseconds since T_SYN ("-": it did not happen), STATUS the HTTP status
(0: none), HEAD the response's first bytes in hex ("-": none), DETAIL the rest of the line.
Compact, because there may be tens of thousands a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from closebench.attackers.packet.child_config import ChildConfig
from closebench.attackers.packet.connection import Conn
from closebench.core.outcomes import Attempt, ClosedBy, Outcome, server_excerpt

READY = "R"


def attempt_line(conn: Conn, base_time: float) -> str:
    t_syn = conn.t_syn
    status = (conn.http_status or 0) if conn.bytes_received else 0
    return (
        f"{conn.src} {conn.port} {conn.outcome.value} {_micros(t_syn - base_time)} "
        f"{_since(conn.t_established, t_syn)} {_since(conn.t_request, t_syn)} "
        f"{_since(conn.t_first_byte, t_syn)} {_since(conn.t_end, t_syn)} "
        f"{conn.bytes_received} {status} {conn.head.hex() or '-'} "
        f"{conn.detail.replace(chr(10), ' ')}\n"
    )


def _micros(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def _since(t: float | None, t_syn: float) -> str:
    return "-" if t is None else _micros(t - t_syn)


def last_line(report: dict) -> str:
    return f"S {json.dumps(report)}\n"


class Relay:
    """The runner's reader of those lines (a child.Reader): each attempt goes to the sink."""

    def __init__(self, sink: Callable[[Attempt], None], label: str, config: ChildConfig) -> None:
        self.sink = sink
        self.label = label
        self.config = config
        self.timeout = config.policy["timeout"]
        self.ready = False
        self.error: str | None = None
        self.result: dict | None = None
        self.relayed = 0

    def line(self, text: str) -> None:
        if text == READY:
            self.ready = True
        elif text.startswith("S "):
            report = json.loads(text[2:])
            if "error" in report:
                self.error = report["error"]
            else:
                self.result = report
        else:
            self.relayed += 1
            self.sink(self.attempt(text))

    def attempt(self, text: str) -> Attempt:
        src, port, outcome, t0, est, req, first, end, received, status, head, detail = text.split(
            " ", 11
        )
        t_syn = self.config.base_time + int(t0) / 1e6

        def at(offset: str) -> float | None:
            return None if offset == "-" else t_syn + int(offset) / 1e6

        return Attempt(
            attacker=self.label,
            family=self.config.family,
            src=self.config.sources[int(src)],
            sport=int(port),
            dst=self.config.dst,
            dport=self.config.dport,
            client_timeout=self.timeout,
            outcome=Outcome(outcome),
            t_syn=t_syn,
            t_established=at(est),
            t_request=at(req),
            t_first_byte=at(first),
            t_end=at(end),
            bytes_received=int(received),
            data_first=int(received) > 0,
            http_status=int(status) or None,
            detail=detail,
            excerpt=server_excerpt(b"" if head == "-" else bytes.fromhex(head)),
            closed_by=closed_by(Outcome(outcome), detail).value,
        )


RETRANSMISSION_RST = "RST to the client's retransmission"  # the engine's note (actions.reset)


def closed_by(outcome: Outcome, detail: str) -> ClosedBy:
    """Who ended an engine's attempt: what its class says, save a silent one that the server's
    kernel ended, resetting the request the engine sent again (its note says so)."""
    if outcome is Outcome.SILENT and RETRANSMISSION_RST in detail:
        return ClosedBy.SERVER
    return ClosedBy.of(outcome)

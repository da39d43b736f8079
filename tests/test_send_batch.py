"""The packet engine's batched sends (send_batch.py), without a lab: over a datagram socketpair,
which keeps each message of a sendmmsg() a datagram of its own, as a raw socket does; and the
engine learning of a send that failed only at the flush (Engine.send_lost)."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from closebench.attackers.packet import templates
from closebench.attackers.packet.connection import LostSend
from closebench.attackers.packet.engine import State
from closebench.attackers.packet.segments import ACK, Kind
from closebench.attackers.packet.send_batch import SendBatch
from closebench.core.outcomes import Outcome
from tests.playbook import HIGH, Playbook

REQUEST = b"GET /spam HTTP/1.1\r\nHost: lab\r\n\r\n"
MADE = templates.build(4, "198.18.0.1", "198.19.0.2", 8080, REQUEST)
SLOT = max(t.size for t in MADE)


@pytest.fixture
def pair():
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield sender, receiver
    sender.close()
    receiver.close()


def received(receiver: socket.socket) -> list[bytes]:
    receiver.setblocking(False)
    datagrams = []
    while True:
        try:
            datagrams.append(receiver.recv(4096))
        except BlockingIOError:
            return datagrams


def test_a_flush_sends_each_packet_as_the_template_builds_it_in_order(pair):
    sender, receiver = pair
    batch = SendBatch(sender.fileno(), SLOT, size=8)
    wanted = [(kind, 61000 + n, 0xFFFFFFF0 + n, 0x12345678 * n) for n, kind in enumerate(Kind)]
    for kind, port, seq, ack in wanted:
        assert not batch.put(MADE[kind], kind, 0, port, seq, ack)
    assert received(receiver) == []  # nothing goes before the flush
    assert batch.flush() == []
    assert received(receiver) == [MADE[k].packet(p, s, a) for k, p, s, a in wanted]
    assert batch.packets_sent == len(wanted)
    assert batch.bytes_sent == sum(MADE[k].size for k, *_ in wanted)
    assert batch.flush() == [] and received(receiver) == []  # a flush empties the batch


def test_a_batch_says_when_it_is_full(pair):
    batch = SendBatch(pair[0].fileno(), SLOT, size=3)
    fills = [batch.put(MADE[Kind.ACK], Kind.ACK, 0, 61000, n, 0) for n in range(3)]
    assert fills == [False, False, True]


def test_refused_sends_come_back_with_what_they_were_and_the_rest_still_go(pair):
    sender, receiver = pair
    sender.setblocking(False)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the minimum: a few datagrams
    count = 64
    batch = SendBatch(sender.fileno(), SLOT, size=count)
    for n in range(count):
        batch.put(MADE[Kind.REQUEST], Kind.REQUEST, 1, 61000 + n, 1000 + n, 7)
    lost = batch.flush()
    arrived = received(receiver)
    assert 0 < len(lost) < count
    assert len(arrived) + len(lost) == count == batch.packets_sent + len(lost)
    sent_ports = {61000 + n for n in range(len(arrived))}  # the queue filled: the first ones went
    assert {x.port for x in lost} == {61000 + n for n in range(count)} - sent_ports
    first = lost[0]
    assert (first.kind, first.src, first.seq) == (Kind.REQUEST, 1, 1000 + first.port - 61000)
    assert first.error.errno == errno.EAGAIN


def lost(kind: Kind, conn, code: int, seq: int | None = None) -> LostSend:
    error = OSError(code, os.strerror(code))
    return LostSend(kind, conn.src, conn.port, conn.iss if seq is None else seq, error)


def test_a_syn_refused_at_the_flush_for_want_of_a_route_ends_its_attempt():
    play = Playbook()
    conn = play.connect()
    play.engine.send_lost(lost(Kind.SYN, conn, errno.ENETUNREACH))
    [attempt] = play.attempts()
    assert attempt.outcome is Outcome.ICMP
    assert attempt.detail == "send failed: Network is unreachable"
    assert conn.state is State.ABORTED and play.engine.in_flight == 0
    assert play.counters.send_errors == 1


def test_other_refused_sends_are_lost_packets_only():
    play = Playbook()
    conn = play.connect()
    play.engine.send_lost(lost(Kind.SYN, conn, errno.ENOBUFS))  # the SYN timer will tell
    play.engine.send_lost(lost(Kind.SYN, conn, errno.ENETUNREACH, seq=conn.iss - 1))  # older
    assert conn.state is State.SYN_SENT and play.attempts() == []
    assert play.counters.send_errors == 2


def test_an_rst_refused_at_the_flush_is_not_counted_as_sent():
    play = Playbook()
    play.server(ACK, seq=5, ack=9, port=HIGH)  # no connection there: the engine answers RST
    play.sent(Kind.RST, port=HIGH, seq=9)
    assert play.counters.rsts_sent == 1
    play.engine.send_lost(LostSend(Kind.RST, 0, HIGH, 9, OSError(errno.ENOBUFS, "full")))
    assert play.counters.rsts_sent == 0 and play.counters.send_errors == 1

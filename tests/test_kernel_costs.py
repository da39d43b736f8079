"""The defender's kernel costs the sampler reads (/proc/net/sockstat, the TcpExt counters of
/proc/net/netstat), checked against the kernel through other tools: ss and nstat in the
defender's namespace."""

from __future__ import annotations

import os
import socket
import time

import pytest

from closebench.defender.metrics import KERNEL_GAVE_UP, DefenderCost, DefenderSampler, defender_cost
from tests.conftest import wait_until

PORT = 8090


def nstat(host, counter: str) -> int:
    """A TcpExt counter as iproute2's nstat reads it (-a: absolute, -s: no history kept)."""
    for line in host.run(["nstat", "-asz", f"TcpExt{counter}"]).splitlines():
        words = line.split()
        if words[0] == f"TcpExt{counter}":
            return int(words[1])
    raise AssertionError(f"nstat has no TcpExt{counter}")


def ss_count(host, *state_filter: str) -> int:
    return len(host.run(["ss", "-tanH", *state_filter]).splitlines())


@pytest.mark.needs_lab
def test_sampled_kernel_costs_match_ss_and_nstat(lab):
    with lab.defender.entered():
        listener = socket.create_server(("", PORT), backlog=0)
    address = (lab.defender_ip(4), PORT)
    clients = []
    sampler = DefenderSampler(lab.defender, [os.getpid()], hz=10)
    try:
        first = sampler.samples[0]
        # A listener that never accepts, with room for one connection: the others overflow.
        with lab.attacker.entered():
            for _ in range(6):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(address)
                clients.append(client)
        assert wait_until(lambda: nstat(lab.defender, "ListenOverflows") > 0, 5)
        for client in clients:
            client.close()  # no more SYNs: the counters stop moving
        listener.settimeout(0.5)
        queued, _ = listener.accept()  # make room in the accept queue
        queued.close()
        # One connection the server closes first: it stays in TIME-WAIT on the defender.
        with lab.attacker.entered():
            waiting = socket.create_connection(address, timeout=2)
        time.sleep(0.2)
        served, _ = listener.accept()
        served.close()
        waiting.close()  # after the server's FIN: the server's side ends in TIME-WAIT
        assert wait_until(lambda: ss_count(lab.defender, "state", "time-wait") >= 1, 5)
        sample = sampler.take()
        # Every full socket in use: ss lists those, and TIME-WAIT and SYN-RECV entries besides.
        everything = ss_count(lab.defender, "state", "all")
        time_wait = ss_count(lab.defender, "state", "time-wait")
        minis = time_wait + ss_count(lab.defender, "state", "syn-recv")
    finally:
        sampler.stop()
        listener.close()
        for client in clients:
            client.close()
    overflows = nstat(lab.defender, "ListenOverflows")
    assert sample.kernel_gave_up["listen_overflows"] == overflows > 0
    assert sample.kernel_gave_up["listen_drops"] == nstat(lab.defender, "ListenDrops")
    assert sample.tcp_inuse == everything - minis >= 1  # the listener at least
    assert sample.tcp_tw == time_wait >= 1
    cost = defender_cost([first, sample])
    assert isinstance(cost, DefenderCost)
    assert cost.listen_overflows == overflows - first.kernel_gave_up["listen_overflows"]
    assert cost.peak_time_wait >= 1
    assert cost.peak_tcp_mem_bytes == cost.peak_tcp_mem_pages * os.sysconf("SC_PAGE_SIZE")
    assert set(sample.row()) >= set(KERNEL_GAVE_UP) | {"tcp_inuse", "tcp_tw", "tcp_mem_pages"}


@pytest.mark.needs_lab
def test_tcp_memory_is_the_machines_in_every_namespace(lab):
    """sockstat's TCP memory is one count for the machine: the defender's reading is the host's
    (read back to back; other work on the machine may move it between, so a few tries)."""

    def mem(text: str) -> int:
        [line] = [line for line in text.splitlines() if line.startswith("TCP:")]
        words = line.split()
        return int(words[words.index("mem") + 1])

    def same() -> bool:
        with open("/proc/net/sockstat") as host:
            return mem(lab.defender.proc_net("sockstat")) == mem(host.read())

    assert wait_until(same, 5, 0.01)

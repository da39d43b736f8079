"""The lab: real namespaces, real veths, and nothing left behind however the runner ends."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from closebench.lab import Lab
from tests.conftest import namespaces_in_use, our_keepers, wait_until


def _connect(lab: Lab, family: int, port: int) -> tuple[socket.socket, socket.socket]:
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    with lab.defender.entered():
        listener = socket.socket(af, socket.SOCK_STREAM)
    listener.bind((lab.defender_ip(family), port))
    listener.listen()
    with lab.attacker.entered():
        client = socket.create_connection((lab.defender_ip(family), port), timeout=5)
    server, _ = listener.accept()
    listener.close()
    return client, server


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("routed", [False, True], ids=["direct", "routed"])
def test_attacker_reaches_defender(family, routed):
    with Lab(routed=routed) as lab:
        client, server = _connect(lab, family, 9000)
        with client, server:
            assert server.getpeername()[0] == lab.attacker_ip(family)
            client.sendall(b"ping")
            assert server.recv(4) == b"ping"


IP_RECVTTL = 12  # linux/in.h; Python's socket module does not export it


@pytest.mark.needs_lab
def test_router_hop_decrements_ttl(routed_lab, lab):
    # IP_RECVTTL tells the defender the TTL each datagram arrived with.
    seen = {}
    for name, each in (("direct", lab), ("routed", routed_lab)):
        with each.defender.entered():
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with each.attacker.entered():
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with receiver, sender:
            receiver.bind((each.defender_ip(4), 9001))
            receiver.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            receiver.settimeout(5)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
            sender.sendto(b"x", (each.defender_ip(4), 9001))
            _, ancillary, _, _ = receiver.recvmsg(16, socket.CMSG_SPACE(4))
            seen[name] = int.from_bytes(ancillary[0][2][:4], sys.byteorder)
    assert seen == {"direct": 64, "routed": 63}


@pytest.mark.needs_lab
def test_labs_at_once_have_their_own_names_and_subnets():
    with Lab() as first, Lab() as second:
        assert first.name != second.name
        assert first.attacker_ip() != second.attacker_ip()
        assert first.defender_ip(6) != second.defender_ip(6)


@pytest.mark.needs_lab
def test_labs_use_the_benchmarking_ranges_only(routed_lab):
    import ipaddress

    v4 = ipaddress.ip_network("198.18.0.0/15")
    v6 = ipaddress.ip_network("2001:2::/48")
    for family, network in ((4, v4), (6, v6)):
        assert ipaddress.ip_address(routed_lab.attacker_ip(family)) in network
        assert ipaddress.ip_address(routed_lab.defender_ip(family)) in network


@pytest.mark.needs_lab
def test_host_interfaces_untouched():
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    with Lab(routed=True):
        during = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert during == before


@pytest.mark.needs_lab
def test_exception_inside_lab_leaves_nothing():
    namespaces = namespaces_in_use()
    before = our_keepers()
    with pytest.raises(RuntimeError), Lab(routed=True) as lab:
        sleeper = psutil.Process(lab.defender.spawn(["sleep", "60"]).pid)
        keepers = [psutil.Process(pid) for pid in our_keepers() - before]
        assert len(keepers) == 4  # attacker, defender, router and the namespace they came from
        raise RuntimeError("boom")
    # Waited on: each process's exit, not a moment's poll.
    _, alive = psutil.wait_procs([*keepers, sleeper], timeout=10)
    assert not alive, f"survived the exception: {alive}"
    assert wait_until(lambda: namespaces_in_use() <= namespaces)


HOLD_A_LAB = textwrap.dedent(
    """
    import sys, time
    from closebench.lab import Lab
    lab = Lab(routed=True)
    lab.defender.spawn(["sleep", "600"])
    lab.attacker.spawn(["sleep", "600"])
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.needs_lab
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_runner_death_leaves_nothing(how):
    namespaces = namespaces_in_use()
    runner = subprocess.Popen([sys.executable, "-c", HOLD_A_LAB], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout.readline().strip() == "ready"
        keepers = [psutil.Process(pid) for pid in our_keepers()]
        assert len(keepers) == 4  # the three hosts and the namespace they were made from
        # Running first (nsexec forks, then the child execs sleep): else the test proves nothing.
        assert wait_until(lambda: len(_sleepers(runner.pid)) == 2), "the lab's processes never ran"
        sleepers = _sleepers(runner.pid)
        runner.send_signal(how)
        runner.wait(10)
        _, alive = psutil.wait_procs(keepers, timeout=10)
        assert not alive, f"keepers survived their runner: {alive}"
        _, alive = psutil.wait_procs(sleepers, timeout=10)
        assert not alive, f"lab processes survived their runner: {alive}"
        assert wait_until(lambda: namespaces_in_use() <= namespaces)
    finally:
        runner.kill()
        runner.wait()
        runner.stdout.close()


def _sleepers(runner: int) -> list[psutil.Process]:
    """This runner's own `sleep 600` processes (in its lab hosts), none of another test's."""
    found = []
    for process in psutil.Process(runner).children(recursive=True):
        try:
            if process.cmdline() == ["sleep", "600"]:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found

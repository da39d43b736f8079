"""The lab: an attacker host and a defender host, optionally a router between them (which
tracks connections, as a stateful firewall or a NAT does).

Hosts are namespaces owned by keeper processes (see netns.py), joined by veth pairs and addressed
from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48. The host's own interfaces, routes and
firewall are never touched: every link is created inside a lab namespace.

    with Lab(routed=True) as lab:
        server = lab.defender.spawn(["python3", "-m", "closebench.servers.reference", ...])
        with lab.attacker.entered():
            sock = socket.create_connection((lab.defender_ip(4), 8080))
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from closebench.core.errors import LabError
from closebench.lab import cpus, netns
from closebench.lab.hosts import Host
from closebench.lab.privileges import require_tools

_lab_numbers = itertools.count()
_numbers_lock = threading.Lock()


CHILD_EHASH = 16384  # TCP hash buckets per lab host
# Limits the kernel sizes from the hash table: kept at the machine's values, as read here.
_MACHINE_LIMITS = [
    f"net.ipv4.{name}={Path('/proc/sys/net/ipv4', name).read_text().strip()}"
    for name in ("tcp_max_tw_buckets", "tcp_max_syn_backlog")
]
FIRST_EXTRA = 10  # extra attacker addresses are .10 upwards; .254 is the router's
# The router is a stateful device, as a NAT or a firewall in front of a server is: a rule that
# uses `ct` turns connection tracking on in its namespace (closebench/lab/conntrack.py reads the
# table). It only counts: nothing is dropped for its state.
ROUTER_TABLE = "closebench_router"
ROUTER_RULESET = f"""table inet {ROUTER_TABLE} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ct state new counter
    }}
}}
"""
MAX_EXTRA_ADDRESSES = 240
# More attacker hosts (machines of their own, e.g. Locust workers) are .3 to .9, beside the main
# attacker (.1) and the defender (.2) on one switched segment.
FIRST_MORE_ATTACKER = 3
MAX_ATTACKER_HOSTS = 1 + FIRST_EXTRA - FIRST_MORE_ATTACKER
SWITCH_PORT_TO_DEFENDER = "to-defender"  # the switch's port towards the defender (or the router)


@dataclass(frozen=True)
class Addressing:
    """The addresses of lab number `n`: attacker side subnet A, defender side subnet D."""

    n: int
    routed: bool

    def _v4(self, subnet: int, host: int) -> str:
        base = int(ipaddress.IPv4Address("198.18.0.0"))
        return str(ipaddress.IPv4Address(base + (subnet << 8) + host))

    def _v6(self, subnet: int, host: int) -> str:
        # Written the canonical way (2001:2::1, not 2001:2:0:0::1), as captures and /proc show it.
        return str(ipaddress.IPv6Address(f"2001:2:0:{subnet:x}::{host:x}"))

    def _defender_subnet(self) -> int:
        return 256 + self.n if self.routed else self.n

    def attacker(self, family: int) -> str:
        return self.attacker_host(family, 0)

    def attacker_host(self, family: int, index: int) -> str:
        """The address of attacker host `index` (0: the main one)."""
        if not 0 <= index < MAX_ATTACKER_HOSTS:
            raise ValueError(f"the lab has {MAX_ATTACKER_HOSTS} attacker hosts at most")
        host = 1 if index == 0 else FIRST_MORE_ATTACKER + index - 1
        return self._v4(self.n, host) if family == 4 else self._v6(self.n, host)

    def attacker_extra(self, family: int, index: int) -> str:
        """More addresses of the attacker host: a legitimate client, a botnet."""
        if not 0 <= index < MAX_EXTRA_ADDRESSES:
            raise ValueError(f"the attacker host has {MAX_EXTRA_ADDRESSES} extra addresses at most")
        host = FIRST_EXTRA + index
        return self._v4(self.n, host) if family == 4 else self._v6(self.n, host)

    def defender(self, family: int) -> str:
        subnet = self._defender_subnet()
        return self._v4(subnet, 2) if family == 4 else self._v6(subnet, 2)

    def router_attacker_side(self, family: int) -> str:
        return self._v4(self.n, 254) if family == 4 else self._v6(self.n, 0xFE)

    def router_defender_side(self, family: int) -> str:
        subnet = self._defender_subnet()
        return self._v4(subnet, 254) if family == 4 else self._v6(subnet, 0xFE)

    @staticmethod
    def prefix(family: int) -> int:
        return 24 if family == 4 else 64


class Lab:
    """A set of hosts joined by veths. Use as a context manager; close() is idempotent.

    `attacker_hosts` > 1 adds attacker hosts that each stand for a machine of its own (addresses
    of its own, the same hop count to the defender as the main one): then the attacker side is one
    segment, a bridge in a host of its own ("switch") joining every attacker host and the defender
    (or the router).
    """

    def __init__(self, routed: bool = False, attacker_hosts: int = 1) -> None:
        if not 1 <= attacker_hosts <= MAX_ATTACKER_HOSTS:
            raise LabError(
                f"a lab has 1 to {MAX_ATTACKER_HOSTS} attacker hosts, not {attacker_hosts}"
            )
        with _numbers_lock:
            number = next(_lab_numbers) % 256
        self.name = f"{os.getpid()}-{number}"
        self.routed = routed
        self.addressing = Addressing(number, routed)
        self.hosts: list[Host] = []
        try:
            self._root = self._make_root()
            self.attacker = self._host("attacker")
            # The other attacker hosts, in order: their addresses are attacker_host(family, 1...).
            self.more_attackers = [
                self._host(f"attacker-{i}") for i in range(2, attacker_hosts + 1)
            ]
            self.defender = self._host("defender")
            self.router = self._host("router") if routed else None
            self.switch = self._host("switch") if self.more_attackers else None
            self._wire()
            self._steer_to_defender()
        except BaseException:
            self.close()
            raise

    def _make_root(self) -> Host:
        """A namespace the hosts are created from, so that each gets a TCP hash table of its own.

        By default every namespace shares the machine's table, and reading /proc/net/tcp walks
        all of it (milliseconds per read); a small table of its own makes sampling cheap. The
        limits derived from the table size are set back to the machine's own.
        """
        root = Host(self.name, "root")
        self.hosts.append(root)
        root.run(["sysctl", "-q", "-w", f"net.ipv4.tcp_child_ehash_entries={CHILD_EHASH}"])
        return root

    def _host(self, role: str) -> Host:
        host = Host(self.name, role, self._root)
        self.hosts.append(host)
        host.run(["sysctl", "-q", "-w", *_MACHINE_LIMITS])
        # No duplicate address detection on any address, link-local ones included: until DAD
        # ends a router forwards nothing over IPv6, and the first SYNs of a trial are lost.
        host.run(
            ["sysctl", "-q", "-w"]
            + [f"net.ipv6.conf.{which}.accept_dad=0" for which in ("all", "default")]
        )
        return host

    def attacker_ip(self, family: int = 4) -> str:
        return self.addressing.attacker(family)

    def defender_ip(self, family: int = 4) -> str:
        return self.addressing.defender(family)

    @property
    def attacker_hosts(self) -> list[Host]:
        """Every attacker host, the main one first."""
        return [self.attacker, *self.more_attackers]

    def attack_wire(self) -> tuple[Host, str]:
        """Where every attacker host's traffic with the defender passes: (host, interface)."""
        if self.switch is not None:
            return self.switch, SWITCH_PORT_TO_DEFENDER
        return self.attacker, "eth0"

    def next_hop_mac(self) -> str:
        """The MAC address the attacker host's packets go to (the router's, or the defender's):
        what a tool that writes its own frames (masscan) must be told."""
        host, ifname = (self.router, "to-attacker") if self.router else (self.defender, "eth0")
        said = host.run(["ip", "-o", "link", "show", "dev", ifname])
        return said.split("link/ether", 1)[1].split()[0]

    def add_attacker_addresses(self, count: int) -> None:
        """Give the attacker host `count` more addresses (attacker_extra(family, 0..count-1))."""
        commands = [
            f"addr add {self.addressing.attacker_extra(family, i)}/"
            f"{Addressing.prefix(family)} dev eth0{' nodad' if family == 6 else ''}"
            for i in range(count)
            for family in (4, 6)
        ]
        self.attacker.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")

    def _wire(self) -> None:
        a = self.addressing
        # The attacker side: the host facing the attackers, and its interface towards them.
        facing, facing_ifname = (
            (self.router, "to-attacker") if self.router else (self.defender, "eth0")
        )
        if self.switch is None:
            self._veth(self.attacker, "eth0", facing, facing_ifname)
        else:
            self._switched(facing, facing_ifname)
        gateway = a.router_attacker_side if self.router else None
        for index, host in enumerate(self.attacker_hosts):
            self._configure(host, "eth0", functools.partial(a.attacker_host, index=index), gateway)
        if self.router is None:
            self._configure(self.defender, "eth0", a.defender, None)
            return
        self._veth(self.defender, "eth0", self.router, "to-defender")
        self._configure(self.defender, "eth0", a.defender, a.router_defender_side)
        self._configure(self.router, "to-attacker", a.router_attacker_side, None)
        self._configure(self.router, "to-defender", a.router_defender_side, None)
        self.router.run(
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        )
        require_tools("nft")
        self.router.run(["nft", "-f", "-"], stdin=ROUTER_RULESET)

    def _steer_to_defender(self) -> None:
        """RPS on the defender's eth0: on a veth the receiver's softirq runs on the sender's CPU,
        so without it the defender's TCP work on the attack's packets runs (and is counted) on
        the attackers' CPUs. The queue's rps_cpus is only visible in a sysfs mounted from the
        defender's namespace: a private mount namespace of one short command."""
        placement = cpus.current()
        if placement is None or placement.shared:
            return
        mask = cpus.rps_mask(placement.defender)
        script = (
            "mount -t sysfs sysfs /sys && "
            f"for q in /sys/class/net/eth0/queues/rx-*; do echo {mask} > $q/rps_cpus; done"
        )
        self.defender.run(["unshare", "--mount", "sh", "-c", script])

    def _switched(self, facing: Host, facing_ifname: str) -> None:
        """One segment: a bridge in the switch host, a port for each attacker and the facing host.

        A bridge forwards frames without touching TTLs, so every attacker host is exactly as far
        from the defender as the main one was over its direct veth.
        """
        switch = self.switch
        assert switch is not None
        ports = []
        for host in self.attacker_hosts:
            self._veth(host, "eth0", switch, host.role)
            ports.append(host.role)
        self._veth(facing, facing_ifname, switch, SWITCH_PORT_TO_DEFENDER)
        ports.append(SWITCH_PORT_TO_DEFENDER)
        # br_netfilter, when the machine has it loaded, would pass bridged frames through the
        # switch's (empty) firewall: nothing to filter here (-e: no such setting without it).
        filters = ("iptables", "ip6tables", "arptables")
        switch.run(
            ["sysctl", "-q", "-e", "-w"] + [f"net.bridge.bridge-nf-call-{f}=0" for f in filters]
        )
        commands = ["link add br0 type bridge", "link set br0 up"]
        commands += [f"link set {port} master br0 up" for port in ports]
        switch.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")

    @staticmethod
    def _veth(left: Host, left_name: str, right: Host, right_name: str) -> None:
        # Made inside `left`, peer moved straight into `right`: the host namespace never sees it.
        peer = ("peer", "name", right_name, "netns", str(right.pid))
        left.run(["ip", "link", "add", left_name, "type", "veth", *peer])

    @staticmethod
    def _configure(host: Host, ifname: str, address, gateway) -> None:
        commands = ["link set lo up", f"link set {ifname} up"]
        for family in (4, 6):
            prefix = Addressing.prefix(family)
            # nodad: the lab is private, and duplicate address detection would delay IPv6 by ~2 s.
            nodad = " nodad" if family == 6 else ""
            commands.append(f"addr add {address(family)}/{prefix} dev {ifname}{nodad}")
            if gateway is not None:
                commands.append(f"route add default via {gateway(family)}")
        host.run(["ip", "-batch", "-"], stdin="\n".join(commands) + "\n")

    def close(self) -> None:
        for host in reversed(self.hosts):
            host.close()
        self.hosts.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def lab_processes() -> list[psutil.Process]:
    """Keeper processes of any lab on this machine (ours or another run's)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[:1] and cmdline[0].startswith(netns.KEEPER_PREFIX + ":"):
            found.append(process)
    return found

"""HAProxy: silent-drop, reject and tarpit, in a frontend that sends everything else to the
backend.

It runs in master-worker mode (`-W`, the master forks one worker with a thread per CPU) in the
foreground (`-db`). No `user` or `group` line: HAProxy stays root and keeps CAP_NET_ADMIN, which
`silent-drop` needs to put the socket in TCP_REPAIR mode. Without that capability HAProxy falls
back to an RST sent with TTL 1 (hop limit 1 over IPv6), which a client on the same link still
receives and a router drops: `haproxy-silent-drop:net_admin=false` runs it that way (setpriv).
"""

from __future__ import annotations

from pathlib import Path

from closebench.defender.peers.base import Peer, PeerSetup, header, refuse

MAXCONN = 4096
WITHOUT_NET_ADMIN = ("setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", "--")


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


class HAProxy(Peer):
    binary = "haproxy"
    package = "haproxy"
    config_name = "haproxy.cfg"

    def argv(self, setup: PeerSetup, config: Path, directory: Path) -> list[str]:
        argv = [self.binary, "-W", "-db", "-f", str(config)]
        if setup.spec.options.get("net_admin") is False:
            # Root without CAP_NET_ADMIN, in its bounding set too: what TCP_REPAIR is refused to.
            return [*WITHOUT_NET_ADMIN, *argv]
        return argv

    def config(self, setup: PeerSetup, directory: Path) -> str:
        # In single quotes HAProxy takes every character as it is: only a quote cannot be given.
        refuse(setup.abuse_path, "'\n", "the abuse path")
        options = setup.spec.options
        backlog = f" backlog {setup.backlog}" if setup.backlog else ""
        lines = [
            "global",
            f"    maxconn {MAXCONN}",
            "    # no user/group: HAProxy keeps root's CAP_NET_ADMIN, which silent-drop needs",
            *([f"    ulimit-n {setup.nofile}"] if setup.nofile else []),
            "",
            "defaults",
            "    mode http",
            "    option httpclose  # one request per connection, as the reference server does",
            "    timeout connect 5s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout http-request 10s  # the reference server's wait for a request",
            f"    timeout tarpit {_seconds(float(options.get('timeout', 30.0)))}",
            "",
            "frontend closebench",
            f"    bind 0.0.0.0:{setup.port}{backlog}",
            f"    bind :::{setup.port} v6only{backlog}",
            f"    acl abusive path_reg '{setup.abuse_path}'",
            *self.rule(setup),
            "    default_backend app",
            "",
            "backend app",
            f"    server app 127.0.0.1:{setup.backend_port}",
        ]
        return header(setup) + "\n".join(lines) + "\n"

    @staticmethod
    def rule(setup: PeerSetup) -> list[str]:
        name = setup.spec.name
        if name == "haproxy-silent-drop":
            return ["    http-request silent-drop if abusive"]
        if name == "haproxy-tarpit":
            return ["    http-request tarpit if abusive"]
        if setup.spec.options["read_first"]:
            return ["    http-request reject if abusive"]
        if not setup.abuse_sources:
            raise ValueError(f"{setup.spec} turns abusive addresses away at accept: name some")
        return [
            f"    acl abusive_source src {' '.join(setup.abuse_sources)}",
            "    tcp-request connection reject if abusive_source",
        ]

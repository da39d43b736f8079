"""nginx: `return 444` (close without an answer), or limit_req and limit_conn per address on the
abuse path (429 or 503 over the limit); everything else goes to the backend.

A master and `worker_processes auto` workers (one per CPU), in the foreground, with every path
(pid, temporary files) inside the config's directory. Connections close after each response
(`keepalive_timeout 0`), as the reference server's do.
"""

from __future__ import annotations

from pathlib import Path

from closebench.defender.peers.base import Peer, PeerSetup, header, refuse

TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def quoted(text: str) -> str:
    """`text` in nginx's double quotes: a backslash or a quote is escaped, the rest kept."""
    refuse(text, "\n", "the abuse path")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def request_rate(per_second: float) -> str:
    """nginx takes whole requests per second or per minute."""
    if per_second == int(per_second):
        return f"{int(per_second)}r/s"
    return f"{max(1, round(per_second * 60))}r/m"


class Nginx(Peer):
    binary = "nginx"
    package = "nginx-light"
    package_note = "nginx on Debian 13 and Ubuntu 24.04"
    config_name = "nginx.conf"

    def argv(self, setup: PeerSetup, config: Path, directory: Path) -> list[str]:
        return [self.binary, "-p", f"{directory}/", "-c", str(config)]

    def config(self, setup: PeerSetup, directory: Path) -> str:
        backlog = f" backlog={setup.backlog}" if setup.backlog else ""
        temp = [f"    {name}_temp_path {directory / (name + '_temp')};" for name in TEMP_PATHS]
        lines = [
            "daemon off;",
            "master_process on;",
            "worker_processes auto;",
            *([f"worker_rlimit_nofile {setup.nofile};"] if setup.nofile else []),
            f"pid {directory / 'nginx.pid'};",
            "error_log stderr notice;",
            "events { worker_connections 4096; }",
            "http {",
            "    access_log off;",
            "    keepalive_timeout 0;  # one request per connection, as the reference server does",
            "    client_header_timeout 10s;  # the reference server's wait for a request",
            *temp,
            *self.zones(setup),
            "    server {",
            f"        listen 0.0.0.0:{setup.port}{backlog};",
            f"        listen [::]:{setup.port} ipv6only=on{backlog};",
            f"        location ~ {quoted(setup.abuse_path)} {{",
            *self.rule(setup),
            "        }",
            "        location / {",
            f"            proxy_pass http://127.0.0.1:{setup.backend_port};",
            "        }",
            "    }",
            "}",
        ]
        return header(setup) + "\n".join(lines) + "\n"

    @staticmethod
    def zones(setup: PeerSetup) -> list[str]:
        if setup.spec.name != "nginx-limit-conn":
            return []
        rate = request_rate(float(setup.spec.options["rate"]))
        return [
            f"    limit_req_zone $binary_remote_addr zone=abusers:1m rate={rate};",
            "    limit_conn_zone $binary_remote_addr zone=abusive_requests:1m;",
        ]

    @staticmethod
    def rule(setup: PeerSetup) -> list[str]:
        if setup.spec.name == "nginx-444":
            return ["            return 444;"]
        options = setup.spec.options
        return [
            "            limit_req zone=abusers;  # no burst: over the rate is refused at once",
            f"            limit_req_status {options['status']};",
            f"            limit_conn abusive_requests {options['conn']};",
            f"            limit_conn_status {options['status']};",
            f"            proxy_pass http://127.0.0.1:{setup.backend_port};",
        ]

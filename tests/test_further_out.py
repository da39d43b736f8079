"""Blocking further out (issue 21): conn-cap's `ct count` per source, the listener options
defer_accept (TCP_DEFER_ACCEPT) and user_timeout (TCP_USER_TIMEOUT), on real sockets in labs, and
the kernel capability check that skips what this kernel cannot run."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from closebench.attackers.policy import Policy
from closebench.core.errors import EnvironmentProblem
from closebench.defender import Defender, ServerConfig, bpf_drop, capabilities, conn_cap
from closebench.lab import Host, Lab
from closebench.lab.cleanup import BPF_MOUNT_PREFIX, bpf_mounts, remove_orphaned_bpf_mounts
from closebench.lab.socket_table import tcp_sockets
from closebench.servers.strategies import STRATEGIES, parse_spec
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial
from tests.conftest import wait_until

PORT = 8080


def connect(lab: Lab, source: str, family: int, timeout: float = 1.5) -> socket.socket | int:
    """A connection from `source` in the attacker host, or the errno that refused it."""
    with lab.attacker.entered():
        sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    try:
        sock.connect((lab.defender_ip(family), PORT))
    except TimeoutError:
        sock.close()
        return errno.ETIMEDOUT
    except OSError as error:
        sock.close()
        return error.errno or -1
    return sock


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.close()


# conn-cap


def test_cap_ruleset_counts_each_family_and_verdict():
    text = conn_cap.ruleset(8080, 3, "drop")
    assert "add @cap4 { ip saddr ct count over 3 }" in text
    assert "add @cap6 { ip6 saddr ct count over 3 }" in text
    assert text.count(" drop\n") == 2 and "reject" not in text
    assert conn_cap.ruleset(8080, 3, "reject").count("reject with tcp reset") == 2
    with pytest.raises(ValueError, match="reject, drop"):
        parse_spec("conn-cap:verdict=accept")
    with pytest.raises(ValueError, match="at least 1"):
        parse_spec("conn-cap:count=0")


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("verdict", ["reject", "drop"])
def test_conn_cap_refuses_the_n_plus_first_connection_of_one_source_only(family, verdict):
    with Lab() as lab:
        lab.add_attacker_addresses(1)
        abuser = lab.attacker_ip(family)
        other = lab.addressing.attacker_extra(family, 0)
        spec = parse_spec(f"conn-cap:count=2,verdict={verdict}")
        defender = Defender(lab, ServerConfig(PORT, spec))
        held: list[socket.socket] = []
        try:
            for _ in range(2):  # within the cap
                sock = connect(lab, abuser, family)
                assert isinstance(sock, socket.socket), errno.errorcode.get(sock)
                held.append(sock)
            refused = errno.ECONNREFUSED if verdict == "reject" else errno.ETIMEDOUT
            assert connect(lab, abuser, family) == refused  # the third, over the cap
            other_sock = connect(lab, other, family)  # another source has a cap of its own
            assert isinstance(other_sock, socket.socket)
            held.append(other_sock)
            syns = conn_cap.refused(lab.defender)
            assert syns >= 1 if verdict == "reject" else syns >= 2  # drop: retransmissions too
            # A cap, not a ban: once the abuser closes one, it may connect again.
            reset(held.pop(0))
            again = connect(lab, abuser, family)
            assert isinstance(again, socket.socket), errno.errorcode.get(again)
            held.append(again)
        finally:
            for sock in held:
                sock.close()
            stats = defender.stop()
            defender.close()
    assert stats["accepted"] == 4  # the refused connection never reached the server


# defer_accept: a client that sends nothing never wakes the server


def _silent_client(lab: Lab, family: int, hold: float) -> list[str]:
    """Connect, send nothing for `hold` seconds, then reset; the defender's socket states for the
    connection just before the reset."""
    sock = connect(lab, lab.attacker_ip(family), family)
    assert isinstance(sock, socket.socket)
    time.sleep(hold)
    client = sock.getsockname()[:2]
    states = [s.state for s in tcp_sockets(lab.defender) if s.remote == client]
    reset(sock)
    return states


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_defer_accept_never_wakes_the_server_for_a_silent_client(family):
    results = {}

    def measure(name: str) -> None:
        with Lab() as lab:
            defender = Defender(lab, ServerConfig(PORT, parse_spec(name)))
            try:
                states = _silent_client(lab, family, hold=2.0)
            finally:
                stats = defender.stop()
                defender.close()
        results[name] = (states, stats["accepted"])

    threads = [
        threading.Thread(target=measure, args=(name,))
        for name in ("graceful:defer_accept=5", "graceful")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Deferred: the kernel keeps a request socket (SYN-RECV) and the server never sees it.
    assert results["graceful:defer_accept=5"] == (["SYN-RECV"], 0)
    # Without: the same client was accepted at once and held a descriptor.
    assert results["graceful"] == (["ESTABLISHED"], 1)


@pytest.mark.needs_lab
def test_defer_accept_still_serves_a_client_that_sends():
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("graceful:defer_accept=5")))
        try:
            sock = connect(lab, lab.attacker_ip(4), 4)
            assert isinstance(sock, socket.socket)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(100)
            sock.close()
        finally:
            stats = defender.stop()
            defender.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert stats["accepted"] == 1 and stats["served"] == 1


# user_timeout: a tarpit whose victim stops acknowledging


def _silence_attacker(lab: Lab, family: int) -> None:
    """From now on the attacker host drops everything the defender sends it (inside the lab's
    attacker namespace only): the abuser stops acknowledging without a word."""
    match = "ip saddr" if family == 4 else "ip6 saddr"
    rules = (
        "table inet closebench_test_silence {\n"
        "    chain input { type filter hook input priority filter; policy accept;\n"
        f"        {match} {lab.defender_ip(family)} drop\n    }}\n}}\n"
    )
    lab.attacker.run(["nft", "-f", "-"], stdin=rules)


def _seconds_until_gone(spec: str, family: int, limit: float) -> float | None:
    """Seconds from the abuser going silent until the tarpit's socket is gone from the
    defender's kernel; None if it is still there after `limit` seconds."""
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec(spec)))
        try:
            sock = connect(lab, lab.attacker_ip(family), family)
            assert isinstance(sock, socket.socket)
            sock.sendall(b"GET /spam HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1)  # the tarpit drips
            client = sock.getsockname()[:2]
            _silence_attacker(lab, family)
            silenced = time.monotonic()

            def held() -> bool:
                return any(s.remote == client for s in tcp_sockets(lab.defender))

            gone = wait_until(lambda: not held(), timeout=limit, interval=0.5)
            elapsed = time.monotonic() - silenced
            sock.close()
        finally:
            defender.stop()
            defender.close()
    return elapsed if gone else None


@pytest.mark.slow
@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_tarpit_user_timeout_ends_a_silent_abusers_socket_in_about_30_s(family):
    found: dict[str, float | None] = {}

    def measure(spec: str) -> None:
        found[spec] = _seconds_until_gone(spec, family, limit=45)

    specs = ("tarpit:interval=1,user_timeout=30", "tarpit:interval=1")
    threads = [threading.Thread(target=measure, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    capped = found["tarpit:interval=1,user_timeout=30"]
    assert capped is not None, "the socket outlived user_timeout=30 by 15 s"
    # The first unacknowledged byte leaves within one interval of the silence; the kernel ends
    # the connection user_timeout after it (checked at its next retransmission timer).
    assert capped >= 29
    # Without it the kernel retransmits for ~15 minutes (tcp_retries2 = 15): still there.
    assert found["tarpit:interval=1"] is None


# the kernel capability check


def test_each_strategy_and_option_names_what_it_needs():
    assert capabilities.needs(parse_spec("graceful")) == []
    assert capabilities.needs(parse_spec("conn-cap:verdict=drop")) == ["nftables", "nft-ct-count"]
    assert capabilities.needs(parse_spec("conn-cap")) == ["nftables", "nft-reject", "nft-ct-count"]
    assert capabilities.needs(parse_spec("fw-drop:then=repair")) == ["nftables", "tcp-repair"]
    assert capabilities.needs(parse_spec("tarpit:user_timeout=30,defer_accept=5")) == [
        "tcp-defer-accept",
        "tcp-user-timeout",
    ]
    for name in STRATEGIES:  # every strategy's needs are known capabilities
        assert set(capabilities.needs(parse_spec(name))) <= set(capabilities.CAPABILITIES)


@pytest.mark.needs_lab
def test_every_capability_probes_true_here_and_a_bad_expression_fails():
    findings = capabilities.probe()
    assert list(findings) == list(capabilities.CAPABILITIES)
    assert all(f.available for f in findings.values()), findings
    host = Host(f"{os.getpid()}-captest", "probe")
    try:
        problem = capabilities._nft("tcp dport 1 ct nonsense over 2 drop")(host)
    finally:
        host.close()
    assert problem and "nonsense" in problem


@pytest.mark.needs_lab
def test_each_capability_is_tried_once_per_process_and_only_when_needed(monkeypatch):
    monkeypatch.delenv(capabilities.SIMULATE_ENV, raising=False)
    assert capabilities.probe(capabilities.needs(parse_spec("graceful"))) == {}  # no namespace
    first = capabilities.probe(["tcp-repair"])["tcp-repair"]
    assert first.available
    monkeypatch.setattr(capabilities, "Host", None)  # a second try would fail to build one
    assert capabilities.probe(["tcp-repair"])["tcp-repair"] is first
    # A simulated lack still counts after a real finding: it is applied on every call.
    monkeypatch.setenv(capabilities.SIMULATE_ENV, "tcp-repair")
    again = capabilities.probe(["tcp-repair"])["tcp-repair"]
    assert not again.available and again.detail.startswith("simulated")


@pytest.mark.needs_lab
def test_a_simulated_missing_capability_skips_only_what_needs_it(monkeypatch):
    monkeypatch.setenv(capabilities.SIMULATE_ENV, "nft-ct-count,tcp-user-timeout")
    monkeypatch.delenv("CI", raising=False)
    warnings: list[str] = []
    specs = ["graceful", "conn-cap", "fw-drop", "tarpit:user_timeout=30", "tarpit"]
    skipped = capabilities.skip_unsupported(
        [(parse_spec(s), False) for s in specs], warnings.append
    )
    assert skipped == {
        "conn-cap": "skipped: this kernel lacks the nftables expression `ct count` "
        "(nft_connlimit, conntrack)",
        "tarpit:user_timeout=30": "skipped: this kernel lacks TCP_USER_TIMEOUT",
    }
    assert len(warnings) == 2 and all("simulated" in w and w.endswith("skipped") for w in warnings)
    # A strategy its scenario says must run fails the run in CI instead.
    monkeypatch.setenv("CI", "1")
    with pytest.raises(EnvironmentProblem, match="must run"):
        capabilities.skip_unsupported([(parse_spec("conn-cap"), True)], warnings.append)
    # Outside CI it is skipped like the rest; with nothing left to run, an error.
    monkeypatch.delenv("CI")
    with pytest.raises(EnvironmentProblem, match="none of the strategies"):
        capabilities.skip_unsupported([(parse_spec("conn-cap"), True)], warnings.append)


def test_an_unknown_simulated_capability_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(capabilities.SIMULATE_ENV, "bpf-magic")
    with pytest.raises(EnvironmentProblem, match="bpf-magic; known: nftables"):
        capabilities.simulated_missing()


@pytest.mark.slow  # ~30 s on the loaded shared machine (a whole run, report included)
@pytest.mark.needs_lab
def test_a_run_keeps_the_other_rows_when_the_kernel_lacks_one(tmp_path):
    scenario = tmp_path / "kernel.toml"
    scenario.write_text(
        'name = "kernel"\nduration = 2\nstrategies = ["rst", "conn-cap"]\n'
        '[[attackers]]\nkind = "kernel"\ntimeout = 1\nrate = 5\n'
    )
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment[capabilities.SIMULATE_ENV] = "nft-ct-count"
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "closebench.cli", "run", str(scenario), "--out", str(out)]
    command.append("--no-verify")  # the rows are the point here, not the records
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("closebench: warning: conn-cap: this ")
    summary = json.loads((out / "latest" / "summary.json").read_text())
    assert summary["complete"] is True
    rows = {row["trial"]: row for row in summary["rows"]}
    assert rows["rst"]["complete"] and rows["rst"]["attempts"] > 0, rows["rst"]
    error = rows["conn-cap"]["error"]
    assert error == "skipped: this kernel lacks the nftables expression `ct count` " + (
        "(nft_connlimit, conntrack)"
    )
    assert rows["conn-cap"]["attempts"] == 0
    assert [p.name for p in (out / "latest" / "pcaps").iterdir()] == ["rst.pcap"]


@pytest.mark.needs_lab
def test_probe_kernel_prints_the_table(tmp_path):
    environment = dict(os.environ, **{capabilities.SIMULATE_ENV: "tcp-repair"})
    command = [sys.executable, "-m", "closebench.cli", "probe", "--kernel", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    found = {c["name"]: c for c in document["capabilities"]}
    assert document["schema"] == "closebench.kernel/1"
    assert (
        found["tcp-repair"]["available"] is False and "simulated" in found["tcp-repair"]["detail"]
    )
    assert found["nft-ct-count"]["available"] is True


@pytest.mark.needs_lab
def test_syncookies_and_conntrack_loose_are_set_in_the_defender_only():
    def host_value(key: str) -> str:
        return Path("/proc/sys", *key.split(".")).read_text().strip()

    keys = ("net.ipv4.tcp_syncookies", "net.netfilter.nf_conntrack_tcp_loose")
    before = [host_value(key) for key in keys]
    knobs = (("tcp_syncookies", 2), ("nf_conntrack_tcp_loose", 0))
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("graceful"), sysctl=knobs))
        try:
            found = [lab.defender.run(["sysctl", "-n", key]).strip() for key in keys]
        finally:
            defender.stop()
            defender.close()
    assert found == ["2", "0"]
    assert [host_value(key) for key in keys] == before


# xdp-drop and tc-drop


def _syns_after(pcap: str, source: str, port: int, since: float) -> int:
    """SYNs (retransmissions included) from `source` to `port` in an Ethernet capture, sent at or
    after the Unix time `since`."""
    import dpkt

    count = 0
    with open(pcap, "rb") as handle:
        for t, frame in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or t < since or tcp.dport != port:
                continue
            syn = tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK
            if syn and socket.inet_ntop(socket.AF_INET if len(ip.src) == 4 else socket.AF_INET6,
                                        ip.src) == source:  # fmt: skip
                count += 1
    return count


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("strategy", ["xdp-drop", "tc-drop"])
def test_bpf_drop_leaves_the_abuser_in_syn_timeout_and_counts_every_syn(strategy, family, tmp_path):
    policy = Policy(timeout=1.0, reconnect=True, concurrency=10, duration=3.0)
    config = TrialConfig(
        ServerConfig(PORT, parse_spec(f"{strategy}:bantime=300")),
        (AttackerSpec("kernel", policy, "/spam"),),
        legit=LegitClient(rate=4),
        family=family,
        pcap=str(tmp_path / "trial.pcap"),
    )
    result = run_trial(config)
    [ban] = result.ban_log
    summary = result.summaries["kernel"]
    # Until the ban its request met `then` (rst); after it, its SYNs vanished.
    assert set(summary.outcomes) == {"rst", "syn-timeout"}, summary.outcomes
    # The first wave (one connection per slot) was in flight when the ban came; none after.
    assert summary.outcomes["rst"] <= policy.concurrency
    assert result.legit.success_rate == 1.0  # another address: never dropped
    seen = _syns_after(config.pcap, ban["address"], PORT, ban["t_effective"])
    dropped = result.bans.syns_dropped
    print(f"{strategy} IPv{family}: dropped {dropped}, capture {seen} SYNs after the ban")
    assert seen > 0 and abs(dropped - seen) <= max(1, 0.01 * seen), (dropped, seen)
    where = "xdpgeneric" if strategy == "xdp-drop" else "tc ingress bpf direct-action"
    assert result.server_stats["bpf_attach"] == f"{where} on defender eth0"
    assert not [p for p, _ in bpf_mounts() if str(os.getpid()) in p]  # unmounted


@pytest.mark.needs_lab
def test_xdp_drop_on_the_router():
    from tests.test_bans import probe

    with Lab(routed=True) as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("xdp-drop:where=router")))
        try:
            link = lab.router.run(["ip", "link", "show", "to-attacker"])
            first, second = probe(lab), probe(lab)
            dropped = bpf_drop.dropped(defender.bpf)
            defender_link = lab.defender.run(["ip", "link", "show", "eth0"])
        finally:
            defender.stop()
            defender.close()
    assert "xdpgeneric" in link and "xdp" not in defender_link
    assert (first.outcome.value, second.outcome.value) == ("rst", "syn-timeout")
    assert dropped >= 1


@pytest.mark.needs_lab
def test_lab_clean_unmounts_the_bpf_filesystem_of_a_dead_run(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID no process has now
    point = tmp_path / f"{BPF_MOUNT_PREFIX}{dead.pid}-test"
    point.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(point)], check=True)
    mine = tmp_path / f"{BPF_MOUNT_PREFIX}{os.getpid()}-test"  # a live run's: left alone
    mine.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mine)], check=True)
    try:
        done = remove_orphaned_bpf_mounts()
        assert done == [f"unmounted {point} (BPF programs and maps pinned by a dead run)"]
        assert not point.exists()
        assert [p for p, _ in bpf_mounts() if p == str(mine)]
    finally:
        subprocess.run(["umount", str(point)], capture_output=True)
        subprocess.run(["umount", str(mine)], capture_output=True)


# ss-kill


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_ss_kill_ends_an_established_abuser_with_an_rst_it_sees(family):
    from tests.test_bans import probe

    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("ss-kill")))
        try:
            attempt = probe(lab, family=family)
            held = [s for s in tcp_sockets(lab.defender) if s.state != "LISTEN"]
        finally:
            defender.stop()
            log = defender.log()
            defender.close()
    assert attempt.outcome.value == "rst" and attempt.data_first is False
    assert held == []  # the kernel forgot the connection: no TIME_WAIT, no orphan
    assert "!!!" not in log  # destroyed by ss -K, not the server's own RST fallback


def test_ss_kill_falls_back_to_an_rst_without_ss(monkeypatch):
    from closebench.servers.reference import sockets

    monkeypatch.setenv("PATH", "/nonexistent")
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    with listener, client:
        sockets.kill_with_ss(accepted)
        with pytest.raises(ConnectionResetError):
            client.recv(1)


def test_further_out_scenario_puts_every_new_block_side_by_side():
    from closebench.trials.scenario import find_scenario, load_scenario

    scenario, text, _ = load_scenario(find_scenario("further-out"))
    names = {t.server.spec.name for t in scenario.trials()}
    assert names == {
        "blacklist",
        "fw-drop",
        "fw-reject",
        "xdp-drop",
        "tc-drop",
        "conn-cap",
        "synproxy",
        "ss-kill",
    }
    assert scenario.duration * len(scenario.trials()) / (scenario.parallel or 1) <= 180
    assert text.startswith("# ")


# synproxy


def _syn_flood(lab: Lab, family: int, count: int) -> None:
    """`count` SYNs from the attacker host, each from another port, whose answers the attacker
    host drops (a flooder never completes, nor resets, a handshake)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    _silence_attacker(lab, family)
    network, header = (IP, 20) if family == 4 else (IPv6, 40)
    source, target = lab.attacker_ip(family), lab.defender_ip(family)
    with lab.attacker.entered():  # a raw socket of the attacker host; the kernel adds the IP header
        sock = socket.socket(
            socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP
        )
    with sock:
        for i in range(count):
            packet = network(src=source, dst=target) / TCP(sport=20000 + i, dport=PORT, flags="S")
            sock.sendto(bytes(packet)[header:], (target, 0))  # the TCP segment, checksum and all


def _half_open(lab: Lab) -> tuple[int, int]:
    """The defender's request sockets (SYN-RECV) and its conntrack entries."""
    syn_recv = sum(s.state == "SYN-RECV" for s in tcp_sockets(lab.defender))
    tracked = int(lab.defender.run(["sysctl", "-n", "net.netfilter.nf_conntrack_count"]))
    return syn_recv, tracked


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_synproxy_holds_nothing_for_a_syn_flood_and_still_serves(family):
    from closebench.defender import synproxy
    from tests.test_bans import probe

    found = {}
    for name in ("synproxy", "graceful"):
        with Lab() as lab:
            defender = Defender(lab, ServerConfig(PORT, parse_spec(name)))
            try:
                served = probe(lab, path="/", family=family)  # before the flood silences it
                before = _half_open(lab)
                _syn_flood(lab, family, 100)
                time.sleep(0.5)
                proxied = synproxy.proxied(lab.defender) if name == "synproxy" else None
                found[name] = (served.outcome.value, before, _half_open(lab), proxied)
            finally:
                defender.stop()
                defender.close()
    outcome, before, after, proxied = found["synproxy"]
    assert outcome == "fin"  # a legitimate request went through the proxy and was served
    assert after[0] == 0  # no request socket for any of the 100 SYNs...
    assert after[1] <= before[1] + 1  # ...and no conntrack entry: SYNs are not tracked
    assert proxied >= 100  # the proxy answered every SYN itself
    # Without it the same flood leaves request sockets in the server's kernel.
    assert found["graceful"][2][0] >= 50

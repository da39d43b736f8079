"""Peer strategies: the configs closebench writes (checked by the peers themselves where they are
installed), the one message for a missing binary, endlessh's log, and in a lab the process tree,
the options that change what goes on the wire, and endlessh's claim next to the attackers'
measurement. Each peer's outcome on the wire, over IPv4 and IPv6, is in test_probe.py."""

from __future__ import annotations

import os
import subprocess

import pytest

from closebench.attackers.policy import Policy
from closebench.core.errors import EnvironmentProblem
from closebench.core.outcomes import Attempt, Outcome
from closebench.defender import Defender, ServerConfig
from closebench.defender.metrics import ProcessTree, descendants
from closebench.defender.peers import PEERS, Peer, PeerSetup, peer_for, require, skip_missing
from closebench.defender.peers.endlessh import claims_against, parse_log
from closebench.defender.peers.nginx import request_rate
from closebench.servers.strategies import PEER_STRATEGIES, parse_spec
from closebench.trials.probe import Probe, ProbeCase
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial


def skip_missing_peer(spec) -> None:
    """Skip a test of a peer whose software is not installed; in CI, fail it."""
    peer = peer_for(spec)
    if peer is None or peer.installed():
        return
    message = f"{peer.binary} is not installed ({peer.install_hint()})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _config(spec: str, tmp_path, **setup) -> str:
    parsed = parse_spec(spec)
    return peer_for(parsed).config(PeerSetup(parsed, 8080, "^/spam", **setup), tmp_path)


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("haproxy-silent-drop", "http-request silent-drop if abusive"),
        ("haproxy-tarpit", "http-request tarpit if abusive"),
        ("haproxy-reject:read_first=true", "http-request reject if abusive"),
    ],
)
def test_haproxy_config_mirrors_the_abuse_rule(tmp_path, spec, rule):
    text = _config(spec, tmp_path)
    assert "    acl abusive path_reg '^/spam'" in text.splitlines()
    assert f"    {rule}" in text.splitlines()
    assert "bind 0.0.0.0:8080" in text and "bind :::8080 v6only" in text
    assert "server app 127.0.0.1:8081" in text  # the backend, on loopback
    # No user/group: HAProxy keeps root, and CAP_NET_ADMIN with it, for silent-drop.
    assert not any(line.split()[:1] in (["user"], ["group"]) for line in text.splitlines())


def test_haproxy_reject_at_accept_names_the_abusive_addresses(tmp_path):
    text = _config("haproxy-reject", tmp_path, abuse_sources=("198.18.0.1/32", "2001:2::1/128"))
    assert "    acl abusive_source src 198.18.0.1/32 2001:2::1/128" in text.splitlines()
    assert "    tcp-request connection reject if abusive_source" in text.splitlines()
    with pytest.raises(ValueError, match="name some"):
        _config("haproxy-reject", tmp_path)


def test_haproxy_tarpit_timeout_and_options(tmp_path):
    assert "timeout tarpit 2500ms" in _config("haproxy-tarpit:timeout=2.5", tmp_path)
    spec = parse_spec("haproxy-silent-drop:net_admin=false")
    argv = peer_for(spec).argv(PeerSetup(spec, 8080, "^/spam"), tmp_path / "c", tmp_path)
    assert argv[:3] == ["setpriv", "--bounding-set", "-net_admin"] and "haproxy" in argv


def test_abuse_paths_are_quoted_or_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot quote"):  # HAProxy's single quotes
        peer_for(parse_spec("haproxy-tarpit")).config(
            PeerSetup(parse_spec("haproxy-tarpit"), 8080, "^/it's"), tmp_path
        )
    spec = parse_spec("nginx-444")
    text = peer_for(spec).config(PeerSetup(spec, 8080, r'^/sp\d"am'), tmp_path)
    # nginx unescapes \\ and \" inside quotes: the regex arrives as it was written.
    assert r'location ~ "^/sp\\d\"am" {' in text


@pytest.mark.parametrize(("rate", "text"), [(1, "1r/s"), (5.0, "5r/s"), (0.5, "30r/m")])
def test_nginx_request_rates(rate, text):
    assert request_rate(rate) == text


def test_nginx_limit_conn_config(tmp_path):
    text = _config("nginx-limit-conn:rate=2,conn=3,status=503", tmp_path)
    assert "limit_req_zone $binary_remote_addr zone=abusers:1m rate=2r/s;" in text
    assert "limit_conn abusive_requests 3;" in text
    assert "limit_req_status 503;" in text and "limit_conn_status 503;" in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text  # nothing outside its own folder
    assert "keepalive_timeout 0;" in text


def test_endlessh_config(tmp_path):
    lines = _config("endlessh:delay=0.25", tmp_path).splitlines()
    assert "Port 8080" in lines and "Delay 250" in lines and "BindFamily 0" in lines


@pytest.mark.parametrize("spec", ["haproxy-silent-drop", "haproxy-tarpit", "nginx-limit-conn"])
def test_the_peers_accept_the_configs(tmp_path, spec):
    """Checked by the software itself (`haproxy -c`, `nginx -t`): no root needed."""
    parsed = parse_spec(spec)
    skip_missing_peer(parsed)
    peer = peer_for(parsed)
    [_, launch] = peer.launches(PeerSetup(parsed, 8080, r"^/spam\b", backlog=64), tmp_path)
    config = tmp_path / peer.config_name
    check = ["haproxy", "-c", "-f", str(config)] if peer.binary == "haproxy" else None
    check = check or ["nginx", "-t", "-p", f"{tmp_path}/", "-c", str(config)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(config) in launch.argv


def test_every_peer_strategy_has_its_software():
    assert set(PEERS) == set(PEER_STRATEGIES)


@pytest.fixture
def nothing_installed(monkeypatch):
    monkeypatch.setattr(Peer, "installed", lambda self: False)
    monkeypatch.delenv("CI", raising=False)


def test_a_missing_binary_names_its_package(nothing_installed):
    with pytest.raises(EnvironmentProblem) as error:
        require(parse_spec("nginx-444"))
    assert str(error.value) == (
        "nginx is not installed, and nginx-444 run(s) it: install the package nginx-light "
        "(nginx on Debian 13 and Ubuntu 24.04): apt-get install nginx-light, or ./setup.sh, "
        "which installs everything closebench uses"
    )
    require(parse_spec("graceful"))  # the reference server needs nothing more


def test_missing_peers_are_skipped_with_one_warning_each(nothing_installed):
    warnings: list[str] = []
    specs = [parse_spec(n) for n in ("graceful", "haproxy-reject", "haproxy-tarpit", "endlessh")]
    skipped = skip_missing(specs, warnings.append)
    assert skipped == {
        "haproxy-reject": "skipped: haproxy is not installed (apt-get install haproxy)",
        "haproxy-tarpit": "skipped: haproxy is not installed (apt-get install haproxy)",
        "endlessh": "skipped: endlessh is not installed (apt-get install endlessh)",
    }
    assert warnings == [
        "haproxy is not installed, and haproxy-reject, haproxy-tarpit run(s) it: install the "
        "package haproxy: apt-get install haproxy, or ./setup.sh, which installs everything "
        "closebench uses; skipped",
        "endlessh is not installed, and endlessh run(s) it: install the package endlessh: "
        "apt-get install endlessh, or ./setup.sh, which installs everything closebench uses; "
        "skipped",
    ]


def test_missing_peers_fail_in_ci_and_when_nothing_is_left(nothing_installed, monkeypatch):
    warnings: list[str] = []
    with pytest.raises(EnvironmentProblem, match="endlessh is not installed"):
        skip_missing([parse_spec("endlessh")], warnings.append)  # nothing left to run
    monkeypatch.setenv("CI", "true")
    with pytest.raises(EnvironmentProblem, match=r"CI is set: nothing is skipped"):
        skip_missing([parse_spec("graceful"), parse_spec("endlessh")], warnings.append)
    assert warnings == []


ENDLESSH_LOG = """\
2026-11-29T20:43:28.158Z Port 8080
2026-11-29T20:43:28.610Z ACCEPT host=::ffff:198.18.0.1 port=35640 fd=4 n=1/4096
2026-11-29T20:43:28.610Z ACCEPT host=2001:2::1 port=37778 fd=5 n=2/4096
2026-11-29T20:43:31.613Z CLOSE host=::ffff:198.18.0.1 port=35640 fd=4 time=3.003 bytes=37
2026-11-29T20:43:33.110Z CLOSE host=2001:2::1 port=37778 fd=5 time=4.500 bytes=79
2026-11-29T20:43:33.110Z TOTALS connects=2 seconds=7.503 bytes=116
"""


def test_endlessh_log_is_read_as_claims():
    claims, totals = parse_log(ENDLESSH_LOG)
    assert [(c.host, c.port, c.seconds, c.sent) for c in claims] == [
        ("198.18.0.1", 35640, 3.003, 37),  # IPv4-mapped, written as the attacker's record has it
        ("2001:2::1", 37778, 4.5, 79),
    ]
    assert totals == {"connections": 2, "trapped_s_claimed": 7.503, "bytes_sent": 116}
    peer = PEERS["endlessh"]
    without_totals = "\n".join(ENDLESSH_LOG.splitlines()[:-1])
    assert peer.stats(without_totals)["trapped_s_claimed"] == pytest.approx(7.503)


def _attempt(src: str, sport: int, established: float, end: float) -> Attempt:
    return Attempt("kernel", 4, src, sport, "198.19.0.2", 8080, 10.0, Outcome.SILENT,
                   t_syn=established, t_established=established, t_end=end)  # fmt: skip


def test_claims_are_set_against_the_attackers_own_clocks():
    claims = [
        {"host": "198.18.0.1", "port": 35640, "seconds": 3.003, "sent": 37},
        {"host": "198.18.0.10", "port": 40000, "seconds": 9.0, "sent": 9},  # the legit client's
    ]
    attempts = [_attempt("198.18.0.1", 35640, 100.0, 102.5)]
    figures = claims_against(claims, attempts)
    assert figures["attacker_connections_claimed"] == 1
    assert figures["attacker_trapped_s_claimed"] == pytest.approx(3.003)
    assert figures["attacker_connected_s"] == pytest.approx(2.5)
    assert figures["claim_late_max_s"] == pytest.approx(0.503)


@pytest.mark.needs_lab
def test_every_process_of_a_peer_is_counted(lab):
    """nginx: a master and one worker per CPU, and the backend; summed by the sampler."""
    spec = parse_spec("nginx-444")
    skip_missing_peer(spec)
    defender = Defender(lab, ServerConfig(8080, spec))
    try:
        backend, master = defender.server_pids
        workers = descendants(master)
        assert len(workers) == len(os.sched_getaffinity(0))  # worker_processes auto
        tree = ProcessTree(defender.server_pids)
        usage = tree.usage()
        fds = [len(os.listdir(f"/proc/{pid}/fd")) for pid in (backend, master, *workers)]
        assert usage is not None and usage.fds >= sum(fds) - 2  # a moment later: about the same
        assert usage.threads >= 2 + len(workers)
        assert (defender.directory / "nginx.conf").is_file()
    finally:
        defender.close()
    assert tree.usage() is None  # all gone


@pytest.mark.needs_lab
def test_the_peers_files_are_kept_beside_the_capture(tmp_path):
    spec = parse_spec("haproxy-tarpit:timeout=1")
    skip_missing_peer(spec)
    result = Probe(timeout=4, pcap_dir=str(tmp_path)).run(ProbeCase(ServerConfig(8080, spec)))
    assert not result.error, result.error
    # After its `timeout tarpit`, HAProxy answers 500 and closes.
    assert result.attempt.outcome is Outcome.FIN and result.attempt.data_first
    assert result.attempt.hang_s >= 0.9
    kept = tmp_path / "probe-haproxy-tarpit_timeout=1-ipv4"
    assert "timeout tarpit 1000ms" in (kept / "haproxy.cfg").read_text()
    assert {"backend.stdout", "haproxy.stderr"} <= {p.name for p in kept.iterdir()}


def _trial(spec: str, timeout: float, duration: float, concurrency: int = 2, legit=None):
    policy = Policy(timeout=timeout, concurrency=concurrency, duration=duration, rate=20)
    config = TrialConfig(
        server=ServerConfig(8080, parse_spec(spec)),
        attackers=(AttackerSpec("kernel", policy),),
        legit=legit,
        sample_hz=10,
    )
    return run_trial(config)


@pytest.mark.needs_lab
def test_endlessh_claims_more_than_the_attackers_waited():
    skip_missing_peer(parse_spec("endlessh"))
    result = _trial("endlessh:delay=0.5", timeout=1.2, duration=3)
    stats = result.server_stats
    attempts = [a for a in result.attempts if a.t_established]
    assert attempts and all(a.outcome is Outcome.SILENT and a.data_first for a in attempts)
    assert stats["attacker_connections_claimed"] == len(attempts)
    # It notices a client has gone only when a write fails: never early, up to two delays late.
    assert stats["attacker_trapped_s_claimed"] >= stats["attacker_connected_s"]
    assert 0 <= stats["claim_late_max_s"] <= 2 * 0.5 + 1.0  # a wide margin for load
    assert result.defender is not None and result.defender.peak_fds >= 2


@pytest.mark.needs_lab
def test_nginx_limit_answers_429_over_the_rate():
    skip_missing_peer(parse_spec("nginx-limit-conn"))
    result = _trial("nginx-limit-conn:rate=1", timeout=2, duration=3, legit=LegitClient(rate=2))
    statuses = [a.http_status for a in result.attempts]
    assert statuses.count(429) > statuses.count(200) >= 1  # one a second gets through
    assert all(a.outcome is Outcome.FIN for a in result.attempts)
    assert result.legit is not None and result.legit.success_rate == 1.0  # `/` is not limited

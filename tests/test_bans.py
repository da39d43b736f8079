"""Bans: the blacklist and the nftables strategies, their expiry and escalation, bans on the
router, a botnet of 200 addresses, and the host's own firewall left alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Policy, Target
from closebench.core.errors import EnvironmentProblem, LabError, UsageError
from closebench.core.outcomes import Attempt, Outcome
from closebench.core.summary import summarize_bans
from closebench.defender import Defender, ServerConfig, firewall
from closebench.lab import Lab
from closebench.results.records import run_records
from closebench.servers.bans import BanBook, BanPolicy, ruleset
from closebench.servers.strategies import parse_spec
from closebench.trials.probe import Probe, ProbeCase, ProbeResult
from closebench.trials.runner import Runner
from closebench.trials.scenario import find_scenario, load_scenario
from tests.conftest import wait_until

PORT = 8080
NFT_TICK = 0.02  # a set element's timeout counts in jiffies (HZ >= 100): it may end a tick early


# helpers


def probe(lab: Lab, path: str = "/spam", family: int = 4, timeout: float = 1.0) -> Attempt:
    """One request from the attacker's main address, its outcome read from the capture."""
    case = ProbeCase(ServerConfig(PORT, command=["none"]), family=family)
    result = ProbeResult(case)
    Probe(timeout=timeout, path=path).observe(lab, case, PORT, result)
    return result.attempt


def request(lab: Lab, source: str, path: str = "/", family: int = 4, timeout: float = 1.0):
    """One request from `source` by the kernel-socket client (for status codes)."""
    target = Target(lab.defender_ip(family), PORT, family, path)
    client = KernelSpammer("test")
    with lab.attacker.entered():
        return asyncio.run(client.attempt(target, Policy(timeout=timeout), source, timeout))


def host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


# the bookkeeping, on a fake clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_book_bans_by_rate_and_escalates():
    clock = Clock()
    book = BanBook(BanPolicy(bantime=10, factor=2, maxtime=30, findtime=5, maxretry=3), clock)
    assert book.offend("a") is None and book.offend("a") is None
    clock.now += 6  # the first two fall out of the window
    assert book.offend("a") is None and book.offend("a") is None
    first = book.offend("a")
    assert first is not None and (first.n, first.duration_s) == (1, 10)
    assert book.banned("a") and not book.banned("b") and book.active() == 1
    assert book.offend("a") is None  # in flight while banned: not an offence
    clock.now += 10
    assert not book.banned("a") and book.active() == 0
    durations = []
    for _ in range(3):
        ban = None
        while ban is None:
            ban = book.offend("a")
        durations.append(ban.duration_s)
        clock.now += ban.duration_s
    assert durations == [20, 30, 30]  # doubled, then capped by maxtime
    assert [b.n for b in book.log] == [1, 2, 3, 4]


def test_bad_ban_options_are_refused():
    for text, message in [
        ("fw-drop:then=blacklist", "option 'then' takes one of graceful"),
        ("fw-drop:factor=0.5", "option 'factor' must be at least 1"),
        ("blacklist:maxretry=0", "option 'maxretry' must be at least 1"),
        ("blacklist:where=router", "strategy 'blacklist' has no option 'where'"),
        ("fw-reject:where=moon", "option 'where' takes one of local, router"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_spec(text)
    assert str(parse_spec("fw-drop:bantime=5,where=router")) == "fw-drop:bantime=5,where=router"


def test_ruleset_refuses_only_new_connections():
    rules = ruleset(8080, "forward")
    assert "hook forward" in rules and "tcp flags & (syn | ack) == syn" in rules
    assert "ip6 saddr @reject6" in rules and "reject with tcp reset" in rules


def test_ban_figures_from_the_log():
    def attempt(src: str, t: float, status: int | None = None) -> Attempt:
        a = Attempt("x", 4, src, 1, "d", 80, 1.0, Outcome.RST, t_syn=t)
        a.http_status = status
        return a

    log = [
        {"address": "a", "duration_s": 10, "t_detected": 100.0, "t_effective": 101.0},
        {"address": "b", "duration_s": 10, "t_detected": 104.0, "t_effective": 104.0},
    ]
    attempts = [attempt("a", t) for t in (100, 102, 103)] + [attempt("c", 100)]
    legit = [attempt("a", 105), attempt("a", 105, 200), attempt("a", 112), attempt("c", 105)]
    bans = summarize_bans(log, attempts, legit, attack_end=111.0, syns_dropped=7)
    assert (bans.bans, bans.banned_addresses, bans.time_to_ban_median_s) == (2, 2, 1.0)
    assert (bans.attempts_before_ban, bans.attempts_after_ban) == (2, 2)
    assert bans.attempts_per_s_after_ban == pytest.approx(2 / (10 + 7))
    assert bans.legit_wrongly_refused == 1 and bans.syns_dropped == 7


def test_scenario_keys_for_bans(tmp_path):
    base = 'name = "t"\nstrategies = [STRATEGIES]\n[[attackers]]\nkind = "KIND"\naddresses = N\n'
    for strategies, kind, n, message in [
        ('"fw-drop:where=router"', "kernel", 2, "bans on the router: give it routed = true"),
        ('"fw-drop"', "curl", 2, 'addresses goes with kind = \\"kernel\\", \\"scapy\\"'),
        ('"fw-drop"', "kernel", 240, "less than or equal to 239"),
    ]:
        path = tmp_path / "s.toml"
        text = base.replace("STRATEGIES", strategies).replace("KIND", kind)
        path.write_text(text.replace("N", str(n)))
        with pytest.raises(UsageError, match=message):
            load_scenario(path)


# the strategies on the wire


@pytest.mark.needs_lab
@pytest.mark.parametrize("family", [4, 6])
def test_fw_drop_leaves_the_banned_address_in_syn_timeout_and_serves_others(family):
    with Lab() as lab:
        lab.add_attacker_addresses(1)
        defender = Defender(lab, ServerConfig(PORT, parse_spec("fw-drop")))
        first = probe(lab, family=family)
        assert first.outcome is Outcome.RST  # the triggering request meets then=rst
        again = probe(lab, path="/", family=family)
        assert again.outcome is Outcome.SYN_TIMEOUT, again
        other = request(lab, lab.addressing.attacker_extra(family, 0), family=family)
        assert other.http_status == 200
        reading = firewall.read(lab.defender)
        assert reading.bans_active == 1 and reading.syns_dropped >= 1
        stats = defender.stop()
        defender.close()
    assert stats["bans"] == 1 and stats["nft_calls"] == 1 and stats["ban_errors"] == 0
    [ban] = stats["ban_log"]
    assert ban["address"] == lab.attacker_ip(family) and ban["duration_s"] == 30
    assert 0 <= ban["t_effective"] - ban["t_detected"] < 1.0


def bans_active(lab: Lab) -> int:
    return firewall.read(lab.defender).bans_active


def banned_for(lab: Lab, since: float, timeout: float = 10.0) -> float:
    """Seconds from `since` (taken before the ban's trigger was sent) until the kernel's ban set
    is empty again, after a request meanwhile was refused by the ban's rule. The kernel-socket
    client (`request`), not `probe`: a probe's capture can outlast a 1 s ban on a busy machine."""
    assert wait_until(lambda: bans_active(lab) == 1)
    rejected = firewall.read(lab.defender).syns_dropped
    assert request(lab, lab.attacker_ip(4)).outcome is Outcome.REFUSED
    assert firewall.read(lab.defender).syns_dropped > rejected  # refused by the ban's rule
    assert wait_until(lambda: bans_active(lab) == 0, timeout=timeout)
    return time.monotonic() - since


@pytest.mark.needs_lab
def test_fw_reject_refuses_then_the_ban_expires_and_escalates():
    spec = parse_spec("fw-reject:bantime=1,factor=3")
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, spec))
        sent = time.monotonic()
        assert request(lab, lab.attacker_ip(4), path="/spam").outcome is Outcome.RST
        # The set element's own timeout ends the ban: the kernel's set empties no sooner than the
        # ban's length after its trigger was sent (a lower bound only: a loaded machine is slower).
        assert banned_for(lab, sent) >= 1.0 - NFT_TICK
        assert request(lab, lab.attacker_ip(4)).http_status == 200  # the first ban is over
        sent = time.monotonic()
        assert request(lab, lab.attacker_ip(4), path="/spam").outcome is Outcome.RST
        assert banned_for(lab, sent) >= 3.0 - NFT_TICK  # the second ban: bantime x factor
        assert request(lab, lab.attacker_ip(4)).http_status == 200
        stats = defender.stop()
        defender.close()
    assert [b["duration_s"] for b in stats["ban_log"]] == [1, 3]
    assert [b["n"] for b in stats["ban_log"]] == [1, 2]


@pytest.mark.needs_lab
def test_maxretry_bans_by_rate():
    spec = parse_spec("fw-reject:maxretry=3,findtime=30")
    with Lab() as lab:
        defender = Defender(lab, ServerConfig(PORT, spec))
        source = lab.attacker_ip(4)
        outcomes = [request(lab, source, path="/spam").outcome for _ in range(4)]
        stats = defender.stop()
        defender.close()
    assert outcomes == [Outcome.RST] * 3 + [Outcome.REFUSED]
    assert stats["abusive"] == 3 and stats["bans"] == 1


@pytest.mark.needs_lab
@pytest.mark.parametrize(
    ("spec", "banned_outcome"),
    [
        ("blacklist", Outcome.RST),
        ("blacklist:then=graceful,read_banned=true", Outcome.FIN),
        ("blacklist:then=repair,read_banned=true", Outcome.SILENT),
    ],
)
def test_blacklist_closes_banned_connections_with_then(spec, banned_outcome):
    with Lab() as lab:
        lab.add_attacker_addresses(1)
        defender = Defender(lab, ServerConfig(PORT, parse_spec(spec)))
        first = probe(lab)
        again = probe(lab, path="/")
        other = request(lab, lab.addressing.attacker_extra(4, 0))
        stats = defender.stop()
        defender.close()
    assert first.outcome is banned_outcome  # the triggering request: `then` too
    assert again.outcome is banned_outcome
    assert again.t_established is not None  # the application, not a firewall, turned it away
    assert other.http_status == 200
    assert stats["bans"] == 1 and stats["turned_away"] == 1 and stats["served"] == 1


@pytest.mark.needs_lab
def test_ban_on_the_router_leaves_host_and_defender_firewalls_alone():
    before = host_ruleset()
    assert firewall.TABLE not in before
    with Lab(routed=True) as lab:
        defender = Defender(lab, ServerConfig(PORT, parse_spec("fw-drop:where=router")))
        assert "--ban-netns" in defender.config.argv()
        assert probe(lab).outcome is Outcome.RST
        assert probe(lab, path="/").outcome is Outcome.SYN_TIMEOUT
        assert firewall.read(lab.router).syns_dropped >= 1
        assert firewall.TABLE not in lab.defender.run(["nft", "list", "tables"])
        assert host_ruleset() == before  # while the lab's rules are in force
        defender.close()
    assert host_ruleset() == before


@pytest.mark.needs_lab
def test_missing_table_or_nft_is_a_clear_error(monkeypatch, tmp_path):
    with Lab() as lab:
        server = [sys.executable, "-m", "closebench.servers.reference", "--strategy", "fw-drop"]
        with pytest.raises(LabError, match=f"no nftables set inet {firewall.TABLE} drop4"):
            lab.defender.run(server)
        with pytest.raises(LabError, match="nft is not installed"):
            lab.defender.run(["env", f"PATH={tmp_path}", *server])
        with pytest.raises(LabError, match="cannot read the ban table"):
            firewall.read(lab.defender)
        with pytest.raises(UsageError, match="this lab has none"):
            Defender(lab, ServerConfig(PORT, parse_spec("fw-reject:where=router")))
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(EnvironmentProblem, match="missing nft"):
            firewall.install(lab.defender, PORT)


# many attackers

BOTNET_BANS = ("blacklist", "fw-drop", "fw-reject", "fw-drop:where=router (via router)")


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_botnet_of_200_addresses(tmp_path):
    path = find_scenario("botnet")
    scenario, text, digest = load_scenario(path)
    # Short, and only the ban strategies: every attacker runs in this one process, and on a small
    # machine seven botnets at once starve their own event loops.
    attackers = [a.model_copy(update={"timeout": 2.0}) for a in scenario.attackers]
    strategies = [s for s in scenario.strategies if s.name in BOTNET_BANS]
    update = {"duration": 3.0, "attackers": attackers, "strategies": strategies}
    scenario = scenario.model_copy(update={**update, "parallel": len(strategies)})
    outcome = Runner(scenario, text, digest, path, tmp_path).run()
    assert outcome.complete, outcome.errors
    rows = {row.trial: row for row in outcome.rows}
    attempts = run_records(outcome.directory)
    for trial in rows:
        bots = {a["src"] for a in attempts if a["trial"] == trial and a["attacker"] == "bots"}
        assert len(bots) == 160, trial
    assert list(rows) == list(BOTNET_BANS)
    for name, row in rows.items():
        assert row.banned_addresses >= 160, (name, row.banned_addresses)
        assert row.peak_bans_active >= 150 and row.legit_wrongly_refused == 0
        assert row.legit_success_rate == 1.0
    assert rows["fw-drop"].syns_dropped > 0 and "syn-timeout" in rows["fw-drop"].outcomes
    assert rows["fw-reject"].outcomes.get("refused", 0) > 0
    samples = (outcome.directory / "samples.csv").read_text().splitlines()
    assert {"bans_active", "syns_dropped"} <= set(samples[0].split(","))


def test_shipped_ban_scenarios_are_documented():
    for name in ("bans", "botnet"):
        assert Path(find_scenario(name)).read_text().startswith("# ")

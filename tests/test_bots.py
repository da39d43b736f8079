"""Bot profiles (closebench/attackers/bots.py): their timers from their sources, seen on the wire.
Mirai's scanner gives up a connect after 5 s (fw-drop's dropped SYNs: no SYN of that connection
after it) and a silent connection after 30 s without data, then tries again, 10 tries a target;
a Degreaser-style detector leaves a zero-window tarpit or a drip at its probe time."""

from __future__ import annotations

import dataclasses

import pytest

from closebench.attackers import bot_profiles
from closebench.attackers.bot_profiles import PROFILES
from closebench.attackers.bots import DRIP, STOPPED, ZERO_WINDOW, bot_conversation
from closebench.attackers.conversation import Abort, Connect, Receive, Send, Unsent, advance
from closebench.attackers.policy import Policy, Target
from closebench.core.outcomes import Attempt, ClosedBy, Outcome
from closebench.defender import ServerConfig
from closebench.results.verify import verify_trial
from closebench.servers.strategies import parse_spec
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial
from closebench.wire.pcap import Endpoint, connections

TARGET = Target("198.18.0.2", 8080)


def test_the_profiles_say_where_their_numbers_come_from():
    mirai = PROFILES["mirai"]
    assert (mirai.connect_timeout_s, mirai.idle_timeout_s) == (5.0, 30.0)
    assert (mirai.tries_per_target, mirai.slots) == (10, 128)
    assert "scanner.c" in mirai.source and "Degreaser" in PROFILES["degreaser"].source


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(profile, results, stop_at: float = float("inf")):
    """Run a bot's conversation on given results (a step's result, or an OSError to throw):
    the steps it asked for, and its record."""
    clock = Clock()
    attempt = Attempt("bot", 4, "198.18.0.1", 40000, TARGET.address, 8080, 1.5, Outcome.SILENT, 0)
    steps = bot_conversation(attempt, TARGET, profile, clock, clock, stop_at)
    asked = [advance(steps, None, None)]
    for advance_s, result in results:
        clock.now += advance_s
        error = result if isinstance(result, OSError) else None
        asked.append(advance(steps, None if error else result, error))
    return asked, attempt


def test_a_detector_leaves_a_zero_window_at_its_probe_time():
    profile = PROFILES["degreaser"]
    asked, attempt = _drive(
        profile,
        [(0.001, None), (0.0, None), (profile.probe_s, TimeoutError()), (0.0, 60), (0.0, None)],
    )
    assert [type(step) for step in asked] == [Connect, Send, Receive, Unsent, Abort, type(None)]
    assert asked[2].timeout == pytest.approx(profile.probe_s)  # it reads until its probe time
    assert f"{ZERO_WINDOW} at +1.5 s: left" in attempt.detail
    assert attempt.outcome is Outcome.SILENT and attempt.t_end == pytest.approx(1.501)


def test_a_detector_leaves_a_drip_and_waits_on_an_ordinary_silence():
    profile = PROFILES["degreaser"]
    _, dripped = _drive(profile, [(0, None), (0, None), (0.5, b"x"), (1.0, TimeoutError()), (0, 0)])
    assert f"{DRIP} at +1.5 s: left" in dripped.detail and dripped.bytes_received == 1
    # Nothing at all, and its bytes acknowledged: no tarpit's mark; it waits on, to its timeout.
    asked, silent = _drive(
        profile, [(0, None), (0, None), (1.5, TimeoutError()), (0, 0), (10.0, TimeoutError())]
    )
    assert isinstance(asked[-2], Receive) and asked[-2].timeout == profile.idle_timeout_s
    assert silent.detail == "" and silent.outcome is Outcome.SILENT


def test_mirai_waits_30_s_from_the_last_byte():
    asked, attempt = _drive(
        PROFILES["mirai"], [(0, None), (0, None), (20.0, b"login: "), (30.0, TimeoutError())]
    )
    assert [step.timeout for step in asked if isinstance(step, Receive)] == [30.0, 30.0]
    assert isinstance(asked[0], Connect) and asked[0].timeout == 5.0
    assert attempt.excerpt == "login: " and attempt.outcome is Outcome.SILENT


def test_a_bot_that_outlives_the_attack_is_stopped_and_outlasted():
    """A drip resets Mirai's 30 s for ever: at the attack's end (plus a timeout) closebench
    stops it with an RST, and the attempt is closebench's (outlasted)."""
    asked, attempt = _drive(
        PROFILES["mirai"],
        [(0, None), (0, None), (8.0, b"."), (2.0, TimeoutError()), (0, None)],
        stop_at=10.0,
    )
    assert [step.timeout for step in asked if isinstance(step, Receive)] == [10.0, 2.0]
    assert isinstance(asked[-2], Abort) and asked[-1] is None
    assert attempt.detail == STOPPED and attempt.outlasted and attempt.t_end == 10.0


def _bot_trial(tmp_path, strategy: str, profile: str, policy: Policy):
    pcap = tmp_path / "attacker.pcap"
    spec = AttackerSpec("bot", policy, profile=profile)
    config = TrialConfig(
        ServerConfig(8080, parse_spec(strategy)), (spec,), legit=None, pcap=str(pcap)
    )
    result = run_trial(config)
    first = result.attempts[0]
    server = Endpoint(first.dst, first.dport)
    # verify's own reading of the pcap agrees with every record: class, end, who closed, bytes
    agreement = verify_trial("bot", [a.to_dict() for a in result.attempts], pcap)
    assert agreement.ok, agreement.to_dict()
    return result, dict(connections(str(pcap), server)), spec.name


@pytest.mark.needs_lab
def test_mirai_gives_up_a_connect_after_5_s_on_the_wire(tmp_path):
    """fw-drop bans the address at its first request: the next connects meet dropped SYNs.
    The kernel would send that SYN again at +1 s, +3 s and +7 s: the wire shows none at or
    after +5 s, and the record ends at +5 s, a syn-timeout that drops the target."""
    policy = Policy(reconnect=True, concurrency=2, duration=6)
    result, wire, name = _bot_trial(tmp_path, "fw-drop", "mirai", policy)
    assert name == "mirai"
    dropped = [a for a in result.attempts if a.outcome is Outcome.SYN_TIMEOUT]
    assert dropped, [a.outcome for a in result.attempts]
    for attempt in dropped:
        syns = [e.t for e in wire[Endpoint(attempt.src, attempt.sport)] if e.what == "S"]
        assert len(syns) >= 2  # retransmitted at +1 s (and +3 s)
        assert max(syns) - syns[0] < 5.0 and attempt.slot_s >= 5.0
        assert "no connection: target dropped" in attempt.detail
    assert result.summaries[name].attacker_cost["targets"]["dropped"] == len(dropped)


@pytest.mark.needs_lab
def test_a_detector_leaves_a_zero_window_tarpit_early(tmp_path):
    """Against zero-window (a stateless tarpit), the detector's request never leaves: at its
    probe time it resets (its RST on the wire at +1.5 s: a FIN would wait behind the request),
    where a client of closebench's own would wait its whole timeout."""
    policy = Policy(timeout=10.0, reconnect=False, duration=5)
    result, wire, _ = _bot_trial(tmp_path, "zero-window", "degreaser", policy)
    [attempt] = result.attempts
    assert f"{ZERO_WINDOW} at +1.5 s: left" in attempt.detail
    events = wire[Endpoint(attempt.src, attempt.sport)]
    rst = next(e.t for e in events if e.direction == "out" and "R" in e.what)
    assert rst - attempt.t_established >= PROFILES["degreaser"].probe_s
    assert attempt.closer is ClosedBy.CLIENT and attempt.t_end == pytest.approx(rst)
    assert attempt.outcome is Outcome.SILENT


@pytest.mark.needs_lab
@pytest.mark.slow
def test_mirai_gives_up_a_silent_connection_after_30_s_and_tries_again(tmp_path):
    """`never` keeps the socket and says nothing: Mirai's try ends with its own FIN 30 s after
    its request (closed by the client, silent), and the same slot tries again at once."""
    policy = Policy(reconnect=True, concurrency=1, duration=32)
    result, wire, _ = _bot_trial(tmp_path, "never", "mirai", policy)
    first = min(result.attempts, key=lambda a: a.t_syn)
    events = wire[Endpoint(first.src, first.sport)]
    fin = next(e.t for e in events if e.direction == "out" and "F" in e.what)
    assert fin - first.t_request >= 30.0 and first.t_end == pytest.approx(fin)
    assert first.closer is ClosedBy.CLIENT and first.outcome is Outcome.SILENT
    assert "try 1 of 10" in first.detail
    second = sorted(result.attempts, key=lambda a: a.t_syn)[1]
    assert second.t_syn >= fin and "try 2 of 10" in second.detail


@pytest.mark.needs_lab
def test_a_detector_leaves_a_drip(tmp_path, monkeypatch):
    """The reference tarpit drips a byte every 0.5 s: by the probe time a few bytes and no end,
    a drip; the detector leaves."""
    policy = Policy(timeout=10.0, reconnect=False, duration=5)
    result, _, _ = _bot_trial(tmp_path, "tarpit:interval=0.5", "degreaser", policy)
    [attempt] = result.attempts
    assert f"{DRIP} at +1.5 s: left" in attempt.detail
    assert 0 < attempt.bytes_received < PROFILES["degreaser"].drip_bytes
    assert attempt.slot_s < policy.timeout


def test_a_profile_with_other_timers_is_a_replace_away():
    """Tests and scenarios may not edit the sources' numbers: the table is frozen records."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["mirai"].idle_timeout_s = 1.0  # type: ignore[misc]
    assert bot_profiles.PROFILES is PROFILES


def test_a_scenario_bot_takes_its_profiles_slots_unless_told(tmp_path):
    from closebench.core.errors import UsageError
    from closebench.trials.scenario import load_scenario

    def spec(attacker: str):
        path = tmp_path / "s.toml"
        path.write_text(f'name = "t"\nstrategies = ["graceful"]\n[[attackers]]\n{attacker}\n')
        return load_scenario(path)[0].trials()[0].attackers[0]

    mirai = spec('kind = "bot"\nprofile = "mirai"')
    assert (mirai.name, mirai.profile, mirai.policy.concurrency) == ("mirai", "mirai", 128)
    assert spec('kind = "bot"\nprofile = "mirai"\nconcurrency = 4').policy.concurrency == 4
    assert mirai.keeps_own_clock  # its records take the wire's classes and times
    with pytest.raises(UsageError, match='kind = "bot" needs a profile: one of mirai, degreaser'):
        spec('kind = "bot"')
    with pytest.raises(UsageError, match='profile goes with kind = "bot"'):
        spec('kind = "kernel"\nprofile = "mirai"')


def test_the_cli_bot_needs_its_profile():
    from tests.test_attack import closebench

    result = closebench("attack", "-s", "graceful", "-a", "bot")
    assert (
        result.returncode == 2 and "--profile (mirai, degreaser) goes with -a bot" in result.stderr
    )

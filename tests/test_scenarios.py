"""Scenario files: the shipped ones load, and malformed ones are one clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from closebench.core.errors import UsageError
from closebench.trials.scenario import SCENARIO_DIR, find_scenario, load_scenario

SHIPPED = [
    "seed",
    "fd-exhaustion",
    "read-first",
    "ttl-drop",
    "bans",
    "botnet",
    "peers",
    "stateless",
    "locust",
    "sweep",
    "ci",
    "further-out",
    "tools",
]

VALID = """
name = "t"
strategies = ["graceful"]
[[attackers]]
kind = "kernel"
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name):
    scenario, text, digest = load_scenario(find_scenario(name))
    assert scenario.name == name
    assert scenario.trials() and len(digest) == 64 and text


def test_every_scenario_file_is_tested():
    assert sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")) == sorted(SHIPPED)


def test_seed_is_the_default_and_covers_every_close_strategy():
    from closebench.servers.strategies import CLOSE_NAMES

    scenario, _, _ = load_scenario(find_scenario(None))
    assert scenario.name == "seed"
    assert {t.server.spec.name for t in scenario.trials()} == {*CLOSE_NAMES, "zero-window"}
    [attacker] = scenario.attackers
    assert (attacker.rate, attacker.timeout, attacker.reconnect) == (10, 10, True)
    assert scenario.legit is not None


def test_bans_and_botnet_cover_every_ban_strategy():
    from closebench.servers.strategies import BAN_STRATEGIES

    for name in ("bans", "botnet"):
        scenario, _, _ = load_scenario(find_scenario(name))
        assert {t.server.spec.name for t in scenario.trials()} >= set(BAN_STRATEGIES)
    botnet, _, _ = load_scenario(find_scenario("botnet"))
    assert sum(a.addresses or 0 for a in botnet.attackers) == 200


def test_peers_puts_every_peer_next_to_the_reference():
    from closebench.servers.strategies import PEER_STRATEGIES

    scenario, _, _ = load_scenario(find_scenario("peers"))
    names = {t.server.spec.name for t in scenario.trials()}
    assert names >= {*PEER_STRATEGIES, "repair", "rst", "graceful", "tarpit"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('colour = "red"', "unknown key 'colour'; allowed here: name, description"),
        ("duration = -3", "key 'duration': Input should be greater than 0"),
        ('duration = "long"', "key 'duration': Input should be a valid number"),
        ('strategies = ["shouting"]', "unknown strategy 'shouting'; choose one of: graceful"),
        ('strategies = ["tarpit:colour=red"]', "strategy 'tarpit' has no option 'colour'"),
        ('strategies = ["rst", "rst"]', "each strategy once"),
        ("strategies = []", "key 'strategies': List should have at least 1 item"),
        (
            "[server]\nport = 70000",
            "key 'server.port': Input should be less than or equal to 65535",
        ),
        ("[server]\nbacklogg = 5", "unknown key 'server.backlogg'; allowed here: port, nofile"),
    ],
)
def test_malformed_scenarios_name_file_key_and_fix(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    base = VALID
    if change.startswith("strategies"):
        base = base.replace('strategies = ["graceful"]', change)
        change = ""
    path.write_text(change + "\n" + base if not change.startswith("[") else base + change)
    with pytest.raises(UsageError) as error:
        load_scenario(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_unknown_attacker_kind(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace('kind = "kernel"', 'kind = "laser"'))
    with pytest.raises(UsageError, match=r"attackers\.0\.kind.*'kernel', 'scapy'"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("attackers", "message"),
    [
        (
            '[[attackers]]\nkind = "browser"\n[[attackers]]\nkind = "scapy"',
            "the browser attacker cannot choose its source address, so it needs the attacker's "
            "main address to itself, which scapy also use(s)",
        ),
        ('[[attackers]]\nkind = "browser"\nconcurrency = 2', "runs one command at a time"),
        ('[[attackers]]\nkind = "browser"\ncommand = ["x"]', 'command goes with kind = "command"'),
    ],
)
def test_a_browser_needs_an_address_of_its_own(tmp_path, attackers, message):
    path = tmp_path / "bad.toml"
    path.write_text('name = "t"\nstrategies = ["graceful"]\n' + attackers)
    with pytest.raises(UsageError, match=r"bad\.toml: ") as error:
        load_scenario(path)
    assert message in str(error.value)


def test_commands_that_choose_their_source_take_addresses_of_their_own(tmp_path):
    path = tmp_path / "ok.toml"
    text = 'name = "t"\nstrategies = ["graceful"]\n[[attackers]]\nkind = "browser"\n'
    path.write_text(text + '[[attackers]]\nkind = "curl"\nconcurrency = 3\n')
    scenario, _, _ = load_scenario(path)
    [trial] = scenario.trials()
    assert trial.address_plan() == [0, 3]  # the browser has the main address to itself


def test_not_toml_and_missing_files(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = ")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(UsageError, match="no scenario file"):
        find_scenario(str(tmp_path / "missing.toml"))
    with pytest.raises(
        UsageError,
        match=r"give a \.toml file or one of: bans, botnet, ci, fd-exhaustion, further-out, locust",
    ):
        find_scenario("nonesuch")


def test_bad_scenario_on_the_command_line_starts_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("repetitions = 0\n" + VALID)
    out = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, "-m", "closebench.cli", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "key 'repetitions': Input should be greater than or equal to 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()

"""IPv6 gives the same classes as IPv4: for the probe and for every attacker kind.

Addresses are compared as addresses: the lab's first subnet, 2001:2:0:0::/64, is written
2001:2::/64 by sockets and captures, and a text comparison once made every probe of the first lab
read as `syn-timeout`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from closebench.attackers import ATTACKERS
from closebench.attackers.policy import Policy
from closebench.defender import ServerConfig
from closebench.lab import Addressing
from closebench.servers.strategies import parse_spec
from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

EXPECTED = {"graceful": {"fin"}, "repair": {"silent"}, "rst": {"rst"}}


def test_lab_addresses_are_canonical():
    assert Addressing(0, False).attacker(6) == "2001:2::1"
    assert Addressing(0, False).attacker_extra(6, 0) == "2001:2::a"
    assert Addressing(1, True).defender(6) == "2001:2:0:101::2"


@pytest.mark.slow  # the probe tests cover each strategy over IPv6 in the default suite
@pytest.mark.needs_lab
def test_probe_classes_match_over_both_families():
    # A process of its own: its first lab is lab 0, whose IPv6 addresses are the ones that
    # compress (2001:2::1).
    by_family = {}
    for flag in ([], ["--ipv6"]):
        result = subprocess.run(
            [sys.executable, "-m", "closebench.cli", "probe", *flag, "--timeout", "2", "--json"]
            + [arg for name in EXPECTED for arg in ("-s", name)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        by_family[tuple(flag)] = {r["case"]: r["outcome"] for r in document["results"]}
        sources = {r["attempt"]["src"] for r in document["results"]}
    expected = {name: min(outcomes) for name, outcomes in EXPECTED.items()}
    assert by_family[()] == by_family[("--ipv6",)] == expected
    assert "2001:2::1" in sources  # lab 0 was among them


def _outcomes(kind: str, strategy: str, family: int) -> set[str]:
    policy = Policy(timeout=2.0, reconnect=True, duration=8.0, attempts=2)
    spec = AttackerSpec(kind, policy)
    config = TrialConfig(
        ServerConfig(8080, parse_spec(strategy)), (spec,), legit=None, family=family
    )
    result = run_trial(config)
    # The connections that carried the request: a browser's spare one, which it closes itself,
    # ends as the timing of its close and the server's answer fall, on either family.
    return {a.outcome.value for a in result.attempts if a.t_request is not None}


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_every_attacker_sees_the_same_classes_over_ipv6():
    kinds = [k for k in ATTACKERS if k != "tool"]  # the tool profiles aim at IPv4 only
    cases = [(k, s, f) for k in kinds for s in ("graceful", "repair") for f in (4, 6)]
    with ThreadPoolExecutor(6) as pool:
        found = dict(zip(cases, pool.map(lambda case: _outcomes(*case), cases), strict=True))
    for kind in kinds:
        for strategy in ("graceful", "repair"):
            ipv4, ipv6 = found[kind, strategy, 4], found[kind, strategy, 6]
            assert ipv4 == ipv6 == EXPECTED[strategy], (kind, strategy, ipv4, ipv6)

"""An attacker that keeps up: scenarios get the packet engine when they name no attacker, a
packet attacker runs as several processes, and the runner re-runs a step with one more process
while one set the pace, until the attackers' CPUs are spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from closebench.attackers.policy import Policy
from closebench.attackers.rst_filter import SOURCE_PORTS, PortRange
from closebench.core.errors import UsageError
from closebench.trials import runner as runner_module
from closebench.trials.attacker_processes import (
    client_costs,
    merged_cost,
    saturated_packet_attackers,
    scaling,
    source_port_ranges,
    split_policy,
    split_ports,
)
from closebench.trials.harness_load import harness_load
from closebench.trials.scenario import SCENARIO_DIR, load_scenario

BASE = """
name = "s"
strategies = ["never"]
[[attackers]]
timeout = 2
"""


def kinds_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.toml"
    path.write_text(text)
    scenario, _, _ = load_scenario(path)
    return [spec.kind for trial in scenario.trials() for spec in trial.attackers]


def test_an_unnamed_reconnecting_spammer_is_the_packet_engine(tmp_path):
    sweep = '[sweep]\naxis = "concurrency"\nsteps = [20, 100, 400]\n'
    assert kinds_of(tmp_path, BASE + sweep) == ["scapy"] * 3
    assert kinds_of(tmp_path, BASE) == ["scapy"]
    # Named kinds stay; where the packet engine cannot do the job, the kernel attacker.
    assert kinds_of(tmp_path, BASE + 'kind = "kernel"\n') == ["kernel"]
    assert kinds_of(tmp_path, BASE + "reconnect = false\n") == ["kernel"]
    assert kinds_of(tmp_path, BASE + "addresses = 3\n") == ["kernel"]
    more_than_its_ports = sweep.replace("400", str(len(SOURCE_PORTS) + 1))
    assert kinds_of(tmp_path, BASE + more_than_its_ports) == ["kernel"] * 3


def test_the_shipped_sweep_runs_the_packet_engine_over_two_addresses():
    scenario, _, _ = load_scenario(SCENARIO_DIR / "sweep.toml")
    [attacker] = scenario.attackers
    assert attacker.kind == "scapy" and attacker.addresses == 2
    assert max(scenario.sweep.steps) <= 2 * len(SOURCE_PORTS)


def test_a_policy_and_the_ports_split_over_processes():
    policy = Policy(timeout=5, concurrency=401, rate=800.0, duration=8, attempts=1000)
    parts = split_policy(policy, 3)
    assert [p.concurrency for p in parts] == [134, 134, 133]
    assert sum(p.rate for p in parts) == pytest.approx(800.0)
    assert sum(p.attempts for p in parts) == 1000
    assert all(p.timeout == 5 and p.duration == 8 for p in parts)
    assert [p.concurrency for p in split_policy(Policy(concurrency=2), 4)] == [1, 1]
    slices = split_ports(PortRange(61000, 65535), 3)
    assert [str(s) for s in slices] == ["61000-62511", "62512-64023", "64024-65535"]
    assert sum(len(s) for s in slices) == 4536


def engine_cost(cpu_s: float, drops: int = 0) -> dict:
    return {"cpu_user_s": cpu_s, "cpu_system_s": 0.0, "elapsed_s": 10.0, "receive_drops": drops}


def test_the_harness_judges_each_process_not_their_sum():
    # Two processes at 60% of a core each: 120% together, neither saturated.
    merged = merged_cost([engine_cost(6.0), engine_cost(6.0)])
    assert merged["cpu_user_s"] == 12.0 and merged["elapsed_s"] == 10.0
    assert len(merged["processes"]) == 2
    assert not harness_load(client_costs({"scapy": merged}, {})).limited
    assert saturated_packet_attackers({"scapy": "scapy"}, {"scapy": merged}) == []
    # One of them saturated: the step is limited, and the process named.
    merged = merged_cost([engine_cost(6.0), engine_cost(9.5)])
    load = harness_load(client_costs({"scapy": merged}, {}))
    assert load.reasons == ["the scapy attacker (process 2 of 2) used 95% of a core"]
    named = ["the scapy attacker"]
    assert saturated_packet_attackers({"scapy": "scapy"}, {"scapy": merged}) == named
    # Dropped packets too; a kernel attacker is never scaled this way.
    dropped = {"scapy": engine_cost(1.0, drops=3)}
    assert saturated_packet_attackers({"scapy": "scapy"}, dropped) == named
    assert saturated_packet_attackers({"scapy": "kernel"}, dropped) == []


def test_packet_attackers_on_one_address_get_their_own_ports():
    from closebench.trials.trial import AttackerSpec

    def spec(kind: str, concurrency: int = 20, addresses: int = 0) -> AttackerSpec:
        return AttackerSpec(kind, Policy(timeout=2, concurrency=concurrency), addresses=addresses)

    both = [spec("volume"), spec("scapy"), spec("kernel")]
    volume, scapy, _ = source_port_ranges(both, [0, 0, 0])
    assert [volume, scapy] == split_ports(SOURCE_PORTS, 2)
    # Alone on the main address, or with addresses of its own: all the ports.
    assert source_port_ranges([spec("scapy")], [0]) == [SOURCE_PORTS]
    assert source_port_ranges(both[:2], [2, 0]) == [SOURCE_PORTS, SOURCE_PORTS]
    # More connections than a share has ports: refused, naming both and the way out.
    crowded = [spec("volume"), spec("scapy", concurrency=len(SOURCE_PORTS) // 2 + 1)]
    with pytest.raises(UsageError, match=r"the scapy attacker's concurrency 2269 .*`addresses`"):
        source_port_ranges(crowded, [0, 0])
    assert source_port_ranges(crowded, [0, 3])[1] == SOURCE_PORTS


def test_a_scenario_whose_packet_attackers_cannot_share_the_ports_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    two = '[[attackers]]\nkind = "volume"\ntimeout = 2\n[[attackers]]\nkind = "scapy"\n'
    path.write_text(
        'name = "s"\nstrategies = ["never"]\n' + two + "timeout = 2\nconcurrency = 3000\n"
    )
    with pytest.raises(UsageError, match="the volume and the scapy attackers send from"):
        scenario, _, _ = load_scenario(path)
        scenario.trials()


def test_scaling_adds_a_process_until_the_attackers_cpus_are_spent():
    quiet = scaling(1, [], attacker_cpus=2, earlier="")
    assert (quiet.again, quiet.spent, quiet.reason) == (False, None, "1 process: it kept up")
    first = scaling(1, ["the scapy attacker"], attacker_cpus=2, earlier="")
    assert first.again and first.reason == "with 1 process the scapy attacker set the pace"
    kept_up = scaling(2, [], attacker_cpus=2, earlier=first.reason)
    assert not kept_up.again
    assert kept_up.reason == "2 processes: with 1 process the scapy attacker set the pace"
    spent = scaling(2, ["the scapy attacker"], attacker_cpus=2, earlier=first.reason)
    assert (
        not spent.again and spent.spent == "the attackers' CPUs are spent (2 processes on 2 CPUs)"
    )
    one_cpu = scaling(1, ["the scapy attacker"], attacker_cpus=1, earlier="")
    assert not one_cpu.again and one_cpu.spent == (
        "the attackers' CPUs are spent (1 process on 1 CPU)"
    )


# In real labs.


@pytest.mark.needs_lab
@pytest.mark.parametrize("kind", ["scapy", "volume"])
def test_a_packet_attacker_runs_as_several_engines_on_their_own_ports(kind):
    from closebench.defender import ServerConfig
    from closebench.servers.strategies import parse_spec
    from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

    policy = Policy(timeout=2, concurrency=20, rate=200.0, duration=2)
    spec = AttackerSpec(kind, policy, processes=2)
    config = TrialConfig(ServerConfig(8080, parse_spec("graceful")), (spec,), legit=None)
    result = run_trial(config)
    assert result.complete, result.faults
    cost = result.summaries[kind].attacker_cost
    slices = [str(s) for s in split_ports(SOURCE_PORTS, 2)]
    assert [each["source_ports"] for each in cost["processes"]] == slices
    ended = [each["connections_ended"] for each in cost["processes"]]
    assert all(count > 0 for count in ended), ended  # both engines attacked
    assert cost["connections_ended"] == sum(ended) == len(result.attempts)
    # Each attempt left from its engine's slice, and every one of them served.
    low, high = split_ports(SOURCE_PORTS, 2)
    assert {a.sport in low for a in result.attempts} == {True, False}
    assert all(a.sport in low or a.sport in high for a in result.attempts)
    assert len(result.attempts) >= result.server_stats["accepted"] > len(result.attempts) // 2
    assert cost["sources"] == 1  # one address, shared by the engines


def test_the_runner_reruns_a_step_with_a_process_more_while_one_sets_the_pace(
    tmp_path, monkeypatch
):
    """The runner's decision, fed results of a trial whose engine was saturated (the trial
    itself is the lab test above): re-run with 2, then keep the second run; stop at the
    attackers' CPUs."""
    from closebench.lab.cpus import Placement
    from closebench.trials.rows import trial_row
    from closebench.trials.runner import Runner

    path = tmp_path / "s.toml"
    path.write_text(BASE + '[sweep]\naxis = "concurrency"\nsteps = [20]\n[legit]\nrate = 1\n')
    scenario, text, digest = load_scenario(path)
    runs: list[int] = []

    def fake_trial(config, cancel=None, on_attempt=None):
        [spec] = config.attackers
        runs.append(spec.processes)
        saturated = spec.processes < saturated_until
        return fake_result(config, engine_cost(9.6 if saturated else 4.0))

    monkeypatch.setattr(runner_module, "run_trial", fake_trial)
    two_cpus = Placement((0,), (0, 1))
    runner = Runner(scenario, text, digest, path, tmp_path / "r", verify=False, placement=two_cpus)
    for saturated_until, expected_runs, processes, reason in [
        (1, [1], 1, "1 process: it kept up"),
        (2, [1, 2], 2, "2 processes: with 1 process the scapy attacker set the pace"),
        (9, [1, 2], 2, "2 processes: the attackers' CPUs are spent (2 processes on 2 CPUs)"),
    ]:
        runs.clear()
        result = runner._run_step(runner.trials[0], runner.progress[0], lambda _attempt: None)
        assert runs == expected_runs
        assert result.attacker_processes == processes
        assert result.attacker_processes_reason.startswith(reason), result.attacker_processes_reason
        assert result.harness.limited == (saturated_until > 2)
        if saturated_until > 2:
            assert "the attackers' CPUs are spent" in "; ".join(result.harness.reasons)
    # The row and its page say it.
    row = trial_row(runner.trials[0], result)
    assert row.attacker_processes == 2 and row.attacker_processes_reason.startswith(reason)
    runner._log.close()  # the run directory it opened (run() would close them at its end)
    runner.opened.close()


def fake_result(config, cost: dict):
    """A finished trial whose one packet attacker reported `cost` (nothing else measured)."""
    from closebench.core.summary import summarize
    from closebench.trials.trial import TrialResult

    costs = {"scapy": cost}
    return TrialResult(
        config=config,
        attempts=[],
        legit_attempts=[],
        summaries={"scapy": summarize("scapy", [], 2.0, cost)},
        legit=None,
        samples=[],
        defender=None,
        sampler_overhead=None,
        server_stats={},
        server_log="",
        duration_s=2.0,
        complete=True,
        harness=harness_load(client_costs(costs, {})),
    )


@pytest.mark.needs_lab
@pytest.mark.parametrize("second", ["scapy", "volume with addresses"])
def test_two_packet_attackers_in_one_lab_agree_with_the_pcap(tmp_path, second):
    """A volume attacker beside a scapy one on the attacker's main address: each on its own
    ports, so every record joins its own connection in the capture, with the wire's class (on
    one shared range the records of one were joined to the other's connections: classes and
    ends disagreed). Beside another volume attacker with addresses of its own: both keep all
    the ports, each its own nft table (they once shared one, and the second's removal failed)."""
    from closebench.defender import ServerConfig
    from closebench.results.verify import verify_trial
    from closebench.servers.strategies import parse_spec
    from closebench.trials.trial import AttackerSpec, TrialConfig, run_trial

    policy = Policy(timeout=1, concurrency=10, rate=100.0, duration=2)
    other = (
        AttackerSpec("scapy", policy)
        if second == "scapy"
        else AttackerSpec("volume", policy, label="botnet", addresses=2)
    )
    pcap = tmp_path / "trial.pcap"
    config = TrialConfig(
        ServerConfig(8080, parse_spec("repair")),
        (AttackerSpec("volume", policy), other),
        legit=None,
        pcap=str(pcap),
    )
    result = run_trial(config)
    assert result.complete, result.faults
    agreement = verify_trial("repair", [a.to_dict() for a in result.attempts], pcap)
    assert agreement.ok, agreement.to_dict()
    first, then = (
        split_ports(SOURCE_PORTS, 2) if second == "scapy" else (SOURCE_PORTS, SOURCE_PORTS)
    )
    mine = {
        name: [a for a in result.attempts if a.attacker == name] for name in ("volume", other.name)
    }
    assert all(mine.values()), {name: len(found) for name, found in mine.items()}
    assert all(a.sport in first for a in mine["volume"])
    assert all(a.sport in then for a in mine[other.name])
    assert {a.src for a in mine["volume"]}.isdisjoint(a.src for a in mine[other.name]) == (
        second != "scapy"
    )

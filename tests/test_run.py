"""`closebench run` end to end: short versions of every shipped scenario, in real labs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.results.records import run_records
from closebench.servers.strategies import PEER_STRATEGIES, parse_spec
from closebench.trials.runner import Runner
from closebench.trials.scenario import find_scenario, load_scenario
from tests.conftest import figures_not_drawn, our_keepers, wait_until
from tests.test_peers import skip_missing_peer


def run(
    name: str,
    out,
    duration: float,
    strategies: tuple[str, ...] = (),
    verify: bool = True,
):
    """The shipped scenario, shortened, and with only `strategies` (all when empty); verify=False
    where the test reads no wire agreement (reading a big pcap costs seconds per trial)."""
    path = find_scenario(name)
    scenario, text, digest = load_scenario(path)
    update: dict = {"duration": duration}
    if strategies:
        update["strategies"] = [s for s in scenario.strategies if s.strategy in strategies]
        assert len(update["strategies"]) == len(strategies), scenario.strategies
    scenario = scenario.model_copy(update=update)
    outcome = Runner(scenario, text, digest, path, out, verify=verify).run()
    assert outcome.complete, outcome.errors
    return outcome, {row.trial: row for row in outcome.rows}


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    with figures_not_drawn():  # its tests read the page's text, no figure
        return run("seed", tmp_path_factory.mktemp("reports"), duration=8)


@pytest.mark.needs_lab
def test_seed_silence_slows_the_spammer(seed):
    _, rows = seed
    silent = max(rows[s].attempts_per_s for s in ("repair", "never", "tarpit"))
    for loud in ("graceful", "rst", "ttl-drop"):
        assert rows[loud].attempts_per_s > 20 * silent, (loud, rows[loud].attempts_per_s, silent)
    quiet = ("repair", "never", "tarpit", "ttl-drop (via router)", "rst-ttl (via router)")
    for name in (*quiet, "zero-window"):
        assert set(rows[name].outcomes) == {"silent"}, (name, rows[name].outcomes)


@pytest.mark.needs_lab
def test_seed_costs_are_measured(seed):
    _, rows = seed
    for row in rows.values():
        assert row.legit_success_rate == 1.0, row.trial
        assert row.peak_fds > 0 and row.cpu_seconds is not None
        assert row.sampler_overhead is not None
    # A thread per socket shows in the thread count; the reaper keeps one thread.
    assert rows["delayed-thread"].peak_threads > rows["delayed-reaper"].peak_threads
    # The FIN that dies at the router leaves an orphan the fd count cannot see.
    assert rows["ttl-drop (via router)"].peak_orphans > 0
    assert rows["ttl-drop (via router)"].retransmissions > 0
    assert rows["repair"].peak_orphans == 0


@pytest.mark.needs_lab
def test_seed_run_directory(seed):
    outcome, rows = seed
    directory = outcome.directory
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["schema"] == "closebench.summary/2" and summary["complete"] is True
    assert summary["meta"]["scenario_name"] == "seed"
    assert summary["meta"]["capabilities"]["CAP_NET_ADMIN"] is True
    assert [r["trial"] for r in summary["rows"]] == list(rows)
    attempts = run_records(directory)  # attempts/<trial>.parquet, written while each trial ran
    assert sorted(p.name for p in (directory / "attempts").iterdir()) == sorted(
        p.with_suffix(".parquet").name for p in (directory / "pcaps").iterdir()
    )
    spam = [a for a in attempts if a["attacker"] != "legit"]
    assert len(spam) == sum(row.attempts for row in rows.values())
    with (directory / "samples.csv").open() as samples:
        trials = {row["trial"] for row in csv.DictReader(samples)}
    assert trials == set(rows)
    pcaps = list((directory / "pcaps").glob("*.pcap"))
    assert len(pcaps) == len(rows) and all(p.stat().st_size > 24 for p in pcaps)
    assert (directory / "scenario.toml").read_text().startswith("# The seed's case")
    assert (directory.parent / "latest").resolve() == directory.resolve()
    assert "graceful: done" in (directory / "run.log").read_text()
    # Every record proved against the pcaps by the second reader (closebench verify).
    wire = summary["wire_agreement"]
    assert wire["ok"], wire
    assert wire["records"] == wire["joined"] == len(attempts) and wire["class_mismatches"] == 0
    assert wire["end_delta_p95_s"] <= 0.002 and wire["missing_in_records"] == 0
    assert all(row["wire_agreement"]["ok"] for row in summary["rows"])
    assert "records agree with the wire" in (directory / "index.html").read_text()


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    for name in PEER_STRATEGIES:
        skip_missing_peer(parse_spec(name))
    return run("peers", tmp_path_factory.mktemp("reports"), duration=4)


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_peers_are_ranked_with_the_reference_strategies(peers):
    _, rows = peers
    for name in ("repair", "tarpit", "haproxy-silent-drop", "haproxy-tarpit", "endlessh"):
        assert set(rows[name].outcomes) == {"silent"}, (name, rows[name].outcomes)
    assert set(rows["haproxy-reject"].outcomes) == {"rst"}
    assert set(rows["nginx-444"].outcomes) == {"fin"}
    assert rows["nginx-444"].attempts_per_s > 5 * rows["haproxy-silent-drop"].attempts_per_s
    for row in rows.values():
        assert row.peak_fds > 0 and row.cpu_seconds is not None
        # endlessh serves no one; every other peer hands `/` to its backend.
        assert row.legit_success_rate == (0.0 if row.trial == "endlessh" else 1.0), row.trial
    # A proxy, its workers and its backend: more fds than the reference server's one process.
    assert rows["haproxy-silent-drop"].peak_fds > rows["repair"].peak_fds
    claimed = rows["endlessh"].server_stats
    assert claimed["attacker_connections_claimed"] >= 1
    assert claimed["attacker_trapped_s_claimed"] >= claimed["attacker_connected_s"]


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_peers_configs_and_claims_stay_with_the_run(peers):
    outcome, _ = peers
    kept = outcome.directory / "peers"
    assert "http-request silent-drop" in (kept / "haproxy-silent-drop" / "haproxy.cfg").read_text()
    assert "TOTALS" in (kept / "endlessh" / "endlessh.stdout").read_text()
    page = (outcome.directory / "index.html").read_text()
    assert "endlessh&#39;s log claims" in page or "endlessh's log claims" in page


@pytest.mark.needs_lab
def test_fd_exhaustion_only_never_stops_serving(tmp_path):
    # The strategies that hold sockets longest beside `never` and one that closes at once.
    held = ("graceful", "never", "delayed-thread", "tarpit")
    with figures_not_drawn():
        _, rows = run("fd-exhaustion", tmp_path, duration=8, strategies=held, verify=False)
    assert rows["never"].peak_fds >= 1000
    assert rows["never"].legit_success_rate < 0.9
    assert rows["never"].server_stats["refused_emfile"] > 0
    for name, row in rows.items():
        if name != "never":
            assert row.legit_success_rate >= 0.95, (name, row.legit_success_rate)


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_read_first_shows_the_trap(tmp_path):
    _, rows = run("read-first", tmp_path, duration=6)
    assert set(rows["repair"].outcomes) == {"silent"}
    late = rows["repair:read_first=false"].attackers["late"]
    assert set(late["outcomes"]) == {"rst"}


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
def test_ttl_drop_needs_the_router(tmp_path):
    _, rows = run("ttl-drop", tmp_path, duration=6)
    assert set(rows["ttl-drop (direct)"].outcomes) == {"fin"}
    assert set(rows["ttl-drop (via router)"].outcomes) == {"silent"}
    assert set(rows["repair (via router)"].outcomes) == {"silent"}
    assert rows["ttl-drop (via router)"].peak_orphans > 0
    assert rows["repair (via router)"].peak_orphans == 0


# SIGTERM is what `timeout`, systemd and a cancelled CI job send: it must stop like Ctrl-C.
@pytest.mark.needs_lab
# The default suite keeps Ctrl-C here; SIGTERM's path is the same handler, tested on the probe
# (test_cli.py) and the Locust engine in the default suite, and here with -m slow.
@pytest.mark.parametrize(
    "stop",
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_keeps_what_was_measured(tmp_path, stop):
    run_command = [sys.executable, "-m", "closebench.cli", "run", "seed", "--out", str(tmp_path)]
    process = subprocess.Popen(run_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Interrupt once attacks are under way: graceful's capture holds several finished
        # exchanges (a silent strategy's bytes could all be attempts still hanging).
        def exchanged() -> bool:
            return any(p.stat().st_size > 5000 for p in tmp_path.glob("*/pcaps/graceful.pcap"))

        assert wait_until(exchanged, timeout=60)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert summary["complete"] is False
    assert len(summary["rows"]) == 11
    assert any(row["attempts"] > 0 for row in summary["rows"])
    # Ctrl-C builds the page; SIGTERM leaves it to `closebench report`, to end within seconds.
    assert (tmp_path / "latest" / "index.html").is_file() == (stop == signal.SIGINT)
    assert wait_until(lambda: not our_keepers())


def path_without(tmp_path, program: str) -> str:
    """A PATH that finds every program of this one except `program`: links in one directory."""
    links = tmp_path / "bin"
    links.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for entry in sorted(Path(directory).glob("*")) if Path(directory).is_dir() else []:
            target = links / entry.name
            if entry.name != program and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    return str(links)


# A missing peer is skipped outside CI, and its row says so: a reader of the run can tell it was
# asked for. HAProxy is hidden from a real run by a PATH without it.
@pytest.mark.needs_lab
def test_a_skipped_peer_keeps_its_row(tmp_path):
    scenario = tmp_path / "skip.toml"
    scenario.write_text(
        'name = "skip"\nduration = 2\nstrategies = ["graceful", "haproxy-reject"]\n'
        '[[attackers]]\nkind = "kernel"\ntimeout = 1\nrate = 5\n'
    )
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment["PATH"] = path_without(tmp_path, "haproxy")
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "closebench.cli", "run", str(scenario), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "closebench: warning: haproxy is not installed, and haproxy-reject run(s) it: install the "
        "package haproxy: apt-get install haproxy, or ./setup.sh, which installs everything "
        "closebench uses; skipped"
    ], result.stderr
    error = "skipped: haproxy is not installed (apt-get install haproxy)"
    summary = json.loads((out / "latest" / "summary.json").read_text())
    assert summary["complete"] is True  # nothing was cut short; the row tells the skip
    rows = {row["trial"]: row for row in summary["rows"]}
    assert rows["graceful"]["complete"] and rows["graceful"]["attempts"] > 0
    skipped = rows["haproxy-reject"]
    assert (skipped["complete"], skipped["error"], skipped["attempts"]) == (False, error, 0)
    assert "haproxy-reject" in result.stdout and "skipped:" in result.stdout  # a narrow column
    assert error in (out / "latest" / "summary.md").read_text()
    assert error in (out / "latest" / "index.html").read_text()
    assert f"haproxy-reject: {error}" in (out / "latest" / "run.log").read_text()
    # Nothing of it was started or written: no capture, no attempts, no peer config.
    assert [p.name for p in (out / "latest" / "pcaps").iterdir()] == ["graceful.pcap"]
    assert not (out / "latest" / "peers").exists()
    assert [p.name for p in (out / "latest" / "attempts").iterdir()] == ["graceful.parquet"]
    assert wait_until(lambda: not our_keepers())

"""The Locust engine in real labs: workers that are machines of their own, the attempts they send
the master, a worker lost mid-run, nothing left behind, and the many-machine recipe against a lab
host that plays a server outside the lab. Every target is a lab address."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from closebench.attackers.policy import Policy
from closebench.defender import Defender, ServerConfig
from closebench.lab import Lab
from closebench.servers.strategies import parse_spec
from closebench.trials.runner import Runner
from closebench.trials.scenario import find_scenario, load_scenario
from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial
from closebench.wire.pcap import Endpoint, connections
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
CLOSEBENCH = [sys.executable, "-m", "closebench.cli"]


@pytest.fixture(autouse=True)
def locust_installed():
    if importlib.util.find_spec("locust") is None:
        reason = "the extra closebench[locust] is not installed (./setup.sh --install installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the Locust engine: {reason}")
        pytest.skip(reason)
    yield
    # Locust patches the standard library for gevent when imported: only its own processes may.
    assert "locust" not in sys.modules and "gevent.monkey" not in sys.modules


def closebench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLOSEBENCH, *args], capture_output=True, text=True, timeout=timeout)


def locust_processes() -> list[psutil.Process]:
    """Locust masters and workers of this test run (or orphaned ones)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "closebench.attackers.locust." not in cmdline and "locustfile.py" not in cmdline:
            continue
        try:
            if process.ppid() == 1 or any(p.pid == os.getpid() for p in process.parents()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


@contextlib.contextmanager
def attacking(*args: str) -> Iterator[subprocess.Popen]:
    """`closebench attack --engine locust ARGS --json` running; killed and reaped at the end."""
    command = [*CLOSEBENCH, "attack", "--engine", "locust", *args, "--json"]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield runner
    finally:
        runner.kill()
        runner.communicate()


def locust_config(strategy: str, policy: Policy, workers: int = 2, **more) -> TrialConfig:
    spec = AttackerSpec("kernel", policy, engine="locust", workers=workers, label="bots")
    return TrialConfig(ServerConfig(8080, parse_spec(strategy)), (spec,), **more)


# bad input: one line, exit 2, nothing started (no lab needed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers 0: give at least 1 worker"),
        (["--workers", "8"], "the lab hosts 7 workers at most"),
        (["-a", "scapy"], "--engine locust runs the kernel attacker's policy"),
        (["--master-bind", "127.0.0.1:5557"], "--master-bind goes with --target"),
    ],
)
def test_bad_locust_input_is_one_error(args, message):
    result = closebench("attack", "-s", "graceful", "--engine", "locust", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--routed"], "--routed puts a lab router"),
        (["-s", "graceful"], "give no --strategy or command"),
        (["--workers", "3", "--local-workers", "1"], "give --master-bind ADDRESS:PORT"),
        (["--local-workers", "2"], "--local-workers 2: give 0 to --workers (1)"),
    ],
)
def test_bad_target_input_is_one_error(args, message):
    result = closebench("attack", "--engine", "locust", "--target", "198.18.0.2:8080", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_locust_options_need_the_engine():
    result = closebench("attack", "-s", "graceful", "--workers", "2")
    assert result.returncode == 2 and "--workers goes with --engine locust" in result.stderr


def test_missing_extra_names_it():
    hide = "import sys; sys.modules['locust'] = None; from closebench.cli import main; "
    argv = ["attack", "-s", "graceful", "--engine", "locust"]
    result = subprocess.run(
        [sys.executable, "-c", hide + f"sys.exit(main({argv!r}))"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "pip install 'closebench[locust]'" in result.stderr


def test_scenario_checks_the_locust_keys(tmp_path):
    base = 'name = "x"\nstrategies = ["graceful"]\n[[attackers]]\n'
    cases = {
        'kind = "scapy"\nengine = "locust"\n': 'runs kind = "kernel"',
        "workers = 2\n": 'workers goes with engine = "locust"',
        'engine = "locust"\naddresses = 5\n': 'addresses goes with engine = "local"',
        'engine = "locust"\nworkers = 0\n': "greater than or equal to 1",
        'engine = "locust"\nworkers = 4\n[[attackers]]\nengine = "locust"\nworkers = 4\n': (
            "ask for 8 workers together"
        ),
    }
    for body, message in cases.items():
        path = tmp_path / "s.toml"
        path.write_text(base + body)
        result = closebench("run", str(path), "--out", str(tmp_path / "reports"))
        assert result.returncode == 2, body
        assert message in result.stderr, (body, result.stderr)
    assert not (tmp_path / "reports").exists()


def test_report_shows_each_worker_and_a_lost_one(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests/data/20261129-215532-report-sample", run)
    summary = json.loads((run / "summary.json").read_text())
    row = summary["rows"][0]
    workers = [
        {"worker": "attacker-2", "host": "vm", "addresses": ["198.18.0.3"], "attempts": 151,
         "attempts_per_s": 5.03, "hang_median_s": 0.0, "outcomes": {"fin": 151},
         "lost_s": None, "lost": None},
        {"worker": "attacker-3", "host": "vm", "addresses": ["198.18.0.4"], "attempts": 42,
         "attempts_per_s": 1.4, "hang_median_s": 0.0, "outcomes": {"fin": 42},
         "lost_s": 3.14, "lost": "killed by SIGKILL"},
    ]  # fmt: skip
    row["attackers"]["kernel"]["attacker_cost"]["workers"] = workers
    (run / "summary.json").write_text(json.dumps(summary))
    result = closebench("report", str(run))
    assert result.returncode == 0, result.stderr
    page = (run / "index.html").read_text()
    assert "<h3>Locust workers</h3>" in page
    assert (
        ">5.03<" in page and ">198.18.0.4<" in page and ">lost 3.1 s in: killed by SIGKILL<" in page
    )
    assert "attacker-3 (lost 3.1 s in: killed by SIGKILL, 42 attempts kept)" in page
    markdown = (run / "summary.md").read_text()
    assert "| graceful | kernel | attacker-2 | 198.18.0.3 | 151 | 5.03 | fin 151 |  |" in markdown


# the engine in the lab


@pytest.mark.needs_lab
@pytest.mark.timeout(180)
def test_graceful_gets_fin_from_both_workers_and_nothing_is_left(tmp_path):
    records = tmp_path / "attempts.jsonl"
    prefix = tmp_path / "locust"
    result = closebench(
        "attack", "-s", "graceful", "--engine", "locust", "--workers", "2", "--duration", "5",
        "--rate", "60", "--json", "--records", str(records), "--locust-csv", str(prefix),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["engine"] == "locust"
    summary = document["summary"]
    assert set(summary["outcomes"]) == {"fin"} and summary["attempts"] >= 200
    workers = summary["attacker_cost"]["workers"]
    assert [w["worker"] for w in workers] == ["attacker-2", "attacker-3"]
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    by_source = Counter(line["src"] for line in lines if line["attacker"] != "legit")
    for worker in workers:
        [address] = worker["addresses"]
        assert by_source[address] == worker["attempts"] >= 100, (worker, by_source)
        assert worker["lost"] is None and worker["attempts_per_s"] > 10
    assert sum(by_source.values()) == summary["attempts"]
    # Locust's own stats saw every attempt as a request named after its outcome.
    with open(f"{prefix}_stats.csv") as stream:
        stats = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(stream)}
    assert stats["fin"] == summary["attempts"]
    assert not locust_processes()


@pytest.mark.needs_lab
@pytest.mark.timeout(120)
def test_repair_leaves_both_workers_hanging(tmp_path):
    policy = Policy(timeout=2.0, concurrency=2, duration=4.0)
    pcap = tmp_path / "wire.pcap"
    result = run_trial(locust_config("repair", policy, pcap=str(pcap), legit=None))
    summary = result.summaries["bots"]
    assert set(summary.outcomes) == {"silent"}
    assert summary.hang_median_s >= 2.0
    workers = summary.attacker_cost["workers"]
    # 2 slots each, reconnecting after each 2 s timeout, for 4 s: 4 attempts a worker.
    assert [w["attempts"] for w in workers] == [4, 4]
    # The capture at the switch port towards the defender saw each worker's connections.
    server = Endpoint(result.attempts[0].dst, 8080)
    seen = Counter(client.address for client, _ in connections(str(pcap), server))
    for worker in workers:
        assert seen[worker["addresses"][0]] == 4
    assert not locust_processes()


@pytest.mark.needs_lab
@pytest.mark.timeout(120)
def test_a_worker_killed_mid_run_is_reported_and_the_others_go_on():
    policy = Policy(timeout=2.0, rate=50, duration=8.0)
    config = locust_config("graceful", policy, legit=LegitClient(rate=2))
    cancel = threading.Event()
    sources: Counter[str] = Counter()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_trial, config, cancel, lambda a: sources.update([a.src]))
        assert wait_until(lambda: sum(n >= 20 for n in sources.values()) >= 2, timeout=60)
        victim = _worker_process("attacker-3")
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)
        result = future.result(timeout=90)
    assert result.complete
    workers = {w["worker"]: w for w in result.summaries["bots"].attacker_cost["workers"]}
    lost, alive = workers["attacker-3"], workers["attacker-2"]
    assert lost["lost"] == "killed by SIGKILL"
    started = min(a.t_syn for a in result.attempts)  # the attack's start, within milliseconds
    # When: once it died (not before), and within the 8 s attack.
    assert killed_at - started - 0.1 <= lost["lost_s"] < 8
    assert alive["lost"] is None and lost["attempts"] >= 20  # what it sent before is kept
    assert lost["attempts"] < 300  # and it sent no more: it did stop (8 s at 50/s is 400)
    # The other worker attacked on to the end of its 8 s at 50 attempts/s.
    late = [a for a in result.attempts if a.src == alive["addresses"][0] and a.t_syn > killed_at]
    assert late and max(a.t_syn for a in late) > started + 6
    assert alive["attempts"] >= 300
    assert not locust_processes()


def _worker_process(host_role: str) -> psutil.Process:
    """The Locust worker running in the lab host `host_role` (not its launcher, lab/nsexec.py)."""
    for process in locust_processes():
        cmdline = process.cmdline()
        if cmdline[1:3] == ["-m", "closebench.attackers.locust.worker"] and host_role in cmdline:
            return process
    raise AssertionError(f"no worker in {host_role}")


@pytest.mark.needs_lab
@pytest.mark.timeout(120)
def test_sigkill_of_closebench_leaves_no_locust_process():
    args = ("-s", "repair", "--workers", "2", "--duration", "60", "--timeout", "5")
    with attacking(*args) as runner:
        assert wait_until(lambda: len(locust_processes()) >= 3, timeout=60)  # a master, 2 workers
        time.sleep(2)  # the attack is under way
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert wait_until(lambda: not locust_processes(), timeout=10), locust_processes()


@pytest.mark.needs_lab
@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", ["starting", "attacking"])
def test_sigterm_stops_cleanly_and_keeps_what_was_measured(when):
    # --rate: an uncapped graceful attack makes ~4,000 attempts/s, whose reading costs ~40 s
    with attacking(
        "-s", "graceful", "--workers", "2", "--duration", "60", "--rate", "100"
    ) as runner:
        workers = 2 if when == "attacking" else 0
        assert wait_until(lambda: len(locust_processes()) >= 1 + workers, timeout=60)
        if when == "attacking":
            time.sleep(3)
        runner.send_signal(signal.SIGTERM)
        stdout, stderr = runner.communicate(timeout=30)
        assert runner.returncode == 130, stderr
        document = json.loads(stdout)
        assert document["complete"] is False
        if when == "attacking":
            assert document["summary"]["outcomes"]["fin"] > 100
        assert wait_until(lambda: not locust_processes(), timeout=10), locust_processes()


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
@pytest.mark.timeout(120)
def test_locust_web_ui_shows_the_attack_live():
    with attacking("-s", "graceful", "--locust-ui", "--duration", "8") as runner:
        stats = {}

        def fin_requests() -> bool:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8089/stats/requests", timeout=2) as r:
                    stats.update(json.load(r))
            except OSError:
                return False
            return any(s["name"] == "fin" and s["num_requests"] > 0 for s in stats["stats"])

        assert wait_until(fin_requests, timeout=60, interval=0.5), stats
        _, stderr = runner.communicate(timeout=60)
        assert runner.returncode == 0, stderr
        assert b"http://127.0.0.1:8089/" in stderr


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
@pytest.mark.timeout(240)
def test_scenario_with_locust_reports_per_worker_rates(tmp_path):
    path = find_scenario("locust")
    scenario, text, digest = load_scenario(path)
    attackers = [a.model_copy(update={"timeout": 2.0}) for a in scenario.attackers]
    update = {"duration": 4.0, "strategies": scenario.strategies[:2], "attackers": attackers}
    scenario = scenario.model_copy(update=update)
    outcome = Runner(scenario, text, digest, path, tmp_path).run()
    assert outcome.complete, outcome.errors
    rows = {row.trial: row for row in outcome.rows}
    assert set(rows["graceful"].outcomes) == {"fin"} and set(rows["repair"].outcomes) == {"silent"}
    workers = rows["graceful"].attackers["kernel"]["attacker_cost"]["workers"]
    assert len(workers) == 2 and all(w["attempts_per_s"] > 5 for w in workers)
    page = (outcome.directory / "index.html").read_text()
    assert "Locust workers" in page
    for worker in workers:
        assert f"{worker['attempts_per_s']:.2f}" in page and worker["addresses"][0] in page
    assert "| attacker-2 |" in (outcome.directory / "summary.md").read_text()
    assert (outcome.directory / "locust" / "graceful_stats.csv").is_file()
    assert not locust_processes()


# many machines: a lab host plays the server outside the lab


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
@pytest.mark.timeout(240)
def test_remote_target_recipe_with_server_samples(tmp_path):
    locustfile = closebench("locust-worker", "--locustfile").stdout.strip()
    assert Path(locustfile).is_file()
    with Lab(attacker_hosts=3) as lab:
        defender = Defender(lab, ServerConfig(8080, parse_spec("graceful")))
        sampler = subprocess.Popen(
            [*CLOSEBENCH, "sample", "--pid", str(defender.server_pid), "--out", str(tmp_path / "s")]
        )
        try:
            master = f"{lab.attacker_ip(4)}:5557"
            target = f"{lab.defender_ip(4)}:8080"
            attack = lab.attacker.spawn(
                [*CLOSEBENCH, "attack", "--engine", "locust", "--target", target, "--workers", "3",
                 "--local-workers", "1", "--master-bind", master, "--duration", "4",
                 "--out", str(tmp_path / "reports"), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            assert wait_until(lambda: lab.attacker.listening(5557), timeout=60)
            # Two more machines: closebench's own worker command, and Locust's with the
            # shipped locustfile.
            lab.more_attackers[0].spawn([*CLOSEBENCH, "locust-worker", "--master", master])
            locust = [str(Path(sys.executable).with_name("locust")), "-f", locustfile, "--worker"]
            locust += ["--master-host", lab.attacker_ip(4), "--master-port", "5557"]
            lab.more_attackers[1].spawn(["env", "CLOSEBENCH_WORKER=locust-cli", *locust])
            stdout, stderr = attack.communicate(timeout=120)
            assert attack.returncode == 0, stderr
        finally:
            time.sleep(0.5)
            sampler.send_signal(signal.SIGTERM)
            sampler.wait(10)
            defender.stop()
            defender.close()
    summary = json.loads(stdout)["summary"]
    assert set(summary["outcomes"]) == {"fin"}
    workers = summary["attacker_cost"]["workers"]
    addresses = {w["addresses"][0]: w for w in workers}
    assert set(addresses) == {lab.addressing.attacker_host(4, i) for i in range(3)}
    assert "locust-cli" in {w["worker"] for w in workers}
    assert all(w["attempts"] >= 20 for w in workers)
    [run] = [p for p in (tmp_path / "reports").iterdir() if p.name != "latest"]
    before = json.loads((run / "summary.json").read_text())["rows"][0]
    assert before["peak_fds"] is None  # the attacker side only, until the server's samples
    merged = closebench("report", str(run), "--samples", str(tmp_path / "s"))
    assert merged.returncode == 0, merged.stderr
    row = json.loads((run / "summary.json").read_text())["rows"][0]
    assert row["peak_fds"] >= 1 and row["cpu_seconds"] > 0 and row["peak_sockets"] >= 1
    with (run / "samples.csv").open() as stream:
        samples = list(csv.DictReader(stream))
    assert len(samples) >= 30 and {s["trial"] for s in samples} == {before["trial"]}
    assert float(samples[0]["t"]) == 0.0

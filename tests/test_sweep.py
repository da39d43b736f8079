"""Sweeps: a scenario's [sweep] becomes a trial per strategy and step, breaking points come from
the rows, `closebench check` reads them, and bad sweep input is one clear error (exit 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.cli import main
from closebench.results.breaking_points import (
    Thresholds,
    bracket_text,
    breaking_points,
    moved,
    moved_points,
    status_of,
)
from closebench.results.run_directory import load_run
from closebench.trials.runner import trial_chains
from closebench.trials.scenario import load_scenario
from tests.test_compare_check import row, write_run

SWEEP = """
name = "s"
strategies = ["never", "repair"]
[server]
nofile = 256
[[attackers]]
kind = "kernel"
timeout = 2
[sweep]
axis = "concurrency"
steps = [20, 100, 400]
"""


def scenario_file(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_sweep_is_a_trial_per_strategy_and_step(tmp_path):
    scenario, _, _ = load_scenario(scenario_file(tmp_path, SWEEP))
    trials = scenario.trials()
    assert [t.name for t in trials] == [
        "never @ concurrency 20",
        "never @ concurrency 100",
        "never @ concurrency 400",
        "repair @ concurrency 20",
        "repair @ concurrency 100",
        "repair @ concurrency 400",
    ]
    assert [t.attackers[0].policy.concurrency for t in trials] == [20, 100, 400] * 2
    assert [t.step for t in trials] == [20, 100, 400] * 2
    assert {t.series for t in trials} == {"never", "repair"}
    # A strategy's steps run one after another: one chain per series, in step order.
    assert trial_chains(trials) == [[0, 1, 2], [3, 4, 5]]


def test_a_rate_sweep_sets_every_attackers_rate(tmp_path):
    text = SWEEP.replace('axis = "concurrency"', 'axis = "rate"').replace(
        "[20, 100, 400]", "[0.5, 5]"
    )
    scenario, _, _ = load_scenario(scenario_file(tmp_path, text))
    assert [t.attackers[0].policy.rate for t in scenario.trials()] == [0.5, 5, 0.5, 5]


def test_without_a_sweep_every_trial_is_its_own_chain(tmp_path):
    text = SWEEP.split("[sweep]")[0]
    scenario, _, _ = load_scenario(scenario_file(tmp_path, text))
    assert trial_chains(scenario.trials()) == [[0], [1]]
    assert all(t.step is None and t.series is None for t in scenario.trials())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('axis = "concurrency"', 'axis = "bots2"'), "key 'sweep.axis': Input should be"),
        (("[20, 100, 400]", "[]"), "key 'sweep.steps': List should have at least 1 item"),
        (("[20, 100, 400]", "[100, 20]"), "key 'sweep.steps': steps must be sorted ascending"),
        (("[20, 100, 400]", "[20, 20]"), "key 'sweep.steps': steps must be sorted ascending"),
        (
            ("[20, 100, 400]", str(list(range(1, 14)))),
            "key 'sweep.steps': List should have at most 12 items",
        ),
        (("[20, 100, 400]", "[1.5, 2]"), "concurrency steps are whole numbers"),
        (("[20, 100, 400]", "[20, 30000]"), "sweep step concurrency = 30000 does not fit"),
        (("[sweep]", "[sweep]\nbreak_legit_success = 2"), "key 'sweep.break_legit_success'"),
        (("[sweep]", "[sweep]\nbreak_at = 2"), "unknown key 'sweep.break_at'; allowed here: axis"),
        (
            ("[sweep]", "[defender.sysctl]\ntcp_syn_retries = 2\n[sweep]"),
            "key 'defender.sysctl': tcp_syn_retries: not a knob closebench sets; allowed: "
            "tcp_orphan_retries",
        ),
        (
            ("[sweep]", "[defender.sysctl]\ntcp_max_orphans = 100\n[sweep]"),
            "tcp_max_orphans: net.ipv4.tcp_max_orphans is machine-wide",
        ),
        (
            ("[sweep]", "[defender.sysctl]\ntcp_fin_timeout = -1\n[sweep]"),
            "tcp_fin_timeout: must be a whole number",
        ),
    ],
)
def test_bad_sweep_input_is_one_error_naming_the_key(tmp_path, capsys, change, message):
    path = scenario_file(tmp_path, SWEEP.replace(*change))
    out = tmp_path / "reports"
    assert main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_sweep_input_exits_2_from_the_command_line(tmp_path):
    path = scenario_file(tmp_path, SWEEP.replace('"concurrency"', '"bots2"'))
    result = subprocess.run(
        [sys.executable, "-m", "closebench.cli", "run", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "key 'sweep.axis'" in result.stderr


def step_row(series: str, step: float, **figures) -> dict:
    return row(f"{series} @ concurrency {step:g}", series, step=step, series=series, **figures)


SWEPT = [
    step_row("never", 20),
    step_row("never", 100, legit_success_rate=0.5, server_errors=40),
    step_row("never", 400, legit_success_rate=0.1),
    step_row("repair", 20),
    step_row("repair", 100, legit_latency_p95_s=0.5),
    step_row("repair", 400),
    step_row("slow", 20, legit_latency_p95_s=1.5),
    step_row("slow", 100, legit_latency_p95_s=3.0),
]


def test_breaking_point_is_the_first_step_that_broke_and_says_why():
    points = breaking_points(SWEPT, "concurrency", Thresholds())
    assert points["never"]["value"] == 100
    assert points["never"]["axis"] == "concurrency"
    assert "legitimate success 50.0% < 99.0%" in points["never"]["reason"]
    assert "40 server errors" in points["never"]["reason"]
    assert points["never"]["status"] == "broke" and points["never"]["held_up_to"] == 20
    assert points["never"]["reason"].startswith("concurrency 100: legitimate success")
    assert points["repair"] == {
        "axis": "concurrency",
        "value": None,
        "reason": "held at every step (concurrency 20, 100, 400)",
        "steps_judged": 3,
        "status": "held",
        "held_up_to": 400,
        "inconclusive_from": None,
    }
    assert points["slow"]["value"] == 20 and points["slow"]["held_up_to"] is None
    assert points["slow"]["reason"] == "concurrency 20: legitimate p95 latency 1.50 s > 1 s"


def test_thresholds_move_the_breaking_point():
    lenient = Thresholds(legit_success=0.4, latency_s=2.0, server_errors=100)
    points = breaking_points(SWEPT, "concurrency", lenient)
    assert points["never"]["value"] == 400
    assert points["slow"]["value"] == 100


LIMITED = {
    "harness_limited": True,
    "harness_limited_reason": "the attackers' event loop ran 0.40 s late (p95)",
}
BUSY = {"cpu_foreign_reason": "something outside the run used 60% of the defender's CPUs (0)"}


def test_a_limited_step_is_inconclusive_whatever_the_server_did():
    # The old rule kept a limited step's server errors as a break: a late attacker holds a
    # read-first server's fds, so they may be the harness's. Inconclusive, with the reason.
    rows = [
        step_row("never", 20),
        step_row("never", 100),
        step_row("never", 400, server_errors=90, legit_success_rate=0.3, **LIMITED),
    ]
    [point] = breaking_points(rows, "concurrency", Thresholds()).values()
    assert point["status"] == "inconclusive" and point["value"] is None
    assert (point["held_up_to"], point["inconclusive_from"], point["steps_judged"]) == (100, 400, 2)
    assert point["reason"] == (
        "concurrency 400 harness-limited (the attackers' event loop ran 0.40 s late (p95))"
    )
    assert bracket_text(point) == "held up to 100, inconclusive from concurrency 400"
    # The same step measured cleanly breaks: the rule tells the two apart.
    rows[2] = step_row("never", 400, server_errors=90, legit_success_rate=0.3)
    [point] = breaking_points(rows, "concurrency", Thresholds()).values()
    assert (point["status"], point["value"], point["held_up_to"]) == ("broke", 400, 100)


def test_a_busy_machine_makes_a_step_inconclusive_and_a_held_step_too():
    rows = [step_row("repair", 20), step_row("repair", 100, **BUSY), step_row("repair", 400)]
    # Judged at 400 above the busy step: it held at the higher load, the gap is named.
    [point] = breaking_points(rows, "concurrency", Thresholds()).values()
    assert (point["status"], point["held_up_to"], point["inconclusive_from"]) == ("held", 400, None)
    assert "not counted below: concurrency 100 machine busy (something outside" in point["reason"]
    rows[2] = step_row("repair", 400, **BUSY)
    [point] = breaking_points(rows, "concurrency", Thresholds()).values()
    assert (point["status"], point["held_up_to"], point["inconclusive_from"]) == (
        "inconclusive",
        20,
        100,
    )
    assert "concurrency 400 machine busy" in point["reason"]


def test_a_break_above_steps_not_judged_is_a_wide_bracket():
    rows = [
        step_row("rst", 20),
        step_row("rst", 100, error="lab failed"),
        step_row("rst", 400, legit_success_rate=0.2),
    ]
    [point] = breaking_points(rows, "concurrency", Thresholds()).values()
    assert (point["status"], point["value"], point["held_up_to"], point["inconclusive_from"]) == (
        "broke",
        400,
        20,
        100,
    )
    assert point["reason"] == (
        "concurrency 400: legitimate success 20.0% < 99.0% (60 requests); "
        "not judged: concurrency 100 failed (lab failed)"
    )
    # No step measured the server: inconclusive, and `holds` cannot pass on it.
    [point] = breaking_points(rows[1:2], "concurrency", Thresholds()).values()
    assert point["status"] == "inconclusive" and point["steps_judged"] == 0
    assert point["reason"] == "concurrency 100 failed (lab failed)"
    assert bracket_text(point) == "no step held, inconclusive from concurrency 100"


def test_bracket_text_reads_old_and_new_points():
    new = breaking_points(SWEPT, "concurrency", Thresholds())
    assert bracket_text(new["never"]) == "held up to 20, broke by concurrency 100"
    assert bracket_text(new["repair"]) == "held at every step"
    # summary/1 points have no status: read from value and steps_judged.
    assert bracket_text({"axis": "concurrency", "value": 100, "reason": ""}) == (
        "broke at concurrency 100"
    )
    old_unjudged = {"axis": "concurrency", "value": None, "reason": "", "steps_judged": 0}
    assert status_of(old_unjudged) == "inconclusive"
    assert status_of({"axis": "c", "value": None, "reason": "", "steps_judged": 2}) == "held"


def test_how_a_breaking_point_moved():
    assert moved(100, 20) == "worse"
    assert moved(None, 400) == "worse"
    assert moved(100, None) == "better"
    assert moved(100, 400) == "better"
    assert moved(None, None) == "same"
    held = {"status": "held", "value": None, "reason": "held"}
    unsure = {"status": "inconclusive", "value": None, "reason": "busy"}
    assert moved_points(held, unsure) == "inconclusive"
    assert moved_points(unsure, dict(unsure)) == "same"
    assert moved_points(held, {"status": "broke", "value": 400, "reason": "x"}) == "worse"


def sweep_run(directory, rows, points=None):
    path = write_run(directory, rows)
    summary = json.loads((path / "summary.json").read_text())
    summary["sweep"] = {"axis": "concurrency", "steps": [20, 100, 400]}
    summary["breaking_points"] = (
        points if points is not None else breaking_points(rows, "concurrency", Thresholds())
    )
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_breaking_points_are_read_back_and_damaged_ones_left_out(tmp_path):
    points = breaking_points(SWEPT, "concurrency", Thresholds())
    points["odd"] = {"axis": "concurrency", "value": "high", "reason": "?"}
    run = load_run(sweep_run(tmp_path / "run", SWEPT, points), records=False)
    assert run.breaking_points["never"]["value"] == 100
    assert "odd" not in run.breaking_points
    assert any("breaking point of 'odd'" in problem for problem in run.problems)
    assert run.sweep["axis"] == "concurrency"


def expect(tmp_path, text: str):
    path = tmp_path / "expect.toml"
    path.write_text(text)
    return str(path)


def test_check_holds_and_breaking_point_keys(tmp_path, capsys):
    run = sweep_run(tmp_path / "run", SWEPT)
    good = expect(
        tmp_path,
        "[never]\nbreaking_point_max = 400\nholds = false\n"
        "[repair]\nholds = true\nbreaking_point_min = 20\n",
    )
    assert main(["check", str(run), "--expect", good]) == 0
    bad = expect(
        tmp_path, "[never]\nbreaking_point_min = 400\n[repair]\nbreaking_point_max = 400\n"
    )
    assert main(["check", str(run), "--expect", bad]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 expectations failed" in out
    assert "held at every step" in out


def test_check_fails_an_inconclusive_bracket_with_its_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # the reasons on one line each
    rows = [
        step_row("repair", 20),
        step_row("repair", 100),
        step_row("repair", 400, **BUSY),
        step_row("never", 20),
        step_row("never", 100, **LIMITED),
        step_row("never", 400, server_errors=9),
    ]
    run = sweep_run(tmp_path / "run", rows)
    # held up to 100, inconclusive from 400: neither holds nor a bound passes silently.
    path = expect(tmp_path, "[repair]\nholds = true\nbreaking_point_min = 20\n")
    assert main(["check", str(run), "--expect", path]) == 1
    out = capsys.readouterr().out
    assert "expectations failed" in out and "inconclusive" in out
    assert "inconclusive from concurrency 400" in out and "machine busy" in out
    # never broke (by 400, judged), though 100 was not judged: the bracket is wide but a break.
    path = expect(tmp_path, "[never]\nholds = false\nbreaking_point_max = 400\n")
    assert main(["check", str(run), "--expect", path]) == 0


def test_check_breaking_point_of_a_run_without_a_sweep_fails(tmp_path, capsys):
    run = write_run(tmp_path / "run", [row("graceful")])
    assert (
        main(["check", str(run), "--expect", expect(tmp_path, "[graceful]\nholds = true\n")]) == 1
    )
    assert "not a sweep" in capsys.readouterr().out


def test_check_breaking_point_key_must_be_a_number(tmp_path, capsys):
    run = sweep_run(tmp_path / "run", SWEPT)
    path = expect(tmp_path, '[never]\nbreaking_point_max = "400"\n')
    assert main(["check", str(run), "--expect", path]) == 2
    assert "breaking_point_max must be a number" in capsys.readouterr().err


# In real labs.

DONE_WHEN = """
name = "sweep-done-when"
duration = 8
strategies = ["never", "repair", "graceful"]
[server]
nofile = 256
[[attackers]]
# No kind: the cheapest that does the job, the packet engine (trials/attacker_kinds.py).
timeout = 5
rate = 200
[legit]
rate = 5
timeout = 2
[sweep]
axis = "concurrency"
steps = [20, 100, 400]
"""


def run_done_when(tmp_path):
    from closebench.trials.runner import Runner

    path = scenario_file(tmp_path, DONE_WHEN)
    scenario, text, digest = load_scenario(path)
    load_before = os.getloadavg()
    outcome = Runner(scenario, text, digest, path, tmp_path / "reports").run()
    assert outcome.complete, outcome.errors
    assert [row.step for row in outcome.rows] == [20, 100, 400] * 3
    summary = json.loads((outcome.directory / "summary.json").read_text())
    assert summary["breaking_points"] == outcome.breaking_points
    assert summary["placement"]["text"]  # which CPUs each side had
    assert all(row.cpu_use.get("placement") == summary["placement"] for row in outcome.rows)
    # The packet engine, as many processes as kept up (or as the attackers' CPUs allowed).
    assert {row.attackers["scapy"]["attacker_cost"]["sources"] for row in outcome.rows} == {1}
    assert all(row.attacker_processes and row.attacker_processes_reason for row in outcome.rows)
    print(f"load average before and after: {load_before} {os.getloadavg()}")
    return outcome


def unjudged(trial_row) -> str | None:
    return trial_row.harness_limited_reason or trial_row.cpu_foreign_reason


def assert_no_break_blamed_on_the_strategy(outcome, series: str) -> None:
    """repair and graceful hold where measured; a step not measured is named with its reason."""
    point = outcome.breaking_points[series]
    assert point["status"] in ("held", "inconclusive"), point
    for step_result in (r for r in outcome.rows if r.series == series):
        if why := unjudged(step_result):
            assert f"concurrency {step_result.step:g} " in point["reason"], point
            assert why in point["reason"], point
    if all(not unjudged(r) for r in outcome.rows if r.series == series):
        assert point["status"] == "held" and point["steps_judged"] == 3, point


@pytest.mark.needs_lab
@pytest.mark.slow
@pytest.mark.timeout(600)  # 9 trials of 8 s; minutes on a loaded 2-core machine
def test_never_breaks_where_repair_and_graceful_hold(tmp_path):
    """The issue's done-when, honest about a shared machine: on an idle one every step is judged,
    `never` breaks by 400 and the others hold; under load a step may be inconclusive (with its
    reason), never a break blamed on the strategy."""
    outcome = run_done_when(tmp_path)
    never = outcome.breaking_points["never"]
    never_rows = [r for r in outcome.rows if r.series == "never"]
    if never["status"] == "broke":
        assert never["value"] <= 400, never
        broken = next(r for r in never_rows if r.step == never["value"])
        assert not unjudged(broken)  # a step the harness did not limit, on a quiet machine
        assert broken.server_stats["refused_emfile"] > 0  # the server's own count of its 503s
    else:  # only a step not judged may hide it
        assert never["status"] == "inconclusive" and any(unjudged(r) for r in never_rows), never
    for series in ("repair", "graceful"):
        assert_no_break_blamed_on_the_strategy(outcome, series)
    seen = {r.trial: unjudged(r) or "judged" for r in outcome.rows}
    print(f"done-when steps: {seen}")  # what this machine allowed, for the record
    if never["status"] == "broke":
        expectations = expect(tmp_path, "[never]\nbreaking_point_max = 400\n")
        assert main(["check", str(outcome.directory), "--expect", expectations]) == 0


BUSY_LOOP = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"


@pytest.fixture
def busy_loops():
    """A busy loop on every CPU, outside this process's tree (as another user's work is): the
    shell that starts them exits, so they are nobody's child here."""
    count = len(os.sched_getaffinity(0))
    started = subprocess.run(
        [
            "sh",
            "-c",
            # Their output away from the pipe, or the read would wait for them to end.
            # Each ends by itself after 10 minutes, should a timeout skip the teardown.
            f"for i in $(seq {count}); do {sys.executable} -c '{BUSY_LOOP}' "
            ">/dev/null 2>&1 & echo $!; done",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pids = [int(pid) for pid in started.stdout.split()]
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.needs_lab
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_busy_machine_leaves_repair_and_graceful_unbroken(tmp_path, busy_loops):
    outcome = run_done_when(tmp_path)
    for series in ("repair", "graceful"):
        assert_no_break_blamed_on_the_strategy(outcome, series)
    # The loops were seen for what they are: work outside the run on the sides' CPUs.
    assert any(row.cpu_foreign_reason for row in outcome.rows), [r.cpu_use for r in outcome.rows]
    print(f"busy steps: { {r.trial: unjudged(r) or 'judged' for r in outcome.rows} }")


@pytest.mark.needs_lab
def test_sysctl_is_set_in_the_defender_namespace_only(lab):
    from closebench.defender import Defender, ServerConfig
    from closebench.servers.strategies import parse_spec

    host_before = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    config = ServerConfig(
        8080, parse_spec("graceful"), sysctl=(("somaxconn", 3), ("tcp_fin_timeout", 7))
    )
    defender = Defender(lab, config)
    try:
        assert lab.defender.run(["sysctl", "-n", "net.core.somaxconn"]).strip() == "3"
        assert lab.defender.run(["sysctl", "-n", "net.ipv4.tcp_fin_timeout"]).strip() == "7"
        # The kernel caps the server's listen backlog (1024) at somaxconn: ss shows it as Send-Q.
        listeners = lab.defender.run(["ss", "-ltnH", "sport = :8080"]).splitlines()
        assert listeners and all(line.split()[2] == "3" for line in listeners), listeners
    finally:
        defender.stop()
        defender.close()
    assert Path("/proc/sys/net/core/somaxconn").read_text().strip() == host_before


def test_harness_load_marks_a_saturated_attacker():
    from closebench.trials.harness_load import harness_load

    quiet = {"cpu_share": 0.2, "loop_lag_p95_s": 0.003, "local_errors": 0}
    assert not harness_load({"the spammer": quiet, "the legit": quiet}).limited
    busy = {"cpu_share": 0.97, "loop_lag_p95_s": 0.4, "local_errors": 3}
    busy["local_error_kinds"] = {"EMFILE": 3}
    packets = {"cpu_user_s": 1.0, "cpu_system_s": 0.2, "elapsed_s": 10.0, "receive_drops": 12}
    load = harness_load({"the spammer": busy, "the flood": packets})
    assert load.limited
    assert load.cpu_share == 0.97 and load.loop_lag_p95_s == 0.4
    assert load.receive_drops == 12 and load.local_errors == 3
    reason = load.row_fields()["harness_limited_reason"]
    assert "the spammer used 97% of a core" in reason
    assert "the spammer's event loop ran 0.40 s late (p95)" in reason
    assert "the spammer failed 3 times on its own side (EMFILE)" in reason
    assert "the flood's packet socket dropped 12 packets" in reason


def test_a_sweeps_report_has_the_breaking_point_table_and_figures(tmp_path):
    from closebench.results.figures import FIGURES
    from closebench.results.report import build_report

    rows = [*SWEPT, step_row("graceful", 20, harness_limited=True, harness_limited_reason="busy")]
    for index in (1, 2):  # steps where one engine process kept up are counted, not listed
        rows[index] = {**rows[index], "attacker_processes": 1}
        rows[index]["attacker_processes_reason"] = "1 process: it kept up"
    rows[0] = {**rows[0], "attacker_processes": 2}
    rows[0]["attacker_processes_reason"] = (
        "2 processes: with 1 process the scapy attacker set the pace"
    )
    run = sweep_run(tmp_path / "run", rows)
    summary = json.loads((run / "summary.json").read_text())
    summary["sweep"].update(break_legit_success=0.99, break_latency_s=1.0, break_server_errors=0)
    (run / "summary.json").write_text(json.dumps(summary))
    files = build_report(run)
    page = files.html.read_text()
    assert 'id="breaking-points"' in page
    assert "held up to 20, broke by concurrency 100" in page
    assert "legitimate success 50.0% &lt; 99.0%" in page
    assert "Harness-limited" in page and "graceful @ concurrency 20: busy" in page
    # How many engine processes each step ran with, and why: only steps that had a packet attacker.
    assert (
        "Packet attacker processes (each its own engine, on the attackers&#39; CPUs): "
        "never @ concurrency 20: 2 processes: with 1 process the scapy attacker set the pace; "
        "2 of 3 steps: 1 process: it kept up."
    ) in page
    markdown = files.markdown.read_text()
    assert (
        "| never | broke | held up to 20, broke by concurrency 100 | concurrency 100: " in markdown
    )
    assert (
        "| repair | held | held at every step | held at every step (concurrency 20, 100, 400) |"
    ) in markdown
    assert "| graceful | inconclusive | no step held, inconclusive from concurrency 20 |" in (
        markdown
    )
    sweep_figures = [f.name for f in FIGURES if f.name.startswith("sweep_")]
    assert sweep_figures == ["sweep_legit", "sweep_defender", "sweep_attacker"]
    for name in sweep_figures:
        assert (run / "figures" / f"{name}.png").stat().st_size > 20_000


def test_compare_shows_how_breaking_points_moved(tmp_path, capsys):
    before = sweep_run(tmp_path / "a", SWEPT)
    later = [
        step_row("never", 20, legit_success_rate=0.5),
        step_row("never", 100),
        step_row("never", 400),
        *SWEPT[3:6],
        step_row("slow", 20),
        step_row("slow", 100),
    ]
    after = sweep_run(tmp_path / "b", later)
    assert main(["compare", str(before), str(after), "--html", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("breaking points (the sweep)") :]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if "│" in line}
    assert rows["never"].split("│")[-2].strip() == "worse"
    assert rows["repair"].split("│")[-2].strip() == "same"
    assert rows["slow"].split("│")[-2].strip() == "better"
    page = (tmp_path / "c.html").read_text()
    assert (
        "never: breaking point held up to 20, broke by concurrency 100 &rarr; "
        "no step held, broke by concurrency 20" in page
    )
    assert "slow: breaking point no step held, broke by concurrency 20 &rarr; held" in page


def test_holds_fails_for_a_series_no_step_of_which_measured_the_server(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "400")
    rows = [step_row("rst", 20, harness_limited=True), step_row("rst", 100, error="lab failed")]
    run = sweep_run(tmp_path / "run", rows)
    assert main(["check", str(run), "--expect", expect(tmp_path, "[rst]\nholds = true\n")]) == 1
    assert "no step held, inconclusive from concurrency 20" in capsys.readouterr().out

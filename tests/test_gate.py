"""The CI gate: the noise model `compare` and `check` share (closebench/results/noise.py), the
regressions that count, `compare` as a gate, `--suggest-bounds`, and the shipped `ci` gate. Each
rule both ways: quiet on an unchanged run, failing on a known small change. The fast tests work on
run directories written here; the slow one runs the shipped ci scenario."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from closebench.results import noise
from closebench.results.bounds import DIRECTED, suggest_bounds
from closebench.results.compare import compare_runs
from closebench.results.run_directory import load_run, load_summary
from closebench.results.summary_figures import FIGURE_BY_NAME, FIGURES
from closebench.trials.scenario import EXPECT_DIR, find_scenario, load_scenario
from tests.test_compare_check import HEALTHY, LOUD, closebench, expect, row, write_run


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """`compare` writes its page into the working directory: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


SILENT = {**HEALTHY, "attempts": 16, "outcomes": {"silent": 16}}


def reps(name: str, strategy: str | None = None, n: int = 3, **figures) -> list[dict]:
    """`n` repetitions of a trial, `figures` either one value or one per repetition."""
    rows = []
    for k in range(n):
        mine = {f: (v[k] if isinstance(v, list) else v) for f, v in figures.items()}
        rows.append(row(f"{name} #{k + 1}", strategy or name, **{**SILENT, **mine}))
    return rows


# The noise model


def test_float_error_at_the_band_edge_is_not_a_change():
    """The issue's case: one CPU tick over 10 attempts, exactly on the band's edge."""
    figure = FIGURE_BY_NAME["cpu_ms_per_attempt"]
    before = [row("t", cpu_seconds=0.02, attempts=10, cpu_ms_per_attempt=2.0)]
    after = [row("t", cpu_seconds=0.03, attempts=10, cpu_ms_per_attempt=3.0000000000000004)]
    judgement = noise.judge(figure, before, after)
    assert judgement.verdict == "same", judgement
    # A bound at the same edge, reached through float sums, holds too.
    assert not noise.outside(1.000000000000002 - 0.9999999999999996, 0.0, 1.0)
    assert noise.outside(0.001, 0.0, 1.0)


def test_ratio_under_its_floor_is_not_judged_with_the_reason():
    figure = FIGURE_BY_NAME["wasted_per_cpu_second"]
    before = [row("t", cpu_seconds=0.02, wasted_per_cpu_second=1000.0)]
    after = [row("t", cpu_seconds=0.01, wasted_per_cpu_second=2000.0)]
    judgement = noise.judge(figure, before, after)
    assert judgement.verdict == "not judged"
    assert judgement.reason == "cpu_seconds 0.02 is under the floor of 0.1 CPU s (10 ticks)"
    # Above the floor it is judged: halved is worse, beyond the ticks' resolution.
    before = [row("t", cpu_seconds=1.0, wasted_per_cpu_second=30.0)]
    after = [row("t", cpu_seconds=2.0, wasted_per_cpu_second=15.0)]
    assert noise.judge(figure, before, after).verdict == "worse"
    after = [row("t", cpu_seconds=1.02, wasted_per_cpu_second=29.4)]  # two ticks more
    assert noise.judge(figure, before, after).verdict == "same"


def test_band_is_widened_by_the_spread_of_the_base():
    figure = FIGURE_BY_NAME["hang_median_s"]
    base = reps("t", hang_median_s=[3.0, 3.2, 3.4])  # spread 0.4 > the resolutions (0.1)
    inside = reps("t", hang_median_s=[2.65, 2.7, 2.9])  # 0.35 under the range: within K x 0.4
    outside = reps("t", hang_median_s=[2.5, 2.55, 2.58])  # 0.42 under it: beyond
    assert noise.judge(figure, base, inside).verdict == "same"
    assert noise.judge(figure, base, outside).verdict == "worse"
    # One repetition each: the resolutions only (0.05 a side).
    one = [row("t", hang_median_s=3.0)]
    assert noise.judge(figure, one, [row("t", hang_median_s=2.91)]).verdict == "same"
    assert noise.judge(figure, one, [row("t", hang_median_s=2.7)]).verdict == "worse"


def test_a_share_resolves_one_of_its_count():
    figure = FIGURE_BY_NAME["legit_success_rate"]
    base = [row("t", legit_requests=40, legit_success_rate=1.0)]
    one_lost = [row("t", legit_requests=40, legit_success_rate=39 / 40)]
    five_lost = [row("t", legit_requests=40, legit_success_rate=35 / 40)]
    assert noise.judge(figure, base, one_lost).verdict == "same"
    assert noise.judge(figure, base, five_lost).verdict == "worse"
    few = [row("t", legit_requests=4, legit_success_rate=0.5)]
    assert noise.judge(figure, base, few).verdict == "not judged"


def test_new_outcome_class_above_a_count_of_one():
    base = reps("t", outcomes={"silent": 16})
    assert noise.new_outcome_classes(base, reps("t", outcomes={"silent": 16})) == {}
    one = reps("t", outcomes=[{"silent": 16}, {"silent": 15, "rst": 1}, {"silent": 16}])
    assert noise.new_outcome_classes(base, one) == {}
    many = reps("t", outcomes={"silent": 10, "rst": 6})
    assert noise.new_outcome_classes(base, many) == {"rst": 6 / 16}


# check: the regressions that count, by default


def test_check_baseline_catches_a_10_percent_delay_change_and_not_noise(capsys, tmp_path):
    hangs = {"hang_median_s": [3.0008, 3.0011, 3.0009]}
    base = write_run(tmp_path / "base", reps("delayed-reaper", **hangs))
    same = write_run(tmp_path / "same", reps("delayed-reaper", hang_median_s=3.0012))
    shorter = write_run(tmp_path / "short", reps("delayed-reaper", hang_median_s=2.7008))
    gate = expect(tmp_path, f'baseline = "{base}"\n')
    assert closebench(capsys, "check", str(same), "--expect", gate)[0] == 0
    status, out, _ = closebench(capsys, "check", str(shorter), "--expect", gate)
    assert status == 1 and "delayed-reaper │ hang_median_s vs baseline" in out


def test_check_baseline_fails_on_a_missing_trial_and_a_new_class(capsys, tmp_path):
    base = write_run(tmp_path / "base", reps("repair") + reps("tarpit"))
    gate = expect(tmp_path, f'baseline = "{base}"\n')
    unchanged = write_run(tmp_path / "same", reps("repair") + reps("tarpit"))
    assert closebench(capsys, "check", str(unchanged), "--expect", gate)[0] == 0
    gone = write_run(tmp_path / "gone", reps("repair"))
    status, out, _ = closebench(capsys, "check", str(gone), "--expect", gate)
    assert status == 1 and "tarpit │ trial" in out and "missing" in out
    rst = write_run(
        tmp_path / "rst", reps("repair", outcomes={"silent": 4, "rst": 12}) + reps("tarpit")
    )
    status, out, _ = closebench(capsys, "check", str(rst), "--expect", gate)
    assert status == 1 and "new class rst: 75% of attempts" in out


def sweep_run(directory: Path, value: float | None) -> Path:
    path = write_run(directory, reps("never @ rate 10", "never", n=1))
    summary = json.loads((path / "summary.json").read_text())
    summary["sweep"] = {"axis": "rate", "steps": [10, 20]}
    reason = "held" if value is None else "legit success under 0.99"
    summary["breaking_points"] = {
        "never": {"axis": "rate", "value": value, "reason": reason, "steps_judged": 2}
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_check_baseline_fails_on_a_moved_breaking_point(capsys, tmp_path):
    base = sweep_run(tmp_path / "base", 20.0)
    gate = expect(tmp_path, f'baseline = "{base}"\n')
    same = sweep_run(tmp_path / "same", 20.0)
    assert closebench(capsys, "check", str(same), "--expect", gate)[0] == 0
    lower = sweep_run(tmp_path / "lower", 10.0)
    status, out, _ = closebench(capsys, "check", str(lower), "--expect", gate)
    assert status == 1 and "worse: broke at rate 10" in out


def test_tables_match_name_series_spec_then_base_name(capsys, tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            row("repair rf", "repair:read_first=false", **SILENT),
            row("tarpit", "tarpit:interval=1", **{**SILENT, "outcomes": {"fin": 16}}),
        ],
    )
    status, out, _ = closebench(
        capsys, "check", str(run), "--expect", expect(tmp_path, '[repair]\noutcome = "silent"')
    )
    assert status == 0, out
    # The trial's name comes first: [tarpit] is the trial, not every tarpit.
    status, out, _ = closebench(
        capsys, "check", str(run), "--expect", expect(tmp_path, '[tarpit]\noutcome = "silent"')
    )
    assert status == 1 and "tarpit │ outcome" in out
    spec = expect(tmp_path, '["repair:read_first=false"]\npeak_fds_max = 1')
    status, out, _ = closebench(capsys, "check", str(run), "--expect", spec)
    assert status == 1 and "repair rf │ peak_fds" in out


def test_check_names_a_missing_trial_in_one_line(capsys, tmp_path):
    run = write_run(tmp_path / "run", [row("graceful", **LOUD)])
    status, out, _ = closebench(
        capsys, "check", str(run), "--expect", expect(tmp_path, '[tarpit]\noutcome = "silent"')
    )
    assert status == 1
    assert "tarpit │ trial  │ in the run │ missing: no trial, series or strategy 'tarpit'" in out


# compare as a gate


def gate_runs(tmp_path: Path, **after) -> tuple[Path, Path]:
    a = write_run(tmp_path / "a", reps("repair") + reps("graceful", **LOUD))
    b = write_run(tmp_path / "b", reps("repair", **after) + reps("graceful", **LOUD))
    return a, b


def test_compare_fail_on_worse_passes_unchanged_and_fails_worse(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = gate_runs(tmp_path, hang_median_s=10.0)
    status, out, _ = closebench(capsys, "compare", str(a), str(b), "--fail-on", "worse")
    assert status == 0 and out.startswith("PASS\n")
    assert len(out.splitlines()) <= 6  # nothing moved: the verdict, notes and the page's path
    a, b = gate_runs(tmp_path / "w", hang_median_s=9.0)
    status, out, _ = closebench(capsys, "compare", str(a), str(b), "--fail-on", "worse")
    assert status == 1 and out.startswith("FAIL: 1 figure worse beyond noise\n")
    assert "repair: hang_median_s worse beyond the noise" in out
    # Without --fail-on it reports the same but exits 0; --fail-on changed counts better too.
    assert closebench(capsys, "compare", str(a), str(b))[0] == 0
    a, b = gate_runs(tmp_path / "b2", hang_median_s=11.0)
    assert closebench(capsys, "compare", str(a), str(b), "--fail-on", "worse")[0] == 0
    assert closebench(capsys, "compare", str(a), str(b), "--fail-on", "changed")[0] == 1


def test_compare_rows_name_their_trial_and_all_shows_every_row(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = gate_runs(tmp_path, hang_median_s=5.0, peak_fds=40)
    _, out, _ = closebench(capsys, "compare", str(a), str(b))
    moved = [line for line in out.splitlines() if "│" in line and "worse" in line]
    assert len(moved) == 2 and all(line.strip().startswith("repair │") for line in moved)
    _, every, _ = closebench(capsys, "compare", str(a), str(b), "--all")
    assert every.count("graceful ") > 20


def test_compare_json_is_versioned(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = write_run(tmp_path / "a", reps("repair") + reps("tarpit"))
    b = write_run(tmp_path / "b", reps("repair", hang_median_s=5.0))
    status, out, _ = closebench(capsys, "compare", str(a), str(b), "--json", "--fail-on", "worse")
    document = json.loads(out)
    assert status == 1 and document["schema"] == "closebench.compare/1"
    assert document["verdict"] == "fail" and document["only_a"] == ["tarpit"]
    assert "tarpit: missing from B" in document["regressions"]
    [figure] = document["figures"]
    assert (figure["trial"], figure["figure"], figure["verdict"]) == (
        "repair",
        "hang_median_s",
        "worse",
    )


def test_compare_page_never_goes_into_a_run_and_its_failure_has_its_own_code(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    a, b = gate_runs(tmp_path)
    status, _, _ = closebench(capsys, "compare", str(a), str(b))
    assert status == 0 and (tmp_path / "compare-a-b.html").is_file()
    assert not list(a.glob("*.html")) and not list(b.glob("*.html"))
    blocked = tmp_path / "file"
    blocked.write_text("")
    status, _, err = closebench(
        capsys, "compare", str(a), str(b), "--html", str(blocked / "page.html")
    )
    assert status == 3 and "cannot write" in err


# --suggest-bounds and the shipped gate


def test_suggest_bounds_from_runs_pass_them_and_catch_a_change(capsys, tmp_path):
    runs = [
        write_run(tmp_path / f"r{k}", reps("delayed-reaper", n=1, hang_median_s=3.0 + k / 1000))
        for k in range(4)
    ]
    status, text, _ = closebench(capsys, "check", "--suggest-bounds", *map(str, runs))
    assert status == 0
    gate = tomllib.loads(text)["delayed-reaper"]
    assert gate["outcomes_only"] == ["silent"]
    assert gate["hang_median_s_min"] == 2.9  # 3.0 less twice the resolution (0.05)
    assert "# margin 0.1: twice the resolution 0.05" in text
    path = expect(tmp_path, text)
    for run in runs:
        assert closebench(capsys, "check", str(run), "--expect", path)[0] == 0
    shorter = write_run(tmp_path / "short", reps("delayed-reaper", n=1, hang_median_s=2.7))
    status, out, _ = closebench(capsys, "check", str(shorter), "--expect", path)
    assert status == 1 and "delayed-reaper #1 │ hang_median_s │ >= 2.9" in out


def test_suggest_bounds_explains_what_it_leaves_out(tmp_path):
    low_cpu = write_run(tmp_path / "r", reps("repair", n=2, cpu_seconds=0.02))
    text = suggest_bounds([load_summary(low_cpu)])
    assert "# wasted_per_cpu_second: not bounded: cpu_seconds 0.02 is under the floor" in text
    assert "peak_tcp_mem" not in text  # the whole machine's, not the defender's


def test_shipped_gate_parses_and_covers_the_ci_scenario():
    from closebench.results.check import load_expectations

    gate = load_expectations(EXPECT_DIR / "ci.toml")
    scenario, _, _ = load_scenario(find_scenario("ci"))
    names = {entry.name for entry in scenario.strategies}
    assert {table.name for table in gate.tables} == names
    assert {"graceful", "repair", "delayed-reaper", "tarpit"} <= names
    assert scenario.duration >= 3 * scenario.attackers[0].timeout  # several timeouts each
    assert "--suggest-bounds" in (EXPECT_DIR / "ci.toml").read_text()


def test_repeat_overrides_the_repetitions():
    scenario, _, _ = load_scenario(find_scenario("ci"))
    repeated = scenario.with_repetitions(3)
    labels = [trial.label for trial in repeated.trials()]
    assert labels[:2] == ["graceful #1", "repair #1"] and len(labels) == 3 * len(labels) // 3
    assert labels[-1] == f"{scenario.strategies[-1].name} #3"


def test_every_figure_has_a_resolution_the_model_uses():
    for figure in FIGURES:
        assert noise.resolution(figure, None, 1.0) >= 0
    for name, ratio in noise.RATIOS.items():
        assert name in FIGURE_BY_NAME and ratio.denominator in FIGURE_BY_NAME


def test_compare_of_a_run_with_itself_is_quiet(tmp_path):
    a = write_run(tmp_path / "a", reps("repair") + reps("graceful", **LOUD))
    shutil.copytree(a, tmp_path / "b")
    comparison = compare_runs(load_run(a), load_run(tmp_path / "b"))
    assert comparison.regressions("changed") == [] and comparison.verdict_line() == "PASS"


# The shipped gate on the shipped scenario, in real labs (about 7 runs of ~35 s)


def run_ci(tmp_path: Path, strategies: list | None = None) -> Path:
    from closebench.trials.runner import Runner

    path = find_scenario("ci")
    scenario, text, digest = load_scenario(path)
    if strategies is not None:
        scenario = scenario.model_validate({**scenario.model_dump(), "strategies": strategies})
    outcome = Runner(scenario, text, digest, path, tmp_path).run()
    assert outcome.complete, outcome.errors
    return outcome.directory


def not_judged(run: Path, gate_text: str) -> list[str]:
    """The directed figures the run measured that the gate does not judge, each with why."""
    from closebench.results.gate import run_check

    gate = tomllib.loads(gate_text)
    comments: dict[tuple[str, str], str] = {}  # (table, figure): why it is not bounded
    table_name = ""
    for line in gate_text.splitlines():
        if line.startswith("["):
            table_name = line.strip("[]").strip('"')
        elif ": not bounded: " in line:
            figure_name, why = line[2:].split(": not bounded: ", 1)
            comments[table_name, figure_name] = why
    verdicts = run_check(str(run), str(EXPECT_DIR / "ci.toml"))
    unjudged = {(v.trial, v.figure): v.actual for v in verdicts if not v.judged}
    found = []
    for trial_row in load_summary(run).rows:
        trial = trial_row["trial"]
        table = gate.get(trial, {})
        for figure in DIRECTED:
            if trial_row.get(figure.name) is None:
                continue
            limit = "max" if figure.worse == "higher" else "min"
            if f"{figure.name}_{limit}" in table:
                if (trial, figure.name) in unjudged:
                    found.append(f"{trial}: {figure.name}: {unjudged[trial, figure.name]}")
            elif (trial, figure.name) in comments:
                found.append(f"{trial}: {figure.name}: {comments[trial, figure.name]}")
            # else a minimum at or under 0: the figure is at its floor and cannot get lower
    return found


@pytest.mark.slow
@pytest.mark.needs_lab
@pytest.mark.timeout(1800)  # seven scenario runs on a loaded machine
def test_shipped_gate_passes_unchanged_ci_runs_and_fails_the_regressions(capsys, tmp_path):
    gate_text = (EXPECT_DIR / "ci.toml").read_text()
    for k in range(3):  # fresh runs: the bounds came from others
        run = run_ci(tmp_path / f"same{k}")
        status, out, _ = closebench(capsys, "check", str(run), "--expect", "ci")
        assert status == 0, f"the shipped bounds no longer pass the ci scenario:\n{out}"
        measured = sum(
            row.get(f.name) is not None for row in load_summary(run).rows for f in DIRECTED
        )
        unjudged = not_judged(run, gate_text)
        print(f"run {k + 1}: {len(unjudged)} of {measured} directed figures not judged:")
        print("\n".join(unjudged))
        assert len(unjudged) <= 0.1 * measured, unjudged
    variants = {
        "delayed-reaper": (
            [
                "graceful",
                "repair",
                {"strategy": "delayed-reaper:delay=2.7", "label": "delayed-reaper"},
                "tarpit",
            ],
            "delayed-reaper │ hang_median_s",
        ),
        "tarpit": (
            [
                "graceful",
                "repair",
                "delayed-reaper",
                {"strategy": "tarpit:interval=1", "label": "tarpit"},
            ],
            "tarpit │ packets_sent",
        ),
        "repair": (
            [
                "graceful",
                {"strategy": "repair:read_first=false", "label": "repair"},
                "delayed-reaper",
                "tarpit",
            ],
            "repair │ outcomes_only",
        ),
        "missing": (["graceful", "repair", "delayed-reaper"], "tarpit │ trial"),
    }
    for name, (strategies, named) in variants.items():
        run = run_ci(tmp_path / name, strategies)
        status, out, _ = closebench(capsys, "check", str(run), "--expect", "ci")
        assert status == 1 and named in out, out


def test_machine_wide_figures_change_but_never_regress():
    """TCP memory is the whole machine's: other jobs on a runner move it."""
    figure = FIGURE_BY_NAME["peak_tcp_mem_pages"]
    before, after = [row("t", peak_tcp_mem_pages=160)], [row("t", peak_tcp_mem_pages=900)]
    assert noise.judge(figure, before, after).verdict == "changed"
    assert "peak_tcp_mem" not in {f.name for f in DIRECTED}


def test_check_arguments_are_one_clear_line(capsys, tmp_path):
    run = write_run(tmp_path / "run", reps("repair"))
    gate = expect(tmp_path, '[repair]\noutcome = "silent"')
    status, _, err = closebench(capsys, "check", str(run))
    assert status == 2 and "check needs --expect FILE (or --suggest-bounds RUN..." in err
    status, _, err = closebench(capsys, "check", str(run), str(run), "--expect", gate)
    assert status == 2 and "check takes one run" in err
    status, _, err = closebench(capsys, "check", "--suggest-bounds", str(run), "--expect", gate)
    assert status == 2 and "--suggest-bounds writes expectations" in err
    status, _, err = closebench(capsys, "check", "--suggest-bounds", str(tmp_path / "none"))
    assert status == 2 and "not a closebench run directory" in err


def test_changed_counts_only_the_servers_figures(tmp_path):
    a = write_run(tmp_path / "a", reps("repair", harness_loop_lag_p95_s=0.001))
    b = write_run(tmp_path / "b", reps("repair", harness_loop_lag_p95_s=0.2))
    comparison = compare_runs(load_run(a), load_run(b))
    assert [c.verdict for _, c in comparison.flagged()] == ["changed"]  # reported
    assert comparison.regressions("changed") == []  # the harness's own lag: not the server's
    b = write_run(tmp_path / "b2", reps("repair", duration_s=[30.0, 30.0, 30.0], peak_fds=40))
    assert comparison.regressions("changed") == []
    assert compare_runs(load_run(a), load_run(b)).regressions("changed") == [
        "repair: peak_fds worse beyond the noise"
    ]

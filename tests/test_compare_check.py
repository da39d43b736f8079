"""`closebench compare` and `closebench check`: on small run directories written here, and on one
real short run."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.cli import main
from closebench.core.errors import UsageError
from closebench.results.check import ALIASES, TABLE_KEYS, TOP_LEVEL_KEYS, load_expectations
from closebench.results.compare import compare_runs
from closebench.results.run_directory import load_run
from closebench.results.schema import SUMMARY_SCHEMA, TrialRow
from closebench.results.summary_figures import FIGURE_BY_NAME, FIGURES, KNOWN_FIGURES
from tests.conftest import figures_not_drawn


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """`compare` writes its page into the working directory: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


SAMPLE = Path(__file__).parent / "data" / "20261129-215532-report-sample"

# Figures of a quiet, healthy trial; tests change the ones they are about.
HEALTHY = {
    "attempts": 3,
    "attempts_per_s": 0.1,
    "hang_median_s": 10.0,
    "hang_p95_s": 10.0,
    "hang_max_s": 10.0,
    "outcomes": {"silent": 3},
    "attacker_seconds_wasted": 30.0,
    "legit_requests": 60,
    "legit_success_rate": 1.0,
    "legit_latency_median_s": 0.002,
    "legit_latency_p95_s": 0.004,
    "peak_fds": 9,
    "fd_seconds": 0.0,
    "cpu_seconds": 0.02,
    "peak_threads": 1,
    "peak_rss_mb": 16.8,
    "peak_orphans": 0,
    "peak_sockets": 12,
    "retransmissions": 0,
    "wasted_per_fd_second": None,
    "wasted_per_cpu_second": 1500.0,
    "sampler_overhead": 0.04,
}
LOUD = {**HEALTHY, "attempts": 300, "attempts_per_s": 10.0, "hang_median_s": 0.0}
LOUD.update(hang_p95_s=0.0, hang_max_s=0.001, outcomes={"fin": 300}, attacker_seconds_wasted=0.1)


def row(trial: str, strategy: str | None = None, **figures) -> dict:
    """A summary row with every schema field, as closebench.trials.runner writes it."""
    base = TrialRow(trial, strategy or trial.split(" ")[0], False, True, None, 30.0)
    return dataclasses.replace(base, **{**HEALTHY, **figures}).to_dict()


def write_run(directory: Path, rows: list[dict], complete: bool = True) -> Path:
    directory.mkdir(parents=True)
    summary = {
        "schema": SUMMARY_SCHEMA,
        "complete": complete,
        "meta": {"run_id": directory.name, "scenario_name": "seed", "started": "2026-01-01"},
        "rows": rows,
    }
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def good(tmp_path) -> Path:
    return write_run(
        tmp_path / "good",
        [row("graceful", **LOUD), row("repair"), row("ttl-drop (via router)", "ttl-drop")],
    )


@pytest.fixture
def bad(tmp_path) -> Path:
    """repair broken: it closes with FIN, so the spammer reconnects at once."""
    return write_run(
        tmp_path / "bad",
        [row("graceful", **LOUD), row("repair", **LOUD), row("ttl-drop (via router)", "ttl-drop")],
    )


def expect(tmp_path: Path, text: str, name: str = "expect.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def closebench(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def failures(out: str) -> list[list[str]]:
    """The FAIL rows of check's table: [trial, figure, expected, actual]."""
    rows = [line.split("│") for line in out.splitlines() if "FAIL" in line and "│" in line]
    return [[cell.strip() for cell in cells[1:]] for cells in rows]


REPAIR_SILENT = """
[repair]
outcome = "silent"
hang_median_s_min = 5
peak_fds_max = 50
legit_success_min = 0.99
attempts_per_s_max = 1
"""


# The figures themselves


def test_the_figures_are_the_numeric_fields_of_real_rows():
    """Read from the row's type hints; checked here against the rows a real run wrote."""
    summary = json.loads((SAMPLE / "summary.json").read_text())
    for row in summary["rows"]:
        numbers = {
            k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        others = {k for k, v in row.items() if isinstance(v, bool | str | dict | list)}
        assert numbers <= set(FIGURE_BY_NAME), row["trial"]
        assert not others & set(FIGURE_BY_NAME), row["trial"]
    # A renamed row field must not silently lose its worse direction.
    row_fields = {f.name for f in dataclasses.fields(TrialRow)}
    assert {f.name for f in KNOWN_FIGURES} <= row_fields


def test_worse_directions_for_the_defender():
    worse = {f.name: f.worse for f in FIGURES}
    assert worse["attempts_per_s"] == "higher"
    assert worse["hang_median_s"] == "lower"
    assert worse["legit_success_rate"] == "lower"
    assert worse["fd_seconds"] == worse["cpu_seconds"] == worse["peak_fds"] == "higher"
    assert worse["sampler_overhead"] is None


# closebench check


def test_check_passes_on_a_run_that_keeps_its_expectations(capsys, tmp_path, good):
    status, out, _ = closebench(
        capsys, "check", str(good), "--expect", expect(tmp_path, REPAIR_SILENT)
    )
    assert status == 0, out
    assert "all 6 expectations hold" in out


def test_check_fails_with_figure_expected_and_actual(capsys, tmp_path, bad):
    status, out, _ = closebench(
        capsys, "check", str(bad), "--expect", expect(tmp_path, REPAIR_SILENT)
    )
    assert status == 1
    assert "3 of 6 expectations failed" in out
    failed = {(trial, figure): rest for trial, figure, *rest in failures(out)}
    assert failed.keys() == {("repair", f) for f in ("outcome", "hang_median_s", "attempts_per_s")}
    assert failed["repair", "outcome"] == ["every attempt silent", "fin 300"]
    assert failed["repair", "hang_median_s"] == [">= 5", "0"]
    assert failed["repair", "attempts_per_s"] == ["<= 1", "10"]


def test_check_verbose_lists_kept_expectations(capsys, tmp_path, good):
    _, out, _ = closebench(
        capsys, "check", str(good), "--expect", expect(tmp_path, REPAIR_SILENT), "-v"
    )
    assert out.count(" ok ") == 6 and "peak_fds" in out


def test_outcome_rules(capsys, tmp_path):
    mixed = {"outcomes": {"silent": 8, "rst": 2}, "attempts": 10}
    run = write_run(
        tmp_path / "run",
        [
            row("mixed", **mixed),
            row("tie", outcomes={"silent": 2, "fin": 2}),
            row("none", outcomes={}),
        ],
    )

    def status(text: str) -> int:
        return closebench(capsys, "check", str(run), "--expect", expect(tmp_path, text))[0]

    assert status('[mixed]\noutcome = "silent"') == 1  # every attempt, strictly
    assert status('[mixed]\ndominant_outcome = "silent"') == 0
    assert status('[mixed]\noutcomes_only = ["silent", "rst"]') == 0
    assert status('[mixed]\noutcomes_only = ["silent", "syn-timeout"]') == 1
    assert status('[tie]\ndominant_outcome = "silent"') == 1  # a tie is no dominance
    assert status('[none]\noutcome = "silent"') == 1  # no attempts prove nothing
    assert status('[none]\noutcomes_only = ["silent"]') == 1


def test_tables_match_trials_strategies_repetitions_and_star(capsys, tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            row("repair #1"),
            row("repair #2", peak_fds=80),
            row("repair (via router) #1", "repair"),
            row("repair (via router) #2", "repair"),
            row("graceful #1", **LOUD),
            row("graceful #2", **LOUD),
        ],
    )

    def check(text: str) -> tuple[int, str]:
        status, out, _ = closebench(capsys, "check", str(run), "--expect", expect(tmp_path, text))
        return status, out

    status, out = check("[repair]\npeak_fds_max = 50")  # the trial, each repetition
    assert status == 1 and "repair #2" in out and "1 of 3" in out
    status, out = check('["repair (via router)"]\npeak_fds_max = 50')
    assert status == 0 and "all 3" in out
    status, out = check('["*"]\nlegit_success_min = 0.99\npeak_fds_max = 100')
    assert status == 0 and "all 13" in out


def test_strategy_name_matches_all_its_trials(capsys, tmp_path):
    run = write_run(tmp_path / "run", [row("ttl-drop (direct)", "ttl-drop", **LOUD), row("x")])
    status, out, _ = closebench(
        capsys, "check", str(run), "--expect", expect(tmp_path, '[ttl-drop]\noutcome = "fin"')
    )
    assert status == 0 and "all 2" in out


def test_nulls_errors_and_incomplete_runs_fail(capsys, tmp_path):
    failed = TrialRow("tarpit", "tarpit", False, False, "the server never listened", None).to_dict()
    run = write_run(
        tmp_path / "run", [row("repair", legit_success_rate=None), failed], complete=False
    )
    text = """
[repair]
legit_success_min = 0.9
wasted_per_fd_second_min = 100
[tarpit]
peak_fds_max = 9
"""
    status, out, _ = closebench(capsys, "check", str(run), "--expect", expect(tmp_path, text), "-v")
    assert status == 1
    assert "not measured (null)" in out  # no legitimate client: cannot hold
    assert "unbounded (null)" in out and "3 of 4" in out  # no fd held: any minimum holds
    assert "error: the server never listened" in out
    assert re.search(r"FAIL\s*│\s*run\s*│\s*complete\s*│\s*true\s*│\s*false", out), out


# Regressions against a baseline


def regression_runs(tmp_path, **after) -> tuple[Path, Path]:
    before = write_run(tmp_path / "before", [row("repair"), row("graceful", **LOUD)])
    now = write_run(tmp_path / "now", [row("repair", **after), row("graceful", **LOUD)])
    return before, now


@pytest.mark.parametrize(
    ("after", "status"),
    [
        ({"hang_median_s": 7.0}, 1),  # 30% shorter hangs: worse for the defender
        ({"hang_median_s": 13.0}, 0),  # longer hangs: better
        ({"hang_median_s": 9.0}, 0),  # 10%: within the limit
        ({"cpu_seconds": 0.05}, 0),  # +150%, but within the figure's resolution (0.05 s)
        ({"cpu_seconds": 0.5}, 1),
        ({"fd_seconds": 30.0}, 1),  # from 0: unbounded
        ({"legit_success_rate": 0.7}, 1),
        ({"attempts_per_s": 0.3, "attempts": 9}, 1),
        ({"attempts_per_s": 0.2, "attempts": 4}, 0),  # within both runs' resolutions
        ({"outcomes": {"silent": 2, "fin": 1}}, 0),  # one in 3 attempts: too few to judge
    ],
)
def test_regression_direction_per_figure(capsys, tmp_path, after, status):
    before, now = regression_runs(tmp_path, **after)
    text = f'baseline = "{before}"\nmax_regression_pct = 20\n'
    code, out, _ = closebench(capsys, "check", str(now), "--expect", expect(tmp_path, text))
    assert code == status, out


def test_regression_message_and_relative_baseline(capsys, tmp_path):
    _, now = regression_runs(tmp_path, hang_median_s=5.0)
    config = tmp_path / "ci"
    config.mkdir()
    text = 'baseline = "../before"\nmax_regression_pct = 20\n'
    status, out, _ = closebench(
        capsys, "check", str(now), "--expect", expect(config, text), "--verbose"
    )
    assert status == 1
    assert failures(out) == [
        [
            "repair",
            "hang_median_s vs baseline",
            "baseline 10 ± 0.1 or 20%",
            "5 (worse beyond the noise)",
        ]
    ]


def test_regression_limits_per_table(capsys, tmp_path):
    before, now = regression_runs(tmp_path, hang_median_s=5.0, peak_fds=30)
    text = f'baseline = "{before}"\n[repair]\nmax_regression_pct = 60\n'
    assert closebench(capsys, "check", str(now), "--expect", expect(tmp_path, text))[0] == 1
    text += 'regression_figures = ["hang_median_s"]\n'  # peak_fds no longer compared
    assert closebench(capsys, "check", str(now), "--expect", expect(tmp_path, text))[0] == 0
    only_hang = expect(tmp_path, 'regression_figures = ["hang_median_s"]\nmax_regression_pct = 60')
    status, out, _ = closebench(
        capsys, "check", str(now), "--expect", only_hang, "--baseline", str(before)
    )
    assert status == 0, out


# Bad input: exit 2, one clear message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[repair\noutcome = 1", "not valid TOML"),
        ("[repair]\nhang_median_min = 5", "unknown key 'hang_median_min' (did you mean"),
        ("[repair]\nhang_median_min = 5", "hang_median_s_min, hang_median_s_max"),
        ("[repair]\nlatency_max = 1", "allowed: outcome, outcomes_only, dominant_outcome"),
        ('[repair]\noutcome = "quiet"', "'quiet' is not an outcome; one of: fin, rst"),
        ('[repair]\npeak_fds_max = "50"', "peak_fds_max must be a number"),
        ("[repair]\npeak_fds_max = true", "peak_fds_max must be a number"),
        ("max_regression_pct = 20\n[repair]\npeak_fds_max = 9", "need a baseline"),
        ("max_regression_pct = -1", "0 or more"),
        ('regression_figures = ["duration_s"]', "that have a worse direction"),
        ("threshold = 3", "unknown top-level key 'threshold'"),
        ("", "no expectations"),
        (
            'baseline = "missing-run"',
            "missing-run is not a closebench run directory (no such directory)",
        ),
    ],
)
def test_bad_expectation_files(capsys, tmp_path, good, text, message):
    status, out, err = closebench(capsys, "check", str(good), "--expect", expect(tmp_path, text))
    assert status == 2, out
    assert message in " ".join(err.split()), err


def test_every_key_and_figure_is_documented():
    """The docs site's reference pages, written from the code (docs/reference_pages.py)."""
    docs = Path(__file__).parent.parent / "docs"
    sys.path.insert(0, str(docs))
    try:
        import reference_pages
    finally:
        sys.path.remove(str(docs))
    keys = reference_pages.PAGES["reference/expectations.md"]()
    for key in (*TABLE_KEYS, *TOP_LEVEL_KEYS, *ALIASES):
        assert f"`{key}`" in keys, key
    figures = reference_pages.PAGES["reference/figures.md"]()
    for figure in KNOWN_FIGURES:
        assert f"| `{figure.name}` | {figure.worse or 'neither'} |" in figures, figure.name


def test_every_figure_has_a_min_and_a_max_expectation(tmp_path):
    """Each figure's bounds are accepted as keys and kept, with their limit and value."""
    lines = [f"{f.name}_{limit} = {n}" for n, f in enumerate(FIGURES) for limit in ("min", "max")]
    expectations = load_expectations(expect(tmp_path, "[repair]\n" + "\n".join(lines)))
    [table] = expectations.tables
    bounds = {(b.figure, b.limit): b.value for b in table.bounds}
    assert bounds == {(f.name, limit): n for n, f in enumerate(FIGURES) for limit in ("min", "max")}
    with pytest.raises(UsageError, match="unknown key 'attempts_per_s_most'"):
        load_expectations(expect(tmp_path, "[repair]\nattempts_per_s_most = 1", "bad.toml"))


def test_missing_run_and_expectation_file(capsys, tmp_path, good):
    status, _, err = closebench(
        capsys, "check", str(tmp_path / "nope"), "--expect", expect(tmp_path, REPAIR_SILENT)
    )
    assert status == 2 and "is not a closebench run directory (no such directory)" in err
    (tmp_path / "empty").mkdir()
    status, _, err = closebench(
        capsys, "check", str(tmp_path / "empty"), "--expect", expect(tmp_path, REPAIR_SILENT)
    )
    assert status == 2 and "is not a closebench run directory (no summary.json)" in err
    status, _, err = closebench(capsys, "check", str(good), "--expect", str(tmp_path / "none.toml"))
    assert status == 2 and "cannot read expectations" in err


# closebench compare


def test_compare_flags_changes_outside_the_noise_band(tmp_path):
    def reps(name: str, hangs: list[float], fds: list[int]) -> list[dict]:
        return [
            row(f"{name} #{k + 1}", name, hang_median_s=h, peak_fds=f)
            for k, (h, f) in enumerate(zip(hangs, fds, strict=True))
        ]

    a = load_run(write_run(tmp_path / "a", reps("repair", [10, 9.6, 10.2], [9, 12, 10])))
    b = load_run(write_run(tmp_path / "b", reps("repair", [6, 6.5, 5.8], [11, 13, 10])))
    [group] = compare_runs(a, b).groups
    assert group.trial == "repair" and len(group.before) == 3
    by_name = {change.figure.name: change for change in group.changes}
    hang = by_name["hang_median_s"]
    assert hang.verdict == "worse" and hang.outside_noise
    assert round(hang.change, 3) == round((6 + 6.5 + 5.8 - 10 - 9.6 - 10.2) / 3, 3)
    assert by_name["peak_fds"].verdict == ""  # ranges overlap: noise
    assert by_name["attempts"].verdict == "same"


def test_compare_single_runs_use_the_resolution(tmp_path):
    a = load_run(write_run(tmp_path / "a", [row("repair"), row("graceful", **LOUD)]))
    b = load_run(
        write_run(
            tmp_path / "b",
            [row("repair", cpu_seconds=0.04, peak_fds=30), row("graceful", **HEALTHY)],
        )
    )
    comparison = compare_runs(a, b)
    repair, graceful = comparison.groups
    changes = {c.figure.name: c.verdict for c in repair.changes}
    assert changes["cpu_seconds"] == ""  # 0.02 s, within the resolution
    assert changes["peak_fds"] == "worse"
    assert graceful.outcome_classes_changed
    assert {c.figure.name: c.verdict for c in graceful.changes}["attempts_per_s"] == "better"


def test_compare_command_prints_and_writes_html(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page goes to ./compare-<A>-<B>.html, not into a run
    a = write_run(tmp_path / "a", [row("repair"), row("<b>odd</b>", outcomes={"silent": 30})])
    odd = row("<b>odd</b>", outcomes={"silent": 20, "rst": 10})
    b = write_run(tmp_path / "b", [row("repair", peak_fds=40), odd, row("new")])
    status, out, _ = closebench(capsys, "compare", str(a), str(b))
    assert status == 0
    assert out.startswith("FAIL: 1 figure worse beyond noise, 1 other regression")
    assert "peak_fds" in out and "worse" in out and "only in B: new" in out
    assert "<b>odd</b>: outcome class rst new, 33% of attempts" in out
    assert not list(b.glob("*.html"))
    page = (tmp_path / "compare-a-b.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert "<b>odd</b>" not in page and "http" not in page.replace("http-equiv", "")
    assert page.count('class="worse"') >= 2  # the list and the table
    assert "silent 30 &rarr; silent 20, rst 10 (outcome classes changed)" in page
    status, out, _ = closebench(
        capsys, "compare", str(a), str(b), "--html", str(tmp_path / "x.html")
    )
    assert status == 0 and (tmp_path / "x.html").exists()


AGREE = {"ok": True, "records": 3, "joined": 3, "class_mismatches": 0, "end_delta_p95_s": 0.0}
DISAGREE = {**AGREE, "ok": False, "class_mismatches": 1}


def test_check_wire_agreement(capsys, tmp_path):
    run = write_run(
        tmp_path / "run",
        [
            row("graceful", **LOUD, wire_agreement=AGREE),
            row("repair", wire_agreement=DISAGREE),
            row("never"),  # not verified (run --no-verify)
        ],
    )
    status, out, _ = closebench(
        capsys, "check", str(run), "--expect", expect(tmp_path, '["*"]\nwire_agreement = true')
    )
    assert status == 1
    failed = {trial: rest for trial, figure, *rest in failures(out) if figure == "wire_agreement"}
    assert failed.keys() == {"repair", "never"}
    assert failed["never"] == ["records agree with the wire", "not verified"]
    assert failed["repair"][1].startswith("DISAGREE: 3 of 3 attempts joined")
    bad = expect(tmp_path, "[repair]\nwire_agreement = 1", "bad.toml")
    status, _, err = closebench(capsys, "check", str(run), "--expect", bad)
    assert status == 2 and "wire_agreement must be true or false" in err


def test_compare_shows_the_wire_agreement(capsys, tmp_path):
    a = write_run(tmp_path / "a", [row("repair", wire_agreement=AGREE)])
    b = write_run(tmp_path / "b", [row("repair", wire_agreement=DISAGREE)])
    [group] = compare_runs(load_run(a), load_run(b)).groups
    assert group.wire_verdict == "worse"
    status, out, _ = closebench(capsys, "compare", str(a), str(b), "--only-flagged")
    assert status == 0
    assert "wire_agreement" in out and "flagged" in out
    assert "run B's records disagree with the wire: repair" in out


def test_compare_bad_input_is_exit_2(capsys, tmp_path):
    a = write_run(tmp_path / "a", [row("repair")])
    b = write_run(tmp_path / "b", [row("graceful")])
    status, _, err = closebench(capsys, "compare", str(a), str(b))
    assert status == 2 and "no trial in common" in err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "summary.json").write_text('{"schema": "other/1"}')
    status, _, err = closebench(capsys, "compare", str(a), str(tmp_path / "c"))
    assert (
        status == 2
        and "has schema 'other/1', expected 'closebench.summary/1' or 'closebench.summary/2'" in err
    )
    status, _, err = closebench(capsys, "compare", str(a), str(tmp_path))
    assert status == 2 and f"{tmp_path} is not a closebench run directory" in err


def test_check_as_a_command_exit_codes(tmp_path, good, bad):
    """As CI runs it: the installed module, real exit statuses."""
    text = expect(tmp_path, REPAIR_SILENT)
    command = [sys.executable, "-m", "closebench.cli", "check"]
    for run, status in ((good, 0), (bad, 1)):
        result = subprocess.run([*command, str(run), "--expect", text], capture_output=True)
        assert result.returncode == status, result.stdout + result.stderr


# One real run, end to end


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    from closebench.trials.runner import Runner
    from closebench.trials.scenario import find_scenario, load_scenario

    path = find_scenario("read-first")
    scenario, text, digest = load_scenario(path)
    scenario = scenario.model_copy(update={"duration": 3})
    with figures_not_drawn():  # check and compare read summary.json, no figure
        outcome = Runner(scenario, text, digest, path, tmp_path_factory.mktemp("reports")).run()
    assert outcome.complete, outcome.errors
    return outcome.directory


@pytest.mark.needs_lab
def test_real_run_checked_and_compared(capsys, tmp_path, real_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # repair reads first, so both the prompt and the late spammer hang until their own timeout.
    keeps = expect(
        tmp_path,
        '[repair]\noutcome = "silent"\nhang_median_s_min = 4\npeak_fds_max = 50\n'
        '["*"]\nwire_agreement = true',
    )
    status, out, _ = closebench(capsys, "check", str(real_run), "--expect", keeps)
    assert status == 0, out
    # Acting at accept, the late spammer's request meets no socket: RST, not silence.
    breaks = expect(tmp_path, '["repair:read_first=false"]\noutcome = "silent"', "breaks.toml")
    status, out, _ = closebench(capsys, "check", str(real_run), "--expect", breaks)
    assert status == 1 and "rst" in out, out
    # A run compared with itself changes nothing; a doctored copy's faster spammer is flagged.
    doctored = tmp_path / "doctored"
    doctored.mkdir()
    summary = json.loads((real_run / "summary.json").read_text())
    summary["rows"][0]["attempts_per_s"] *= 50
    (doctored / "summary.json").write_text(json.dumps(summary))
    comparison = compare_runs(load_run(real_run), load_run(doctored))
    [(trial, change)] = comparison.flagged()
    assert (trial, change.figure.name, change.verdict) == ("repair", "attempts_per_s", "worse")
    status, out, _ = closebench(capsys, "compare", str(real_run), str(real_run))
    assert status == 0 and "0 change(s) outside the noise" in out
    assert list(tmp_path.glob("compare-*.html")) and not list(real_run.glob("compare-*.html"))


def test_a_figure_an_older_run_lacks_is_not_read_as_zero(tmp_path):
    """A summary/1 run has no attacker_seconds_busy: compare leaves it unjudged, not 0 -> 30."""
    old = row("repair")
    del old["attacker_seconds_busy"]
    before = load_run(write_run(tmp_path / "old", [old]))
    after = load_run(write_run(tmp_path / "new", [row("repair", attacker_seconds_busy=30.0)]))
    [group] = compare_runs(before, after).groups
    [busy] = [c for c in group.changes if c.figure.name == "attacker_seconds_busy"]
    assert not busy.measured and busy.judgement.verdict in ("same", "not judged")
    assert busy.after == [30.0]

"""Faults and bad input: each is one clear line (exit 2 for bad input, 1 for a failed run), and
nothing measured is lost. (SIGTERM: tests/test_run.py, with Ctrl-C.)

Full and read-only disks are real: a small tmpfs mounted inside a mount namespace of its own
(`unshare -m`), which goes away with the namespace, so nothing outlives the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.attackers.policy import Policy
from closebench.core.errors import UsageError
from closebench.core.file_names import unique_names
from closebench.results.records import run_records
from closebench.results.report import build_report
from closebench.results.run_directory import load_run
from closebench.servers.strategies import parse_spec
from closebench.trials.runner import Runner
from closebench.trials.scenario import find_scenario, load_scenario
from closebench.wire.pcap import Endpoint, connections
from tests.conftest import our_keepers, wait_until

RUN = Path(__file__).parent / "data" / "20261129-215532-report-sample"
ROOT = Path(__file__).resolve().parent.parent
CLOSEBENCH = [sys.executable, "-m", "closebench.cli"]
WARNING = "closebench: warning: "


def closebench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLOSEBENCH, *args], capture_output=True, text=True, timeout=timeout)


def one_error(result: subprocess.CompletedProcess, status: int) -> str:
    """The one line a fault must come down to."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "error:" in line]
    return line


def in_own_mounts(script: str, **env: str) -> list[str]:
    """`bash -c script` in a mount namespace of its own: its mounts vanish when it ends."""
    variables = [f"{name}={value}" for name, value in env.items()]
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "--",
        "env",
        *variables,
        "bash",
        "-c",
        script,
    ]


def run_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    shutil.copytree(RUN, directory)
    return directory


def legacy_run_copy(tmp_path: Path) -> Path:
    """The run as closebench before Parquet left it: attempts.jsonl, no attempts/."""
    directory = run_copy(tmp_path)
    assert closebench("export", str(directory), "--jsonl").returncode == 0
    shutil.rmtree(directory / "attempts")
    return directory


# A full disk while running


@pytest.mark.needs_lab
@pytest.mark.timeout(180)
def test_full_disk_stops_the_run_and_keeps_what_was_written(tmp_path):
    mount, kept = tmp_path / "disk", tmp_path / "kept"
    mount.mkdir()
    kept.mkdir()
    script = """
        mount -t tmpfs -o size=16m closebench-test "$MOUNT" || exit 99
        "$PYTHON" -m closebench.cli run seed --out "$MOUNT/reports"
        status=$?
        cp -a "$MOUNT/reports/." "$KEPT/"
        exit $status
    """
    command = in_own_mounts(script, MOUNT=str(mount), KEPT=str(kept), PYTHON=sys.executable)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The tmpfs as the run sees it, from outside its mount namespace.
        inside = Path(f"/proc/{process.pid}/root") / mount.relative_to("/")
        # Some seconds of attack first (graceful's captures grow ~5 KB/s): a disk filled before
        # any attempt could end would leave nothing measured to keep.
        traffic = lambda: any(p.stat().st_size > 20000 for p in inside.glob("reports/*/pcaps/*"))  # noqa: E731
        assert wait_until(traffic, timeout=60), "no capture grew"
        _fill(inside / "filler")  # another program takes every byte left
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    result = subprocess.CompletedProcess(command, process.returncode, "", stderr)
    line = one_error(result, 1)
    assert "the disk is full (" in line and "while writing pcaps/" in line, line
    assert "the run stopped early; kept in " in line and "summary.json" in line, line
    summary = json.loads((kept / "latest" / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["meta"]["stopped"].startswith("the disk is full")
    # Stopped when the disk filled up: no trial ran its 30 s.
    assert all(row["duration_s"] is None or row["duration_s"] < 30 for row in summary["rows"])
    assert len(summary["rows"]) == 11 and any(row["attempts"] > 0 for row in summary["rows"])
    attempts = run_records(kept / "latest")
    assert len(attempts) == sum(row["attempts"] + row["legit_requests"] for row in summary["rows"])
    assert not any(mount.iterdir()), "the tmpfs outlived its namespace"
    assert wait_until(lambda: not our_keepers())


def _fill(path: Path) -> None:
    block = bytes(1 << 20)
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(block)
        except OSError:
            pass  # ENOSPC: full
        try:
            while True:  # what is left is less than a block
                filler.write(block[:4096])
        except OSError:
            pass


# --out and reports/latest


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("a file", "--out {out} is a file, not a directory: give a directory for the runs"),
        (
            "latest is a directory",
            "{out}/latest is a real directory, not the link closebench keeps to the newest run: "
            "move it away, or give another --out",
        ),
    ],
)
def test_unusable_out_starts_nothing(tmp_path, make, message):
    out = tmp_path / "reports"
    if make == "a file":
        out.write_text("not a directory")
    else:
        (out / "latest").mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    path = find_scenario("seed")
    scenario, text, digest = load_scenario(path)
    with pytest.raises(UsageError) as error:
        Runner(scenario, text, digest, path, out)
    assert str(error.value) == message.format(out=out)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.needs_lab
def test_read_only_out_and_run_directory(tmp_path):
    """`run --out` on a read-only file system, and `report` of a run directory on one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    script = """
        mount -t tmpfs -o size=8m closebench-test "$MOUNT" || exit 99
        cp -r "$RUN" "$MOUNT/run" && mount -o remount,ro "$MOUNT" || exit 99
        "$PYTHON" -m closebench.cli run seed --out "$MOUNT/reports"
        echo "status $?" >&2
        "$PYTHON" -m closebench.cli report "$MOUNT/run"
        echo "status $?" >&2
    """
    command = in_own_mounts(script, MOUNT=str(mount), RUN=str(RUN), PYTHON=sys.executable)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    run, report = result.stderr.split("status ")[:2]
    assert result.stderr.count("status 2") == 2, result.stderr
    [line] = run.splitlines()
    assert line == (
        f"closebench: error: cannot write {mount}/reports: Read-only file system; "
        "give another --out"
    )
    [line] = report.splitlines()[1:]  # after run's status
    assert line.startswith(f"closebench: error: cannot write {mount}/run/")
    assert line.endswith(
        "copy the run directory somewhere writable and run `closebench report` on the copy"
    )


# the report of a run directory from elsewhere


def test_report_never_writes_through_a_link(tmp_path):
    directory = run_copy(tmp_path)
    outside = tmp_path / "outside"
    (outside / "figures").mkdir(parents=True)
    victims = {
        "index.html": outside / "bashrc",
        "summary.md": outside / "notes",
        "figures": outside / "figures",
    }
    for name, target in victims.items():
        if not target.exists():
            target.write_text("mine\n")
        (directory / name).symlink_to(target)
    kept = outside / "figures" / "attacker_hang_cdf.png"
    kept.write_text("mine\n")
    result = closebench("report", str(directory))
    assert result.returncode == 0, result.stderr
    for target in (outside / "bashrc", outside / "notes", kept):
        assert target.read_text() == "mine\n"
    assert sorted(p.name for p in (outside / "figures").iterdir()) == [kept.name]
    for name in victims:
        assert not (directory / name).is_symlink()
    assert (directory / "index.html").stat().st_size > 10_000
    # A real figures/ with a link inside: the link is replaced, not followed.
    link = directory / "figures" / "outcomes.png"
    link.unlink()
    link.symlink_to(kept)
    build_report(directory)
    assert kept.read_text() == "mine\n" and not link.is_symlink()
    assert not list(directory.rglob(".*.tmp")), "temporary files left behind"


# file names of trials


def test_file_names_are_unique_per_label():
    assert unique_names(["a/b", "a_b", "A_B", "a b", "..", ""], ".pcap") == [
        "a_b.pcap",
        "a_b-2.pcap",
        "A_B-3.pcap",
        "a_b-4.pcap",
        "trial.pcap",
        "trial-2.pcap",
    ]


@pytest.mark.needs_lab
def test_labels_that_clean_up_alike_get_a_capture_each(tmp_path):
    path = tmp_path / "labels.toml"
    path.write_text(
        'name = "labels"\nduration = 2\n'
        'strategies = [{strategy = "graceful", label = "a/b"}, {strategy = "rst", label = "a_b"}]\n'
        "[[attackers]]\ntimeout = 2\nrate = 5\n"
    )
    scenario, text, digest = load_scenario(path)
    outcome = Runner(scenario, text, digest, path, tmp_path / "reports").run()
    assert outcome.complete, outcome.errors
    attempts = run_records(outcome.directory)
    pcaps = outcome.directory / "pcaps"
    assert sorted(p.name for p in pcaps.iterdir()) == ["a_b-2.pcap", "a_b.pcap"]
    # Each capture holds its own trial's connections, whole: FINs from graceful, RSTs from rst.
    for trial, name, answer in (("a/b", "a_b.pcap", "F"), ("a_b", "a_b-2.pcap", "R")):
        [server] = {Endpoint(a["dst"], a["dport"]) for a in attempts if a["trial"] == trial}
        captured = connections(str(pcaps / name), server)
        ended = [
            any(answer in e.what for e in events if e.direction == "in") for _, events in captured
        ]
        spam = [a for a in attempts if a["trial"] == trial and a["attacker"] != "legit"]
        assert sum(ended) >= len(spam) >= 5, (name, sum(ended), len(spam))
    assert (
        "a/b: started, capturing into pcaps/a_b.pcap" in (outcome.directory / "run.log").read_text()
    )


# NaN, infinity and limits


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "seed", "--duration", "nan"], "argument --duration: 'nan' is not a finite number"),
        (["run", "seed", "--duration", "inf"], "argument --duration: 'inf' is not a finite number"),
        (["attack", "-s", "rst", "--timeout", "nan"], "'nan' is not a finite number"),
        (["attack", "-s", "rst", "--legit-rate", "nan"], "'nan' is not a finite number"),
        (["probe", "--request-delay", "nan"], "'nan' is not a finite number"),
        (["probe", "--request-delay", "-1"], "'-1' must be 0 or more"),
        (["probe", "--jobs", "0"], "'0' must be at least 1"),
        (["probe", "-s", "delayed-thread:delay=nan"], "option 'delay' takes a finite number"),
        (["probe", "-s", "tarpit:interval=0"], "option 'interval' must be greater than 0"),
    ],
)
def test_bad_numbers_on_the_command_line(args, message):
    line = one_error(closebench(*args), 2)
    assert message in line


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("duration = nan", "key 'duration': Input should be a finite number"),
        ("duration = inf", "key 'duration': Input should be a finite number"),
        ("[[attackers]]\ntimeout = inf", "key 'attackers.1.timeout': Input should be a finite"),
        ("[[attackers]]\nrequest_delay = nan", "key 'attackers.1.request_delay': Input should"),
        ('strategies = ["delayed-reaper:delay=nan"]', "option 'delay' takes a finite number"),
        ('strategies = ["tarpit:interval=0"]', "option 'interval' must be greater than 0"),
    ],
)
def test_bad_numbers_in_a_scenario(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    base = 'name = "t"\nstrategies = ["rst"]\n[[attackers]]\n'
    if toml.startswith("strategies"):
        base, toml = base.replace('strategies = ["rst"]', toml), ""
    path.write_text(toml + "\n" + base if toml.startswith("duration") else base + toml + "\n")
    with pytest.raises(UsageError, match="^" + str(path)) as error:
        load_scenario(path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("duration", "message"),
    [(float("nan"), "finite number"), (float("inf"), "finite number"), (3601, "3600")],
)
def test_duration_override_keeps_the_scenarios_limits(duration, message):
    scenario, _, _ = load_scenario(find_scenario("seed"))
    with pytest.raises(UsageError, match=f"^--duration {duration:g}: .*{message}"):
        scenario.with_duration(duration)
    assert scenario.with_duration(3600).duration == 3600


def test_policies_refuse_nan():
    with pytest.raises(UsageError, match="timeout must be a finite number"):
        Policy(timeout=float("nan"))
    with pytest.raises(ValueError, match="must be greater than 0"):
        parse_spec("tarpit:interval=0")


# files that are not what they should be


def test_non_utf8_scenario_and_expectations(tmp_path):
    scenario = tmp_path / "latin1.toml"
    scenario.write_bytes(b'name = "caf\xe9"\nstrategies = ["rst"]\n[[attackers]]\n')
    with pytest.raises(UsageError) as error:
        load_scenario(scenario)
    assert str(error.value) == (
        f"scenario {scenario} is not UTF-8 text (byte 0xe9 at offset 11): save it as UTF-8"
    )
    expectations = tmp_path / "expect.toml"
    expectations.write_bytes(b'[rst]\noutcome = "rst"  # d\xe9j\xe0 vu\n')
    line = one_error(closebench("check", str(RUN), "--expect", str(expectations)), 2)
    assert line.endswith(
        f"expectations {expectations} is not UTF-8 text (byte 0xe9 at offset 26): save it as UTF-8"
    )


def test_non_utf8_raw_files_of_a_run(tmp_path):
    directory = legacy_run_copy(tmp_path)
    with (directory / "attempts.jsonl").open("ab") as attempts:
        attempts.write(b'{"trial": "rst", "attacker": "caf\xe9"}\n')
    (directory / "scenario.toml").write_bytes(b'name = "caf\xe9"\n')
    result = closebench("report", str(directory))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"{WARNING}scenario.toml is not UTF-8 text: not shown" in result.stderr
    html = (directory / "index.html").read_text()
    assert "scenario.toml is not UTF-8 text: not shown" in html


def damage(directory: Path) -> dict:
    """summary.json with rows broken in each way: no name, text for a number, NaN, a missing
    field, a list for the outcome counts, no object at all."""
    summary = json.loads((directory / "summary.json").read_text())
    rows = summary["rows"]
    rows[0]["attempts_per_s"] = "fast"
    rows[1]["hang_median_s"] = float("nan")
    rows[2]["outcomes"] = ["fin", 3]
    del rows[3]["peak_fds"]
    del rows[4]["trial"]
    rows.append("not a row")
    (directory / "summary.json").write_text(json.dumps(summary))
    return summary


def test_damaged_summary_rows_in_report_compare_and_check(tmp_path):
    directory = run_copy(tmp_path)
    summary = damage(directory)
    names = [row.get("trial") for row in summary["rows"][:4]]
    result = closebench("report", str(directory))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith(WARNING)]
    assert warnings == [
        f"{WARNING}summary.json: trial {names[0]!r}: attempts_per_s is 'fast', not a number: "
        "the row is shown as failed",
        f"{WARNING}summary.json: trial {names[1]!r}: hang_median_s is nan, not a number or null: "
        "the row is shown as failed",
        f"{WARNING}summary.json: trial {names[2]!r}: outcomes is ['fin', 3], not an object: the "
        "row is shown as failed",
        f"{WARNING}summary.json: row 5 has no trial name: left out",
        f"{WARNING}summary.json: row {len(summary['rows'])} has no trial name: left out",
    ]
    run = load_run(directory)
    failed = {t.name: t.row["error"] for t in run.trials if not t.ok}
    assert failed == {
        names[0]: "summary.json has a wrong attempts_per_s for this trial",
        names[1]: "summary.json has a wrong hang_median_s for this trial",
        names[2]: "summary.json has a wrong outcomes for this trial",
    }
    assert next(t for t in run.trials if t.name == names[3]).row["peak_fds"] is None

    compared = closebench("compare", str(RUN), str(directory), "--html", str(tmp_path / "c.html"))
    assert compared.returncode == 0 and "Traceback" not in compared.stderr, compared.stderr
    assert compared.stderr.count(WARNING) == 5
    expectations = tmp_path / "expect.toml"
    expectations.write_text(f"[{json.dumps(names[0])}]\nattempts_per_s_max = 100\n")
    checked = closebench("check", str(directory), "--expect", str(expectations))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert "FAIL" in checked.stdout and names[0] in checked.stdout


def test_unreadable_lines_are_warned_on_stderr_and_one_quote_costs_one_line(tmp_path):
    directory = legacy_run_copy(tmp_path)  # an older run's attempts.jsonl is still read
    lines = (directory / "samples.csv").read_text().splitlines()
    lines[5] = '"' + lines[5]  # an unmatched quote, mid-file: the rest is not one field
    (directory / "samples.csv").write_text("\n".join(lines) + "\n")
    with (directory / "attempts.jsonl").open("a") as attempts:
        attempts.write('{"trial": "rst", "atta')
    result = closebench("report", str(directory))
    assert result.returncode == 0, result.stderr
    assert f"{WARNING}attempts.jsonl: 1 unreadable line(s) skipped" in result.stderr
    assert f"{WARNING}samples.csv: 1 unreadable row(s) skipped" in result.stderr
    samples = sum(len(t.samples) for t in load_run(directory).trials)
    assert samples == len(lines) - 2  # the header and the broken line

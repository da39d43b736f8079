"""Bounded input (issue 22, points 4-6): what a small or hostile file can ask for is refused when
it is read, with one line naming the key (exit 2); readers of run directories refuse what is not a
regular file, cap what they read and turn deep nesting or wrong column types into one line.

No lab: every test here runs without root, in a second or two.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closebench.cli.last_resort import machine_fault
from closebench.core.errors import UsageError
from closebench.core.limits import MAX_TRIALS
from closebench.results.run_directory import load_run
from closebench.servers.strategies import parse_spec
from closebench.trials.scenario import load_scenario

DATA = Path(__file__).parent / "data"
RUN = DATA / "20261129-215532-report-sample"
VERIFY_RUN = DATA / "verify-sample"
CLOSEBENCH = [sys.executable, "-m", "closebench.cli"]
BASE = 'name = "t"\nduration = 10\nstrategies = ["rst"]\n'


def closebench(*args: str, limits: str = "") -> subprocess.CompletedProcess:
    """The command, under `limits` (bash `ulimit` commands) when given."""
    command = [*CLOSEBENCH, *args]
    if limits:
        quoted = " ".join(f"'{part}'" for part in command)
        command = ["bash", "-c", f"{limits}; exec {quoted}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def in_process(args: list[str], capsys) -> subprocess.CompletedProcess:
    """The command run in this process (no interpreter start-up: seconds on a loaded machine),
    its SIGTERM handler put back afterwards."""
    cli = sys.modules["closebench.cli.main"]  # the package's `main` attribute is the function
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = cli.main(args)
    finally:
        signal.signal(signal.SIGTERM, handler)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out.out, out.err)


def one_error(result: subprocess.CompletedProcess, status: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "error:" in line]
    return line


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    path = scenario_file(tmp_path, text)
    with pytest.raises(UsageError, match="^" + str(path)) as error:
        load_scenario(path)
    return str(error.value)


ATTACKER = BASE + "[[attackers]]\n"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        # no coercion: a wrong type is an error, whatever it would convert to
        (ATTACKER + 'concurrency = "10"', "key 'attackers.0.concurrency': Input should be a valid"),
        (ATTACKER + "reconnect = 1", "key 'attackers.0.reconnect': Input should be a valid bool"),
        (ATTACKER + "concurrency = true", "key 'attackers.0.concurrency': Input should be a valid"),
        (
            ATTACKER + "[server]\nport = 8080.0",
            "key 'server.port': Input should be a valid integer",
        ),
        # times: a run must end
        (
            ATTACKER + "request_delay = 1e300",
            "key 'attackers.0.request_delay': Input should be less",
        ),
        (ATTACKER + "timeout = 1e300", "key 'attackers.0.timeout': Input should be less"),
        (ATTACKER + "duration = 1e9", "key 'attackers.0.duration': Input should be less"),
        (ATTACKER + "[legit]\nstart = 1e300", "key 'legit.start': Input should be less"),
        (ATTACKER + "[legit]\nstart = 10", "legit.start = 10 s is not before the scenario's end"),
        (ATTACKER + "[legit]\ntimeout = 1e300", "key 'legit.timeout': Input should be less"),
        # strategy options (a delay of 1e300 s crashes the server's thread)
        (
            ATTACKER.replace('"rst"', '"delayed-thread:delay=1e300"'),
            "option 'delay' must be at most 86400, got '1e300'",
        ),
        (
            ATTACKER.replace('"rst"', '"blacklist:maxretry=99999999999"'),
            "option 'maxretry' must be at most 1000000",
        ),
        # integers the kernel cannot take
        (ATTACKER + "[server]\nnofile = 99999999999", "key 'server.nofile': Input should be less"),
        (
            ATTACKER + "[server]\nbacklog = 9223372036854775807",
            "key 'server.backlog': Input should be less than or equal to 2147483647",
        ),
        # paths every server and client must take
        (ATTACKER + 'kind = "curl"\npath = "/a\\u0000b"', "key 'attackers.0.path': a request path"),
        (ATTACKER + 'path = "spam"', "key 'attackers.0.path': a request path starts with /"),
        (ATTACKER + '[server]\nabuse_path = "^/a\\u0000"', "abuse path is one line of visible"),
        (ATTACKER + '[server]\nabuse_path = "^/a\\rb"', "abuse path is one line of visible"),
        (ATTACKER + '[server]\nabuse_path = "--x"', "abuse path must not start with -"),
        (ATTACKER + '[server]\nabuse_path = "^/(spam"', "abuse path is not a regular expression"),
        (ATTACKER + f'[server]\nabuse_path = "^/{"a" * 5000}"', "abuse path is 5,002 bytes"),
        # sizes: a label names files and rows, a description is on every page
        (
            ATTACKER.replace('"rst"', f'{{strategy = "rst", label = "{"x" * 100_000}"}}'),
            "key 'strategies.0.label': String should have at most 200 characters",
        ),
        (
            ATTACKER.replace('name = "t"', f'name = "t"\ndescription = "{"d" * 50_000}"'),
            "key 'description': String should have at most 4000 characters",
        ),
        (BASE + "[[attackers]]\n" * 33, "key 'attackers': List should have at most 32 items"),
    ],
)
def test_scenario_values_are_checked_when_read(tmp_path, toml, message):
    assert message in refused(tmp_path, toml)


def test_a_wrong_type_names_what_was_given(tmp_path):
    problem = refused(tmp_path, ATTACKER + 'concurrency = "10"')
    assert problem.endswith(
        "key 'attackers.0.concurrency': Input should be a valid integer, not str '10'"
    )


def test_the_shipped_limits_still_take_the_largest_values(tmp_path):
    path = scenario_file(
        tmp_path,
        BASE.replace("duration = 10", "duration = 3600")
        + "[[attackers]]\ntimeout = 3600.0\nrequest_delay = 3600\nconcurrency = 20000\n"
        + '[server]\nnofile = 1048576\nbacklog = 2147483647\nabuse_path = "^/(spam|eggs)"\n'
        + "[legit]\nstart = 3599.5\n",
    )
    scenario, _, _ = load_scenario(path)
    assert scenario.server.backlog == 2**31 - 1 and scenario.attackers[0].timeout == 3600.0
    assert str(parse_spec("delayed-thread:delay=86400")) == "delayed-thread:delay=86400"


def sixty_thousand_trials(tmp_path: Path) -> Path:
    """A 2 KB file asking for 60,000 trials: 50 strategies x 100 repetitions x 12 steps."""
    strategies = ", ".join(f'{{strategy = "rst", label = "s{i}"}}' for i in range(50))
    text = (
        f'name = "big"\nrepetitions = 100\nstrategies = [{strategies}]\n[[attackers]]\n'
        '[sweep]\naxis = "concurrency"\nsteps = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n'
    )
    assert len(text) < 2048
    return scenario_file(tmp_path, text)


def test_sixty_thousand_trials_are_refused_before_anything_is_built(tmp_path):
    path = sixty_thousand_trials(tmp_path)
    started = time.process_time()
    with pytest.raises(UsageError) as error:
        load_scenario(path)
    assert time.process_time() - started < 1.0  # counted from the raw file: milliseconds
    assert (
        f"the scenario asks for 60,000 trials (strategies x repetitions x sweep steps); at "
        f"most {MAX_TRIALS:,} a run" in str(error.value)
    )
    # The command: one line, exit 2, and the whole process under 200 MB.
    script = (
        "import resource, subprocess, sys\n"
        f"r = subprocess.run({[*CLOSEBENCH, 'run', str(path), '--out', str(tmp_path / 'out')]!r},"
        " capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "at most 1,000 a run" in one_error(result, 2)
    assert int(result.stdout) < 200 * 1024, f"{result.stdout} KB"
    assert not (tmp_path / "out").exists()


def test_command_line_times_are_bounded():
    for args in (
        ["attack", "-s", "rst", "--request-delay", "1e300"],
        ["attack", "-s", "rst", "--duration", "1e300"],
        ["probe", "--timeout", "1e300"],
        ["run", "seed", "--duration", "86401"],
    ):
        assert "is more than 86400 s (a day)" in one_error(closebench(*args), 2), args


# deep nesting: Python's parsers recurse


def deep(opening: str, closing: str) -> str:
    return opening * 100_000 + closing * 100_000


def test_deep_toml_is_one_line(tmp_path, capsys):
    path = scenario_file(tmp_path, f"a = {deep('[', ']')}\n")
    line = one_error(in_process(["run", str(path)], capsys), 2)
    assert line.endswith(
        f"{path}: nested too deeply to read (lists or tables inside each other "
        "hundreds of levels deep; no closebench file is)"
    )
    line = one_error(in_process(["check", str(RUN), "--expect", str(path)], capsys), 2)
    assert "nested too deeply to read" in line


def run_copy(tmp_path: Path, source: Path = RUN) -> Path:
    directory = tmp_path / "run"
    shutil.copytree(source, directory)
    return directory


def test_deep_summary_is_one_line_in_every_reader(tmp_path, capsys):
    directory = run_copy(tmp_path)
    (directory / "summary.json").write_text(deep("[", "]"))
    expectations = tmp_path / "expect.toml"
    expectations.write_text("[rst]\nattempts_per_s_max = 100\n")
    for args in (
        ["report", str(directory)],
        ["verify", str(directory)],
        ["export", str(directory), "--jsonl", "--out", "-"],
        ["compare", str(RUN), str(directory), "--html", str(tmp_path / "c.html")],
        ["check", str(directory), "--expect", str(expectations)],
    ):
        line = one_error(in_process(args, capsys), 2)
        assert "summary.json: nested too deeply to read" in line, args


# files that are not files


def test_summary_linked_to_dev_zero_is_refused(tmp_path, capsys):
    directory = run_copy(tmp_path)
    (directory / "summary.json").unlink()
    (directory / "summary.json").symlink_to("/dev/zero")
    line = one_error(in_process(["report", str(directory)], capsys), 2)
    assert "is a character device, not a regular file" in line


def test_samples_and_parquet_linked_to_dev_zero_are_left_out(tmp_path):
    directory = run_copy(tmp_path)
    (directory / "samples.csv").unlink()
    (directory / "samples.csv").symlink_to("/dev/zero")
    (directory / "attempts" / "rst.parquet").unlink()
    (directory / "attempts" / "rst.parquet").symlink_to("/dev/zero")
    problems = load_run(directory).problems  # what `report` warns of, and shows
    assert any("samples.csv is not read" in p and "character device" in p for p in problems)
    assert any("rst.parquet" in p and "character device" in p for p in problems)
    line = one_error(closebench("export", str(directory), "--jsonl", "--out", "-"), 1)
    assert "rst.parquet" in line and "character device" in line


def test_parquet_with_the_right_names_and_wrong_types(tmp_path):
    directory = run_copy(tmp_path)
    path = directory / "attempts" / "rst.parquet"
    table = pq.read_table(path)
    texts = {
        name: pa.array([str(v) for v in table[name].to_pylist()]) for name in table.column_names
    }
    pq.write_table(pa.table(texts), path)
    problems = load_run(directory).problems  # what `report` warns of, and shows
    assert any("column family holds string, not int64" in problem for problem in problems)
    line = one_error(closebench("export", str(directory), "--jsonl", "--out", "-"), 1)
    assert "column family holds string, not int64" in line


@pytest.mark.timeout(60)
def test_verify_does_not_hang_on_a_fifo(tmp_path):
    directory = run_copy(tmp_path, VERIFY_RUN)
    pcap = next((directory / "pcaps").glob("*.pcap"))
    pcap.unlink()
    os.mkfifo(pcap)
    result = closebench("verify", str(directory), "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    trial = json.loads(result.stdout)["trials"][pcap.stem]
    assert "is a FIFO, not a regular file" in trial["error"]


# the machine's limits


def test_out_of_memory_is_one_line_naming_the_limit(tmp_path):
    # 500 MB of address space: enough to start, not to draw the report's figures.
    result = closebench("report", str(run_copy(tmp_path)), limits="ulimit -v 500000")
    line = one_error(result, 1)
    assert "out of memory (the memory limit, `ulimit -v`, is 500,000 KiB; raise it)" in line


def test_machine_faults_are_one_line():
    emfile = machine_fault(OSError(24, "Too many open files"))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert emfile.status == 1 and f"too many open files (the limit is {soft}" in emfile.message
    assert machine_fault(RecursionError()).status == 2
    assert machine_fault(pa.ArrowMemoryError("malloc of size 64 failed")).message.startswith(
        "out of memory"
    )
    assert machine_fault(KeyError("x")).message.startswith("internal error: KeyError")


def test_a_read_only_command_interrupted_built_no_lab(tmp_path, monkeypatch, capsys):
    cli = sys.modules["closebench.cli.main"]  # the package's `main` attribute is the function

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_report", interrupted)
    assert cli.main(["report", str(RUN)]) == 130
    assert capsys.readouterr().err.strip() == "closebench: interrupted"

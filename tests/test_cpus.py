"""Each side's CPUs: the placement (default split, [cpus], --cpus), what /proc/stat says the CPUs
did against this run's own processes, and when the machine's own load makes a step inconclusive."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from closebench.core.errors import UsageError
from closebench.lab import cpus
from closebench.lab.cpus import CpuSnapshot, Placement
from closebench.results.placements import placement_warning
from closebench.trials.harness_load import harness_load
from closebench.trials.placement import resolve_placement

SPLIT = Placement((0,), (1,))


def test_the_default_split_gives_each_side_half_and_one_cpu_is_shared():
    assert cpus.default_placement((0, 1)) == SPLIT
    assert cpus.default_placement((0, 1, 2, 3)) == Placement((0, 1), (2, 3))
    lone = cpus.default_placement((3,))
    assert lone.shared
    assert lone.text() == "the sides share one CPU (3): this machine has no second to split"
    assert SPLIT.to_dict() == {
        "defender": "0",
        "attackers": "1",
        "shared": False,
        "text": "defender on CPU 0, attackers on CPU 1",
    }


def test_cpu_lists_read_and_write():
    assert cpus.parse_cpu_list("0-2,5") == (0, 1, 2, 5)
    assert cpus.cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert cpus.rps_mask((1, 3)) == "a"
    with pytest.raises(ValueError, match="not a CPU list"):
        cpus.parse_cpu_list("one")


def test_bad_cpus_are_one_usage_line():
    with pytest.raises(UsageError, match="give DEFENDER/ATTACKERS"):
        resolve_placement(flag="0")
    with pytest.raises(UsageError, match="not a CPU list"):
        resolve_placement(flag="0/x")
    if len(cpus.machine_cpus()) >= 2:
        with pytest.raises(UsageError, match="are not this machine's"):
            resolve_placement(flag="0/4096")
        first = str(cpus.machine_cpus()[0])
        with pytest.raises(UsageError, match="overlap"):
            resolve_placement(flag=f"{first}/{first}")
    assert resolve_placement(flag="shared").shared


def snap(busy: dict[int, float], own: dict[str, float], at: float) -> CpuSnapshot:
    return CpuSnapshot(busy, dict.fromkeys(busy, 0.0), own, at)


def test_what_outside_the_run_used_is_the_busy_time_less_the_runs_own():
    start = snap({0: 100.0, 1: 50.0}, {"defender": 10.0, "attackers": 5.0}, 0.0)
    # 10 s: CPU 0 busy 9 s of which the defender's own 3 s; CPU 1 busy 4 s, all the attackers'.
    end = snap({0: 109.0, 1: 54.0}, {"defender": 13.0, "attackers": 9.0}, 10.0)
    use = cpus.use_between(SPLIT, start, end)
    assert use.sides["defender"].busy_share == 0.9
    assert use.sides["defender"].own_share == 0.3
    assert use.sides["defender"].foreign_share == 0.6
    assert use.sides["attackers"].foreign_share == 0.0
    load = harness_load({}, use)
    assert load.row_fields()["cpu_foreign_reason"] == (
        "something outside the run used 60% of the defender's CPUs (0)"
    )
    assert load.row_fields()["cpu_use"]["defender"]["foreign_share"] == 0.6
    assert not load.limited  # the harness was not the limit; the machine was
    # A quiet machine: nothing to say.
    quiet = snap({0: 104.0, 1: 54.0}, {"defender": 13.0, "attackers": 9.0}, 10.0)
    assert harness_load({}, cpus.use_between(SPLIT, start, quiet)).foreign is None


def test_own_cpu_seconds_count_a_busy_child_of_this_process():
    shared = Placement(cpus.machine_cpus(), cpus.machine_cpus())
    before = cpus.own_cpu_seconds(shared)["defender"]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\n"
            "while time.process_time() - t < 0.5: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while cpus.own_cpu_seconds(shared)["defender"] - before < 0.4:
            assert time.monotonic() < deadline, "the child's CPU time never showed"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    # Reaped, its time stays counted (in this process's children's time).
    assert cpus.own_cpu_seconds(shared)["defender"] - before >= 0.4


BUSY_HALF_SECOND = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"


def test_parallel_trials_are_the_runs_own_load():
    """Two trials at once (the runner's jobs: threads of this process), each with a process that
    starts and ends inside the window through a launcher (as a lab's nsexec): both count as this
    run's own CPU, none as something outside it."""
    shared = Placement(cpus.machine_cpus(), cpus.machine_cpus())
    start = cpus.snapshot(shared)

    def trial() -> None:  # launcher -> busy grandchild, both reaped before the window ends
        launcher = (
            f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BUSY_HALF_SECOND!r}])"
        )
        subprocess.run([sys.executable, "-c", launcher], check=True, timeout=120)

    jobs = [threading.Thread(target=trial) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    end = cpus.snapshot(shared)
    assert end.own_s["defender"] - start.own_s["defender"] >= 1.0  # both busy half-seconds
    use = cpus.use_between(shared, start, end)
    both = use.sides["both"]
    assert both.own_share * use.elapsed_s * len(shared.defender) >= 0.9


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to split")
def test_pinning_this_process_and_restoring_it():
    placement = cpus.default_placement()
    me = threading.get_native_id()
    before = cpus.pin_this_process(placement.attackers)
    try:
        assert os.sched_getaffinity(0) == set(placement.attackers)
    finally:
        cpus.restore(before)
    assert os.sched_getaffinity(0) == before[me] != set(placement.attackers)


def test_compare_and_check_warn_when_placements_differ():
    a = SPLIT.to_dict()
    assert placement_warning(a, dict(a)) is None
    line = placement_warning(a, Placement((0, 1), (0, 1)).to_dict())
    assert line and "A: defender on CPU 0, attackers on CPU 1" in line
    assert "both sides share CPU 0-1" in line
    assert "placement not recorded" in placement_warning(a, None)


def test_a_bad_cpus_flag_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    from closebench.cli import main

    out = tmp_path / "reports"
    assert main(["run", "seed", "--cpus", "0/x", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "not a CPU list" in error and len(error.strip().splitlines()) == 1, error
    assert not out.exists()

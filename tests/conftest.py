"""Shared fixtures: real labs, and a guard that every test leaves no lab behind."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psutil
import pytest

from closebench.lab import Host, Lab, lab_processes
from closebench.lab.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, has_capability

BENCHMARKS = Path(__file__).parent / "benchmarks"
CAPABLE = all(has_capability(bit) for bit in (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN))


def pytest_collection_modifyitems(config, items):
    _deselect_benchmarks(config, items)
    if CAPABLE:
        return
    reason = (
        "needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN (run as root or under unshare -Urnm)"
    )
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the whole suite: {reason}")
    for item in items:
        if "needs_lab" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def _deselect_benchmarks(config, items) -> None:
    """tests/benchmarks measure; they run when asked (--benchmark-enable or --benchmark-only),
    not as part of the default suite, whose time they would double-count."""
    if config.getoption("benchmark_enable") or config.getoption("benchmark_only"):
        return
    benchmarks = [item for item in items if BENCHMARKS in item.path.parents]
    if benchmarks:
        config.hook.pytest_deselected(items=benchmarks)
        items[:] = [item for item in items if BENCHMARKS not in item.path.parents]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def members(host: Host) -> list[int]:
    """Processes in the host's PID namespace other than its keeper."""
    namespace = os.readlink(f"/proc/{host.pid}/ns/pid")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == namespace and int(pid) != host.pid:
                found.append(int(pid))
        except OSError:
            continue
    return found


def _ours(process: psutil.Process) -> bool:
    """Started by this test run, or orphaned: not another closebench's lab on the same machine."""
    try:
        if process.ppid() == 1:
            return True
        return any(parent.pid == os.getpid() for parent in process.parents())
    except psutil.NoSuchProcess:
        return False


def our_keepers() -> set[int]:
    return {p.pid for p in lab_processes() if _ours(p)}


def namespaces_in_use() -> set[str]:
    """Every network namespace a process of this test run (or an orphan) is in."""
    found = set()
    for process in psutil.process_iter():
        try:
            if _ours(process):
                found.add(os.readlink(f"/proc/{process.pid}/ns/net"))
        except (OSError, psutil.NoSuchProcess):
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """Fail a test that leaves a lab keeper or a network namespace behind."""
    if "needs_lab" not in request.keywords:
        yield
        return
    keepers_before = our_keepers()
    namespaces_before = namespaces_in_use()
    yield
    assert wait_until(lambda: our_keepers() <= keepers_before), (
        "lab keeper processes were left behind"
    )
    assert wait_until(lambda: namespaces_in_use() <= namespaces_before), (
        "network namespaces were left behind"
    )


@pytest.fixture
def lab():
    with Lab() as built:
        yield built


@pytest.fixture
def routed_lab():
    with Lab(routed=True) as built:
        yield built


@contextlib.contextmanager
def figures_not_drawn():
    """Runs whose report is built without its figures, the costliest part of a run's end (each
    figure drawn as PNG and SVG, seconds per run on 2 cores). Only for tests that read no figure:
    a run logs a report that failed and goes on, so those tests never proved the figures;
    tests/test_report.py and the sweep's tests draw and read them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("closebench.results.report.render.render_all", lambda run, out: [])
        yield

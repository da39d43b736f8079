"""Shared fixtures: real labs, and a guard that every test leaves no lab behind."""

from __future__ import annotations

import os
import time

import pytest

from harness.lab import Lab, lab_processes
from harness.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, has_capability

CAPABLE = all(has_capability(bit) for bit in (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN))


def pytest_collection_modifyitems(config, items):
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


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def namespaces_in_use() -> set[str]:
    """Every network namespace some process on this machine is in."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.add(os.readlink(f"/proc/{pid}/ns/net"))
            except OSError:
                continue
    return found


@pytest.fixture(autouse=True)
def no_leftovers(request):
    """Fail a test that leaves a lab keeper or a network namespace behind."""
    if "needs_lab" not in request.keywords:
        yield
        return
    keepers_before = {p.pid for p in lab_processes()}
    namespaces_before = namespaces_in_use()
    yield
    assert wait_until(lambda: {p.pid for p in lab_processes()} <= keepers_before), (
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

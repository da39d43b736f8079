"""setup.sh's choice of packages for each supported distribution, and what it says when one cannot
be installed. No root needed: the choice reads an os-release file, and the install steps run
against stand-ins for apt-get and dpkg-query."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from closebench.attackers.chromium import BROWSER_ENV, find_browser

ROOT = Path(__file__).resolve().parent.parent
OS_RELEASES = Path(__file__).parent / "data" / "os-release"
LAB = ["iproute2", "util-linux", "procps", "nftables", "tcpdump", "curl"]
BPF = ["clang", "libbpf-dev", "bpftool"]
TOOLS = ["hydra", "medusa", "ncrack", "nmap", "masscan"]  # the tool attacker's
PEERS = ["haproxy", "nginx-light", "endlessh", *BPF, *TOOLS]
NEW_PEERS = ["haproxy", "nginx", "endlessh", *BPF, *TOOLS]
UBUNTU_BPF = ["clang", "libbpf-dev", "linux-tools-generic"]
BROWSER_TEST = "tests/test_report.py::test_page_renders_in_headless_chromium"


def setup_sh(*args: str, browser: str = "/nonexistent") -> subprocess.CompletedProcess:
    """setup.sh as CI runs it: CI=true, no standard input; `browser` is the only one it may find."""
    environment = {**os.environ, "CI": "true", BROWSER_ENV: browser}
    return subprocess.run(
        ["bash", str(ROOT / "setup.sh"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=environment,
        timeout=60,
        cwd="/",
    )


@pytest.mark.parametrize(
    ("system", "packages", "lacking"),
    [
        ("debian-12", [*LAB, "python3", "python3-venv", "wrk", *PEERS, "chromium"], None),
        # nginx-light is gone from Debian 13 and Ubuntu 24.04: nginx has the same modules.
        ("debian-13", [*LAB, "python3", "python3-venv", "wrk", *NEW_PEERS, "chromium"], None),
        # 22.04's python3 is 3.10; Ubuntu ships Chromium only as a snap.
        (
            "ubuntu-22.04",
            [*LAB, "python3.11", "python3.11-venv", "wrk", *PEERS[:3], *UBUNTU_BPF, *TOOLS],
            "ubuntu 22.04",
        ),
        (
            "ubuntu-24.04",
            [*LAB, "python3", "python3-venv", "wrk", *NEW_PEERS[:3], *UBUNTU_BPF, *TOOLS],
            "ubuntu 24.04",
        ),
    ],
)
def test_packages_for_each_distribution(system, packages, lacking):
    result = setup_sh("--packages", str(OS_RELEASES / system))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == packages
    if lacking:
        [line] = result.stderr.splitlines()
        assert line.startswith(f"setup.sh: cannot install chromium (no {lacking} package, and no")
        assert BROWSER_TEST in line
    else:
        assert result.stderr == ""


@pytest.fixture
def fake_chrome(tmp_path) -> str:
    chrome = tmp_path / "google-chrome"
    chrome.write_text("#!/bin/sh\necho 'Google Chrome 131.0.6778.85'\n")
    chrome.chmod(0o755)
    return str(chrome)


@pytest.mark.parametrize("system", ["debian-12", "ubuntu-24.04"])
def test_an_installed_chrome_is_used(system, fake_chrome):
    result = setup_sh("--packages", str(OS_RELEASES / system), browser=fake_chrome)
    assert result.returncode == 0 and result.stderr == ""
    assert "chromium" not in result.stdout.split()


def test_a_snap_stub_is_no_browser(tmp_path, monkeypatch):
    """Ubuntu's /usr/bin/chromium-browser without the snap: it exits with a message."""
    stub = tmp_path / "chromium-browser"
    stub.write_text("#!/bin/sh\necho 'requires the chromium snap to be installed' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv(BROWSER_ENV, str(stub))
    assert find_browser() is None


def test_derivatives_and_other_systems(tmp_path):
    mint = tmp_path / "mint"
    mint.write_text('ID=linuxmint\nVERSION_ID="21.3"\nID_LIKE="ubuntu debian"\n')
    result = setup_sh("--packages", str(mint))
    assert result.returncode == 0 and "python3" in result.stdout.split()
    assert "using ubuntu's package names" in result.stderr
    fedora = tmp_path / "fedora"
    fedora.write_text('ID=fedora\nVERSION_ID="40"\n')
    result = setup_sh("--packages", str(fedora))
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "says ID=fedora" in line and "install the equivalents of iproute2" in line


def install(tmp_path, system: str, broken: str = "") -> subprocess.CompletedProcess:
    """setup.sh's install steps with apt-get and dpkg-query stood in for: nothing is installed
    yet, and apt-get cannot install the packages named in `broken`."""
    log = tmp_path / "apt.log"
    script = f"""
        source {ROOT / "setup.sh"}
        dpkg-query() {{ return 1; }}
        apt-get() {{
            echo "$DEBIAN_FRONTEND $*" >>{log}
            for package in {broken}; do
                [[ $1 == install && " $* " == *" $package "* ]] && return 100
            done
            return 0
        }}
        read_os_release {OS_RELEASES / system}
        choose_packages
        install_packages "${{wanted[@]}}"
        report_what_is_missing "could not"
    """
    environment = {**os.environ, "CI": "true", BROWSER_ENV: "/nonexistent"}
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=environment,
        timeout=60,
    )
    result.apt_calls = log.read_text().splitlines() if log.exists() else []
    return result


def test_install_updates_first_and_never_asks(tmp_path):
    result = install(tmp_path, "debian-13")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    update, install_all = result.apt_calls
    assert update == "noninteractive update -qq"
    assert install_all.startswith("noninteractive install -y -qq --no-install-recommends iproute2")
    assert install_all.endswith(
        " wrk haproxy nginx endlessh clang libbpf-dev bpftool " + " ".join(TOOLS) + " chromium"
    )


def test_what_could_not_be_installed_is_one_line(tmp_path):
    result = install(tmp_path, "ubuntu-24.04", broken="wrk")
    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("setup.sh: could not install chromium (no ubuntu 24.04 package")
    assert ", wrk (apt-get failed): " in line
    assert "test_volume_rate.py is skipped" in line and BROWSER_TEST in line
    # The set failed, so each package was tried on its own.
    one_by_one = [call.split()[-1] for call in result.apt_calls[2:]]
    assert one_by_one == [
        *LAB,
        "python3",
        "python3-venv",
        "wrk",
        *NEW_PEERS[:3],
        *UBUNTU_BPF,
        *TOOLS,
    ]


def test_a_missing_peer_package_says_which_strategies_go(tmp_path):
    result = install(tmp_path, "debian-12", broken="endlessh")
    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert line == (
        "setup.sh: could not install endlessh (apt-get failed): the endlessh strategy is skipped "
        "(it fails with CI=true)"
    )


def test_a_required_package_that_fails_stops_setup(tmp_path):
    result = install(tmp_path, "ubuntu-22.04", broken="nftables python3.11-venv")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line == (
        "setup.sh: could not install nftables, for the fw-* bans, the scapy and volume attackers; "
        "python3.11-venv, for the .venv; closebench needs them"
    )


def test_setup_needs_root_and_says_how(tmp_path):
    if os.geteuid() != 0:
        result = setup_sh("--install")
    else:  # as root: the same script as an ordinary user
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "setup.sh"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            timeout=60,
        )
    assert result.returncode == 2
    assert "as root: ./setup.sh; otherwise: sudo ./setup.sh" in result.stderr

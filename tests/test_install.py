"""closebench as a user installs it: a wheel in a fresh virtual environment, run from elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.trials.scenario import SCENARIO_DIR

ROOT = Path(__file__).resolve().parent.parent
# What a checkout has that a wheel must not depend on (nor carry).
NOT_SOURCE = (".git", ".venv", "reports", "build", "*.egg-info", "__pycache__", ".*_cache")


def test_scenarios_have_one_source():
    """The top-level scenarios/ is a link into the package, so the two cannot drift apart."""
    top = ROOT / "scenarios"
    assert top.is_symlink() and top.resolve() == SCENARIO_DIR.resolve()
    assert SCENARIO_DIR.is_relative_to(ROOT / "closebench")


def test_scenarios_command_lists_every_shipped_scenario():
    result = subprocess.run(
        [sys.executable, "-m", "closebench.cli", "scenarios"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for path in SCENARIO_DIR.glob("*.toml"):
        [line] = [line for line in lines if line.split()[:1] == [path.stem]]
        assert len(line.split()) > 3, f"{path.stem} has no description"
    printed = subprocess.run(
        [sys.executable, "-m", "closebench.cli", "scenarios", "seed"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.stdout == (SCENARIO_DIR / "seed.toml").read_text()


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


@pytest.mark.slow  # a scenario-length run: `pytest -m slow`
@pytest.mark.needs_lab
@pytest.mark.timeout(300)
def test_wheel_runs_the_seed_outside_the_repository(tmp_path):
    # Build from a copy of the sources, as pip would from a fresh clone (symbolic links kept).
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)])
    [wheel] = dist.glob("closebench-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", str(wheel)], timeout=240)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    closebench = str(venv / "bin" / "closebench")

    def user_runs(*args: str) -> subprocess.CompletedProcess:
        return _run([closebench, *args], cwd=elsewhere, env=environment, timeout=180)

    where = _run(
        [str(venv / "bin" / "python"), "-c", "import closebench; print(closebench.__file__)"],
        cwd=elsewhere,
        env=environment,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)  # not the checkout's closebench/
    # One top-level package: the wheel puts closebench and its metadata into site-packages, no
    # generic names (harness/ and servers/ stay in the checkout, for the old import names).
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    installed = _run([*pip, "show", "-f", "closebench"]).stdout
    tops = {line.strip().split("/")[0] for line in installed.split("Files:")[1].splitlines()}
    assert {top for top in tops if top and not top.endswith(".dist-info") and top != ".."} == {
        "closebench"
    }, tops
    assert not (site_packages / "harness").exists() and not (site_packages / "servers").exists()
    assert "seed" in user_runs("scenarios").stdout
    user_runs("run", "seed", "--duration", "2")
    summary = json.loads((elsewhere / "reports" / "latest" / "summary.json").read_text())
    assert summary["complete"] is True
    assert Path(summary["meta"]["scenario_file"]).is_relative_to(venv)
    assert len(summary["rows"]) == 11 and all(row["attempts"] > 0 for row in summary["rows"])
    assert (elsewhere / "reports" / "latest" / "index.html").is_file()

"""The package type-checks: mypy, configured in pyproject.toml ([tool.mypy]), finds no error in
closebench/. Its cache lives in pytest's cache directory (.pytest_cache, ignored by git), so a
second run re-checks only what changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cache_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return cache.mkdir("mypy") if cache is not None else tmp_path / "mypy"


def test_package_is_mypy_clean(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(_cache_dir(request, tmp_path))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert checked.returncode == 0, f"mypy found errors:\n{checked.stdout}{checked.stderr}"

"""The linter and the type checker pass on the runtime package (config: pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

# generous guards against a hung tool, below pytest-timeout's per-test limit; mypy on a cold cache
# checks every module (later runs reuse .mypy_cache in the repository root)
_RUFF_TIMEOUT = 120
_MYPY_TIMEOUT = 270


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = _run(["ruff", "check", "featurestore", "migrations", "tests", "benchmarks", "docs"], _RUFF_TIMEOUT)
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}\n{result.stderr}"
    assert "All checks passed" in result.stdout


def test_mypy_finds_nothing() -> None:
    result = _run(["mypy"], _MYPY_TIMEOUT)
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.startswith("Success"), result.stdout

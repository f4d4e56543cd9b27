"""The store's behavioural tests on a real Citus cluster, as part of the plain ``pytest`` run.

``pytest --citus`` reruns the modules of ``conftest.CITUS_SUITE`` (the same tests, not copies)
against a coordinator and two workers on 127.0.0.1 (``tests/citus.py``; Citus is built from the
vendored source once per machine). This test runs that session in a subprocess, so the plain
run (and ``.ci/run``) covers both servers; its output names any test that failed on Citus.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.citus
@pytest.mark.single_node  # it starts the Citus session; not a test of it
@pytest.mark.timeout(1800)
def test_behavioural_suite_passes_on_citus() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--citus", "-q", "-p", "no:cacheprovider", str(HERE)],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1700,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"pytest --citus failed (exit {proc.returncode}):\n{tail}"
    assert " passed" in tail and " failed" not in tail, tail

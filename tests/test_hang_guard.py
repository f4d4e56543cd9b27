"""No test can hang the suite: a tiny pytest session whose only test hangs must still end.

Each case runs a real pytest session in a subprocess with the project's own configuration
(pyproject.toml: pytest-timeout) and the suite's guard plugin (tests/guards.py, which conftest.py
loads), and asserts the session ends on its own, with a failure, long before the subprocess
deadline. Without the guards each of these sessions waits forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import guards
import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
DEADLINE_S = 180  # the subprocess's own limit: reaching it means the session hung

HANGS_IN_THE_MAIN_THREAD = """
import threading

def test_waits_forever():
    threading.Event().wait()  # never set: only the per-test timeout can end this
"""

# issue 11 item 14: the test fails while the thread it started still loops; at exit the
# interpreter would wait for that non-daemon thread forever
FAILS_WITH_A_LOOPING_THREAD = """
import threading, time

def test_fails_with_a_thread_running():
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            time.sleep(0.01)

    threading.Thread(target=churn, name="churn").start()
    assert False, "failed before stopping the thread"
"""

PASSES_WITH_A_LOOPING_THREAD = """
import threading, time

def test_passes_but_leaves_a_thread():
    threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(int, 1)], name="forever").start()
"""


def _session(tmp_path: Path, body: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tiny.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["FEATURESTORE_TEST_THREAD_GRACE"] = "2"
    cmd = [
        sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
        "-p", "guards", "-p", "no:cacheprovider", "-p", "no:randomly", "-v", *extra, str(tmp_path / "test_tiny.py"),
    ]
    try:
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired as exc:  # the hang this file exists to prevent
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"the pytest session did not end within {DEADLINE_S} s:\n{out[-3000:]}")


def test_the_project_configures_a_per_test_timeout_that_works_with_threads() -> None:
    opts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 60 <= int(opts["timeout"]) <= 600, opts.get("timeout")
    assert opts["timeout_method"] == "thread"  # "signal" cannot end a hang inside C code or at exit
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(d.replace(" ", "").startswith("pytest-timeout") for d in dev), dev


def test_conftest_loads_the_guards(request: pytest.FixtureRequest) -> None:
    hooks = [impl.function for impl in request.config.hook.pytest_unconfigure.get_hookimpls()]
    assert guards.pytest_unconfigure in hooks
    assert "_no_thread_outlives_its_test" in request.fixturenames  # autouse: every test of the suite


def test_a_test_hanging_in_the_main_thread_is_ended_by_the_timeout(tmp_path: Path) -> None:
    done = _session(tmp_path, HANGS_IN_THE_MAIN_THREAD, "-o", "timeout=3")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Timeout" in out and "test_waits_forever" in out, out[-3000:]


def test_a_failing_test_that_leaves_a_thread_looping_does_not_hang_the_session(tmp_path: Path) -> None:
    done = _session(tmp_path, FAILS_WITH_A_LOOPING_THREAD)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "failed before stopping the thread" in out, out[-3000:]  # the test's own failure is reported
    assert "left 1 non-daemon thread(s) running" in out and "'churn'" in out, out[-3000:]
    assert "guards: 1 non-daemon thread(s) still running at the end of the session" in out, out[-3000:]


def test_a_passing_test_that_leaves_a_thread_running_errors_and_the_session_ends(tmp_path: Path) -> None:
    done = _session(tmp_path, PASSES_WITH_A_LOOPING_THREAD)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "1 passed, 1 error" in out and "'forever'" in out, out[-3000:]

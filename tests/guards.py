"""Guards that keep one broken test from hanging the whole suite (a pytest plugin; conftest imports it).

pytest-timeout (configured in pyproject.toml) ends a test that blocks in the main thread. What it
cannot see is a test that fails *while a thread it started is still running*: the test ends, the
timer is cancelled, and at exit the interpreter waits forever for the non-daemon thread. So:

* after each test, a non-daemon thread the test started and left running is given a bounded
  grace period to finish; if it does not, the test errors naming the thread (the leak is a bug);
* at the very end of the session, if such a thread is still alive, its stack is printed and the
  process exits with the session's status instead of waiting on it forever.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator

import pytest

# how long a test's leftover threads may take to finish on their own (a stop flag being noticed)
THREAD_GRACE_S = float(os.environ.get("FEATURESTORE_TEST_THREAD_GRACE", "10"))

_leaked: list[threading.Thread] = []
_status: list[int] = []


def _joined_at_exit(t: threading.Thread) -> bool:
    """Idle executor workers are stopped by their own atexit hook: not a hang."""
    target = getattr(t, "_target", None)
    return getattr(target, "__module__", "") == "concurrent.futures.thread"


def _running_non_daemon(exclude: set[threading.Thread]) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t not in exclude
        and t is not threading.main_thread()
        and not t.daemon
        and t.is_alive()
        and not _joined_at_exit(t)
    ]


def _stacks(threads: list[threading.Thread]) -> str:
    frames = sys._current_frames()
    parts = []
    for t in threads:
        frame = frames.get(t.ident or -1)
        where = "".join(traceback.format_stack(frame)[-4:]) if frame is not None else "  (no frame)\n"
        parts.append(f"thread {t.name!r}:\n{where}")
    return "".join(parts)


@pytest.fixture(autouse=True)
def _no_thread_outlives_its_test() -> Iterator[None]:
    """Error the test that leaves a non-daemon thread running past a bounded grace period."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    left = _running_non_daemon(before)
    for t in left:
        t.join(max(0.0, deadline - time.monotonic()))
    still = [t for t in left if t.is_alive()]
    if still:
        _leaked.extend(still)
        pytest.fail(
            f"the test left {len(still)} non-daemon thread(s) running {THREAD_GRACE_S:.0f} s after it "
            f"ended (stop threads in a finally, join with a timeout):\n{_stacks(still)}",
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit now rather than wait at interpreter shutdown for a thread that never ends."""
    alive = [t for t in _leaked if t.is_alive()] + [
        t for t in _running_non_daemon(set(_leaked)) if t.is_alive()
    ]
    for t in alive:  # a last short chance (threads started by session fixtures included)
        t.join(1.0)
    alive = [t for t in alive if t.is_alive()]
    if not alive:
        return
    status = _status[-1] if _status and _status[-1] != 0 else 1
    sys.stderr.write(
        f"\nguards: {len(alive)} non-daemon thread(s) still running at the end of the session; "
        f"exiting with status {status} instead of waiting for them:\n{_stacks(alive)}"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

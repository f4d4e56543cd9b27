"""The test suite survives another pytest session running on the same machine at the same time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from featurestore.config import libpq_url


def test_a_second_pytest_session_cannot_take_the_server_away(
    pg_admin_url: URL, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, pg_server: object
) -> None:
    """A second session resets the permissions of pytest's shared temporary root; ours must not live there."""
    if pg_server is None:
        pytest.skip("runs against the embedded server only (FEATURESTORE_TEST_URL names another)")  # pragma: no cover
    other = tmp_path / "other_session"
    other.mkdir()
    (other / "test_tiny.py").write_text("def test_tmp(tmp_path):\n    assert tmp_path.is_dir()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(other)],
        cwd=other, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # the session's server is still reachable and its data directory still accessible
    with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CHECKPOINT")  # touches the data directory
    host = pg_admin_url.query.get("host")
    assert isinstance(host, str)
    shared_root = tmp_path_factory.getbasetemp().parent  # pytest-of-<user>, shared by every session
    assert not Path(host).resolve().is_relative_to(shared_root.resolve())

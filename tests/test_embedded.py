"""The embedded server: shared by processes, unix socket only, private data dir, stale-state recovery."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from featurestore.config import libpq_url
from featurestore.embedded import EmbeddedServer, read_status


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """A private home (mkdtemp: 0700, short unix-socket path), not under pytest's shared temporary
    root, which a concurrent pytest session may re-permission or prune under a running server."""
    path = Path(tempfile.mkdtemp(prefix="fs-emb-"))
    try:
        yield path
    finally:
        EmbeddedServer(path, cleanup="keep").stop()  # whatever a failed test left running
        shutil.rmtree(path, ignore_errors=True)


def test_start_status_share_and_stop(home: Path) -> None:
    srv = EmbeddedServer(home, cleanup="keep")
    assert not srv.status().running
    url = srv.start()
    st = srv.status()
    assert st.running and st.initialized and st.postgres_version == 18 and st.pid
    # data directory is private to the server user
    assert stat.S_IMODE(os.stat(srv.data_dir).st_mode) == 0o700
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.info.host.startswith("/")  # a unix socket directory
    # a second process on the same home joins the same server (same postmaster pid)
    code = (
        "import sys; from pathlib import Path; from featurestore.embedded import EmbeddedServer;"
        "s = EmbeddedServer(Path(sys.argv[1])); s.start(); print(s.status().pid)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == st.pid
    assert srv.status().running  # the keep marker kept it up after the other process exited
    assert srv.stop()
    assert not srv.status().running
    assert not srv.stop()


def test_stale_pid_file_and_dead_handles_are_recovered(home: Path) -> None:
    srv = EmbeddedServer(home, cleanup="keep")
    srv.start()
    srv.stop()
    # simulate a crash: a postmaster.pid naming a dead process, and a dead handle pid
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file = srv.data_dir / "postmaster.pid"
    pid_file.write_text(f"{dead.pid}\n{srv.data_dir}\n0\n5432\n{srv.data_dir}\n\n0 0\nready\n")
    (srv.data_dir / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    assert not read_status(srv.data_dir).running
    url = srv.start()
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert dead.pid not in json.loads((srv.data_dir / ".handle_pids.json").read_text())
    srv.stop()


def test_server_settings_are_sized_from_memory() -> None:
    from featurestore.embedded import server_settings

    gib = 2**30
    small, big = server_settings(2 * gib), server_settings(256 * gib)
    assert small == {"random_page_cost": "1.1", "effective_cache_size": "1024MB", "work_mem": "4MB"}
    assert big["effective_cache_size"] == f"{128 * 1024}MB" and big["work_mem"] == "64MB"


def test_settings_applied_once_and_a_users_change_is_kept(home: Path) -> None:
    from featurestore.embedded import TUNED_MARKER, server_settings

    srv = EmbeddedServer(home, cleanup="keep")
    url = srv.start()
    want = server_settings()
    assert json.loads((srv.data_dir / TUNED_MARKER).read_text()) == want
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:  # a new session sees them
        for name in want:
            row = conn.execute("SELECT setting, unit, source FROM pg_settings WHERE name = %s", (name,)).fetchone()
            assert row is not None and row[2] == "configuration file", (name, row)
        assert conn.execute("SHOW random_page_cost").fetchone() == ("1.1",)
        assert conn.execute("SHOW work_mem").fetchone() == (want["work_mem"],)
        conn.execute("ALTER SYSTEM SET random_page_cost = 2")  # the user's own choice
        conn.execute("SELECT pg_reload_conf()")
    assert srv.stop()
    url = EmbeddedServer(home, cleanup="keep").start()  # restart: the settings are not applied again
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SHOW random_page_cost").fetchone() == ("2",)
    assert EmbeddedServer(home, cleanup="keep").stop()

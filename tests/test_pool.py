"""The pool: bounded, clear timeouts, no leaked connections, survives dropped connections."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import ConnectionError, PoolTimeoutError


def _server_connections(admin: URL, database: str) -> int:
    with psycopg.connect(libpq_url(admin)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'featurestore'",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture()
def url(make_database: Callable[[str], URL]) -> URL:
    u = make_database("pool")
    FeatureStore(u, auto_migrate=True).close()
    return u


def test_pool_bounds_and_times_out_clearly(url: URL) -> None:
    fs = FeatureStore(url, pool_size=2, max_overflow=1, pool_timeout=0.3)
    try:
        held = [fs.db.connection() for _ in range(3)]
        conns = [cm.__enter__() for cm in held]
        assert fs.db.pool_status()["checked_out"] == 3
        with pytest.raises(PoolTimeoutError, match=r"2 pooled \(\+1 overflow\).*pool_size") as info:
            with fs.db.connection():
                pass
        assert "0.3 s" in str(info.value)
        for cm, conn in zip(held, conns):
            assert not conn.closed
            cm.__exit__(None, None, None)
        assert fs.db.pool_status()["checked_out"] == 0
    finally:
        fs.close()


def test_close_leaves_no_server_connections(url: URL, pg_admin_url: URL) -> None:
    fs = FeatureStore(url, pool_size=3)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with fs.db.connection() as conn:
                barrier.wait(timeout=10)
                conn.execute("SELECT 1")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(3)]
    try:
        for t in threads:
            t.start()
    finally:
        barrier_broken = False
        for t in threads:
            t.join(timeout=60)
        if any(t.is_alive() for t in threads):
            barrier.abort()  # release any thread still waiting, then give it a bounded join
            barrier_broken = True
            for t in threads:
                t.join(timeout=60)
    assert not barrier_broken and not any(t.is_alive() for t in threads)
    assert errors == []
    assert _server_connections(pg_admin_url, url.database or "") >= 3
    fs.close()
    # a closed connection's backend leaves pg_stat_activity a moment after the client hung up:
    # poll (bounded) instead of racing its exit
    for _ in range(1000):
        if _server_connections(pg_admin_url, url.database or "") == 0:
            break
        threading.Event().wait(0.01)
    assert _server_connections(pg_admin_url, url.database or "") == 0


def test_connections_are_autocommit_and_left_clean(url: URL) -> None:
    with FeatureStore(url, pool_size=1, max_overflow=0) as fs:
        with fs.db.connection() as conn:
            assert conn.autocommit
            conn.execute("BEGIN")
            conn.execute("CREATE TEMP TABLE scratch (x int)")
        # the same single connection comes back rolled back and in autocommit
        with fs.db.connection() as conn:
            assert conn.autocommit
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)


def test_idempotent_reads_survive_killed_connections(url: URL, pg_admin_url: URL) -> None:
    with FeatureStore(url, pool_size=3, max_overflow=0) as fs:
        # fill the pool with three live connections
        cms = [fs.db.connection() for _ in range(3)]
        for cm in cms:
            cm.__enter__()
        for cm in cms:
            cm.__exit__(None, None, None)
        # a server restart looks like this to a client: every backend is gone
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'featurestore'",
                (url.database,),
            )
        assert fs.db.run(lambda c: c.execute("SELECT 42").fetchone(), idempotent=True) == (42,)
        # the whole stale generation was invalidated: the following calls all succeed at once
        for _ in range(3):
            assert fs.db.run(lambda c: c.execute("SELECT 1").fetchone(), idempotent=True) == (1,)


def test_non_idempotent_calls_are_not_retried(url: URL, pg_admin_url: URL) -> None:
    with FeatureStore(url, pool_size=1, max_overflow=0) as fs:
        fs.db.run(lambda c: c.execute("SELECT 1"))
        with psycopg.connect(libpq_url(pg_admin_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'featurestore'",
                (url.database,),
            )
        with pytest.raises(ConnectionError, match="lost the connection"):
            fs.db.run(lambda c: c.execute("SELECT 1"))
        assert fs.db.run(lambda c: c.execute("SELECT 2").fetchone()) == (2,)


def test_unreachable_server_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ConnectionError, match="cannot connect to postgresql\\+psycopg://u:\\*\\*\\*@"):
        FeatureStore("postgresql://u:secret@/db?host=/nonexistent-socket-dir")

"""Server errors leave the store typed: only a real disconnect is a ConnectionError (issue 11 item 6).

Every case is produced on the real server: a statement timeout, a cancel from another session, a
lock timeout behind a held lock, a terminated backend, and real deadlocks between a load and
another transaction. Before the fix every one of them was "lost the connection".
"""

from __future__ import annotations

import builtins
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

import featurestore
from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import (
    ConnectionError,
    DatabaseError,
    DeadlockError,
    FeatureStoreError,
    LockTimeoutError,
    QueryCanceledError,
    ValidationError,
)


@pytest.fixture(scope="module")
def url(make_database: Callable[[str], URL]) -> URL:
    u = make_database("errors")
    with FeatureStore(u, auto_migrate=True) as fs:
        fs.ingest(make_bars(["AAA", "DLA", "DLB"], 50, seed=3))
    return u


def _with_options(url: URL, options: str) -> URL:
    return url.update_query_dict({"options": options})


def _wait_until(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...], what: str) -> None:
    """Poll the server until ``query`` returns a row (bounded: fails the test, never hangs it)."""
    for _ in range(3000):
        if conn.execute(query, params).fetchone() is not None:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def bars_locked(url: URL) -> Iterator[psycopg.Connection[Any]]:
    """Another session holding an ACCESS EXCLUSIVE lock on bars until the test ends."""
    with psycopg.connect(libpq_url(url)) as holder:
        holder.execute("LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
        try:
            yield holder
        finally:
            holder.rollback()


def test_statement_timeout_is_a_query_canceled_error(url: URL, bars_locked: Any) -> None:
    with FeatureStore(_with_options(url, "-c statement_timeout=200"), cache=None) as fs:
        with pytest.raises(QueryCanceledError) as info:
            fs.get_latest("AAA")
        err = info.value
        assert err.sqlstate == "57014"
        assert err.server_message is not None and "statement timeout" in err.server_message
        assert "statement timeout" in str(err) and "57014" in str(err)
        assert isinstance(err.__cause__, psycopg.errors.QueryCanceled)
        assert not isinstance(err, builtins.ConnectionError)
        assert "lost the connection" not in str(err)
        # the connection was fine all along: it went back to the pool and is usable
        bars_locked.rollback()
        assert fs.get_latest("AAA")["close"].notna().all()


def test_lock_timeout_is_a_lock_timeout_error(url: URL, bars_locked: Any) -> None:
    with FeatureStore(_with_options(url, "-c lock_timeout=200"), cache=None) as fs:
        with pytest.raises(LockTimeoutError) as info:
            fs.get_latest("AAA")
        assert info.value.sqlstate == "55P03"
        assert "lock timeout" in (info.value.server_message or "")
        assert isinstance(info.value, DatabaseError) and isinstance(info.value, FeatureStoreError)
        assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)


def test_cancel_from_another_session_is_not_a_disconnect(url: URL) -> None:
    with FeatureStore(url, pool_size=1, max_overflow=0, cache=None) as fs:
        calls: list[int] = []
        outcome: list[BaseException] = []

        def fn(conn: psycopg.Connection[Any]) -> Any:
            calls.append(conn.info.backend_pid)
            return conn.execute("SELECT pg_sleep(600)").fetchone()

        def run() -> None:
            try:
                fs.db.run(fn, idempotent=True)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        with psycopg.connect(libpq_url(url), autocommit=True) as admin:
            try:
                worker.start()
                _wait_until(
                    admin,
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%%' AND state = 'active' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()",
                    (),
                    "the sleeping query",
                )
                admin.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_sleep(600)%%' AND pid <> pg_backend_pid()"
                )
            finally:
                worker.join(timeout=60)
                if worker.is_alive():  # never leave the thread behind, whatever failed above
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'SELECT pg_sleep(600)%%' AND pid <> pg_backend_pid()"
                    )
                    worker.join(timeout=60)
        assert not worker.is_alive()
        assert len(outcome) == 1
        err = outcome[0]
        assert isinstance(err, QueryCanceledError), repr(err)
        assert err.sqlstate == "57014" and "user request" in (err.server_message or "")
        assert len(calls) == 1  # a refused statement is not retried, even for an idempotent read
        # and the pool was not thrown away: the same server connection serves the next call
        assert fs.db.run(lambda c: c.info.backend_pid) == calls[0]


def test_terminated_backend_is_a_connection_error_and_idempotent_reads_retry(url: URL) -> None:
    with FeatureStore(url, pool_size=2, cache=None) as fs:
        pids: list[int] = []

        def kill_self_once(conn: psycopg.Connection[Any]) -> Any:
            pids.append(conn.info.backend_pid)
            if len(pids) == 1:
                conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return conn.execute("SELECT 42").fetchone()

        assert fs.db.run(kill_self_once, idempotent=True) == (42,)
        assert len(pids) == 2 and pids[0] != pids[1]  # retried once, on a fresh connection

        def kill_self(conn: psycopg.Connection[Any]) -> Any:
            return conn.execute("SELECT pg_terminate_backend(pg_backend_pid())").fetchone()

        with pytest.raises(ConnectionError, match="lost the connection") as info:
            fs.db.run(kill_self)  # not idempotent: not retried
        assert info.value.sqlstate == "57P01"
        # the featurestore error is also the builtin ConnectionError it shadows
        assert isinstance(info.value, builtins.ConnectionError)
        assert featurestore.ConnectionError is ConnectionError
        with pytest.raises(builtins.ConnectionError):
            with fs.db.connection() as conn:
                conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert fs.db.run(lambda c: c.execute("SELECT 1").fetchone()) == (1,)


def test_errors_pickle_with_their_sqlstate() -> None:
    err = LockTimeoutError("x (SQLSTATE 55P03)", sqlstate="55P03", server_message="x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LockTimeoutError and back.sqlstate == "55P03" and back.server_message == "x"
    assert str(back) == str(err)
    # a ValidationError keeps its location (a joblib worker's error reaches create_view whole)
    verr = ValidationError("value too big", source="view v v1", row=3, column="obv")
    back = pickle.loads(pickle.dumps(verr))
    assert type(back) is ValidationError and str(back) == str(verr)
    assert (back.message, back.source, back.row, back.column) == ("value too big", "view v v1", 3, "obv")


class _Deadlocker:
    """Chunks for a load that deadlock it with another transaction on the first ``times`` attempts.

    The load locks DLA (its first chunk); another session, whose deadlock_timeout is long so that
    the LOAD is the transaction PostgreSQL aborts, locks DLB and waits for DLA; the load's second
    chunk then needs DLB: a real deadlock, detected by the server.
    """

    def __init__(self, url: URL, chunks: list[Any], times: int) -> None:
        self.url, self.chunks, self.times = url, chunks, times
        self.attempts = 0
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def __call__(self) -> Iterable[Any]:
        self.attempts += 1
        for t in self.threads:  # the previous attempt's other session is done by now
            t.join(timeout=60)
        return self._gen(self.attempts <= self.times)

    def _gen(self, deadlock: bool) -> Iterator[Any]:
        yield self.chunks[0]
        if deadlock:
            locked = threading.Event()
            t = threading.Thread(target=self._other, args=(locked,), daemon=True)
            self.threads.append(t)
            t.start()
            assert locked.wait(60), "the other session did not start"
            with psycopg.connect(libpq_url(self.url), autocommit=True) as admin:
                _wait_until(
                    admin,
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'deadlocker' AND wait_event_type = 'Lock'",
                    (),
                    "the other session to wait for DLA",
                )
        yield self.chunks[1]

    def _other(self, locked: threading.Event) -> None:
        try:
            with psycopg.connect(libpq_url(self.url), application_name="deadlocker") as conn:
                conn.execute("SET deadlock_timeout = '10min'")
                # a writer's per-entity locks (featurestore.placement.lock_entities), in the other order
                lock = "SELECT 1 FROM entity_keys WHERE entity_id = (SELECT entity_id FROM entities WHERE symbol = %s) FOR UPDATE"
                conn.execute(lock, ("DLB",))
                locked.set()
                conn.execute(lock, ("DLA",))
                conn.rollback()
        except BaseException as exc:
            locked.set()
            self.errors.append(exc)

    def stop(self) -> None:
        for t in self.threads:
            t.join(timeout=60)


def _deadlock_chunks() -> list[Any]:
    from featurestore import load as _load

    df = make_bars(["DLA", "DLB"], 10, seed=9, start="2030-01-01")
    return [_load.validate_frame(df[df["symbol"] == s].reset_index(drop=True)).sorted() for s in ("DLA", "DLB")]


@pytest.mark.parametrize("times", [1, 4])
def test_load_deadlocks_retry_then_raise_deadlock_error(url: URL, times: int) -> None:
    with FeatureStore(url, cache=None) as fs:
        before = fs.get_bars(["DLA", "DLB"])
        dl = _Deadlocker(url, _deadlock_chunks(), times)
        try:
            def call() -> object:
                return fs._write(  # the load's retry loop, fed real deadlocks
                    dl, source="deadlocks", on_conflict="update", create_symbols=True,
                    small=False, progress=False, total=None,
                )

            if times < 4:
                result = call()
                assert dl.attempts == times + 1
                assert result.inserted == 20
                assert fs.last_load is result
            else:
                with pytest.raises(DeadlockError, match="aborted by 4 deadlocks") as info:
                    call()
                assert dl.attempts == 4
                assert info.value.sqlstate == "40P01"
                assert isinstance(info.value.__cause__, DeadlockError)
                assert type(info.value) is DeadlockError  # not the bare base class
                pd.testing.assert_frame_equal(fs.get_bars(["DLA", "DLB"]), before)  # nothing written
        finally:
            dl.stop()
        assert not any(t.is_alive() for t in dl.threads)
        assert dl.errors == []

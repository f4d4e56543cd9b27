"""Bulk (ADBC) reads hold at most ``bulk_connections`` server connections, whatever fails (issue 11 item 5).

A read that fails in any way other than a lost connection (a view's table dropped between planning
and fetch, a statement failing at execution, a KeyboardInterrupt in the middle of the stream) must
return or close its connection: counted in pg_stat_activity, the documented bound of 2 holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import psycopg
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import libpq_url
from featurestore.errors import ConnectionError as FeatureStoreConnectionError
from featurestore.errors import DatabaseError, QueryCanceledError

SYMBOLS = [f"S{i}" for i in range(4)]
BOUND = 2  # Reader's default bulk_connections
FAILURES = 3  # more failures than the bound: each leaked connection would show


@pytest.fixture()
def fs(make_database: Callable[[str], URL]) -> Iterator[FeatureStore]:
    store = FeatureStore(make_database("bulk_conns"), auto_migrate=True, cache=None)
    store.ingest(make_bars(SYMBOLS, 300, seed=5), progress=False)
    store.create_view("tech", ["sma_3"])
    yield store
    store.close()


@pytest.fixture()
def admin(fs: FeatureStore) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(fs.db.url), autocommit=True) as conn:
        yield conn


def bulk_backends(admin: psycopg.Connection[Any]) -> int:
    """Server connections of the reader's bulk pool to this database, once closed ones are gone.

    A closed connection's backend leaves pg_stat_activity a moment after the client hangs up, so
    wait (bounded) until the count is within the bound; a leak never gets there.
    """
    q = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'featurestore-bulk'"
    )
    n = -1
    for _ in range(100):
        n = int(admin.execute(q).fetchone()[0])  # type: ignore[index]
        if n <= BOUND:
            return n
        time.sleep(0.05)
    return n


def assert_bound_holds(fs: FeatureStore, admin: psycopg.Connection[Any]) -> None:
    # the reader still works after the failures, and two reads at once still fit
    assert len(fs.reader.get_bars(SYMBOLS)) == 4 * 300
    assert len(fs.reader.get_features(SYMBOLS, view="tech")) == 4 * 300
    assert bulk_backends(admin) <= BOUND
    assert fs.reader._bulk.open_connections <= BOUND


def test_view_table_dropped_between_planning_and_fetch(fs: FeatureStore, admin: psycopg.Connection[Any]) -> None:
    reader = fs.reader
    real_lookup = reader._lookup

    def lookup_then_drop(names: Any) -> dict[str, int]:
        ids = real_lookup(names)  # planning is done: the view and the symbols are resolved
        admin.execute('DROP TABLE IF EXISTS "fv_tech_v1"')
        return ids

    reader._lookup = lookup_then_drop  # type: ignore[method-assign]
    for _ in range(FAILURES):
        with pytest.raises(DatabaseError, match=r'bulk read: .*relation "fv_tech_v1" does not exist.*\(SQLSTATE 42P01\)'):
            reader.get_features(SYMBOLS, view="tech")
    del reader._lookup
    assert bulk_backends(admin) <= BOUND
    assert len(fs.reader.get_bars(SYMBOLS)) == 4 * 300
    assert bulk_backends(admin) <= BOUND


def test_statement_failing_at_execution(fs: FeatureStore, admin: psycopg.Connection[Any]) -> None:
    for _ in range(FAILURES):
        with pytest.raises(DatabaseError, match=r"division by zero.*\(SQLSTATE 22012\)") as info:
            fs.reader._fetch("SELECT 1 / (x - x) FROM generate_series(1, 3) x", {})
        assert info.value.sqlstate == "22012" and isinstance(info.value.__cause__, dbapi.DataError)
    assert_bound_holds(fs, admin)


def test_keyboard_interrupt_in_the_middle_of_the_stream(
    fs: FeatureStore, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while ADBC streams the COPY result: the half-read connection is closed, not kept."""
    batches: list[int] = []

    def interrupted(self: Any) -> Any:
        stream = self.fetch_record_batch()  # the real stream, from the real server
        batches.append(stream.read_next_batch().num_rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(dbapi.Cursor, "fetch_arrow_table", interrupted)
    for _ in range(FAILURES):
        with pytest.raises(KeyboardInterrupt):
            fs.reader.get_bars(SYMBOLS)
    assert len(batches) == FAILURES and all(n > 0 for n in batches)
    monkeypatch.undo()
    assert_bound_holds(fs, admin)


def test_a_lost_connection_is_retried_once_and_other_errors_are_not(
    fs: FeatureStore, admin: psycopg.Connection[Any]
) -> None:
    """Server-side termination of the idle bulk connection: the next read reconnects; a server
    error (not a disconnect) is raised as is, without running the statement twice."""
    assert len(fs.reader.get_bars(SYMBOLS)) == 4 * 300
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'featurestore-bulk'"
    )
    assert len(fs.reader.get_bars(SYMBOLS)) == 4 * 300  # retried on a fresh connection
    # a statement the server cancels (SQLSTATE 57014, not a disconnect) is raised as is and not
    # run a second time; a sequence counts the runs (nextval is not rolled back)
    admin.execute("CREATE SEQUENCE runs")
    cancelled = (
        "WITH s AS MATERIALIZED (SELECT nextval('runs') AS n), "
        "c AS MATERIALIZED (SELECT pg_cancel_backend(pg_backend_pid())) "
        "SELECT s.n FROM s, c, generate_series(1, 100000000) g"
    )
    with pytest.raises(QueryCanceledError, match="cancel") as info:
        fs.reader._fetch(cancelled, {})
    assert not isinstance(info.value, FeatureStoreConnectionError)
    assert info.value.sqlstate == "57014" and isinstance(info.value.__cause__, adbc_driver_manager.Error)
    assert admin.execute("SELECT last_value FROM runs").fetchone()[0] == 1  # type: ignore[index]
    assert_bound_holds(fs, admin)

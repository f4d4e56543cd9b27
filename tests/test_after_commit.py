"""Nothing after a commit turns a committed write into an exception (issue 11 item 7).

The failures are real server failures: the post-load ANALYZE runs into ``lock_timeout`` behind a
lock another session holds, and the post-backfill ANALYZE of a new view is canceled from another
session while it waits for a lock. Before the fix both calls raised although their data had
committed (and ``last_load`` stayed unset, so a retry with ``on_conflict="error"`` failed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from helpers import SEED_VIEW, assert_features_match_talib, make_bars
from sqlalchemy.engine import URL

from featurestore import placement
from featurestore.client import FeatureStore
from featurestore.config import libpq_url


def _wait_until(conn: psycopg.Connection[Any], query: str, what: str) -> Any:
    """Poll until ``query`` returns a row, and return it (bounded: fails the test, never hangs)."""
    for _ in range(3000):
        row = conn.execute(query).fetchone()
        if row is not None:
            return row
        threading.Event().wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def url(make_database: Callable[[str], URL]) -> Iterator[URL]:
    u = make_database("after_commit")
    FeatureStore(u, auto_migrate=True).close()
    yield u


def test_failed_analyze_after_a_load_does_not_fail_the_load(url: URL, caplog: pytest.LogCaptureFixture) -> None:
    df = make_bars(["AAA", "BBB", "CCC"], 400, seed=5)  # 1,200 new rows into an empty table: ANALYZE runs
    locked = url.update_query_dict({"options": "-c lock_timeout=200"})
    with psycopg.connect(libpq_url(url)) as holder, FeatureStore(locked, cache=None) as fs:
        # SHARE UPDATE EXCLUSIVE lets the load write (ROW EXCLUSIVE) but blocks ANALYZE
        holder.execute("LOCK TABLE bars IN SHARE UPDATE EXCLUSIVE MODE")
        try:
            with caplog.at_level(logging.WARNING, logger="featurestore"):
                result = fs.ingest(df)
            assert result.inserted == len(df) and result.load_id is not None
            assert fs.last_load is result
            assert any("ANALYZE" in r.getMessage() and "lock timeout" in r.getMessage() for r in caplog.records), [
                r.getMessage() for r in caplog.records
            ]
            # committed: another session sees every row and the load's log entry
            with psycopg.connect(libpq_url(url), autocommit=True) as other:
                assert other.execute("SELECT count(*) FROM bars").fetchone() == (len(df),)
                assert other.execute("SELECT rows_inserted FROM loads WHERE load_id = %s", (result.load_id,)).fetchone() == (
                    len(df),
                )
            # and a careful retry is the no-op it should be
            again = fs.ingest(df, on_conflict="error")
            assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(df))
        finally:
            holder.rollback()


def test_failed_analyze_after_a_backfill_does_not_fail_create_view(url: URL, caplog: pytest.LogCaptureFixture) -> None:
    df = make_bars(["AAA", "BBB"], 300, seed=8)
    with FeatureStore(url, cache=None) as fs:
        fs.ingest(df)
        outcome: list[Any] = []

        def create() -> None:
            try:
                outcome.append(fs.create_view("tv", SEED_VIEW))
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=create, daemon=True)
        with (
            psycopg.connect(libpq_url(url)) as rows_holder,
            psycopg.connect(libpq_url(url)) as table_holder,
            psycopg.connect(libpq_url(url), autocommit=True) as admin,
        ):
            try:
                # 1. hold the entity rows: the backfill waits before it writes anything
                placement.lock_entities(rows_holder, None)  # every entity's writer lock
                with caplog.at_level(logging.WARNING, logger="featurestore"):
                    worker.start()
                    # 2. once the view's table exists, hold a lock that blocks only ANALYZE
                    _wait_until(admin, "SELECT 1 WHERE to_regclass('fv_tv_v1') IS NOT NULL", "the view table")
                    table_holder.execute("LOCK TABLE fv_tv_v1 IN SHARE UPDATE EXCLUSIVE MODE")
                    rows_holder.rollback()  # 3. let the backfill run
                    # 4. the ANALYZE after it waits for our lock: cancel it (a real server error)
                    (pid,) = _wait_until(
                        admin,
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'ANALYZE%' AND wait_event_type = 'Lock' "
                        "AND datname = current_database()",
                        "the ANALYZE to wait",
                    )
                    admin.execute("SELECT pg_cancel_backend(%s::int4)", (pid,))  # int4: Citus adds a bigint (global pid) overload
                    worker.join(timeout=120)
            finally:
                rows_holder.rollback()
                table_holder.rollback()
                worker.join(timeout=120)
        assert not worker.is_alive()
        assert len(outcome) == 1
        view = outcome[0]
        assert not isinstance(view, BaseException), repr(view)
        assert view.status == "ready" and view.table_name == "fv_tv_v1"
        assert any("ANALYZE" in r.getMessage() and "canceling statement" in r.getMessage() for r in caplog.records)
        assert fs.describe_view("tv")["status"] == "ready"
        with fs.db.connection() as conn:
            for sym in ("AAA", "BBB"):
                assert_features_match_talib(conn, "fv_tv_v1", sym)

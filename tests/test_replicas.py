"""Read replicas (issue 15) against a real streaming replica of the test server.

The standby is made here with the embedded server's own ``pg_basebackup`` (tests/replica.py).
Lag is real (the standby's WAL replay paused), and so is replica loss (the standby stopped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from helpers import make_bars
from replica import Standby
from sqlalchemy.engine import URL

from featurestore import AsyncFeatureStore, FeatureStore
from featurestore.config import libpq_url

SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.fixture(scope="module")
def standby(db_url: URL) -> Iterator[tuple[Standby, str]]:
    with FeatureStore(db_url, auto_migrate=True, cache=None) as s:
        s.ingest(make_bars(SYMBOLS, 50, seed=1), progress=False, create_symbols=True)
        s.create_view("v", ["sma_5"], progress=False)
    primary = libpq_url(db_url)
    sb = Standby.of(primary, database=db_url.database or "postgres")
    try:
        with psycopg.connect(primary, autocommit=True) as c:
            sb.wait_for(c.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
        yield sb, primary
    finally:
        sb.close()


def _next_bar(store: FeatureStore, sym: str) -> pd.DataFrame:
    last = store.get_latest(sym)["close"].index[0][1]
    return make_bars([sym], 1, start=str((last + pd.Timedelta(days=1)).date()), seed=int(last.timestamp()) % 1000)


def test_reads_go_to_the_replica(standby: tuple[Standby, str], db_url: URL) -> None:
    sb, _ = standby
    with FeatureStore(db_url, cache=None) as ref, FeatureStore(db_url, cache=None, read_replicas=[sb.url]) as s:
        for call in (lambda x: x.get_latest(SYMBOLS, view="v"), lambda x: x.get_bars(SYMBOLS),
                     lambda x: x.get_features(["AAA"], view="v", include_bars=True),
                     lambda x: x.get_latest("AAA", as_dict=True)):
            a, b = call(ref), call(s)
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b)
            else:
                assert a == b
        st = s.stats()["replicas"]
        assert st["replicas"][0]["reads"] == 4 and st["primary_reads"] == 0


def test_writes_go_to_the_primary_and_are_read_back_while_the_replica_lags(standby: tuple[Standby, str], db_url: URL) -> None:
    sb, _ = standby
    with FeatureStore(db_url, cache=None, read_replicas=[sb.url], replica_wait=0.05) as s, \
            FeatureStore(db_url, cache=None, read_replicas=[sb.url]) as other:
        before = other.get_latest("BBB")
        sb.pause()
        try:
            new = _next_bar(s, "BBB")
            s.ingest(new, progress=False)  # a write: the primary (the standby would refuse it)
            got = s.get_latest("BBB")  # read-your-writes: the lagging replica cannot serve it
            assert got.index[0][1] == new["ts"].iloc[0]
            assert s.stats()["replicas"]["lagging_reads"] >= 1
            # a store that wrote nothing reads the replica as it stands (the old row)
            pd.testing.assert_frame_equal(other.get_latest("BBB"), before)
            assert other.stats()["replicas"]["replicas"][0]["reads"] >= 2
        finally:
            sb.resume()
        # replayed: the writer's reads go to the replica again, and see its write
        reads = s.stats()["replicas"]["replicas"][0]["reads"]
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while s.stats()["replicas"]["replicas"][0]["reads"] == reads and dt.datetime.now() < deadline:
            got = s.get_latest("BBB")
        assert s.stats()["replicas"]["replicas"][0]["reads"] > reads
        assert got.index[0][1] == new["ts"].iloc[0]


def test_reads_that_must_write_go_to_the_primary(standby: tuple[Standby, str], db_url: URL) -> None:
    """A knowledge-time read over history segments makes temporary tables: a standby refuses."""
    sb, primary = standby
    with FeatureStore(db_url, cache=None) as w:
        w.compress_history(before=pd.Timestamp("2020-01-20", tz="UTC"))
        when = pd.Timestamp.now(tz="UTC")
        want = w.get_bars(SYMBOLS, as_known_at=when)
    with psycopg.connect(primary, autocommit=True) as c:
        sb.wait_for(c.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
    with FeatureStore(db_url, cache=None, read_replicas=[sb.url]) as s:
        pd.testing.assert_frame_equal(s.get_bars(SYMBOLS, as_known_at=when), want)
        assert s.stats()["replicas"]["primary_reads"] >= 1
        reads = s.stats()["replicas"]["replicas"][0]["reads"]
        with FeatureStore(db_url, cache=None) as ref:
            pd.testing.assert_frame_equal(s.get_bars(SYMBOLS), ref.get_bars(SYMBOLS))  # segments, merged: read-only
        assert s.stats()["replicas"]["replicas"][0]["reads"] == reads + 1


def test_a_lost_replica_falls_back_to_the_primary(standby: tuple[Standby, str], db_url: URL) -> None:
    sb, _ = standby
    with FeatureStore(db_url, cache=None) as ref, FeatureStore(db_url, cache=None, read_replicas=[sb.url]) as s:
        assert len(s.get_latest(SYMBOLS)) == 3
        sb.stop()
        try:
            for _ in range(3):
                pd.testing.assert_frame_equal(s.get_latest(SYMBOLS), ref.get_latest(SYMBOLS))
                pd.testing.assert_frame_equal(s.get_bars(["AAA"]), ref.get_bars(["AAA"]))
            st = s.stats()["replicas"]
            assert st["replicas"][0]["down"] and st["replicas"][0]["failures"] >= 1 and st["primary_reads"] >= 6
        finally:
            sb.start()


def test_the_async_store_reads_replicas_too(standby: tuple[Standby, str], db_url: URL) -> None:
    import asyncio

    sb, _ = standby

    async def main() -> Any:
        async with AsyncFeatureStore(db_url, cache=None, read_replicas=[sb.url]) as fs:
            bars = await fs.get_bars(SYMBOLS)
            latest = await fs.get_latest(SYMBOLS, view="v")
            return (bars, latest), fs.store.stats()["replicas"]

    (bars, latest), st = asyncio.run(main())
    with FeatureStore(db_url, cache=None) as ref:
        pd.testing.assert_frame_equal(bars, ref.get_bars(SYMBOLS))
        pd.testing.assert_frame_equal(latest, ref.get_latest(SYMBOLS, view="v"))
    assert st["replicas"][0]["reads"] == 2

"""AsyncFeatureStore and call limits (issue 15), against the real server.

Oracles: the sync store's answer to the same call (asked alone, coalescing off), and the
server's own view of what runs (``pg_stat_activity``) for the concurrency limit.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from helpers import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from featurestore import AsyncFeatureStore, FeatureStore, PoolTimeoutError, RateLimitedError
from featurestore.config import libpq_url

SYMBOLS = [f"A{i:03d}" for i in range(50)]


@pytest.fixture(scope="module")
def oracle(db_url: URL) -> Iterator[FeatureStore]:
    with FeatureStore(db_url, auto_migrate=True, cache=None, coalesce=False) as s:
        s.ingest(make_bars(SYMBOLS, 80, seed=5), progress=False, create_symbols=True)
        s.create_view("v", ["sma_5", "rsi_3"], progress=False)
        s.create_view("f", ["sma_3"], dtype="float32", progress=False)
        yield s


def _same(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k] == y[k] or (isinstance(x[k], float) and np.isnan(x[k]) and np.isnan(y[k]))
    else:  # Arrow: NaN != NaN for Table.equals
        assert a.schema == b.schema
        pd.testing.assert_frame_equal(a.to_pandas(), b.to_pandas(), check_exact=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_reads_equal_the_sync_store(oracle: FeatureStore, db_url: URL) -> None:
    cases: list[dict[str, Any]] = [
        {}, {"view": "v"}, {"view": "f"}, {"view": "v", "columns": ["rsi_3", "close"]},
        {"as_dict": True}, {"view": "v", "as_dict": True}, {"as_arrow": True},
        {"as_of": "2020-02-01T00:00Z"}, {"as_known_at": pd.Timestamp.now(tz="UTC")},
    ]

    async def main() -> None:
        async with AsyncFeatureStore(db_url, cache=None) as fs:
            for case in cases:
                for syms in (["A001"], ["A002", "NOPE", "A003"], "A004"):
                    _same(await fs.get_latest(syms, **case), oracle.get_latest(syms, **case))
            _same(await fs.get_bars(["A001", "A002"], "2020-01-10Z", "2020-02-10Z"),
                  oracle.get_bars(["A001", "A002"], "2020-01-10Z", "2020-02-10Z"))
            _same(await fs.get_features(["A001"], view="v", include_bars=True),
                  oracle.get_features(["A001"], view="v", include_bars=True))
            events = pd.DataFrame({"symbol": ["A001", "A002", "NOPE"],
                                   "ts": pd.to_datetime(["2020-01-20", "2020-03-01", "2020-02-01"], utc=True)})
            _same(await fs.get_training_frame(events, view="v"), oracle.get_training_frame(events, view="v"))

    run(main())


def test_many_tasks_share_statements_and_each_gets_its_own_rows(oracle: FeatureStore, db_url: URL) -> None:
    rng = random.Random(7)
    requests = [rng.sample(SYMBOLS + ["NOPE"], rng.randint(1, 4)) for _ in range(300)]
    views = [rng.choice([None, "v"]) for _ in requests]
    want = [oracle.get_latest(r, view=v) for r, v in zip(requests, views)]

    async def main() -> tuple[list[Any], dict[str, int]]:
        async with AsyncFeatureStore(db_url, cache=None) as fs:
            got = await asyncio.gather(*(fs.get_latest(r, view=v) for r, v in zip(requests, views)))
            return list(got), fs.stats()["coalescing"]

    got, counts = run(main())
    for g, w in zip(got, want):
        _same(g, w)
    assert counts["requests"] == 300 and counts["statements"] < 300


def test_cancelled_requests_lose_nothing_and_answer_nothing_twice(oracle: FeatureStore, db_url: URL) -> None:
    rng = random.Random(3)
    requests = [rng.sample(SYMBOLS, rng.randint(1, 3)) for _ in range(200)]
    want = {k: oracle.get_latest(r) for k, r in enumerate(requests)}

    async def main() -> dict[int, Any]:
        async with AsyncFeatureStore(db_url, cache=None) as fs:
            tasks = {k: asyncio.ensure_future(fs.get_latest(r)) for k, r in enumerate(requests)}
            await asyncio.sleep(0)
            for k in range(0, 200, 3):
                tasks[k].cancel()
            done = {}
            for k, t in tasks.items():
                try:
                    done[k] = await t
                except asyncio.CancelledError:
                    done[k] = None
            # the pool is whole and usable after the cancellations
            _same(await fs.get_latest(["A001"]), oracle.get_latest(["A001"]))
            return done

    done = run(main())
    for k, got in done.items():
        if got is None:
            assert k % 3 == 0
        else:
            _same(got, want[k])
    assert sum(g is not None for g in done.values()) >= 200 - 67


def test_the_cache_is_shared_and_writes_invalidate_it(oracle: FeatureStore, db_url: URL) -> None:
    async def main() -> None:
        async with AsyncFeatureStore(db_url, cache="lru") as fs:
            a = await fs.get_latest(["A010"], as_dict=True)
            b = await fs.get_latest(["A010"], as_dict=True)
            assert a == b and fs.store.cache_stats()["hits"] >= 1
            a[0]["close"] = -1.0  # a caller's record is its own
            assert (await fs.get_latest(["A010"], as_dict=True))[0]["close"] != -1.0
            last = pd.Timestamp(b[0]["ts"])
            new = make_bars(["A010"], 1, start=str((last + pd.Timedelta(days=1)).date()), seed=9)
            await fs.ingest(new, progress=False)
            c = await fs.get_latest(["A010"], as_dict=True)
            assert pd.Timestamp(c[0]["ts"]) > last  # the write dropped the cached answer

    run(main())


def _active(url: URL, stop: threading.Event, peak: list[int]) -> None:
    """Sample the server: statements of this database running now (pg_sleep from the calls)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        while not stop.is_set():
            n = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
            ).fetchone()[0]
            peak[0] = max(peak[0], int(n))
            time.sleep(0.005)


def _slow_reads(store: FeatureStore) -> Any:
    """Every get_bars of ``store`` becomes a 50 ms statement on the server (to watch the limit)."""
    original = store.reader.get_bars

    def slow(*args: Any, **kwargs: Any) -> Any:
        store.db.run(lambda c: c.execute("SELECT pg_sleep(0.05)").fetchall())
        return original(*args, **kwargs)

    store.reader.get_bars = slow  # type: ignore[method-assign]
    return original


def test_max_concurrency_holds_on_the_server_async(oracle: FeatureStore, db_url: URL) -> None:
    peak = [0]
    stop = threading.Event()

    async def main() -> None:
        async with AsyncFeatureStore(db_url, cache=None, max_concurrency=2, pool_size=8) as fs:
            _slow_reads(fs.store)
            await asyncio.gather(*(fs.get_bars(["A001"]) for _ in range(12)))
            assert fs.limits.in_flight_peak == 2

    watcher = threading.Thread(target=_active, args=(db_url, stop, peak))
    watcher.start()
    try:
        run(main())
    finally:
        stop.set()
        watcher.join(10)
    assert 1 <= peak[0] <= 2


def test_max_concurrency_holds_on_the_server_threads(oracle: FeatureStore, db_url: URL) -> None:
    peak = [0]
    stop = threading.Event()
    watcher = threading.Thread(target=_active, args=(db_url, stop, peak))
    with FeatureStore(db_url, cache=None, max_concurrency=3, pool_size=8) as fs:
        _slow_reads(fs)
        threads = [threading.Thread(target=fs.get_bars, args=(["A001"],)) for _ in range(15)]
        watcher.start()
        try:
            for t in threads:
                t.start()
        finally:
            for t in threads:
                t.join(30)
            stop.set()
            watcher.join(10)
        assert fs.limits.in_flight_peak == 3
    assert 1 <= peak[0] <= 3


def test_waiting_past_the_timeout_names_the_limit(oracle: FeatureStore, db_url: URL) -> None:
    with FeatureStore(db_url, cache=None, max_concurrency=1, timeout=0) as fs:
        with fs.limits.slot():  # the one slot is taken
            with pytest.raises(PoolTimeoutError, match=r"max_concurrency=1: no free slot .* raise max_concurrency or timeout"):
                fs.get_latest("A001")
        assert len(fs.get_latest("A001")) == 1  # the slot came back
    with FeatureStore(db_url, cache=None, rate_limit=1, timeout=0) as fs:
        fs.get_latest("A001")  # the burst's one token
        with pytest.raises(RateLimitedError, match=r"rate_limit=1 calls/s: .* raise rate_limit or timeout"):
            fs.get_latest("A001")

    async def main() -> None:
        async with AsyncFeatureStore(db_url, cache=None, max_concurrency=1, timeout=0) as fs:
            async with fs.limits.aslot():
                with pytest.raises(PoolTimeoutError, match="max_concurrency=1"):
                    await fs.get_latest("A001")
            assert len(await fs.get_latest("A001")) == 1
        async with AsyncFeatureStore(db_url, cache=None, rate_limit=2, timeout=0) as fs:
            await fs.get_latest("A001")
            await fs.get_latest("A001")
            with pytest.raises(RateLimitedError):
                await fs.get_latest("A001")

    run(main())


def test_bad_limits_are_refused_before_anything_starts(db_url: URL) -> None:
    from featurestore.errors import ConfigError

    for kwargs in ({"max_concurrency": 0}, {"rate_limit": -1}, {"timeout": -1}, {"max_concurrency": 1.5}):
        with pytest.raises(ConfigError):
            FeatureStore(db_url, **kwargs)
        with pytest.raises(ConfigError):
            AsyncFeatureStore(db_url, **kwargs)


def test_closed_store_says_so(db_url: URL) -> None:
    from featurestore.errors import ConnectionError

    async def main() -> None:
        fs = AsyncFeatureStore(db_url, cache=None)
        async with fs:
            pass
        with pytest.raises(ConnectionError, match="closed"):
            await fs.get_bars("A001")
        await fs.aclose()  # idempotent

    run(main())


_request = st.tuples(
    st.lists(st.sampled_from(SYMBOLS[:12] + ["NOPE"]), min_size=1, max_size=4),
    st.sampled_from([None, "v", "f"]),
    st.sampled_from([None, "2020-02-15T00:00Z"]),
    st.booleans(),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(_request, min_size=2, max_size=40), cancel=st.sets(st.integers(0, 39), max_size=8))
def test_coalesced_mixes_equal_asking_alone(oracle: FeatureStore, db_url: URL, requests: list[Any], cancel: set[int]) -> None:
    """Hypothesis-generated concurrent mixes (symbols, views, as_of, records or frames), some
    requests cancelled: every other request gets exactly what it gets alone; none twice."""
    want = [oracle.get_latest(s, view=v, as_of=a, as_dict=d) for s, v, a, d in requests]

    async def main() -> list[Any]:
        async with AsyncFeatureStore(db_url, cache=None) as fs:
            tasks = [asyncio.ensure_future(fs.get_latest(s, view=v, as_of=a, as_dict=d)) for s, v, a, d in requests]
            await asyncio.sleep(0)
            for k in cancel:
                if k < len(tasks):
                    tasks[k].cancel()
            out: list[Any] = []
            for t in tasks:
                try:
                    out.append(await t)
                except asyncio.CancelledError:
                    out.append(None)
            return out

    got = run(main())
    for k, (g, w) in enumerate(zip(got, want)):
        if g is None:
            assert k in cancel
        else:
            _same(g, w)

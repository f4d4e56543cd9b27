"""One-symbol latest reads of a view take one statement: the view version found by an earlier
read is reused, and the statement checks in passing that a lookup would still find it. These
tests change the view between reads (new version, drop, drop and remake with other columns and
dtype, an explicit version) and compare every answer with a store that looks the view up on
each read (coalescing off), for the sync store and the asyncio one.

Oracle: a second FeatureStore with ``coalesce=False`` (the planning path with a view lookup per
read, no cached versions) and, for the values, the stored bars read back by pandas in the test.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore import AsyncFeatureStore, FeatureStore, NotFoundError
from featurestore.config import libpq_url

SYMBOLS = ["L1", "L2", "L3"]


@pytest.fixture(scope="module")
def oracle(db_url: URL) -> Iterator[FeatureStore]:
    with FeatureStore(db_url, auto_migrate=True, cache=None, coalesce=False) as s:
        s.ingest(make_bars(SYMBOLS, 40, seed=11), progress=False, create_symbols=True)
        yield s


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [list(r) for r in a] == [list(r) for r in b]
    for x, y in zip(a, b):
        for k in x:
            assert x[k] == y[k] or (isinstance(x[k], float) and math.isnan(x[k]) and math.isnan(y[k])), k


class _Sync:
    def __init__(self, url: URL) -> None:
        self.fs = FeatureStore(url, cache=None)

    def latest(self, symbol: str, **kw: Any) -> Any:
        return self.fs.get_latest(symbol, as_dict=True, **kw)

    def __call__(self, symbol: str, **kw: Any) -> Any:
        return self.latest(symbol, **kw)

    @property
    def views(self) -> Any:
        return self.fs.reader.views

    def close(self) -> None:
        self.fs.close()


class _Async:
    def __init__(self, url: URL) -> None:
        self.loop = asyncio.new_event_loop()
        self.fs = AsyncFeatureStore(url, cache=None)
        self.loop.run_until_complete(self.fs.open())

    def latest(self, symbol: str, **kw: Any) -> Any:
        return self.loop.run_until_complete(self.fs.get_latest(symbol, as_dict=True, **kw))

    def __call__(self, symbol: str, **kw: Any) -> Any:
        return self.latest(symbol, **kw)

    @property
    def views(self) -> Any:
        return self.fs.store.reader.views

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.fs.aclose())
        finally:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def served(request: pytest.FixtureRequest, db_url: URL, oracle: FeatureStore) -> Iterator[Any]:
    store = _Sync(db_url) if request.param == "sync" else _Async(db_url)
    try:
        yield store
    finally:
        store.close()


def _both(served: Any, oracle: FeatureStore, symbol: str, **kw: Any) -> list[dict[str, Any]]:
    got = served(symbol, **kw)
    _same(got, oracle.get_latest(symbol, as_dict=True, **kw))
    return got  # type: ignore[no-any-return]


def test_view_changes_between_cached_reads(served: Any, oracle: FeatureStore) -> None:
    oracle.create_view("w", ["sma_3"], progress=False)
    try:
        first = _both(served, oracle, "L1", view="w")
        assert "sma_3" in first[0]
        assert served.views.get("w", None).version == 1  # the next read plans with it
        _both(served, oracle, "L2", view="w")  # planned with the cached version

        # a new version by the same name: the next read finds it, not the cached one
        oracle.create_view("w", ["ema_4", "sma_3"], progress=False)
        got = _both(served, oracle, "L1", view="w")
        assert "ema_4" in got[0]
        assert served.views.get("w", None).version == 2
        # the old version, asked for explicitly, still reads (and is cached by version)
        v1 = _both(served, oracle, "L3", view="w", version=1)
        assert "ema_4" not in v1[0]
        _both(served, oracle, "L3", view="w", version=1)

        # dropped: the same error as a store that looks the view up
        oracle.drop_view("w")
        with pytest.raises(NotFoundError):
            served("L1", view="w")
        with pytest.raises(NotFoundError):
            served("L1", view="w", version=1)

        # remade under the same name (so the same table name) with other columns and dtype
        oracle.create_view("w", ["rsi_3"], dtype="float32", progress=False)
        got = _both(served, oracle, "L1", view="w")
        assert "rsi_3" in got[0] and "sma_3" not in got[0]
        _both(served, oracle, "L2", view="w", version=1)
        _both(served, oracle, "NOPE", view="w")  # unknown symbol: NaT row, as asked alone
    finally:
        oracle.drop_view("w")


def test_cached_read_values_are_the_stored_rows(served: Any, oracle: FeatureStore, db_url: URL) -> None:
    oracle.create_view("z", ["sma_3"], progress=False)
    try:
        for _ in range(2):  # the second read plans with the cached version
            rec = served("L2", view="z")[0]
            with psycopg.connect(libpq_url(db_url)) as c:
                bars = pd.DataFrame(
                    c.execute("SELECT b.ts, b.close FROM bars b JOIN entities e USING (entity_id) "
                              "WHERE e.symbol = 'L2' ORDER BY b.ts").fetchall(), columns=["ts", "close"])
            assert rec["ts"] == bars.ts.iloc[-1]
            assert rec["close"] == bars.close.iloc[-1]
            assert rec["sma_3"] == pytest.approx(bars.close.iloc[-3:].mean(), rel=1e-12)
    finally:
        oracle.drop_view("z")

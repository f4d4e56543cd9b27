"""Request coalescing (issue 15): concurrent latest reads share statements, each caller gets
exactly what it would have got alone.

The oracle is the same read asked alone, one at a time, on a store with coalescing off. The
concurrency is real (threads started together on a barrier) and the overlap is forced: the first
statement of a run is held for a moment, so the requests arriving meanwhile must be merged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.errors import DatabaseError

SYMBOLS = [f"S{i:03d}" for i in range(40)]
EXTRA = ["NOPE", "bad\x00name"]


@pytest.fixture(scope="module")
def stores(db_url: URL) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    with FeatureStore(db_url, auto_migrate=True, cache=None) as merged, \
            FeatureStore(db_url, cache=None, coalesce=False) as alone:
        bars = make_bars(SYMBOLS, 60, seed=3)
        bars = bars[~((bars["symbol"] == "S005") & (bars["ts"] > bars["ts"].min()))]  # one bar only
        merged.ingest(bars, progress=False, create_symbols=True)
        merged.create_view("v", ["sma_5", "rsi_3"], progress=False)
        yield merged, alone


def _slow_first(reader: Any, delay: float) -> Any:
    """Hold the reader's first statement for ``delay`` s, so the requests after it pile up."""
    original = reader._latest_rows
    first = threading.Event()

    def rows(p: Any, names: Any) -> Any:
        if not first.is_set():
            first.set()
            time.sleep(delay)
        return original(p, names)

    reader._latest_rows = rows
    return original


_request = st.tuples(
    st.lists(st.sampled_from(SYMBOLS + EXTRA), min_size=1, max_size=6),
    st.sampled_from([None, "v"]),
    st.sampled_from([None, ["close"], ["sma_5", "close"]]),
    st.booleans(),
)


def _ask(store: FeatureStore, req: Any) -> Any:
    syms, view, cols, as_dict = req
    if view is None and cols is not None and "sma_5" in cols:
        cols = ["close"]
    return store.get_latest(syms, view=view, columns=cols, as_dict=as_dict)


def _equal(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    else:
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k] == y[k] or (isinstance(x[k], float) and np.isnan(x[k]) and np.isnan(y[k]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(_request, min_size=2, max_size=12))
def test_coalesced_results_equal_asking_alone(stores: tuple[FeatureStore, FeatureStore], requests: list[Any]) -> None:
    merged, alone = stores
    want = [_ask(alone, r) for r in requests]
    reader = merged.reader
    gate = reader._gate
    before = (gate.statements, gate.requests)
    original = _slow_first(reader, 0.05)
    got: list[Any] = [None] * len(requests)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(requests))

    def worker(k: int) -> None:
        try:
            barrier.wait(10)
            got[k] = _ask(merged, requests[k])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(requests))]
    try:
        for t in threads:
            t.start()
    finally:
        for t in threads:
            t.join(30)
        reader._latest_rows = original
    assert not errors, errors[0]
    for g, w in zip(got, want):
        _equal(g, w)
    statements, asked = gate.statements - before[0], gate.requests - before[1]
    assert asked == len(requests) and 1 <= statements <= asked


def test_one_statement_for_many_waiting_threads(stores: tuple[FeatureStore, FeatureStore]) -> None:
    merged, alone = stores
    reader = merged.reader
    gate = reader._gate
    s0 = gate.statements
    original = _slow_first(reader, 0.2)
    out: dict[int, Any] = {}

    def worker(k: int) -> None:
        out[k] = merged.get_latest([SYMBOLS[k % 40], SYMBOLS[(k * 7) % 40]])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(30)]
    try:
        threads[0].start()
        time.sleep(0.05)  # the first statement is in flight (held)
        for t in threads[1:]:
            t.start()
    finally:
        for t in threads:
            t.join(30)
        reader._latest_rows = original
    assert gate.statements - s0 == 2  # the first, then one for the 29 that waited
    for k in range(30):
        pd.testing.assert_frame_equal(out[k], alone.get_latest([SYMBOLS[k % 40], SYMBOLS[(k * 7) % 40]]))


def test_an_error_reaches_every_waiting_caller(stores: tuple[FeatureStore, FeatureStore]) -> None:
    merged, _ = stores
    reader = merged.reader
    original = reader._latest_rows
    calls = [0]

    def rows(p: Any, names: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            time.sleep(0.1)
            return original(p, names)
        raise DatabaseError("boom (test)")

    reader._latest_rows = rows
    results: dict[int, Any] = {}

    def worker(k: int) -> None:
        try:
            results[k] = merged.get_latest([SYMBOLS[k]])
        except DatabaseError as exc:
            results[k] = exc

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    try:
        threads[0].start()
        time.sleep(0.03)
        for t in threads[1:]:
            t.start()
    finally:
        for t in threads:
            t.join(30)
        reader._latest_rows = original
    assert isinstance(results[0], pd.DataFrame)
    assert all(isinstance(results[k], DatabaseError) for k in range(1, 6))
    # the gate is idle again: the next read runs
    assert len(merged.get_latest(SYMBOLS[:3])) == 3


def test_coalescing_can_be_turned_off(stores: tuple[FeatureStore, FeatureStore]) -> None:
    _, alone = stores
    assert alone.reader._gate is None


def test_as_dict_matches_the_frame(stores: tuple[FeatureStore, FeatureStore]) -> None:
    merged, _ = stores
    for view, cols in ((None, None), ("v", None), ("v", ["rsi_3", "open"])):
        frame = merged.get_latest(["S001", "NOPE", "S005", "S001"], view=view, columns=cols)
        recs = merged.get_latest(["S001", "NOPE", "S005", "S001"], view=view, columns=cols, as_dict=True)
        assert [r["symbol"] for r in recs] == ["S001", "NOPE", "S005"]  # duplicates once, first kept
        for (sym, ts), row in frame.iterrows():
            rec = next(r for r in recs if r["symbol"] == sym)
            assert (rec["ts"] is None) == pd.isna(ts)
            if rec["ts"] is not None:
                assert pd.Timestamp(rec["ts"]) == ts
            for c in frame.columns:
                assert rec[c] == row[c] or (np.isnan(rec[c]) and np.isnan(row[c]))


def test_as_dict_through_the_cache_hands_out_new_records(db_url: URL) -> None:
    with FeatureStore(db_url, cache="lru") as s:
        a = s.get_latest(["S001"], as_dict=True)
        a[0]["close"] = -1.0
        b = s.get_latest(["S001"], as_dict=True)
        assert b[0]["close"] != -1.0
        assert s.cache_stats()["hits"] >= 1

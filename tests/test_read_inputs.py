"""A read never changes its caller's inputs, cached or not (issue 11 item 1).

Every read (`get_bars`, `get_features`, `get_latest`, `get_training_frame`) with object, ``str``,
categorical and Arrow-backed symbols, through every cache policy and with ``cache=None``: the
inputs keep their values and the writeable flags of their arrays (compared with a deep copy taken
before), the caller can still write to them afterwards, and the results equal the uncached ones,
on a miss, on a hit, and after the caller wrote to its inputs and to the results it got.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.cache import POLICIES
from featurestore.client import FeatureStore

SYMBOLS = ["AAA", "BBB", "ZZZ"]  # ZZZ is unknown to the store
DTYPES: dict[str, Callable[[list[str]], pd.Series]] = {
    "object": lambda v: pd.Series(v, dtype=object),
    "str": lambda v: pd.Series(v, dtype="str"),
    "category": lambda v: pd.Series(v, dtype="category"),
    "string[pyarrow]": lambda v: pd.Series(v, dtype="string[pyarrow]"),
    "arrow": lambda v: pd.Series(v, dtype=pd.ArrowDtype(pa.string())),
}
CACHES = [None, *sorted(POLICIES)]


@pytest.fixture(scope="module")
def stores(db_url: URL) -> Iterator[dict[str | None, FeatureStore]]:
    """One store per cache policy (and one uncached) over the module's small database."""
    opened: dict[str | None, FeatureStore] = {}
    try:
        with FeatureStore(db_url, auto_migrate=True, cache=None) as fs:
            fs.ingest(make_bars(["AAA", "BBB"], 12, start="2024-01-01", seed=4))
            fs.create_view("v", ["sma_3"])
        for policy in CACHES:
            opened[policy] = FeatureStore(db_url, cache=policy)
        yield opened
    finally:
        for fs in opened.values():
            fs.close()


def numpy_arrays(obj: Any) -> list[np.ndarray]:
    """Every numpy array an input holds: its blocks (a frame), values, and index."""
    arrays: list[Any] = []
    if isinstance(obj, pd.DataFrame):
        arrays += [block.values for block in obj._mgr.blocks]
        arrays.append(obj.index.array)
    elif isinstance(obj, pd.Series):
        arrays += [obj.array, obj.index.array]
    else:
        arrays.append(obj)
    out = []
    for a in arrays:
        if isinstance(a, pd.Categorical):
            a = a._codes
        inner = getattr(a, "_ndarray", a)
        if isinstance(inner, np.ndarray):
            out.append(inner)
    return out


def flags(obj: Any) -> list[bool]:
    return [a.flags.writeable for a in numpy_arrays(obj)]


def assert_unchanged(before: Any, after: Any, before_flags: list[bool]) -> None:
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before)
    elif isinstance(before, pd.Series):
        pd.testing.assert_series_equal(after, before)
    else:
        np.testing.assert_array_equal(after, before)
        assert type(after) is type(before)
    assert flags(after) == before_flags, "a read changed the writeable flags of the caller's arrays"


def events_frame(dtype: str, *, label: bool) -> pd.DataFrame:
    ts = pd.to_datetime(["2024-01-05", "2024-01-09", "2024-01-06", "2024-01-20"], utc=True)
    frame = pd.DataFrame({"symbol": DTYPES[dtype](["AAA", "BBB", "ZZZ", "AAA"]), "ts": ts})
    if label:
        frame["y"] = np.array([1.0, 0.0, 1.0, 0.5])
        frame["n"] = np.array([1, 2, 3, 4])
    return frame


def symbol_inputs(dtype: str) -> list[Any]:
    """The ways a caller can pass several symbols: a Series of ``dtype``, and plain containers."""
    series = DTYPES[dtype](SYMBOLS)
    if dtype == "object":
        return [series, np.array(SYMBOLS, dtype=object), list(SYMBOLS)]
    return [series]


READS: dict[str, Callable[[FeatureStore, Any], Any]] = {
    "get_bars": lambda fs, s: fs.get_bars(s, "2024-01-02 UTC", "2024-01-10 UTC"),
    "get_features": lambda fs, s: fs.get_features(s, view="v", include_bars=True),
    "get_latest": lambda fs, s: fs.get_latest(s, view="v", as_of="2024-01-08 UTC"),
    "get_bars_arrow": lambda fs, s: fs.get_bars(s, as_arrow=True),
}


def assert_same_result(got: Any, want: Any) -> None:
    if isinstance(want, pa.Table):
        assert got.equals(want)
    else:
        pd.testing.assert_frame_equal(got, want)


def scribble(result: Any) -> None:
    """What a caller may do to the result it got: it must never reach the cache."""
    if isinstance(result, pd.DataFrame) and len(result):
        num = result.select_dtypes("number").columns
        if len(num):
            result.iloc[0, result.columns.get_loc(num[0])] = -12345.0
            result[num[0]] = result[num[0]] * 0
        result["extra"] = 1


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("policy", CACHES, ids=lambda p: p or "uncached")
def test_symbol_reads_leave_inputs_unchanged(stores: dict[str | None, FeatureStore], policy: str | None, dtype: str) -> None:
    fs, plain = stores[policy], stores[None]
    fs.clear_cache()
    for symbols in symbol_inputs(dtype):
        for read in READS.values():
            before, before_flags = copy.deepcopy(symbols), flags(symbols)
            want = read(plain, list(SYMBOLS))
            for _attempt in ("miss", "hit", "after the caller wrote to its result"):
                got = read(fs, symbols)
                assert_same_result(got, want)
                assert_unchanged(before, symbols, before_flags)
                scribble(got)


@pytest.mark.parametrize("label", [False, True], ids=["no-label", "label"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("policy", CACHES, ids=lambda p: p or "uncached")
def test_training_frame_leaves_events_unchanged(
    stores: dict[str | None, FeatureStore], policy: str | None, dtype: str, label: bool
) -> None:
    fs, plain = stores[policy], stores[None]
    fs.clear_cache()
    events = events_frame(dtype, label=label)
    before, before_flags = events.copy(deep=True), flags(events)
    want = plain.get_training_frame(events_frame(dtype, label=label), view="v")
    for _ in ("miss", "hit"):
        got = fs.get_training_frame(events, view="v")
        pd.testing.assert_frame_equal(got, want)
        assert_unchanged(before, events, before_flags)
        scribble(got)
    if label:
        # the caller may still write to its own events; that reaches neither the cache nor results
        events.loc[0, "y"] = 42.0
        events.loc[1, "n"] = 7
        assert events.loc[0, "y"] == 42.0 and events.loc[1, "n"] == 7
        again = fs.get_training_frame(before.copy(deep=True), view="v")
        pd.testing.assert_frame_equal(again, want)


def test_writing_through_the_callers_events_never_reaches_a_cached_training_frame(
    stores: dict[str | None, FeatureStore],
) -> None:
    """`.array` writes bypass pandas' copy-on-write: the result must share no buffer with the events."""
    fs, plain = stores["lru"], stores[None]
    events = events_frame("object", label=True)
    want = plain.get_training_frame(events.copy(deep=True), view="v")
    first = fs.get_training_frame(events, view="v")
    assert_same_result(first, want)
    original = events.copy(deep=True)
    events["y"].array[0] = -12345.0  # the caller reuses its own frame
    events["ts"].array[0] = events["ts"].array[1]
    again = fs.get_training_frame(original, view="v")  # the same content as the first call: a hit
    assert_same_result(again, want)


def test_renaming_one_results_columns_never_renames_anothers(stores: dict[str | None, FeatureStore]) -> None:
    for policy in (None, "lru"):
        fs = stores[policy]
        a = fs.get_features(["AAA"], view="v")
        a.columns.name = "renamed"  # in place, on the Index object itself
        b = fs.get_features(["AAA"], view="v", columns=["sma_3"])
        c = fs.get_bars(["BBB"])
        assert b.columns.name is None and c.columns.name is None, policy


@pytest.mark.parametrize("policy", [None, "lru"])
def test_store_training_frame_strategy_is_passed_through(stores: dict[str | None, FeatureStore],
                                                         policy: str | None) -> None:
    """`FeatureStore.get_training_frame(strategy=...)`: every strategy gives the frame a
    pandas merge_asof (written here) gives, cached or not; an unknown one is refused."""
    from featurestore.errors import ConfigError

    fs = stores[policy]
    feats = stores[None].get_features(["AAA", "BBB"], view="v").reset_index()
    rng = np.random.default_rng(11)
    lo, hi = feats["ts"].min().value, feats["ts"].max().value
    events = pd.DataFrame({
        "symbol": rng.choice(SYMBOLS, 40),
        "ts": pd.to_datetime(rng.integers(lo - 2 * 86_400 * 10**9, hi + 86_400 * 10**9, 40), utc=True),
    })
    right = feats[["symbol", "ts", "sma_3"]].rename(columns={"ts": "fts"}).sort_values("fts")
    right["fts"] = right["fts"].astype(events["ts"].dtype)
    left = events.assign(_i=np.arange(len(events))).sort_values("ts")
    oracle = pd.merge_asof(left, right, left_on="ts", right_on="fts", by="symbol").sort_values("_i")
    for strategy in ("auto", "range", "per_event"):
        got = fs.get_training_frame(events, view="v", strategy=strategy)
        np.testing.assert_array_equal(got["sma_3"].to_numpy(float), oracle["sma_3"].to_numpy(float))
    with pytest.raises(ConfigError, match="strategy"):
        fs.get_training_frame(events, view="v", strategy="nearest")

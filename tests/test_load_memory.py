"""A load's memory is bounded by ``load_memory_rows`` (issue 14): features come out bit-identical
whatever the bound, ``held_rows_peak`` respects it, and the features progress reaches its total."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from helpers import make_bars
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.config import DEFAULT_LOAD_MEMORY_ROWS, Settings
from featurestore.errors import ConfigError
from featurestore.load import validate_frame
from featurestore.write import MEMORY_ROWS_MAX, LoadWriter
from featurestore.write.features import FEATURE_GROUP_ROWS

INDICATORS = ["sma_5", "ema_10", "rsi_14", "macd_12_26_9", "bbands_20_2", "atr_14"]
SYMBOLS = [f"M{i:02d}" for i in range(8)]
HISTORY = 300  # rows per symbol in the first load: 2,400 in all
TINY = 700  # two symbols' history fit, three do not


@pytest.fixture(scope="module")
def stores(make_database: Callable[[str], URL]) -> Iterator[dict[int, FeatureStore]]:
    out = {bound: FeatureStore(make_database(f"mem_{bound}"), auto_migrate=True, load_memory_rows=bound)
           for bound in (10_000_000, TINY, 0)}
    try:
        yield out
    finally:
        for fs in out.values():
            fs.close()


def _loads() -> list[pd.DataFrame]:
    full = make_bars(SYMBOLS, HISTORY + 40, seed=7)
    day = full["ts"].drop_duplicates().sort_values().to_numpy()
    history = full[full["ts"] < day[HISTORY]]
    append = full[(full["ts"] >= day[HISTORY]) & (full["ts"] < day[HISTORY + 30])]  # 30 more bars each
    tail = full[full["ts"] >= day[HISTORY + 30]]
    fix = history.iloc[[50, 1000]].copy()  # two corrected old bars: recomputes from a checkpoint
    fix["close"] = fix["close"] + 0.01
    fix["high"] = np.maximum(fix["high"], fix["close"])
    late = make_bars(["M99"], HISTORY, seed=9)  # a new symbol too
    return [history, append, pd.concat([tail, fix, late], ignore_index=True)]


def test_features_are_bit_identical_whatever_the_bound(stores: dict[int, FeatureStore]) -> None:
    held: dict[int, list[int]] = {}
    for bound, fs in stores.items():
        fs.create_view("mem", INDICATORS)
        fs.create_view("mem2", ["sma_5", "rsi_14"])
        held[bound] = [fs.ingest(df).held_rows_peak for df in _loads()]
    frames = {
        bound: (fs.get_features([*SYMBOLS, "M99"], view="mem"), fs.get_features([*SYMBOLS, "M99"], view="mem2"))
        for bound, fs in stores.items()
    }
    big, tiny, zero = frames[10_000_000], frames[TINY], frames[0]
    assert len(big[0]) == 8 * (HISTORY + 40) + HISTORY
    for other in (tiny, zero):
        for a, b in zip(big, other, strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)  # NaN in the same places, same bits
    # the large bound keeps every appended row of the history load and computes from them
    assert held[10_000_000][0] == 8 * HISTORY
    # a tiny bound holds at most the bound: the history (2,400 rows) is not kept, its features
    # read back in groups of two symbols; the append (240 rows) is kept
    assert held[TINY][:2] == [2 * HISTORY, 8 * 30], held[TINY]
    # the last load keeps its 380 appended rows (80 + the new symbol's 300); the two corrected
    # symbols are recomputed from their first bar (340 rows each) after those are released, in one
    # group of 680 rows that fits the bound
    assert held[TINY][2] == 2 * (HISTORY + 40) <= TINY, held[TINY]
    # 0 keeps nothing; the read-back groups are bounded by FEATURE_GROUP_ROWS (all 2,400 rows here)
    assert held[0][0] == 8 * HISTORY <= FEATURE_GROUP_ROWS


def test_one_symbol_larger_than_the_bound_is_the_only_excess(make_database: Callable[[str], URL]) -> None:
    with FeatureStore(make_database("mem_one"), auto_migrate=True, load_memory_rows=100) as fs:
        fs.create_view("one", ["sma_5"])
        result = fs.ingest(make_bars(["BIG", "SMALLA", "SMALLB"], 250))
        assert result.held_rows_peak == 250  # one symbol's new bars are never split
        assert fs.describe_view("one")["rows"] == 750


def test_the_setting_comes_from_the_argument_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://u@h/db"
    assert DEFAULT_LOAD_MEMORY_ROWS == MEMORY_ROWS_MAX
    monkeypatch.delenv("FEATURESTORE_LOAD_MEMORY_ROWS", raising=False)
    assert Settings.resolve(url).load_memory_rows == MEMORY_ROWS_MAX
    monkeypatch.setenv("FEATURESTORE_LOAD_MEMORY_ROWS", "2_000_000")
    assert Settings.resolve(url).load_memory_rows == 2_000_000
    assert Settings.resolve(url, load_memory_rows=0).load_memory_rows == 0  # the argument wins
    for bad in ("lots", "-1", "1.5"):
        monkeypatch.setenv("FEATURESTORE_LOAD_MEMORY_ROWS", bad)
        with pytest.raises(ConfigError, match="FEATURESTORE_LOAD_MEMORY_ROWS"):
            Settings.resolve(url)
    monkeypatch.delenv("FEATURESTORE_LOAD_MEMORY_ROWS")
    for bad_arg in (-5, 1.5, True):
        with pytest.raises(ConfigError, match="load_memory_rows"):
            Settings.resolve(url, load_memory_rows=bad_arg)  # type: ignore[arg-type]


def test_features_progress_reaches_its_total(make_database: Callable[[str], URL]) -> None:
    with FeatureStore(make_database("mem_prog"), auto_migrate=True) as fs:
        fs.create_view("p1", ["sma_5", "ema_10"])
        fs.create_view("p2", ["rsi_14"])
        loads = _loads()
        for df, bound in zip(loads, (10_000_000, 0, TINY), strict=True):
            calls: list[tuple[int, int]] = []
            chunk = validate_frame(df).sorted()
            with fs.db.connection() as conn, conn.transaction():
                writer = LoadWriter(conn, source="test", views=fs._views(conn), memory_rows=bound,
                                    progress=lambda d, t, c=calls: c.append((d, t)))
                writer.write_chunk(chunk)
                result = writer.finish()
            done, total = sum(d for d, _ in calls), sum(t for _, t in calls)
            assert done == total == result.features_written > 0, (calls, result)
            assert calls[0] == (0, calls[0][1]) and calls[0][1] > 0  # the total is known before the first group

"""MAMA (MESA adaptive moving average, TA-Lib's MAMA with its unstable period): bit for bit equal
to TA-Lib 0.8, batched, incremental, in views (with MA and BBANDS of matype 7, MAMA's block; their
harness rows are in test_ind_averages.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_tests

from featurestore.client import FeatureStore
from featurestore.errors import IndicatorError
from featurestore.indicators import compute, parse_indicator
from featurestore.indicators.defs import averages as defs_averages
from featurestore.indicators.kernels import mama as mama_kernels
from featurestore.indicators.registry import parse_output_name

ROWS = [
    Row("mama", [
        {"fastlimit": 0.5, "slowlimit": 0.05},
        {"fastlimit": 0.01, "slowlimit": 0.01},
        {"fastlimit": 0.99, "slowlimit": 0.99},
        {"fastlimit": 0.99, "slowlimit": 0.01},
        {"fastlimit": 0.2, "slowlimit": 0.7},  # slowlimit above fastlimit: TA-Lib accepts it
        {"fastlimit": 0.5, "slowlimit": 0.05, "unstable": 7},
    ]),
]
globals().update(make_tests(ROWS))


def test_names_and_ranges() -> None:
    assert parse_indicator("mama").name == "mama_0p5_0p05"
    assert parse_indicator("mama_0p5_0p05").name == "mama_0p5_0p05"
    spec = parse_indicator("mama_0p25_0p1_u20")
    assert spec.p == {"fastlimit": 0.25, "slowlimit": 0.1, "unstable": 20}
    assert spec.outputs == ("mama_mama_0p25_0p1_u20", "mama_fama_0p25_0p1_u20")
    assert spec.lookback == 52
    assert parse_indicator("mama_0p5_0p05").to_dict() == {
        "kind": "mama", "params": {"fastlimit": 0.5, "slowlimit": 0.05}}
    assert parse_output_name("mama_fama_0p5_0p05") == (parse_indicator("mama"), "fama")
    assert parse_output_name("mama_mama_0p01_0p99") == (parse_indicator("mama_0p01_0p99"), "mama")
    for bad in ("mama_0p005_0p05", "mama_0p5_1", "mama_0_0p05"):
        with pytest.raises(IndicatorError, match="limit"):
            parse_indicator(bad)


def test_kernel_constants_match_the_definitions() -> None:
    """defs/averages.py must not import numba, so it keeps its own copy of the block size."""
    assert defs_averages.MAMA_WIDTH == mama_kernels.WIDTH
    assert defs_averages.MAMA_LOOKBACK == mama_kernels.LOOKBACK
    assert len(defs_averages.STATE_LAYOUTS["mama"]) > 1


@pytest.mark.parametrize(("fast", "slow", "u"), [(0.5, 0.05, 0), (0.5, 0.05, 40), (0.9, 0.3, 3)])
def test_unstable_period_matches_talib_setting_directly(fast: float, slow: float, u: int) -> None:
    x = make_bars(["X"], 400, seed=9)["close"].to_numpy(dtype=float)
    talib.set_unstable_period("MAMA", u)
    try:
        want = talib.MAMA(x, fast, slow)
    finally:
        talib.set_unstable_period("MAMA", 0)
    got = compute("mama", {"close": x}, fastlimit=fast, slowlimit=slow, unstable=u)
    assert isinstance(got, dict)
    for (name, g), w in zip(got.items(), want):
        assert_bits(g, w, name)


def test_long_series_equals_talib() -> None:
    """1e5 bars: the Hilbert transform's fused multiply-adds and atan calls agree everywhere."""
    rng = np.random.default_rng(42)
    walk = 100 + np.cumsum(rng.normal(0, 1, 100_000))
    ticks = np.round(50 + np.cumsum(rng.choice([-1, 0, 0, 1], 100_000)) * 0.01, 2)
    for x in (walk, ticks):
        for fast, slow in ((0.5, 0.05), (0.99, 0.01), (0.3, 0.6)):
            got = compute("mama", {"close": x}, fastlimit=fast, slowlimit=slow)
            assert isinstance(got, dict)
            for (name, g), w in zip(got.items(), talib.MAMA(x, fast, slow)):
                assert_bits(g, w, name)


def test_interior_nan_is_sticky_like_talib() -> None:
    """A NaN inside the series poisons TA-Lib's WMA sums: NaN from there on, as here."""
    x = make_bars(["X"], 200, seed=10)["close"].to_numpy(dtype=float, copy=True)
    x[[0, 1, 2]] = np.nan  # leading NaN: TA-Lib starts at the first valid bar (begidx)
    x[120] = np.nan
    got = compute("mama", {"close": x})
    assert isinstance(got, dict)
    m, f = got.values()
    assert_bits(m, talib.MAMA(x)[0], "mama")
    assert_bits(f, talib.MAMA(x)[1], "fama")
    assert np.isnan(m[120:]).all() and np.isfinite(m[35:120]).all() and np.isnan(m[:35]).all()


def _talib(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    c = bars["close"].to_numpy(dtype=float)
    m, f = talib.MAMA(c, 0.5, 0.05)
    m2, f2 = talib.MAMA(c, 0.99, 0.01)
    talib.set_unstable_period("MAMA", 6)
    try:
        mu, fu = talib.MAMA(c, 0.3, 0.1)
    finally:
        talib.set_unstable_period("MAMA", 0)
    return {
        "ma_30_7": talib.MA(c, 30, 7), "bbands_upper_5_2_m7": talib.BBANDS(c, 5, 2.0, 2.0, 7)[0],
        "mama_mama_0p5_0p05": m, "mama_fama_0p5_0p05": f,
        "mama_mama_0p99_0p01": m2, "mama_fama_0p99_0p01": f2,
        "mama_mama_0p3_0p1_u6": mu, "mama_fama_0p3_0p1_u6": fu,
    }


def _check_view(fs: FeatureStore, table: str, symbols: list[str]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, want in _talib(bars).items():
                assert_bits(feats[name].to_numpy(dtype=float), want, f"{sym} {name}")


def test_mama_in_a_view(store: FeatureStore) -> None:
    """Backfill on create, continue on append, recompute on a corrected old bar: == TA-Lib."""
    syms = ["MAMA", "MAMB"]
    df = make_bars(syms, 120, seed=33)
    store.ingest(df)
    view = store.create_view("mama_family", ["mama", "mama_0p99_0p01", "mama_0p3_0p1_u6", "ma_30_7", "bbands_5_2_m7"])
    _check_view(store, view.table_name, syms)
    more = make_bars(syms, 121, seed=33).groupby("symbol").tail(1)  # one new bar each
    r = store.ingest(more)
    assert r.inserted == 2 and r.entities_recomputed == 0
    _check_view(store, view.table_name, syms)
    fix = df[df.symbol == "MAMA"].iloc[[40]].copy()
    fix[["high", "close"]] = fix[["high", "close"]] * 1.02
    r = store.ingest(fix)
    assert r.updated == 1 and r.entities_recomputed == 1
    _check_view(store, view.table_name, syms)

"""Averages family (WMA, DEMA, TEMA, TRIMA, KAMA, T3, MA by matype): bit for bit equal to TA-Lib
0.8, batched, incremental, in views; the kernels/ma.py blocks against talib.MA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_tests

from featurestore.client import FeatureStore
from featurestore.errors import IndicatorError
from featurestore.indicators import parse_indicator, parse_output_name

ROWS = [
    # period 1 (a copy), 2, odd/even small, default 30, and one past WMA's 8*period re-anchor
    Row("wma", [{"period": 1}, {"period": 2}, {"period": 3}, {"period": 30}]),
    Row("dema", [{"period": 1}, {"period": 2}, {"period": 30}]),
    Row("tema", [{"period": 1}, {"period": 2}, {"period": 14}]),
    # TRIMA: odd and even forms
    Row("trima", [{"period": 1}, {"period": 2}, {"period": 3}, {"period": 4}, {"period": 5}, {"period": 30}]),
    Row("kama", [{"period": 1}, {"period": 2}, {"period": 10}, {"period": 30},
                 {"period": 1, "unstable": 3}, {"period": 10, "unstable": 5}]),
    Row("t3", [{"period": 1}, {"period": 2}, {"period": 5}, {"period": 5, "vfactor": 0.3},
               {"period": 3, "vfactor": 0.0}, {"period": 3, "vfactor": 1.0}, {"period": 5, "unstable": 10},
               {"period": 1, "vfactor": 0.77, "unstable": 2}]),
    Row("ma", [{"period": 1, "matype": 8}, {"period": 2, "matype": 2}]
        + [{"period": 10, "matype": m} for m in (0, 1, 2, 3, 4, 5, 6, 8)]),
]
globals().update(make_tests(ROWS))


def test_long_series_every_matype_equals_talib_ma() -> None:
    """1e5 bars (WMA re-anchors many times, KAMA/T3 fma forms everywhere), periods 2..30."""
    rng = np.random.default_rng(42)
    x = 100 + np.cumsum(rng.normal(0, 1, 100_000))
    from featurestore.indicators import compute_batch

    for m in (0, 1, 2, 3, 4, 5, 6, 8):
        for p in (2, 5, 30):
            spec = parse_indicator(f"ma_{p}_{m}" if m else f"ma_{p}")
            got = compute_batch(spec, {"close": x})[0][spec.name]
            assert_bits(got, talib.MA(x, p, m), spec.name)


def test_ma_names_and_matype_rule() -> None:
    assert parse_indicator("ma_30").p == {"period": 30, "matype": 0}
    assert parse_indicator("ma_30").name == "ma_30"
    assert parse_indicator("ma_30_8").name == "ma_30_8"
    assert parse_indicator("ma_30_1").lookback == talib.abstract.Function("MA", timeperiod=30, matype=1).lookback
    with pytest.raises(IndicatorError, match="not canonical"):
        parse_output_name("ma_30_0")
    with pytest.raises(IndicatorError, match=r"matype 7 \(MAMA\) is not supported yet"):
        parse_indicator("ma_30_7")
    with pytest.raises(IndicatorError, match="matype"):
        parse_indicator("ma_30_9")
    assert parse_indicator("kama_30_u5").p == {"period": 30, "unstable": 5}
    assert parse_indicator("t3_5_0p7").name == "t3_5_0p7"


def test_ma_block_twins_agree() -> None:
    """defs.averages' pure-Python width/lookback equal the njit ones of kernels/ma.py."""
    from featurestore.indicators.defs import averages as d
    from featurestore.indicators.kernels import ma

    for m in (0, 1, 2, 3, 4, 5, 6, 8):
        for p in (1, 2, 3, 7, 30):
            for u in (0, 4):
                assert d.ma_width(m, p) == ma.ma_width(m, p)
                assert d.ma_lookback(m, p, u) == ma.ma_lookback(m, p, u)


def _talib(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    c = bars["close"].to_numpy(dtype=float)
    talib.set_unstable_period("KAMA", 3)
    try:
        kama_u = talib.KAMA(c, 10)
    finally:
        talib.set_unstable_period("KAMA", 0)
    return {
        "wma_10": talib.WMA(c, 10), "dema_5": talib.DEMA(c, 5), "tema_4": talib.TEMA(c, 4),
        "trima_6": talib.TRIMA(c, 6), "kama_10_u3": kama_u, "t3_3_0p7": talib.T3(c, 3, 0.7),
        "ma_7_6": talib.MA(c, 7, 6), "ma_9_5": talib.MA(c, 9, 5),
    }


def _check_view(fs: FeatureStore, table: str, symbols: list[str], ref: Callable[[pd.DataFrame], dict[str, np.ndarray]]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, want in ref(bars).items():
                assert_bits(feats[name].to_numpy(dtype=float), want, f"{sym} {name}")


def test_averages_in_a_view(store: FeatureStore) -> None:
    """Backfill on create, continue on append, recompute on a corrected old bar: == TA-Lib."""
    syms = ["AVGA", "AVGB"]
    df = make_bars(syms, 120, seed=41)
    store.ingest(df)
    view = store.create_view("avg_family", list(_talib(df.iloc[:5])))
    _check_view(store, view.table_name, syms, _talib)
    more = make_bars(syms, 121, seed=41).groupby("symbol").tail(1)  # one new bar each
    r = store.ingest(more)
    assert r.inserted == 2 and r.entities_recomputed == 0
    _check_view(store, view.table_name, syms, _talib)
    fix = df[df.symbol == "AVGA"].iloc[[40]].copy()
    fix[["high", "close"]] = fix[["high", "close"]] * 1.02
    r = store.ingest(fix)
    assert r.updated == 1 and r.entities_recomputed == 1
    _check_view(store, view.table_name, syms, _talib)

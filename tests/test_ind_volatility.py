"""Volatility family (ATR and NATR with unstable periods, VAR, STDDEV; TRANGE and the default
ATR rows live in test_indicator_engine): bit for bit equal to TA-Lib 0.8, batched, incremental,
in views."""

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

ROWS = [
    Row("atr", [{"period": 1, "unstable": 3}, {"period": 14, "unstable": 20}]),
    Row("natr", [{"period": 1}, {"period": 2}, {"period": 14}, {"period": 14, "unstable": 30},
                 {"period": 1, "unstable": 2}, {"period": 300}]),
    Row("var", [{"period": 1, "nbdev": 1.0}, {"period": 2, "nbdev": 1.0}, {"period": 5, "nbdev": 1.0},
                {"period": 30, "nbdev": 1.0}, {"period": 300, "nbdev": 1.0}]),
    Row("stddev", [{"period": 2, "nbdev": 1.0}, {"period": 5, "nbdev": 1.0}, {"period": 20, "nbdev": 2.5},
                   {"period": 10, "nbdev": 0.0}, {"period": 300, "nbdev": 1.5}]),
]
globals().update(make_tests(ROWS))


def test_names_and_ranges() -> None:
    assert parse_indicator("natr_14").name == "natr_14"
    assert parse_indicator("atr_14_u20").name == "atr_14_u20"
    assert parse_indicator("atr_14").to_dict() == {"kind": "atr", "params": {"period": 14}}  # stored hashes stay
    assert parse_indicator("stddev_5_1").name == "stddev_5_1"
    assert parse_indicator("stddev_20_2p5").p == {"period": 20, "nbdev": 2.5}
    assert parse_indicator("var_5_2").name == "var_5_1"  # TA-Lib ignores VAR's nbdev
    with pytest.raises(IndicatorError, match="period"):
        parse_indicator("stddev_1_1")


@pytest.mark.parametrize("name", ["ATR", "NATR"])
def test_unstable_period_matches_talib_setting_directly(name: str) -> None:
    d = make_bars(["X"], 400, seed=8)
    h, lo, c = (d[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    for n, u in ((14, 0), (14, 7), (3, 50), (1, 4)):
        talib.set_unstable_period(name, u)
        try:
            ref = getattr(talib, name)(h, lo, c, n)
        finally:
            talib.set_unstable_period(name, 0)
        got = compute(f"{name.lower()}_{n}_u{u}", {"high": h, "low": lo, "close": c})
        assert isinstance(got, dict)
        assert_bits(next(iter(got.values())), ref, f"{name} {n} u{u}")


def _talib(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    talib.set_unstable_period("ATR", 5)
    try:
        atr_u = talib.ATR(h, lo, c, 14)
    finally:
        talib.set_unstable_period("ATR", 0)
    return {
        "natr_14": talib.NATR(h, lo, c, 14),
        "atr_14_u5": atr_u,
        "stddev_5_1": talib.STDDEV(c, 5, 1.0),
        "stddev_20_2": talib.STDDEV(c, 20, 2.0),
        "var_10_1": talib.VAR(c, 10, 1.0),
    }


def _check_view(fs: FeatureStore, table: str, symbols: list[str]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, want in _talib(bars).items():
                assert_bits(feats[name].to_numpy(dtype=float), want, f"{sym} {name}")


def test_volatility_indicators_in_a_view(store: FeatureStore) -> None:
    """Backfill on create, continue on append, recompute on a corrected old bar: == TA-Lib."""
    syms = ["VLTA", "VLTB"]
    df = make_bars(syms, 120, seed=32)
    store.ingest(df)
    view = store.create_view("volatility_family", list(_talib(df.iloc[:30])))
    _check_view(store, view.table_name, syms)
    more = make_bars(syms, 121, seed=32).groupby("symbol").tail(1)  # one new bar each
    r = store.ingest(more)
    assert r.inserted == 2 and r.entities_recomputed == 0
    _check_view(store, view.table_name, syms)
    fix = df[df.symbol == "VLTA"].iloc[[40]].copy()
    fix[["high", "close"]] = fix[["high", "close"]] * 1.02
    r = store.ingest(fix)
    assert r.updated == 1 and r.entities_recomputed == 1
    _check_view(store, view.table_name, syms)

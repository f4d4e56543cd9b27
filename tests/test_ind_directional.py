"""Directional family (ADX with unstable periods, ADXR, DX, PLUS_DI, MINUS_DI, AROON, AROONOSC;
the default ADX rows live in test_indicator_engine): bit for bit equal to TA-Lib 0.8, batched,
incremental, in views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_tests

from featurestore.client import FeatureStore
from featurestore.indicators import compute, parse_indicator

ROWS = [
    Row("adx", [{"period": 2, "unstable": 3}, {"period": 14, "unstable": 40}]),
    Row("adxr", [{"period": 2}, {"period": 3}, {"period": 14}, {"period": 60}]),
    Row("dx", [{"period": 2}, {"period": 14}, {"period": 14, "unstable": 25}, {"period": 200}]),
    Row("plus_di", [{"period": 1}, {"period": 2}, {"period": 14}, {"period": 5, "unstable": 10}, {"period": 200}]),
    Row("minus_di", [{"period": 1}, {"period": 2}, {"period": 14}, {"period": 5, "unstable": 10}, {"period": 200}]),
    Row("aroon", [{"period": 2}, {"period": 14}, {"period": 25}, {"period": 200}]),
    Row("aroonosc", [{"period": 2}, {"period": 14}, {"period": 200}]),
]
globals().update(make_tests(ROWS))


def test_names() -> None:
    assert parse_indicator("plus_di_14").name == "plus_di_14"
    assert parse_indicator("minus_di_14_u5").name == "minus_di_14_u5"
    assert parse_indicator("plus_di_1_u5").name == "plus_di_1"  # TA-Lib's period-1 branch has none
    assert parse_indicator("adx_14_u9").name == "adx_14_u9"
    assert parse_indicator("adx_14").to_dict() == {"kind": "adx", "params": {"period": 14}}  # stored hashes stay
    assert parse_indicator("aroon_14").outputs == ("aroon_down_14", "aroon_up_14")
    assert parse_indicator("aroonosc_14").name == "aroonosc_14"


@pytest.mark.parametrize("name", ["ADX", "DX", "PLUS_DI", "MINUS_DI"])
def test_unstable_period_matches_talib_setting_directly(name: str) -> None:
    d = make_bars(["X"], 400, seed=9)
    h, lo, c = (d[k].to_numpy(dtype=float) for k in ("high", "low", "close"))
    for n, u in ((14, 0), (14, 7), (3, 50), (2, 1)):
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
    down, up = talib.AROON(h, lo, 14)
    talib.set_unstable_period("ADX", 6)
    try:
        adx_u = talib.ADX(h, lo, c, 5)
    finally:
        talib.set_unstable_period("ADX", 0)
    return {
        "plus_di_14": talib.PLUS_DI(h, lo, c, 14),
        "minus_di_14": talib.MINUS_DI(h, lo, c, 14),
        "dx_14": talib.DX(h, lo, c, 14),
        "adxr_5": talib.ADXR(h, lo, c, 5),
        "adx_5_u6": adx_u,
        "aroon_down_14": down,
        "aroon_up_14": up,
        "aroonosc_14": talib.AROONOSC(h, lo, 14),
    }


def _check_view(fs: FeatureStore, table: str, symbols: list[str]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, want in _talib(bars).items():
                assert_bits(feats[name].to_numpy(dtype=float), want, f"{sym} {name}")


def test_directional_indicators_in_a_view(store: FeatureStore) -> None:
    """Backfill on create, continue on append, recompute on a corrected old bar: == TA-Lib."""
    syms = ["DIRA", "DIRB"]
    df = make_bars(syms, 120, seed=33)
    store.ingest(df)
    specs = ["plus_di_14", "minus_di_14", "dx_14", "adxr_5", "adx_5_u6", "aroon_14", "aroonosc_14"]
    view = store.create_view("directional_family", specs)
    _check_view(store, view.table_name, syms)
    more = make_bars(syms, 121, seed=33).groupby("symbol").tail(1)  # one new bar each
    r = store.ingest(more)
    assert r.inserted == 2 and r.entities_recomputed == 0
    _check_view(store, view.table_name, syms)
    fix = df[df.symbol == "DIRA"].iloc[[40]].copy()
    fix[["high", "close"]] = fix[["high", "close"]] * 1.02
    r = store.ingest(fix)
    assert r.updated == 1 and r.entities_recomputed == 1
    _check_view(store, view.table_name, syms)

"""Volume family (OBV, AD, ADOSC): bit for bit equal to TA-Lib 0.8, batched, incremental, in views."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_tests

from featurestore.client import FeatureStore
from featurestore.indicators import IndicatorSpec, compute_batch


def _unless_no_valid_bar(fn: Callable[..., np.ndarray], inputs: tuple[str, ...]) -> Callable[..., tuple[np.ndarray, ...]]:
    """TA-Lib, except on a series with no bar where every input is non-NaN: TA-Lib then runs
    from the LAST bar (its begidx rule), which gives OBV = that bar's volume and AD = 0.0 there.
    The store gives NaN instead: a value that a later valid bar would retract cannot be kept
    incremental (documented in defs/volume.py)."""

    def oracle(d: dict[str, np.ndarray], p: object) -> tuple[np.ndarray, ...]:
        out = fn(*(d[k] for k in inputs))
        if not np.any(np.all([~np.isnan(d[k]) for k in inputs], axis=0)):
            out = np.full_like(out, np.nan)
        return (out,)

    return oracle


ROWS = [
    Row("obv", [{}], oracle=_unless_no_valid_bar(talib.OBV, ("close", "volume"))),
    Row("ad", [{}], oracle=_unless_no_valid_bar(talib.AD, ("high", "low", "close", "volume"))),
    # minimum, default, fast > slow (TA-Lib does not swap), equal, a large slow period
    Row("adosc", [{"fast": 2, "slow": 2}, {"fast": 3, "slow": 10}, {"fast": 10, "slow": 3},
                  {"fast": 5, "slow": 300}]),
]
globals().update(make_tests(ROWS))


def test_obv_and_ad_equal_talib_unmodified_when_a_bar_is_valid() -> None:
    """The oracle above only differs from plain TA-Lib on series with no valid bar at all."""
    bars = make_bars(["X"], 300, seed=5)
    d = {k: bars[k].to_numpy(dtype=float, copy=True) for k in ("high", "low", "close", "volume")}
    d["close"][:4] = np.nan
    d["volume"][7] = np.nan
    got = compute_batch(IndicatorSpec("obv", {}), d)[0]["obv"]
    assert_bits(got, talib.OBV(d["close"], d["volume"]), "obv")
    got = compute_batch(IndicatorSpec("ad", {}), d)[0]["ad"]
    assert_bits(got, talib.AD(d["high"], d["low"], d["close"], d["volume"]), "ad")
    assert IndicatorSpec("obv", {}).lookback == 0 == IndicatorSpec("ad", {}).lookback


def _talib(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c, v = (bars[k].to_numpy(dtype=float) for k in ("high", "low", "close", "volume"))
    return {
        "obv": talib.OBV(c, v),
        "ad": talib.AD(h, lo, c, v),
        "adosc_3_10": talib.ADOSC(h, lo, c, v, 3, 10),
        "adosc_10_3": talib.ADOSC(h, lo, c, v, 10, 3),
    }


def _check_view(fs: FeatureStore, table: str, symbols: list[str], ref: Callable[[pd.DataFrame], dict[str, np.ndarray]]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, want in ref(bars).items():
                assert_bits(feats[name].to_numpy(dtype=float), want, f"{sym} {name}")


def test_volume_indicators_in_a_view(store: FeatureStore) -> None:
    """Backfill on create, continue on append, recompute on a corrected old bar: == TA-Lib."""
    syms = ["VOLA", "VOLB"]
    df = make_bars(syms, 120, seed=31)
    store.ingest(df)
    view = store.create_view("vol_family", list(_talib(df.iloc[:5])))
    _check_view(store, view.table_name, syms, _talib)
    more = make_bars(syms, 121, seed=31).groupby("symbol").tail(1)  # one new bar each
    r = store.ingest(more)
    assert r.inserted == 2 and r.entities_recomputed == 0
    _check_view(store, view.table_name, syms, _talib)
    fix = df[df.symbol == "VOLA"].iloc[[40]].copy()
    fix[["high", "close", "volume"]] = fix[["high", "close", "volume"]] * 1.02
    r = store.ingest(fix)
    assert r.updated == 1 and r.entities_recomputed == 1
    _check_view(store, view.table_name, syms, _talib)

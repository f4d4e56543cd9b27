"""Momentum oscillators: RSI, MACD, MOM, ROC, ROCP, ROCR, CMO, WILLR, CCI, MFI, BOP, ULTOSC,
STOCHF, STOCH, STOCHRSI (kernels in ``kernels/momentum.py``).

Accepted parameter ranges are TA-Lib 0.8's (TA_BAD_PARAM outside them), measured with talib:
MOM/ROC/ROCP/ROCR period 1..100000; CMO, WILLR, CCI, MFI period 2..100000; ULTOSC each
period 1..100000; STOCHF/STOCH fastk, fastd, slowk, slowd 1..100000; STOCHRSI period 2..100000,
fastk and fastd 1..100000; every matype 0..8 (7 is MAMA with TA_MA's limits 0.5/0.05); CMO's unstable period (``u`` tag) 0..100000. TA-Lib 0.8 retired MFI's
unstable period (``set_unstable_period("MFI", u)`` warns and has no effect), so MFI has none.

Naming: ``mom_10``, ``roc_10``, ``rocp_10``, ``rocr_10``, ``cmo_14`` (``cmo_14_u20`` with
TA-Lib's unstable period for CMO set to 20), ``willr_14``, ``cci_14``, ``mfi_14``, ``bop`` (no parameters), ``ultosc_7_14_28`` (stored sorted ascending: TA-Lib sorts
the three periods itself and weights the shortest 4, the middle 2, the longest 1, so
``ultosc_28_14_7`` is ``ultosc_7_14_28``).

Stochastics: positional parameters are the periods in TA-Lib's order, matypes are tagged and
written only when non-zero (0 = SMA is TA-Lib's default): ``stoch_<fastk>_<slowk>_<slowd>``
with ``_km<n>`` (slowk_matype) and ``_dm<n>`` (slowd_matype), e.g. ``stoch_5_3_3``,
``stoch_5_3_3_km1_dm1`` (both EMA); ``stochf_<fastk>_<fastd>[_dm<n>]`` (fastd_matype);
``stochrsi_<period>_<fastk>_<fastd>[_dm<n>][_u<n>]``, where ``u`` is TA-Lib's RSI unstable
period (STOCHRSI has none of its own: ``set_unstable_period("STOCHRSI", u)`` is deprecated
and does nothing in TA-Lib 0.8, RSI's setting delays where the stochastic starts). Outputs:
``stoch_slowk_5_3_3``/``stoch_slowd_5_3_3``, ``stochf_fastk_5_3``/``stochf_fastd_5_3``,
``stochrsi_fastk_14_5_3``/``stochrsi_fastd_14_5_3``. The MAs inside run with TA-Lib's default
(zero) unstable periods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from featurestore.indicators.base import (
    HLC,
    MAX_PERIOD,
    Arrays,
    IndicatorDef,
    Number,
    ParamDef,
    periods,
    seeded_ewm,
    series,
    ta,
)
from featurestore.indicators.defs.averages import UNSTABLE

HLCV = ("high", "low", "close", "volume")
OHLC = ("open", "high", "low", "close")


def _pd_rsi(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    d = series(a["close"]).diff()
    gain, loss = d.clip(lower=0.0), (-d).clip(lower=0.0)
    g0 = float(gain.iloc[1 : n + 1].mean()) if len(d) > n else math.nan
    l0 = float(loss.iloc[1 : n + 1].mean()) if len(d) > n else math.nan
    g = seeded_ewm(gain, n, g0, 1.0 / n)
    los = seeded_ewm(loss, n, l0, 1.0 / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(g + los > 0, 100.0 * g / (g + los), np.where(np.isnan(g), np.nan, 0.0))
    return (rsi,)


def _pd_macd(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    fast, slow, sig = int(p["fast"]), int(p["slow"]), int(p["signal"])
    x = series(a["close"])
    s = slow - 1
    if len(x) <= s:
        nan = np.full(len(x), np.nan)
        return nan, nan.copy(), nan.copy()
    slow_ema = seeded_ewm(x, s, float(x.iloc[: s + 1].mean()), 2.0 / (slow + 1))
    fast_ema = seeded_ewm(x, s, float(x.iloc[s - fast + 1 : s + 1].mean()), 2.0 / (fast + 1))
    line = series(fast_ema - slow_ema)
    lb = s + sig - 1
    seed = float(line.iloc[s : lb + 1].mean()) if len(x) > lb else math.nan
    signal = seeded_ewm(line, lb, seed, 2.0 / (sig + 1))
    line_np = line.to_numpy().copy()
    line_np[:lb] = np.nan
    return line_np, signal, line_np - signal


def _macd_canonical(p: dict[str, Number]) -> dict[str, Number]:
    if p["slow"] < p["fast"]:
        # TA-Lib swaps them; storing them swapped makes equal outputs equal specs.
        p["fast"], p["slow"] = p["slow"], p["fast"]
    return p


def _lag(kind: str, title: str, name: str) -> IndicatorDef:
    return IndicatorDef(
        kind, title, ("close",), periods(1, 10), ("",), f"momentum.{kind}_run", name,
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 1 + int(p["period"]),
        talib_ref=ta(name, "period"),
    )


#: TA-Lib's MA types (``matype``), by number.
MA_TYPES = ("SMA", "EMA", "WMA", "DEMA", "TEMA", "TRIMA", "KAMA", "MAMA", "T3")


def _matype(name: str, tag: str) -> ParamDef:
    return ParamDef(name, int, 0, 0, len(MA_TYPES) - 1, (), tag=tag)


def ma_lookback(matype: int, period: int) -> int:
    """TA-Lib's TA_MA lookback at default (zero) unstable periods; twin of ``kernels.ma``'s."""
    if period == 1:
        return 0
    return {1: period - 1, 3: 2 * (period - 1), 4: 3 * (period - 1), 6: period,
            7: 32, 8: 6 * (period - 1)}.get(matype, period - 1)


def ma_width(matype: int, period: int) -> int:
    """State columns of one ``kernels.ma`` block; twin of ``kernels.ma.ma_width``."""
    return {0: period + 1, 1: 2, 2: period + 3, 3: 5, 4: 7, 5: period + 4, 6: period + 4,
            7: 60, 8: 7}.get(matype, 1)


def _ultosc_canonical(p: dict[str, Number]) -> dict[str, Number]:
    # TA-Lib sorts the three periods; storing them sorted makes equal outputs equal specs.
    p["p1"], p["p2"], p["p3"] = sorted((p["p1"], p["p2"], p["p3"]))
    return p


# Defaults are TA-Lib's: RSI 14, MACD 12/26/9. Lower bounds are TA-Lib 0.8.2's, measured.
DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "rsi", "Relative strength index (Wilder)", ("close",), periods(2, 14), ("",),
        "momentum.rsi_run", "RSI",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 4,
        talib_ref=ta("RSI", "period"), pandas_ref=_pd_rsi,
    ),
    IndicatorDef(
        "macd", "Moving average convergence/divergence", ("close",),
        (
            ParamDef("fast", int, 12, 2, MAX_PERIOD, ("fastperiod",)),
            ParamDef("slow", int, 26, 2, MAX_PERIOD, ("slowperiod",)),
            ParamDef("signal", int, 9, 1, MAX_PERIOD, ("signalperiod",)),
        ),
        ("", "signal", "hist"), "momentum.macd_run", "MACD",
        lookback=lambda p: int(max(p["fast"], p["slow"])) - 1 + int(p["signal"]) - 1,
        state_len=lambda p: 4,
        talib_ref=ta("MACD", "fast", "slow", "signal"), pandas_ref=_pd_macd,
        canonical=_macd_canonical,
    ),
    _lag("mom", "Momentum x - x[period bars ago]", "MOM"),
    _lag("roc", "Rate of change ((x/prev) - 1) * 100", "ROC"),
    _lag("rocp", "Rate of change percentage (x - prev) / prev", "ROCP"),
    _lag("rocr", "Rate of change ratio x / prev", "ROCR"),
    IndicatorDef(
        "cmo", "Chande momentum oscillator", ("close",), (*periods(2, 14), UNSTABLE), ("",),
        "momentum.cmo_run", "CMO",
        lookback=lambda p: int(p["period"]) + int(p["unstable"]),
        state_len=lambda p: 4,
        talib_ref=ta("CMO", "period", unstable="CMO"),
    ),
    IndicatorDef(
        "willr", "Williams' %R", HLC, periods(2, 14), ("",), "momentum.willr_run", "WILLR",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: 3 + 4 * int(p["period"]),
        talib_ref=ta("WILLR", "period", inputs=HLC),
    ),
    IndicatorDef(
        "cci", "Commodity channel index", HLC, periods(2, 14), ("",), "momentum.cci_run", "CCI",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: 1 + int(p["period"]),
        talib_ref=ta("CCI", "period", inputs=HLC),
    ),
    IndicatorDef(
        "mfi", "Money flow index", HLCV, periods(2, 14), ("",), "momentum.mfi_run", "MFI",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 5 + 2 * int(p["period"]),
        talib_ref=ta("MFI", "period", inputs=HLCV),
    ),
    IndicatorDef(
        "bop", "Balance of power", OHLC, (), ("",), "momentum.bop_run", "BOP",
        lookback=lambda p: 0,
        state_len=lambda p: 1,
        talib_ref=ta("BOP", inputs=OHLC),
    ),
    IndicatorDef(
        "ultosc", "Ultimate oscillator", HLC,
        (
            ParamDef("p1", int, 7, 1, MAX_PERIOD, ("timeperiod1",)),
            ParamDef("p2", int, 14, 1, MAX_PERIOD, ("timeperiod2",)),
            ParamDef("p3", int, 28, 1, MAX_PERIOD, ("timeperiod3",)),
        ),
        ("",), "momentum.ultosc_run", "ULTOSC",
        lookback=lambda p: int(max(p["p1"], p["p2"], p["p3"])),
        state_len=lambda p: 9 + 2 * int(max(p["p1"], p["p2"], p["p3"])),
        talib_ref=ta("ULTOSC", "p1", "p2", "p3", inputs=HLC),
        canonical=_ultosc_canonical,
    ),
    IndicatorDef(
        "stochf", "Fast stochastic", HLC,
        (
            ParamDef("fastk", int, 5, 1, MAX_PERIOD, ("fastk_period",)),
            ParamDef("fastd", int, 3, 1, MAX_PERIOD, ("fastd_period",)),
            _matype("fastd_matype", "dm"),
        ),
        ("fastk", "fastd"), "momentum.stochf_run", "STOCHF",
        lookback=lambda p: int(p["fastk"]) - 1 + ma_lookback(int(p["fastd_matype"]), int(p["fastd"])),
        state_len=lambda p: 5 + 2 * int(p["fastk"]) + ma_width(int(p["fastd_matype"]), int(p["fastd"])),
        talib_ref=ta("STOCHF", "fastk", "fastd", "fastd_matype", inputs=HLC),
    ),
    IndicatorDef(
        "stoch", "Slow stochastic", HLC,
        (
            ParamDef("fastk", int, 5, 1, MAX_PERIOD, ("fastk_period",)),
            ParamDef("slowk", int, 3, 1, MAX_PERIOD, ("slowk_period",)),
            _matype("slowk_matype", "km"),
            ParamDef("slowd", int, 3, 1, MAX_PERIOD, ("slowd_period",)),
            _matype("slowd_matype", "dm"),
        ),
        ("slowk", "slowd"), "momentum.stoch_run", "STOCH",
        lookback=lambda p: (
            int(p["fastk"]) - 1 + ma_lookback(int(p["slowk_matype"]), int(p["slowk"]))
            + ma_lookback(int(p["slowd_matype"]), int(p["slowd"]))
        ),
        state_len=lambda p: (
            5 + 2 * int(p["fastk"]) + ma_width(int(p["slowk_matype"]), int(p["slowk"]))
            + ma_width(int(p["slowd_matype"]), int(p["slowd"]))
        ),
        talib_ref=ta("STOCH", "fastk", "slowk", "slowk_matype", "slowd", "slowd_matype", inputs=HLC),
    ),
    IndicatorDef(
        "stochrsi", "Stochastic RSI", ("close",),
        (
            *periods(2, 14),
            ParamDef("fastk", int, 5, 1, MAX_PERIOD, ("fastk_period",)),
            ParamDef("fastd", int, 3, 1, MAX_PERIOD, ("fastd_period",)),
            _matype("fastd_matype", "dm"),
            UNSTABLE,
        ),
        ("fastk", "fastd"), "momentum.stochrsi_run", "STOCHRSI",
        lookback=lambda p: (
            int(p["period"]) + int(p["unstable"]) + int(p["fastk"]) - 1
            + ma_lookback(int(p["fastd_matype"]), int(p["fastd"]))
        ),
        state_len=lambda p: 8 + int(p["fastk"]) + ma_width(int(p["fastd_matype"]), int(p["fastd"])),
        talib_ref=ta("STOCHRSI", "period", "fastk", "fastd", "fastd_matype", unstable="RSI"),
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "rsi": ("count", "avg_gain", "avg_loss", "prev_close"),
    "macd": ("count", "fast_ema", "slow_ema", "signal_ema"),
    "mom": ("count", "ring[period]"),
    "roc": ("count", "ring[period]"),
    "rocp": ("count", "ring[period]"),
    "rocr": ("count", "ring[period]"),
    "cmo": ("count", "avg_gain", "avg_loss", "prev_close"),
    "willr": ("count", "prefix_high", "prefix_low", "high_block[period]", "low_block[period]",
              "suffix_high[period]", "suffix_low[period]"),
    "cci": ("count", "typical_ring[period]"),
    "mfi": ("count", "pos_sum", "neg_sum", "prev_typical", "zero_flow_run", "pos_ring[period]", "neg_ring[period]"),
    "bop": ("count",),
    "stochf": ("count", "lowest", "lowest_bar", "highest", "highest_bar", "low_ring[fastk]", "high_ring[fastk]",
               "fastd_ma[ma_width(fastd_matype, fastd)]"),
    "stoch": ("count", "lowest", "lowest_bar", "highest", "highest_bar", "low_ring[fastk]", "high_ring[fastk]",
              "slowk_ma[ma_width(slowk_matype, slowk)]", "slowd_ma[ma_width(slowd_matype, slowd)]"),
    "stochrsi": ("count", "avg_gain", "avg_loss", "prev_close", "lowest", "lowest_bar", "highest", "highest_bar",
                 "rsi_ring[fastk]", "fastd_ma[ma_width(fastd_matype, fastd)]"),
    "ultosc": ("count", "prev_close", "a1", "b1", "a2", "b2", "a3", "b3", "null_run", "cm_ring[p3]", "tr_ring[p3]"),
}

"""Momentum oscillators: RSI, MACD (kernels in ``kernels/momentum.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from featurestore.indicators.base import (
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
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "rsi": ("count", "avg_gain", "avg_loss", "prev_close"),
    "macd": ("count", "fast_ema", "slow_ema", "signal_ema"),
}

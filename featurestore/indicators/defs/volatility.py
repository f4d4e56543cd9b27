"""Volatility: TRANGE, ATR, NATR, VAR, STDDEV (kernels in ``kernels/volatility.py``).

Accepted ranges (TA-Lib 0.8's, except the multiplier): ATR and NATR period 1..100000 (default
14) with TA-Lib's unstable period ``u`` 0..100000 (``atr_14_u20`` ==
``talib.set_unstable_period("ATR", 20)``; values unchanged, output from bar period+u);
VAR period 1..100000, STDDEV period 2..100000 (default 5 for both); STDDEV's ``nbdev``
0..100 (TA-Lib accepts any real: a negative one only flips the sign, and names must stay
plain identifiers, as for BBANDS). VAR's ``nbdev`` is ignored by TA-Lib, so it is always
stored as 1 (``var_5_2`` is ``var_5_1``, the way ``macd_26_12_9`` is ``macd_12_26_9``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from featurestore.indicators.base import (
    HLC,
    MAX_NBDEV,
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

if TYPE_CHECKING:
    import pandas as pd


def pd_trange_series(a: Arrays) -> pd.Series:
    """True range as a pandas Series (NaN at bar 0), shared by pandas references."""
    import pandas as pd

    h, lo, c = series(a["high"]), series(a["low"]), series(a["close"])
    pc = c.shift(1)
    tr = pd.concat([h - lo, (pc - h).abs(), (lo - pc).abs()], axis=1).max(axis=1, skipna=False)
    tr.iloc[:1] = np.nan
    return tr


def _pd_trange(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    return (pd_trange_series(a).to_numpy(),)


def _pd_atr(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    tr = pd_trange_series(a)
    seed = float(tr.iloc[1 : n + 1].mean()) if len(tr) > n else math.nan
    out = seeded_ewm(tr, n, seed, 1.0 / n)
    out[: n + int(p.get("unstable", 0))] = np.nan
    return (out,)


def _var_params(lo: int) -> tuple[ParamDef, ...]:
    return (
        ParamDef("period", int, 5, lo, MAX_PERIOD, ("timeperiod",)),
        ParamDef("nbdev", float, 1.0, 0.0, MAX_NBDEV),
    )


def _var_canonical(p: dict[str, Number]) -> dict[str, Number]:
    p["nbdev"] = 1.0  # TA-Lib's VAR ignores it: one name for one series of values
    return p


DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "atr", "Average true range (Wilder)", HLC, (*periods(1, 14), UNSTABLE), ("",),
        "volatility.atr_run", "ATR",
        lookback=lambda p: int(p["period"]) + int(p["unstable"]),
        state_len=lambda p: 3,
        talib_ref=ta("ATR", "period", inputs=HLC, unstable="ATR"), pandas_ref=_pd_atr,
    ),
    IndicatorDef(
        "natr", "Normalized average true range (ATR / close * 100; NATR(1) is ATR(1))", HLC,
        (*periods(1, 14), UNSTABLE), ("",), "volatility.natr_run", "NATR",
        lookback=lambda p: int(p["period"]) + int(p["unstable"]),
        state_len=lambda p: 3,
        talib_ref=ta("NATR", "period", inputs=HLC, unstable="NATR"),
    ),
    IndicatorDef(
        "var", "Population variance (TA-Lib 0.8's shifted running sums)", ("close",), _var_params(1),
        ("",), "volatility.var_run", "VAR",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: int(p["period"]) + 4,
        talib_ref=ta("VAR", "period", "nbdev"), canonical=_var_canonical,
    ),
    IndicatorDef(
        "stddev", "Population standard deviation times nbdev", ("close",), _var_params(2),
        ("",), "volatility.stddev_run", "STDDEV",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: int(p["period"]) + 4,
        talib_ref=ta("STDDEV", "period", "nbdev"),
    ),
    IndicatorDef(
        "trange", "True range", HLC, (), ("",), "volatility.trange_run", "TRANGE",
        lookback=lambda p: 1,
        state_len=lambda p: 2,
        talib_ref=ta("TRANGE", inputs=HLC), pandas_ref=_pd_trange,
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "trange": ("count", "prev_close"),
    "atr": ("count", "atr_or_tr_sum", "prev_close"),
    "natr": ("count", "atr_or_tr_sum", "prev_close"),
    "var": ("count", "s1", "s2", "shift_k", "recentre_countdown", "ring[period-1]"),
    "stddev": ("count", "s1", "s2", "shift_k", "recentre_countdown", "ring[period-1]"),
}

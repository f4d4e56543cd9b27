"""Volatility: TRANGE, ATR (kernels in ``kernels/volatility.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from featurestore.indicators.base import HLC, Arrays, IndicatorDef, Number, periods, seeded_ewm, series, ta

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
    return (seeded_ewm(tr, n, seed, 1.0 / n),)


DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "atr", "Average true range (Wilder)", HLC, periods(1, 14), ("",), "volatility.atr_run", "ATR",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 3,
        talib_ref=ta("ATR", "period", inputs=HLC), pandas_ref=_pd_atr,
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
}

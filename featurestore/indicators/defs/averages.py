"""Moving averages and bands: SMA, EMA, BBANDS (kernels in ``kernels/averages.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from featurestore.indicators.base import (
    MAX_NBDEV,
    MAX_PERIOD,
    Arrays,
    IndicatorDef,
    Number,
    ParamDef,
    name_number,
    periods,
    seeded_ewm,
    series,
    ta,
)

#: TA-Lib's unstable period (``talib.set_unstable_period``), written ``u<k>`` in names.
UNSTABLE = ParamDef("unstable", int, 0, 0, MAX_PERIOD, ("unstableperiod",), tag="u")


def _pd_sma(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    return (series(a["close"]).rolling(int(p["period"])).mean().to_numpy(),)


def _pd_ema(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    x = series(a["close"])
    seed = float(x.iloc[:n].mean()) if len(x) >= n else math.nan
    out = seeded_ewm(x, n - 1, seed, 2.0 / (n + 1))
    out[: n - 1 + int(p.get("unstable", 0))] = np.nan
    return (out,)


def _pd_bbands(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    r = series(a["close"]).rolling(n)
    mid = r.mean().to_numpy()
    sd = r.std(ddof=0).to_numpy()
    return mid + float(p["nbdevup"]) * sd, mid, mid - float(p["nbdevdn"]) * sd


def _bb_name(p: Mapping[str, Number]) -> list[str]:
    out = [name_number(p["period"]), name_number(p["nbdevup"])]
    if p["nbdevdn"] != p["nbdevup"]:
        out.append(name_number(p["nbdevdn"]))
    return out


def _bb_complete(p: dict[str, Number], n_positional: int) -> dict[str, Number]:
    if n_positional == 2:  # bbands_<n>_<k>: both multipliers k
        p["nbdevdn"] = p["nbdevup"]
    return p


# Defaults are TA-Lib's (talib.abstract.Function(name).info): SMA/EMA 30, BBANDS 20/2/2.
DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "sma", "Simple moving average", ("close",), periods(1, 30), ("",), "averages.sma_run", "SMA",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: 2 + int(p["period"]) - 1,
        talib_ref=ta("SMA", "period"), pandas_ref=_pd_sma,
    ),
    IndicatorDef(
        "ema", "Exponential moving average (SMA seed)", ("close",), (*periods(1, 30), UNSTABLE),
        ("",), "averages.ema_run", "EMA",
        lookback=lambda p: int(p["period"]) - 1 + int(p["unstable"]),
        state_len=lambda p: 2,
        talib_ref=ta("EMA", "period", unstable="EMA"), pandas_ref=_pd_ema,
    ),
    IndicatorDef(
        "bbands", "Bollinger bands (SMA, population std)", ("close",),
        (
            ParamDef("period", int, 20, 2, MAX_PERIOD, ("timeperiod",)),
            ParamDef("nbdevup", float, 2.0, 0.0, MAX_NBDEV),
            ParamDef("nbdevdn", float, 2.0, 0.0, MAX_NBDEV),
        ),
        ("upper", "middle", "lower"), "averages.bbands_run", "BBANDS",
        lookback=lambda p: int(p["period"]) - 1,
        state_len=lambda p: 6 + int(p["period"]) - 1,
        talib_ref=ta("BBANDS", "period", "nbdevup", "nbdevdn"), pandas_ref=_pd_bbands,
        name_tokens=_bb_name, complete=_bb_complete, fixed=(("matype", 0),),
    ),
)

#: What each state column holds (``ring[..]`` is a ring of the last period-1 inputs, slot
#: ``bar_index % (period-1)``; during the warm-up the EMA slot holds its seed's running sum).
STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "sma": ("count", "total", "ring[period-1]"),
    "ema": ("count", "ema_or_seed_sum"),
    "bbands": ("count", "total", "s1", "s2", "shift_k", "recentre_countdown", "ring[period-1]"),
}

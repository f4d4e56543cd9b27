"""Moving averages and bands: SMA, EMA, BBANDS, WMA, DEMA, TEMA, TRIMA, KAMA, T3, MAMA, MA by
``matype``, and the MA oscillators APO, PPO, TRIX (kernels in ``kernels/averages.py``, MA blocks
in ``kernels/ma.py``, MAMA in ``kernels/mama.py``).

Accepted parameter ranges (TA-Lib 0.8.1's): every ``period`` 1..100000 (BBANDS 2..100000;
APO/PPO ``fast``/``slow`` 2..100000, swapped when slow < fast, as TA-Lib does);
T3 ``vfactor`` 0..1; ``matype`` 0..8 (7 is MAMA with TA_MA's fixed limits 0.5 and 0.05: TA-Lib
ignores the period for it, except that period 1 is a copy as for every matype); ``unstable``
0..100000 on EMA, KAMA, T3 and MAMA (their TA-Lib unstable-period ids); MAMA ``fastlimit``
and ``slowlimit`` 0.01..0.99 each (TA-Lib does not require slowlimit <= fastlimit; alpha is
fastlimit / delta-phase raised to at least slowlimit).

MAMA names: ``mama_<fastlimit>_<slowlimit>[_u<k>]`` (``mama`` = ``mama_0p5_0p05``), outputs
``mama_mama_0p5_0p05`` and ``mama_fama_0p5_0p05``.

MA naming: ``ma_<period>[_<matype>]``; matype is written as its TA-Lib number and only when it
is not 0 (SMA): ``ma_30`` = SMA(30), ``ma_30_1`` = EMA(30), ``ma_30_8`` = T3(30, vfactor 0.7).
"""

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

#: TA-Lib's TA_MAType numbers.
MATYPES = ("sma", "ema", "wma", "dema", "tema", "trima", "kama", "mama", "t3")
MAMA = 7
#: TA-Lib's fixed MAMA lookback (before its unstable period) and the state columns of one
#: ``kernels/mama.py`` block (a test checks they agree with the kernel module).
MAMA_LOOKBACK = 32
MAMA_WIDTH = 60


def matype_param(default: int = 0) -> ParamDef:
    """A ``matype`` parameter (TA-Lib's TA_MAType, 0..8, every one supported)."""
    return ParamDef("matype", int, default, 0, 8, ("ma_type",))


def ma_width(matype: int, period: int) -> int:
    """State columns of one ``kernels.ma`` block (pure-Python twin of ``ma.ma_width``)."""
    if matype == 0:
        return period + 1
    if matype == 1:
        return 2
    if matype == 2:
        return period + 3
    if matype == 3:
        return 5
    if matype in (4, 8):
        return 7
    if matype in (5, 6):
        return period + 4
    if matype == MAMA:
        return MAMA_WIDTH
    return 1


def ma_lookback(matype: int, period: int, unstable: int = 0) -> int:
    """TA-Lib's TA_MA lookback plus the matype's unstable period (twin of ``ma.ma_lookback``)."""
    if period == 1:
        return unstable
    if matype == 1:
        return period - 1 + unstable
    if matype == 3:
        return 2 * (period - 1 + unstable)
    if matype == 4:
        return 3 * (period - 1 + unstable)
    if matype == 6:
        return period + unstable
    if matype == 7:
        return 32 + unstable
    if matype == 8:
        return 6 * (period - 1) + unstable
    return period - 1


def _ma_name(p: Mapping[str, Number]) -> list[str]:
    out = [name_number(p["period"])]
    if p["matype"] != 0:
        out.append(name_number(p["matype"]))
    return out


def _single(kind: str, title: str, talib_name: str, matype: int, default: int = 30) -> IndicatorDef:
    """WMA/DEMA/TEMA/TRIMA: one period (1..100000), one ``kernels.ma`` block."""
    return IndicatorDef(
        kind, title, ("close",), periods(1, default), ("",), f"averages.{kind}_run", talib_name,
        lookback=lambda p: ma_lookback(matype, int(p["period"])),
        state_len=lambda p: ma_width(matype, int(p["period"])),
        talib_ref=ta(talib_name, "period"),
    )


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


def _po_canonical(p: dict[str, Number]) -> dict[str, Number]:
    if p["slow"] < p["fast"]:
        # TA-Lib swaps them; storing them swapped makes equal outputs equal specs.
        p["fast"], p["slow"] = p["slow"], p["fast"]
    return p


def _po_name(p: Mapping[str, Number]) -> list[str]:
    out = [name_number(p["fast"]), name_number(p["slow"])]
    if p["matype"] != 0:
        out.append(name_number(p["matype"]))
    return out


def _po(kind: str, title: str, talib_name: str) -> IndicatorDef:
    """APO/PPO: fast and slow periods 2..100000 (swapped when slow < fast, as TA-Lib does) and a
    matype 0..8 (default 0, SMA); names ``<kind>_<fast>_<slow>[_<matype>]``."""
    return IndicatorDef(
        kind, title, ("close",),
        (
            ParamDef("fast", int, 12, 2, MAX_PERIOD, ("fastperiod",)),
            ParamDef("slow", int, 26, 2, MAX_PERIOD, ("slowperiod",)),
            matype_param(),
        ),
        ("",), f"averages.{kind}_run", talib_name,
        lookback=lambda p: ma_lookback(int(p["matype"]), int(max(p["fast"], p["slow"]))),
        state_len=lambda p: 1 + ma_width(int(p["matype"]), int(p["fast"])) + ma_width(int(p["matype"]), int(p["slow"])),
        talib_ref=ta(talib_name, "fast", "slow", "matype"),
        canonical=_po_canonical, name_tokens=_po_name,
    )


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
        "bbands", "Bollinger bands (MA of matype, population std)", ("close",),
        (
            ParamDef("period", int, 20, 2, MAX_PERIOD, ("timeperiod",)),
            ParamDef("nbdevup", float, 2.0, 0.0, MAX_NBDEV),
            ParamDef("nbdevdn", float, 2.0, 0.0, MAX_NBDEV),
            ParamDef("matype", int, 0, 0, 8, ("ma_type",), tag="m"),
        ),
        ("upper", "middle", "lower"), "averages.bbands_run", "BBANDS",
        # TA-Lib waits for both the MA and the std's window (MAMA's 32 can be the shorter).
        lookback=lambda p: max(ma_lookback(int(p["matype"]), int(p["period"])), int(p["period"]) - 1),
        state_len=lambda p: 5 + int(p["period"]) + (ma_width(int(p["matype"]), int(p["period"])) if p["matype"] else 0),
        talib_ref=ta("BBANDS", "period", "nbdevup", "nbdevdn", "matype"), pandas_ref=_pd_bbands,
        name_tokens=_bb_name, complete=_bb_complete,
    ),
    _single("wma", "Weighted moving average", "WMA", 2),
    _single("dema", "Double exponential moving average", "DEMA", 3),
    _single("tema", "Triple exponential moving average", "TEMA", 4),
    _single("trima", "Triangular moving average", "TRIMA", 5),
    IndicatorDef(
        "kama", "Kaufman adaptive moving average", ("close",), (*periods(1, 30), UNSTABLE),
        ("",), "averages.kama_run", "KAMA",
        lookback=lambda p: ma_lookback(6, int(p["period"]), int(p["unstable"])),
        state_len=lambda p: ma_width(6, int(p["period"])),
        talib_ref=ta("KAMA", "period", unstable="KAMA"),
    ),
    IndicatorDef(
        "t3", "Tillson T3 moving average", ("close",),
        (*periods(1, 5), ParamDef("vfactor", float, 0.7, 0.0, 1.0), UNSTABLE),
        ("",), "averages.t3_run", "T3",
        lookback=lambda p: ma_lookback(8, int(p["period"]), int(p["unstable"])),
        state_len=lambda p: ma_width(8, int(p["period"])),
        talib_ref=ta("T3", "period", "vfactor", unstable="T3"),
    ),
    IndicatorDef(
        "ma", "Moving average of TA-Lib type matype", ("close",), (*periods(1, 30), matype_param()),
        ("",), "averages.ma_run", "MA",
        lookback=lambda p: ma_lookback(int(p["matype"]), int(p["period"])),
        state_len=lambda p: ma_width(int(p["matype"]), int(p["period"])),
        talib_ref=ta("MA", "period", "matype"),
        name_tokens=_ma_name,
    ),
    _po("apo", "Absolute price oscillator MA(fast) - MA(slow)", "APO"),
    _po("ppo", "Percentage price oscillator (MA(fast) - MA(slow)) / MA(slow) * 100", "PPO"),
    IndicatorDef(
        "mama", "MESA adaptive moving average (MAMA) and following adaptive MA (FAMA)", ("close",),
        (
            ParamDef("fastlimit", float, 0.5, 0.01, 0.99),
            ParamDef("slowlimit", float, 0.05, 0.01, 0.99),
            UNSTABLE,
        ),
        ("mama", "fama"), "mama.mama_run", "MAMA",
        lookback=lambda p: MAMA_LOOKBACK + int(p["unstable"]),
        state_len=lambda p: MAMA_WIDTH,
        talib_ref=ta("MAMA", "fastlimit", "slowlimit", unstable="MAMA"),
    ),
    IndicatorDef(
        "trix", "1-bar rate of change (percent) of a triple EMA", ("close",), periods(1, 30),
        ("",), "averages.trix_run", "TRIX",
        lookback=lambda p: 3 * (int(p["period"]) - 1) + 1,
        state_len=lambda p: 8,
        talib_ref=ta("TRIX", "period"),
    ),
)

#: What each state column holds (``ring[..]`` is a ring of the last period-1 inputs, slot
#: ``bar_index % (period-1)``; during the warm-up the EMA slot holds its seed's running sum).
STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "sma": ("count", "total", "ring[period-1]"),
    "ema": ("count", "ema_or_seed_sum"),
    "bbands": ("count", "total", "s1", "s2", "shift_k", "recentre_countdown", "ring[period-1]",
               "ma[ma_width(matype, period)] (matype != 0 only; total unused then)"),
    # The MA family: one kernels/ma.py block at column 0 (its layouts are in that module).
    "wma": ("count", "sub", "sum", "trailing", "ring[period-1]"),
    "dema": ("count", "ema1_count", "ema1", "ema2_count", "ema2"),
    "tema": ("count", "ema1_count", "ema1", "ema2_count", "ema2", "ema3_count", "ema3"),
    "trima": ("count", "numerator", "num_sub", "num_add", "ring[period]"),
    "kama": ("count", "sum_roc1", "kama", "trailing", "ring[period]"),
    "t3": ("count", "e1", "e2", "e3", "e4", "e5", "e6"),
    "ma": ("count", "block of kernels/ma.py for matype"),
    "apo": ("count", "fast_ma[ma_width(matype, fast)]", "slow_ma[ma_width(matype, slow)]"),
    "ppo": ("count", "fast_ma[ma_width(matype, fast)]", "slow_ma[ma_width(matype, slow)]"),
    "trix": ("count", "ema1_count", "ema1", "ema2_count", "ema2", "ema3_count", "ema3", "previous_ema3"),
    # One kernels/mama.py block (its module docstring has the layout).
    "mama": ("count", "wma_sub", "wma_sum", "trailing", "ring[3]", "hilbert_idx", "period", "prev_q2",
             "prev_i2", "re", "im", "prev_phase", "mama", "fama", "i1_odd_prev2", "i1_odd_prev3",
             "i1_even_prev2", "i1_even_prev3",
             "even[detrender, q1, ji, jq: buf[3], prev, prev_input]",
             "odd[detrender, q1, ji, jq: buf[3], prev, prev_input]"),
}

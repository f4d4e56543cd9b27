"""Directional movement: ADX, ADXR, DX, PLUS_DI, MINUS_DI, AROON, AROONOSC (kernels in
``kernels/directional.py``).

Accepted ranges (TA-Lib 0.8's): ADX, ADXR, DX, AROON, AROONOSC period 2..100000; PLUS_DI and
MINUS_DI 1..100000 (default 14 for all). TA-Lib's unstable period ``u`` (0..100000) for ADX,
DX, PLUS_DI and MINUS_DI (``plus_di_14_u30`` == ``talib.set_unstable_period("PLUS_DI", 30)``);
+DI/-DI(1) take TA-Lib's own period-1 branch, which has none (``u`` is dropped there). ADXR
has no ``u``: TA-Lib 0.8's ADXR setting changes nothing (its lookback follows ADX's setting).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from featurestore.indicators.base import HLC, Arrays, IndicatorDef, Number, periods, seeded_ewm, series, ta
from featurestore.indicators.defs.averages import UNSTABLE
from featurestore.indicators.defs.volatility import pd_trange_series

HL = ("high", "low")


def _di_canonical(p: dict[str, Number]) -> dict[str, Number]:
    if p["period"] == 1:
        p["unstable"] = 0  # TA-Lib's +DI/-DI(1) branch ignores the unstable period
    return p


def _dmi(kind: str, title: str, talib_name: str, lo: int) -> IndicatorDef:
    """DX / PLUS_DI / MINUS_DI: one kernel shape, output from bar period + unstable."""
    return IndicatorDef(
        kind, title, HLC, (*periods(lo, 14), UNSTABLE), ("",), f"directional.{kind}_run", talib_name,
        lookback=lambda p: 1 if p["period"] == 1 else int(p["period"]) + int(p["unstable"]),
        state_len=lambda p: 8,
        talib_ref=ta(talib_name, "period", inputs=HLC, unstable=talib_name),
        canonical=_di_canonical if lo == 1 else None,
    )


def _pd_adx(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
    n = int(p["period"])
    h, lo = series(a["high"]), series(a["low"])
    up, down = h.diff(), -lo.diff()
    pdm = up.where((up > 0) & (up > down), 0.0)
    mdm = down.where((down > 0) & (up < down), 0.0)
    tr = pd_trange_series(a)
    m = len(h)
    if m < 2 * n:
        return (np.full(m, np.nan),)
    # Wilder sums seeded at bar n-1 with the sum of n-1 terms, i.e. n x a seeded Wilder average.
    sm = [
        seeded_ewm(s, n - 1, float(s.iloc[1:n].sum()) / n, 1.0 / n)
        for s in (pdm, mdm, tr)
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi, mdi = 100.0 * sm[0] / sm[2], 100.0 * sm[1] / sm[2]
        dx = series(100.0 * np.abs(pdi - mdi) / (pdi + mdi))
    adx = seeded_ewm(dx, 2 * n - 1, float(dx.iloc[n : 2 * n].mean()), 1.0 / n)
    return (adx,)


DEFS: tuple[IndicatorDef, ...] = (
    IndicatorDef(
        "adx", "Average directional index (Wilder)", HLC, (*periods(2, 14), UNSTABLE), ("",),
        "directional.adx_run", "ADX",
        lookback=lambda p: 2 * int(p["period"]) - 1 + int(p["unstable"]),
        state_len=lambda p: 8,
        talib_ref=ta("ADX", "period", inputs=HLC, unstable="ADX"), pandas_ref=_pd_adx,
    ),
    IndicatorDef(
        "adxr", "Average directional movement rating: (ADX[t] + ADX[t-period+1]) / 2", HLC,
        periods(2, 14), ("",), "directional.adxr_run", "ADXR",
        lookback=lambda p: 3 * int(p["period"]) - 2,
        state_len=lambda p: 8 + int(p["period"]) - 1,
        talib_ref=ta("ADXR", "period", inputs=HLC),
    ),
    _dmi("dx", "Directional movement index (Wilder)", "DX", 2),
    _dmi("plus_di", "Plus directional indicator (Wilder; period 1: +DM/TR, not in percent)", "PLUS_DI", 1),
    _dmi("minus_di", "Minus directional indicator (Wilder; period 1: -DM/TR, not in percent)", "MINUS_DI", 1),
    IndicatorDef(
        "aroon", "Aroon down and up over period+1 bars", HL, periods(2, 14), ("down", "up"),
        "directional.aroon_run", "AROON",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 5 + 2 * int(p["period"]),
        talib_ref=ta("AROON", "period", inputs=HL),
    ),
    IndicatorDef(
        "aroonosc", "Aroon oscillator (up - down)", HL, periods(2, 14), ("",),
        "directional.aroonosc_run", "AROONOSC",
        lookback=lambda p: int(p["period"]),
        state_len=lambda p: 5 + 2 * int(p["period"]),
        talib_ref=ta("AROONOSC", "period", inputs=HL),
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "adx": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum",
            "adx_or_dx_sum"),
    "adxr": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum",
             "adx_or_dx_sum", "ring_adx[period-1]"),
    "dx": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum", "last_dx"),
    "plus_di": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum", "unused"),
    "minus_di": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum", "unused"),
    "aroon": ("count", "low_idx", "low", "high_idx", "high", "ring_low[period]", "ring_high[period]"),
    "aroonosc": ("count", "low_idx", "low", "high_idx", "high", "ring_low[period]", "ring_high[period]"),
}

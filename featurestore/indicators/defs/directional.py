"""Directional movement: ADX (kernels in ``kernels/directional.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from featurestore.indicators.base import HLC, Arrays, IndicatorDef, Number, periods, seeded_ewm, series, ta
from featurestore.indicators.defs.volatility import pd_trange_series


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
        "adx", "Average directional index (Wilder)", HLC, periods(2, 14), ("",),
        "directional.adx_run", "ADX",
        lookback=lambda p: 2 * int(p["period"]) - 1,
        state_len=lambda p: 8,
        talib_ref=ta("ADX", "period", inputs=HLC), pandas_ref=_pd_adx,
    ),
)

STATE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "adx": ("count", "prev_high", "prev_low", "prev_close", "minus_dm", "plus_dm", "tr_sum",
            "adx_or_dx_sum"),
}

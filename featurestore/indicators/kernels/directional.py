"""Directional-movement kernels: ADX.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    _TA_EPS,
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan3,
    _true_range,
)


# --------------------------------------------------------------------------------------- ADX
@njit(cache=True)
def adx_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Wilder ADX, TA-Lib's sums of period-1 DM/TR terms, no fma (unchanged since TA-Lib 0.4).

    State: [count, prev high, prev low, prev close, -DM sum, +DM sum, TR sum, DX sum or ADX].
    """
    nm1 = float(period - 1)
    lb = 2 * period - 1
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 8)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1` below
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        ph = state[k, 1]
        pl = state[k, 2]
        pc = state[k, 3]
        mdm = state[k, 4]
        pdm = state[k, 5]
        trs = state[k, 6]
        adx = state[k, 7]
        if c == 0:
            ph = high[i]
            pl = low[i]
            pc = close[i]
            out[i] = np.nan
            c = 1
            i += 1
        # Warm-up: bars 1..period-1 sum DM and TR, bars period..2*period-1 sum DX.
        while i < end and c <= lb:
            hv = high[i]
            lv = low[i]
            dp = hv - ph
            dm = pl - lv
            ph = hv
            pl = lv
            if c >= period:
                mdm -= mdm / period
                pdm -= pdm / period
            if dm > 0 and dp < dm:
                mdm += dm
            elif dp > 0 and dp > dm:
                pdm += dp
            tr = _true_range(hv, lv, pc)
            pc = close[i]
            out[i] = np.nan
            if c < period:
                trs += tr
            else:
                trs = trs - (trs / period) + tr
                # TA-Lib 0.8 skips the bar when TRs is near zero *or NaN* (a positive test that
                # NaN fails), but computes a NaN DX when the DI sum is NaN (measured with talib).
                if trs >= _TA_EPS or trs <= -_TA_EPS:
                    mdi = 100.0 * (mdm / trs)
                    pdi = 100.0 * (pdm / trs)
                    sdi = mdi + pdi
                    if not (-_TA_EPS < sdi and sdi < _TA_EPS):
                        adx += 100.0 * (abs(mdi - pdi) / sdi)
                if c == lb:
                    adx = adx / period
                    out[i] = adx
            c += 1
            i += 1
        # Steady state: Wilder smoothing of DX; a skipped bar repeats the last ADX.
        while i < end:
            hv = high[i]
            lv = low[i]
            dp = hv - ph
            dm = pl - lv
            ph = hv
            pl = lv
            mdm -= mdm / period
            pdm -= pdm / period
            if dm > 0 and dp < dm:
                mdm += dm
            elif dp > 0 and dp > dm:
                pdm += dp
            tr = _true_range(hv, lv, pc)
            pc = close[i]
            trs = trs - (trs / period) + tr
            if trs >= _TA_EPS or trs <= -_TA_EPS:
                mdi = 100.0 * (mdm / trs)
                pdi = 100.0 * (pdm / trs)
                sdi = mdi + pdi
                if not (-_TA_EPS < sdi and sdi < _TA_EPS):
                    adx = ((adx * nm1) + 100.0 * (abs(mdi - pdi) / sdi)) / period
            out[i] = adx
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = ph
        state[k, 2] = pl
        state[k, 3] = pc
        state[k, 4] = mdm
        state[k, 5] = pdm
        state[k, 6] = trs
        state[k, 7] = adx
    return 0

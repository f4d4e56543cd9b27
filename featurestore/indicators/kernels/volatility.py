"""Volatility kernels: TRANGE, ATR.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan3,
    _true_range,
    fma,
)


# ------------------------------------------------------------------------------------ TRANGE
@njit(cache=True)
def trange_run(high, low, close, offsets, state_in, state, out):  # type: ignore[no-untyped-def]
    """True range from bar 1. State: [count, previous close]."""
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 2)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c = np.int64(state[k, 0])
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        pc = state[k, 1]
        if c == 0:
            out[i] = np.nan
            pc = close[i]
            i += 1
        while i < end:
            out[i] = _true_range(high[i], low[i], pc)
            pc = close[i]
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = pc
    return 0


# --------------------------------------------------------------------------------------- ATR
@njit(cache=True)
def atr_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Wilder ATR seeded by the mean of TR[1..period] (TR[0] unused); fma form of TA-Lib 0.8.

    State: [count, TR sum (warm-up) or ATR, previous close]. Period 1 runs the same recursion
    (a=0, b=1), so after a NaN bar it stays NaN, exactly as TA-Lib's ATR(1) does.
    """
    a = (period - 1) / period
    b = 1.0 - a
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 3)
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
        s = state[k, 1]
        pc = state[k, 2]
        if c == 0:
            out[i] = np.nan
            pc = close[i]
            c = 1
            i += 1
        while i < end and c <= period:
            s += _true_range(high[i], low[i], pc)
            pc = close[i]
            if c == period:
                s = s / period
                out[i] = s
            else:
                out[i] = np.nan
            c += 1
            i += 1
        while i < end:
            tr = _true_range(high[i], low[i], pc)
            pc = close[i]
            s = fma(a, s, tr * b)
            out[i] = s
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = s
        state[k, 2] = pc
    return 0

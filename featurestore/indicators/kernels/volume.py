"""Volume kernels: OBV, AD (Chaikin A/D line), ADOSC (Chaikin A/D oscillator).

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's
(``ta_OBV.c``, ``ta_AD.c``, ``ta_ADOSC.c``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan4,
    fma,
)


@njit(cache=True, inline="always")
def _skip_leading_nan2(a, b, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars where either of two inputs is NaN (TA-Lib's begidx over both)."""
    while i < end and (math.isnan(a[i]) or math.isnan(b[i])):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def ad_step(ad, h, lo, c, v):  # type: ignore[no-untyped-def]
    """One bar of TA-Lib's A/D line: ``ad += ((c - l) - (h - c)) / (h - l) * v`` when h - l > 0
    (a bar with h <= l, or a NaN range, adds nothing). Shared by AD and ADOSC."""
    rng = h - lo
    if rng > 0.0:
        ad += (((c - lo) - (h - c)) / rng) * v
    return ad


# --------------------------------------------------------------------------------------- OBV
@njit(cache=True)
def obv_run(close, volume, offsets, state_in, state, out):  # type: ignore[no-untyped-def]
    """On-balance volume: starts at the first bar's volume, then adds (close up) or subtracts
    (close down) each bar's volume; an unchanged (or NaN-compared) close keeps it.

    State: [count, OBV, previous close].
    """
    if volume.size != close.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, close.size, state_in, state, 3)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan2(close, volume, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        obv = state[k, 1]
        prev = state[k, 2]
        if c == 0:
            obv = volume[i]
            prev = close[i]
            out[i] = obv
            i += 1
        while i < end:
            x = close[np.uint64(i)]  # unsigned (never negative): no wraparound code
            v = volume[np.uint64(i)]
            # both candidates, then a select: the up/down branch of a random walk mispredicts
            up = obv + v
            down = obv - v
            obv = up if x > prev else (down if x < prev else obv)
            out[i] = obv
            prev = x
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = obv
        state[k, 2] = prev
    return 0


# ---------------------------------------------------------------------------------------- AD
@njit(cache=True)
def ad_run(high, low, close, volume, offsets, state_in, state, out):  # type: ignore[no-untyped-def]
    """Chaikin accumulation/distribution line from 0.0 (see ``ad_step``). State: [count, AD]."""
    n = high.size
    if low.size != n or close.size != n or volume.size != n:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, n, state_in, state, 2)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan4(high, low, close, volume, i, end, out)
        if i >= end:
            continue
        p = i
        ad = state[k, 1]
        while i < end:
            ad = ad_step(ad, high[i], low[i], close[i], volume[i])
            out[i] = ad
            i += 1
        state[k, 0] = c + (end - p)
        state[k, 1] = ad
    return 0


# ------------------------------------------------------------------------------------- ADOSC
@njit(cache=True)
def adosc_run(high, low, close, volume, offsets, fast, slow, state_in, state, out):  # type: ignore[no-untyped-def]
    """Chaikin oscillator: EMA(fast) - EMA(slow) of the A/D line, TA-Lib's own seeding.

    Unlike EMA(), both EMAs are seeded with the first bar's A/D value (no SMA seed) and run
    ``fma(1 - k, ema, k * ad)`` from the second bar (TA-Lib 0.8's form, measured: the
    ``fma(ad - ema, k, ema)`` of EMA() differs in most bars); output from bar
    ``max(fast, slow) - 1``. ``fast`` > ``slow`` is allowed and NOT swapped (the output is then
    the negated ``adosc_<slow>_<fast>``). State: [count, AD, fast EMA, slow EMA].
    """
    n = high.size
    if low.size != n or close.size != n or volume.size != n:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, n, state_in, state, 4)
    if bad != 0:
        return bad
    fk = 2.0 / (fast + 1.0)
    fk1 = 1.0 - fk
    sk = 2.0 / (slow + 1.0)
    sk1 = 1.0 - sk
    lb = max(fast, slow) - 1
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan4(high, low, close, volume, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        ad = state[k, 1]
        fe = state[k, 2]
        se = state[k, 3]
        if c == 0:
            ad = ad_step(ad, high[i], low[i], close[i], volume[i])
            fe = ad
            se = ad
            out[i] = np.nan
            c = 1
            i += 1
        while i < end:
            ad = ad_step(ad, high[i], low[i], close[i], volume[i])
            fe = fma(fk1, fe, fk * ad)
            se = fma(sk1, se, sk * ad)
            if c >= lb:
                out[i] = fe - se
            else:
                out[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = ad
        state[k, 2] = fe
        state[k, 3] = se
    return 0

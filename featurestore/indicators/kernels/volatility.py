"""Volatility kernels: TRANGE, ATR, NATR (both with TA-Lib's unstable period), VAR, STDDEV.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    _TA_EPS,
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan1,
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


# ---------------------------------------------------------------------------------- ATR, NATR
@njit(cache=True, inline="always")
def _natr(atr, close):  # type: ignore[no-untyped-def]
    """TA-Lib's NATR output: ``atr / close * 100``, 0.0 when |close| < 1e-14."""
    if -_TA_EPS < close and close < _TA_EPS:
        return 0.0
    return atr / close * 100.0


@njit(cache=True, inline="always")
def _wilder_atr(high, low, close, offsets, period, unstable, state_in, state, out, normalized):  # type: ignore[no-untyped-def]
    """ATR (``normalized`` False) or NATR (True): Wilder ATR seeded by the mean of TR[1..period]
    (TR[0] unused), then ``fma(a, atr, tr * b)`` with ``a = (period-1)/period``, ``b = 1 - a``
    (TA-Lib 0.8's fma form, measured for both). NATR writes ``atr / close * 100`` (0.0 when
    |close| < 1e-14). ``unstable`` (TA-Lib's unstable period) only masks: output from bar
    ``period + unstable``. Period 1: ATR runs the same recursion (a=0, b=1: after a NaN true range
    it stays NaN, as TA-Lib's ATR(1) does); NATR(1) gives exactly ATR(1), NOT normalized
    (TA-Lib 0.8 measured: the true range, NaN for good after a NaN bar).

    State: [count, TR sum (warm-up) or ATR, previous close].
    """
    a = (period - 1) / period
    b = 1.0 - a
    lb = period + unstable
    trange = normalized and period == 1  # NATR(1): ATR(1)'s values, not normalized
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
                out[i] = _natr(s, pc) if normalized and not trange else s
            else:
                out[i] = np.nan
            c += 1
            i += 1
        while i < end:
            tr = _true_range(high[i], low[i], pc)
            pc = close[i]
            s = fma(a, s, tr * b)
            out[i] = _natr(s, pc) if normalized and not trange else s
            i += 1
        # The unstable period: bars p.. (bar index c0 + (j - p)) before lb give NaN.
        for j in range(p, min(end, p + max(lb - c0, 0))):
            out[j] = np.nan
        state[k, 0] = c0 + (end - p)
        state[k, 1] = s
        state[k, 2] = pc
    return 0


@njit(cache=True)
def atr_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Average true range; see ``_wilder_atr``."""
    return _wilder_atr(high, low, close, offsets, period, unstable, state_in, state, out, False)


@njit(cache=True)
def natr_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Normalized average true range (percent of close); see ``_wilder_atr``."""
    return _wilder_atr(high, low, close, offsets, period, unstable, state_in, state, out, True)


# --------------------------------------------------------------------------------- VAR, STDDEV
@njit(cache=True)
def _recentre(w, inv):  # type: ignore[no-untyped-def]
    """Re-centring of TA-Lib 0.8's variance: shift K = window mean, then the shifted sums."""
    t = 0.0
    for j in range(w.size):
        t += w[j]
    kk = t * inv
    s1 = 0.0
    s2 = 0.0
    for j in range(w.size):
        d = w[j] - kk
        s1 += d
        s2 += d * d
    return kk, s1, s2


@njit(cache=True, inline="always")
def _variance(x, offsets, period, nbdev, state_in, state, out, as_stddev):  # type: ignore[no-untyped-def]
    """Population variance (VAR) or ``sqrt(var) * nbdev`` (STDDEV) over ``period`` bars.

    TA-Lib 0.8 computes both with BBANDS' shifted running sums (measured bit for bit; not the
    ``E[x^2] - E[x]^2`` of older versions): K = first input, S1/S2 = running sums of x-K and
    (x-K)^2, ``var = S2/n - (S1/n)^2``, re-centred on the window mean when cancellation threatens
    or every 32*period bars. A re-centred variance below 1e-12 of the mean square gives 0.0;
    STDDEV is 0.0 for such a variance or one == 0, else ``sqrt(var) * nbdev`` (NaN stays NaN:
    an interior NaN input makes both NaN to the end). VAR ignores ``nbdev`` (TA-Lib does too).

    State: [count, S1, S2, K, re-centre countdown, ring of the last period-1 inputs].
    """
    m = period - 1
    inv = 1.0 / period
    reset = 32 * period
    win = np.empty(period)
    bad = _check(offsets, x.size, state_in, state, period + 4)
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
            i = _skip_leading_nan1(x, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        if c == 0:
            state[k, 3] = x[i]
            state[k, 4] = reset
        s1 = state[k, 1]
        s2 = state[k, 2]
        kk = state[k, 3]
        cnt = np.int64(state[k, 4])
        slot = c % m if m > 0 else 0
        a_end = min(end, p + m)
        while i < end:
            v = x[i]
            d = v - kk
            s1 += d
            s2 += d * d
            in_ring = i < a_end
            if c >= m:
                mean = inv * s1
                var = inv * s2 - mean * mean
                if in_ring:
                    xo = state[k, 5 + slot]
                else:
                    xo = x[i - m]
                o = xo - kk
                o2 = o * o
                s2 -= o2
                zero = False
                recentre = (inv * s2) * 1e-6 > var or o2 > s2 * 1e6
                if not recentre:
                    cnt -= 1
                    recentre = cnt == 0
                if recentre:
                    if in_ring:
                        for j in range(m):
                            win[j] = state[k, 5 + (slot + j) % m]
                        win[m] = v
                        kk, s1, s2 = _recentre(win, inv)
                    else:
                        kk, s1, s2 = _recentre(x[i - m : i + 1], inv)
                    mean = inv * s1
                    ms = inv * s2
                    var = ms - mean * mean
                    zero = ms * 1e-12 > var
                    o = xo - kk
                    s1 -= o
                    s2 -= o * o
                    cnt = reset
                else:
                    s1 -= o
                if as_stddev:
                    if zero or var == 0.0:
                        out[i] = 0.0
                    else:
                        out[i] = math.sqrt(var) * nbdev
                elif zero:
                    out[i] = 0.0
                else:
                    out[i] = var
            else:
                out[i] = np.nan
            if in_ring:
                state[k, 5 + slot] = v
                slot += 1
                if slot == m:
                    slot = 0
            c += 1
            i += 1
        if end - p > m:
            for j in range(end - m, end):
                state[k, 5 + (c0 + j - p) % m] = x[j]
        state[k, 0] = c
        state[k, 1] = s1
        state[k, 2] = s2
        state[k, 3] = kk
        state[k, 4] = cnt
    return 0


@njit(cache=True)
def var_run(x, offsets, period, nbdev, state_in, state, out):  # type: ignore[no-untyped-def]
    """Population variance; see ``_variance``."""
    return _variance(x, offsets, period, nbdev, state_in, state, out, False)


@njit(cache=True)
def stddev_run(x, offsets, period, nbdev, state_in, state, out):  # type: ignore[no-untyped-def]
    """Population standard deviation times ``nbdev``; see ``_variance``."""
    return _variance(x, offsets, period, nbdev, state_in, state, out, True)

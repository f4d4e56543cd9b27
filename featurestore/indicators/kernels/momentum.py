"""Momentum kernels: RSI, MACD.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import _check, _copy_row, _skip_leading_nan1, fma


# --------------------------------------------------------------------------------------- RSI
@njit(cache=True)
def rsi_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Wilder RSI, seeded by the mean of the first period moves. State: [count, G, L, previous close]."""
    inv = 1.0 / period
    nm1 = float(period - 1)
    bad = _check(offsets, x.size, state_in, state, 4)
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
            i = _skip_leading_nan1(x, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        g_avg = state[k, 1]
        l_avg = state[k, 2]
        prev = state[k, 3]
        if c == 0:
            prev = x[i]
            out[i] = np.nan
            c = 1
            i += 1
        while i < end and c <= period:
            v = x[i]
            d = v - prev
            prev = v
            g = d if d > 0 else 0.0
            g_avg += g
            l_avg += g - d
            if c == period:
                g_avg *= inv
                l_avg *= inv
                s = l_avg + g_avg
                out[i] = (g_avg / s) * 100.0 if s > 0 else 0.0
            else:
                out[i] = np.nan
            c += 1
            i += 1
        while i < end:
            v = x[i]
            d = v - prev
            prev = v
            g = d if d > 0 else 0.0
            g_avg = (g_avg * nm1 + g) * inv
            l_avg = ((g - d) + l_avg * nm1) * inv
            s = l_avg + g_avg
            out[i] = (g_avg / s) * 100.0 if s > 0 else 0.0
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = g_avg
        state[k, 2] = l_avg
        state[k, 3] = prev
    return 0


# -------------------------------------------------------------------------------------- MACD
@njit(cache=True)
def macd_run(x, offsets, fast, slow, signal, state_in, state, out_macd, out_signal, out_hist):  # type: ignore[no-untyped-def]
    """MACD with both EMAs seeded at bar slow-1. State: [count, fast EMA, slow EMA, signal EMA].

    During the warm-up the three slots hold the running sums of their seeds. ``fast <= slow``
    must already hold (the wrapper swaps, as TA-Lib does).
    """
    s_idx = slow - 1
    lb = s_idx + signal - 1
    fast_from = slow - fast
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    bad = _check(offsets, x.size, state_in, state, 4)
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
            i = _skip_leading_nan1(x, i, end, out_macd)
            for j in range(start, i):
                out_signal[j] = np.nan
                out_hist[j] = np.nan
        if i >= end:
            continue
        p = i
        c0 = c
        f = state[k, 1]
        sl = state[k, 2]
        g = state[k, 3]
        # Warm-up: seeds of the slow and fast EMAs, then of the signal EMA.
        while i < end and c <= lb:
            v = x[i]
            if c <= s_idx:
                sl += v
                if c >= fast_from:
                    f += v
                if c == s_idx:
                    sl = sl / slow
                    f = f / fast
            else:
                f = fma(v - f, kf, f)
                sl = fma(v - sl, ks, sl)
            if c >= s_idx:
                mv = f - sl
                g += mv
                if c == lb:
                    g = g / signal
                    out_macd[i] = mv
                    out_signal[i] = g
                    out_hist[i] = mv - g
                else:
                    out_macd[i] = np.nan
                    out_signal[i] = np.nan
                    out_hist[i] = np.nan
            else:
                out_macd[i] = np.nan
                out_signal[i] = np.nan
                out_hist[i] = np.nan
            c += 1
            i += 1
        while i < end:
            v = x[i]
            f = fma(v - f, kf, f)
            sl = fma(v - sl, ks, sl)
            mv = f - sl
            if signal == 1:
                g = mv  # TA-Lib's EMA of period 1 is a copy
            else:
                g = fma(mv - g, kg, g)
            out_macd[i] = mv
            out_signal[i] = g
            out_hist[i] = mv - g
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = f
        state[k, 2] = sl
        state[k, 3] = g
    return 0

"""Momentum kernels: RSI, MACD, MOM, ROC, ROCP, ROCR, CMO, BOP here; WILLR, STOCHF, STOCH,
STOCHRSI in ``momentum_range`` and CCI, MFI, ULTOSC in ``momentum_window``, re-exported below
(the family's kernels are all reached as ``momentum.<kind>_run``).

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's
(``ta_func/ta_*.c``), including its NaN behaviour: comparisons against NaN are false, so a NaN
either propagates or is skipped exactly where TA-Lib's branches put it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan1,
    _skip_leading_nan4,
    fma,
)
from featurestore.indicators.kernels.momentum_range import stoch_run, stochf_run, stochrsi_run, willr_run
from featurestore.indicators.kernels.momentum_window import cci_run, mfi_run, ultosc_run

__all__ = [
    "bop_run", "cci_run", "cmo_run", "macd_run", "mfi_run", "mom_run", "roc_run", "rocp_run", "rocr_run",
    "rsi_run", "stoch_run", "stochf_run", "stochrsi_run", "ultosc_run", "willr_run",
]


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


# ------------------------------------------------------------------------ MOM, ROC, ROCP, ROCR
@njit(cache=True, inline="always")
def _lag_value(mode, v, old):  # type: ignore[no-untyped-def]
    """MOM (0): v - old; ROC (1): (v/old - 1)*100; ROCP (2): (v - old)/old; ROCR (3): v/old;
    the ratios give 0.0 where old == 0 (ta_ROC.c and siblings)."""
    if mode == 0:
        return v - old
    if old != 0.0:
        if mode == 1:
            return (v / old - 1.0) * 100.0
        if mode == 2:
            return (v - old) / old
        return v / old
    return 0.0


@njit(cache=True, inline="always")
def _lag_run(x, offsets, period, state_in, state, out, mode):  # type: ignore[no-untyped-def]
    """A function of x[i] and x[i-period]. State: [count, ring of the last period inputs
    (slot = bar % period)]."""
    n = period
    bad = _check(offsets, x.size, state_in, state, n + 1)
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
            i = _skip_leading_nan1(x, i, end, out)
        if i >= end:
            continue
        p = i
        c0 = c
        # The first n bars of this call find the lagged value in the ring, later ones in x.
        a_end = min(end, p + n)
        while i < a_end:
            v = x[i]
            slot = 1 + c % n
            if c >= n:
                out[i] = _lag_value(mode, v, state[k, slot])
            else:
                out[i] = np.nan
            state[k, slot] = v
            c += 1
            i += 1
        while i < end:
            out[i] = _lag_value(mode, x[i], x[i - n])
            i += 1
        if end - p > n:
            for j in range(end - n, end):
                state[k, 1 + (c0 + j - p) % n] = x[j]
        state[k, 0] = c0 + (end - p)
    return 0


@njit(cache=True)
def mom_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Momentum x[i] - x[i-period]. State: [count, ring of the last period inputs]."""
    return _lag_run(x, offsets, period, state_in, state, out, 0)


@njit(cache=True)
def roc_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Rate of change (x/prev - 1)*100, 0 where prev == 0. State: as ``mom_run``."""
    return _lag_run(x, offsets, period, state_in, state, out, 1)


@njit(cache=True)
def rocp_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Rate of change (x - prev)/prev, 0 where prev == 0. State: as ``mom_run``."""
    return _lag_run(x, offsets, period, state_in, state, out, 2)


@njit(cache=True)
def rocr_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Rate of change ratio x/prev, 0 where prev == 0. State: as ``mom_run``."""
    return _lag_run(x, offsets, period, state_in, state, out, 3)


# --------------------------------------------------------------------------------------- CMO
@njit(cache=True, inline="always")
def _cmo_value(g, lo):  # type: ignore[no-untyped-def]
    s = g + lo
    if s > 0.0:  # TA-Lib 0.8: a plain "> 0" test (no 1e-14 band); NaN gives 0.0, as in RSI
        return 100.0 * ((g - lo) / s)
    return 0.0


@njit(cache=True)
def cmo_run(x, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Chande momentum oscillator (ta_CMO.c): Wilder averages of gains and losses, seeded by
    their means over bars 1..period, smoothed as ``(S*(n-1) + x) / n`` (a division, unlike RSI's
    ``* (1/n)``). ``unstable`` only masks the output (lookback period + unstable).
    State: [count, average gain, average loss, previous input]."""
    fn = float(period)
    nm1 = float(period - 1)
    lb = period + unstable
    bad = _check(offsets, x.size, state_in, state, 4)
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
            i = _skip_leading_nan1(x, i, end, out)
        if i >= end:
            continue
        g = state[k, 1]
        lo = state[k, 2]
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
            if d < 0:
                lo -= d
            else:
                g += d
            out[i] = np.nan
            if c == period:
                lo /= fn
                g /= fn
                if c >= lb:
                    out[i] = _cmo_value(g, lo)
            c += 1
            i += 1
        while i < end:
            v = x[i]
            d = v - prev
            prev = v
            lo *= nm1
            g *= nm1
            if d < 0:
                lo -= d
            else:
                g += d
            lo /= fn
            g /= fn
            out[i] = _cmo_value(g, lo) if c >= lb else np.nan
            c += 1
            i += 1
        state[k, 0] = c
        state[k, 1] = g
        state[k, 2] = lo
        state[k, 3] = prev
    return 0


# --------------------------------------------------------------------------------------- BOP
@njit(cache=True)
def bop_run(open_, high, low, close, offsets, state_in, state, out):  # type: ignore[no-untyped-def]
    """Balance of power (c - o) / (h - l), 0.0 where h - l <= 0 (NaN propagates). State: [count]."""
    m = high.size
    if open_.size != m or low.size != m or close.size != m:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, m, state_in, state, 1)
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
            i = _skip_leading_nan4(open_, high, low, close, i, end, out)
        p = i
        while i < end:
            t = high[i] - low[i]
            out[i] = 0.0 if t <= 0.0 else (close[i] - open_[i]) / t
            i += 1
        state[k, 0] = c + (end - p)
    return 0

"""numba kernels that reproduce TA-Lib 0.8 bit for bit, batched over symbols, resumable from state.

Every kernel has the same shape:
``<name>_run(inputs..., offsets, params..., state_in, state, out...) -> int``.
``offsets[k]..offsets[k+1]`` is symbol k's slice of the concatenated inputs, in time order;
``state_in[k]`` is symbol k's state row at the start and ``state[k]`` receives it at the end
(``state_in`` may be ``state`` itself: an in-place run), so a full computation is simply a run
from a zeroed state and an append is a run from the saved one. That makes
``run(x[:k]) then run(x[k:]) == run(x)`` hold by construction, bar for bar, including inside the
warm-up. A kernel first validates its call (``_check``: offsets, state shapes, bar counts and,
for high/low/close, equal lengths) and returns a non-zero code without writing anything if it
is invalid, so one dispatch does what used to take three. ``specialize`` pins each kernel to
the one signature the api uses. The operation order, seeds and ``fma`` calls follow TA-Lib 0.8
exactly (TA-Lib's C sources, ``ta_func/ta_*.c``); ``fastmath`` must never be used here, as it
reorders floating-point operations and breaks bit-for-bit equality.

Column 0 of every state row is the number of bars consumed since the symbol's first bar with
all inputs non-NaN (TA-Lib's ``begidx`` rule: leading bars with any NaN input are skipped and
give NaN). The rest of each layout is documented on its kernel and in ``api.STATE_LAYOUTS``.

This module imports numba at the top: import it only when a kernel is needed (``api`` does).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# TA-Lib's TA_IS_ZERO bound (ta_func.h): -1e-14 < v < 1e-14.
_TA_EPS = 1e-14


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``llvm.fma.f64``: a*b + c with one rounding (unlike ``llvm.fmuladd``, never split)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        dbl = ir.DoubleType()
        fnty = ir.FunctionType(dbl, [dbl, dbl, dbl])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always")
def fma(a: float, b: float, c: float) -> float:
    """Exact fused multiply-add, as TA-Lib 0.8 calls C ``fma()`` in EMA, MACD, ATR and BBANDS."""
    # the @intrinsic call site omits typingctx, which numba supplies; its stub signature does not know
    return _fma_intrinsic(a, b, c)  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def _skip_leading_nan1(x, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars whose input is NaN (only called before the first valid bar)."""
    while i < end and math.isnan(x[i]):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def _skip_leading_nan3(h, l, c, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars where any of high/low/close is NaN (TA-Lib's check_begidx3)."""
    while i < end and (math.isnan(h[i]) or math.isnan(l[i]) or math.isnan(c[i])):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def _true_range(h: float, l: float, yc: float) -> float:
    """TA-Lib's TRUE_RANGE: comparisons in this order, so NaN falls back like TA-Lib's."""
    out = h - l
    t = abs(yc - h)
    if t > out:
        out = t
    t = abs(l - yc)
    if t > out:
        out = t
    return out


#: Codes a kernel returns instead of 0 when the call is invalid (besides ``1 + j`` for a bad
#: ``offsets[j]`` and ``-(1 + k)`` for a bad bar count in state row k); see ``_check``.
BAD_STATE_SHAPE = -(2**62)
BAD_INPUT_LENGTHS = 2**62


@njit(cache=True, inline="always")  # inlined: no separate compile per literal width
def _check(offsets, n, state_in, state, width):  # type: ignore[no-untyped-def]
    """Validate a call before anything is written: 0 if it is valid, else the first problem.

    ``1 + j`` if ``offsets[j]`` breaks "starts at 0, never decreases, ends at n";
    ``BAD_STATE_SHAPE`` unless both states are [n_symbols, width]; ``-(1 + k)`` if state row k's
    bar count (column 0) is not a non-negative integer. Doing this inside the kernel call costs
    one pass over data that the kernel reads anyway, instead of more dispatches from Python.
    """
    ns = offsets.size - 1
    if ns < 0 or offsets[0] != 0:
        return 1
    for k in range(ns):
        if offsets[k + 1] < offsets[k]:
            return k + 2
    if offsets[ns] != n:
        return ns + 1
    if (
        state_in.shape[0] != ns or state_in.shape[1] != width
        or state.shape[0] != ns or state.shape[1] != width
    ):
        return BAD_STATE_SHAPE
    for k in range(ns):
        c = state_in[k, 0]
        if not (c >= 0.0 and c == math.floor(c)):
            return -(k + 1)
    return 0


@njit(cache=True, inline="always")
def _copy_row(state_in, state, k, copy):  # type: ignore[no-untyped-def]
    """Start symbol k from ``state_in[k]`` when the result goes to another array (the copy of
    ``update_batch``'s new state, made row by row while the row is in cache anyway)."""
    if copy:
        for j in range(state.shape[1]):
            state[k, j] = state_in[k, j]


# --------------------------------------------------------------------------------------- SMA
@njit(cache=True)
def sma_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """SMA. State: [count, running total T, ring of the last period-1 inputs (slot = index % (period-1))]."""
    m = period - 1
    bad = _check(offsets, x.size, state_in, state, period + 1)
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
        total = state[k, 1]
        p = i
        c0 = c
        # Phase A: the first m bars of this call; the value leaving the window is in the ring.
        a_end = min(end, p + m)
        slot = c % m if m > 0 else 0
        while i < a_end:
            v = x[i]
            total += v
            if c >= m:
                out[i] = total / period
                total -= state[k, 2 + slot]
            else:
                out[i] = np.nan
            state[k, 2 + slot] = v
            slot += 1
            if slot == m:
                slot = 0
            c += 1
            i += 1
        # Phase B: the value leaving the window is in x.
        while i < end:
            total += x[i]
            out[i] = total / period
            total -= x[i - m]
            i += 1
        if end - p > m:
            for j in range(end - m, end):
                state[k, 2 + (c0 + j - p) % m] = x[j]
        state[k, 0] = c0 + (end - p)
        state[k, 1] = total
    return 0


# --------------------------------------------------------------------------------------- EMA
@njit(cache=True)
def ema_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """EMA seeded by the SMA of the first period bars. State: [count, sum (warm-up) or EMA]."""
    kk = 2.0 / (period + 1)
    bad = _check(offsets, x.size, state_in, state, 2)
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
        s = state[k, 1]
        while i < end and c < period:
            s += x[i]
            c += 1
            if c == period:
                s = s / period
                out[i] = s
            else:
                out[i] = np.nan
            i += 1
        if period == 1:
            # TA-Lib copies the input for period 1 (fma(x - s, 1, s) would not always give x).
            while i < end:
                s = x[i]
                out[i] = s
                i += 1
        while i < end:
            s = fma(x[i] - s, kk, s)
            out[i] = s
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = s
    return 0


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


# ------------------------------------------------------------------------------------ BBANDS
@njit(cache=True)
def _bb_recentre(w, inv):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8's re-centring: shift K = window mean, then the shifted sums, sequentially."""
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
def _bb_bands(mid, sd, up, dn, i, out_upper, out_middle, out_lower):  # type: ignore[no-untyped-def]
    out_middle[i] = mid
    if up == dn:
        t = sd * up
        out_upper[i] = mid + t
        out_lower[i] = mid - t
    else:
        out_upper[i] = fma(sd, up, mid)
        out_lower[i] = mid - sd * dn


@njit(cache=True)
def bbands_run(x, offsets, period, nbdevup, nbdevdn, state_in, state, out_upper, out_middle, out_lower):  # type: ignore[no-untyped-def]
    """Bollinger bands (SMA middle, population std) with TA-Lib 0.8's shifted, re-centred sums.

    State: [count, T, S1, S2, K, re-centre countdown, ring of the last period-1 inputs].
    """
    m = period - 1
    inv = 1.0 / period
    reset = 32 * period
    win = np.empty(period)
    bad = _check(offsets, x.size, state_in, state, period + 5)
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
            i = _skip_leading_nan1(x, i, end, out_middle)
            for j in range(start, i):
                out_upper[j] = np.nan
                out_lower[j] = np.nan
        if i >= end:
            continue
        p = i
        c0 = c
        if c == 0:
            state[k, 4] = x[i]
            state[k, 5] = reset
        total = state[k, 1]
        s1 = state[k, 2]
        s2 = state[k, 3]
        kk = state[k, 4]
        cnt = np.int64(state[k, 5])
        slot = c % m
        a_end = min(end, p + m)
        while i < end:
            v = x[i]
            total += v
            d = v - kk
            s1 += d
            s2 += d * d
            in_ring = i < a_end
            if c >= m:
                mean = inv * s1
                var = inv * s2 - mean * mean
                mid = total / period
                if in_ring:
                    xo = state[k, 6 + slot]
                else:
                    xo = x[i - m]
                total -= xo
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
                            win[j] = state[k, 6 + (slot + j) % m]
                        win[m] = v
                        kk, s1, s2 = _bb_recentre(win, inv)
                    else:
                        kk, s1, s2 = _bb_recentre(x[i - m : i + 1], inv)
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
                if zero or var == 0.0:
                    sd = 0.0
                else:
                    sd = math.sqrt(var)
                _bb_bands(mid, sd, nbdevup, nbdevdn, i, out_upper, out_middle, out_lower)
            else:
                out_upper[i] = np.nan
                out_middle[i] = np.nan
                out_lower[i] = np.nan
            if in_ring:
                state[k, 6 + slot] = v
                slot += 1
                if slot == m:
                    slot = 0
            c += 1
            i += 1
        if end - p > m:
            for j in range(end - m, end):
                state[k, 6 + (c0 + j - p) % m] = x[j]
        state[k, 0] = c
        state[k, 1] = total
        state[k, 2] = s1
        state[k, 3] = s2
        state[k, 4] = kk
        state[k, 5] = cnt
    return 0


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


# ------------------------------------------------------------------------------ dispatch
_RO_F8 = types.Array(types.float64, 1, "C", readonly=True)
_RO_I8 = types.Array(types.int64, 1, "C", readonly=True)
_RO_STATE = types.Array(types.float64, 2, "A", readonly=True)
_specialized: set[str] = set()
# Serializes first use: compile() then disable_compile() is two steps, and a second thread
# calling compile() after the first disabled compilation would get "compilation disabled".
_specialize_lock = threading.Lock()


def specialize(name: str, n_inputs: int, param_types: tuple[type, ...], n_outputs: int) -> object:
    """The kernel ``name``, compiled (or loaded from numba's disk cache) for the one signature
    the api calls it with, and barred from compiling any other.

    That signature takes inputs, offsets and the input state read-only (so read-only arrays
    need no copy), the input state in any layout (so a column slice of a wider state matrix
    needs no copy either), params as int64/float64, and the new state and outputs as writable
    C-contiguous arrays. Arguments of any other type make the call raise TypeError at once,
    instead of compiling a new specialization for a second or more; the api then converts them.
    """
    kernel = globals()[name]
    if name in _specialized:  # warm path: no lock
        return kernel
    with _specialize_lock:
        if name not in _specialized:  # checked again: another thread may have finished it
            sig = (
                (_RO_F8,) * n_inputs
                + (_RO_I8,)
                + tuple(types.int64 if t is int else types.float64 for t in param_types)
                + (_RO_STATE, types.float64[:, ::1])
                + (types.float64[::1],) * n_outputs
            )
            kernel.compile(sig)
            kernel.disable_compile()
            _specialized.add(name)  # only after disable_compile: readers see a finished kernel
    return kernel

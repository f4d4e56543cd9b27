"""Momentum kernels: RSI, MACD, MOM, ROC, ROCP, ROCR, CMO, WILLR, CCI, MFI, BOP, ULTOSC, STOCHF,
STOCH, STOCHRSI.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's
(``ta_func/ta_*.c``), including its NaN behaviour: comparisons against NaN are false, so a NaN
either propagates or is skipped exactly where TA-Lib's branches put it.

Building blocks shared by several kernels here (others may import them):

- ``_ext_low`` / ``_ext_high``: TA-Lib's rolling lowest low / highest high (WILLR, STOCHF's
  %K): the tracked extreme and its bar index, rescanned from the window's oldest bar only when
  that index leaves the window (so a NaN at a rescan start sticks until it leaves, as in
  TA-Lib). They read a ring of the last ``n`` inputs, slot = bar index % n.
- The %K/%D smoothing of STOCHF/STOCH/STOCHRSI is TA_MA of any matype but MAMA, one bar at a
  time: ``kernels.ma.ma_step`` blocks kept in the state row (TA-Lib's default, zero, unstable
  periods inside TA_MA; T3's volume factor 0.7 as TA_MA uses).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan1,
    _skip_leading_nan3,
    _skip_leading_nan4,
    _true_range,
    fma,
)
from featurestore.indicators.kernels.ma import ma_lookback, ma_step, ma_width

#: T3's volume factor inside TA_MA (STOCH's %K/%D smoothing with matype 8).
_T3_VFACTOR = 0.7


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


# ------------------------------------------------------------------- rolling extremes (WILLR)
@njit(cache=True, inline="always")
def _ext_low(state, k, ring0, n, today, trailing, ext, idx):  # type: ignore[no-untyped-def]
    """TA-Lib's lowest-low step: rescan from ``trailing`` (strict <, first wins) when the
    tracked index left the window, else take today's value on <= (ties move to today)."""
    if idx < trailing:
        idx = trailing
        ext = state[k, ring0 + trailing % n]
        j = trailing + 1
        while j <= today:
            v = state[k, ring0 + j % n]
            if v < ext:
                idx = j
                ext = v
            j += 1
    else:
        v = state[k, ring0 + today % n]
        if v <= ext:
            idx = today
            ext = v
    return ext, idx


@njit(cache=True, inline="always")
def _ext_high(state, k, ring0, n, today, trailing, ext, idx):  # type: ignore[no-untyped-def]
    """TA-Lib's highest-high step (mirror of ``_ext_low``)."""
    if idx < trailing:
        idx = trailing
        ext = state[k, ring0 + trailing % n]
        j = trailing + 1
        while j <= today:
            v = state[k, ring0 + j % n]
            if v > ext:
                idx = j
                ext = v
            j += 1
    else:
        v = state[k, ring0 + today % n]
        if v >= ext:
            idx = today
            ext = v
    return ext, idx


@njit(cache=True, inline="always")
def _ext_both(state, k, base, ring_lo, ring_hi, n, t):  # type: ignore[no-untyped-def]
    """Lowest low and highest high at stage bar t >= n-1, TA-Lib's rescan form (STOCHF/STOCH/
    STOCHRSI): state slots base..base+3 hold lowest, its bar, highest, its bar; the first window
    starts from index -1, i.e. a rescan. Returns (lowest, highest)."""
    trailing = t - n + 1
    if t == n - 1:
        li = np.int64(-1)
        hi = np.int64(-1)
    else:
        li = np.int64(state[k, base + 1])
        hi = np.int64(state[k, base + 3])
    lowest, li = _ext_low(state, k, ring_lo, n, t, trailing, state[k, base], li)
    highest, hi = _ext_high(state, k, ring_hi, n, t, trailing, state[k, base + 2], hi)
    state[k, base] = lowest
    state[k, base + 1] = li
    state[k, base + 2] = highest
    state[k, base + 3] = hi
    return lowest, highest


@njit(cache=True, inline="always")
def _stoch_k(cl, lowest, highest):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8's %K: ``((c - L) / (H - L)) * 100`` (no clamp), 0.0 where H - L is zero
    relative to |H| + |L| (TA_IS_ZERO_SCALED)."""
    r = highest - lowest
    if abs(r) <= 1e-14 * (abs(highest) + abs(lowest)):
        return 0.0
    return ((cl - lowest) / r) * 100.0


# ------------------------------------------------------------------ block-scan extremes (WILLR)
@njit(cache=True, inline="always")
def _block_ext(state, k, base, n, t, vh, vl):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8's WILLR window extremes (a Van Herk/Gil-Werman block scan): blocks of n bars
    from the stage's first bar; when a block completes, its suffix extremes are built backward
    (``>``/``<``: a NaN at the block's end sticks); a window = the older block's suffix from its
    offset combined with the newer block's forward prefix (``pre > suf`` wins). NaN handling is
    therefore block-aligned, not a rolling rescan. Returns (highest, lowest) for stage bar
    t >= n-1 (NaN before).

    State at ``base``: [prefix high, prefix low, raw highs[n], raw lows[n], suffix highs[n],
    suffix lows[n]] (raw slot = t % n).
    """
    q = t % n
    rh = base + 2
    rl = rh + n
    sh = rl + n
    sl = sh + n
    state[k, rh + q] = vh
    state[k, rl + q] = vl
    if q == 0:
        state[k, base] = vh
        state[k, base + 1] = vl
    else:
        if vh > state[k, base]:
            state[k, base] = vh
        if vl < state[k, base + 1]:
            state[k, base + 1] = vl
    if q == n - 1:
        hh = vh
        ll = vl
        state[k, sh + q] = hh
        state[k, sl + q] = ll
        j = q - 1
        while j >= 0:
            v = state[k, rh + j]
            if v > hh:
                hh = v
            v = state[k, rl + j]
            if v < ll:
                ll = v
            state[k, sh + j] = hh
            state[k, sl + j] = ll
            j -= 1
        return hh, ll
    if t < n:
        return np.nan, np.nan
    hh = state[k, sh + q + 1]
    v = state[k, base]
    if v > hh:
        hh = v
    ll = state[k, sl + q + 1]
    v = state[k, base + 1]
    if v < ll:
        ll = v
    return hh, ll


@njit(cache=True, inline="always")
def _flat(r, hh, ll):  # type: ignore[no-untyped-def]
    """TA_IS_ZERO_SCALED(r, |hh| + |ll|): r is zero within 1e-14 of the operands' magnitude."""
    return abs(r) <= 1e-14 * (abs(hh) + abs(ll))


# ------------------------------------------------------------------------------------- WILLR
@njit(cache=True)
def willr_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Williams' %R (TA-Lib 0.8's ta_WILLR.c): ``((H - c) / (H - L)) * -100`` clamped to
    [-100, 0], 0.0 where H - L is zero relative to |H| + |L|; H/L from ``_block_ext``.

    State: [count, ``_block_ext`` state (2 + 4 * period)].
    """
    n = period
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 3 + 4 * n)
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
            i = _skip_leading_nan3(high, low, close, i, end, out)
        while i < end:
            hh, ll = _block_ext(state, k, 1, n, c, high[i], low[i])
            if c >= n - 1:
                r = hh - ll
                if _flat(r, hh, ll):
                    out[i] = 0.0
                else:
                    v = ((hh - close[i]) / r) * -100.0
                    if v > 0.0:
                        v = 0.0
                    elif v < -100.0:
                        v = -100.0
                    out[i] = v
            else:
                out[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
    return 0


# --------------------------------------------------------------------------------------- CCI
@njit(cache=True)
def cci_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Commodity channel index (ta_CCI.c): typical prices in a ring (slot = bar % period),
    mean and mean absolute deviation summed in SLOT order over the whole ring every bar,
    ``(tp - mean) / (0.015 * (dev / n))``, 0.0 where either is within 1e-14 * |mean| of zero
    (TA_IS_ZERO_SCALED: an inf in the window gives 0.0, a NaN propagates).

    State: [count, ring of typical prices[period]].
    """
    n = period
    fn = float(n)
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 1 + n)
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
            i = _skip_leading_nan3(high, low, close, i, end, out)
        while i < end:
            tp = (high[i] + low[i] + close[i]) / 3.0
            state[k, 1 + c % n] = tp
            if c >= n - 1:
                avg = 0.0
                for j in range(n):
                    avg += state[k, 1 + j]
                avg /= fn
                dev = 0.0
                for j in range(n):
                    dev += abs(state[k, 1 + j] - avg)
                dev /= fn
                t = tp - avg
                scale = 1e-14 * abs(avg)
                if not (abs(t) <= scale) and not (abs(dev) <= scale):
                    out[i] = t / (0.015 * dev)
                else:
                    out[i] = 0.0
            else:
                out[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
    return 0


# --------------------------------------------------------------------------------------- MFI
@njit(cache=True)
def mfi_run(high, low, close, volume, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Money flow index (TA-Lib 0.8's ta_MFI.c). Per bar from bar 1: tp = (h + l + c) / 3,
    d = tp - previous tp; the money flow tp * volume counts as 0 where |d| <= 1e-14 * (|tp| +
    |previous tp|) (TA_IS_ZERO_SCALED), and goes to the negative side where d < 0, else to the
    positive side (so a NaN d is positive). Running sums (subtract the slot leaving, then add);
    a run of ``period`` bars with zero money flow resets both sums to exactly 0. Output from bar
    period: ``100 * (clamp(pos, 0, pos + neg) / (pos + neg))``, 0.0 where pos + neg <= 0.
    TA-Lib 0.8 retired MFI's unstable period.

    State: [count, positive sum, negative sum, previous tp, zero-flow run, positive
    ring[period], negative ring[period]] (bar c >= 1 in slot (c-1) % period).
    """
    n = period
    m = high.size
    if low.size != m or close.size != m or volume.size != m:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, m, state_in, state, 5 + 2 * n)
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
        pos = state[k, 1]
        neg = state[k, 2]
        prev = state[k, 3]
        null: int | np.int64 = np.int64(state[k, 4])
        if c == 0:
            prev = (high[i] + low[i] + close[i]) / 3.0
            out[i] = np.nan
            c = 1
            i += 1
        while i < end:
            ps = 5 + (c - 1) % n
            ns = ps + n
            if c > n:
                pos -= state[k, ps]
                neg -= state[k, ns]
            tp = (high[i] + low[i] + close[i]) / 3.0
            d = tp - prev
            scale = abs(tp) + abs(prev)
            prev = tp
            mf = tp * volume[i]
            flow = 0.0 if abs(d) <= 1e-14 * scale else mf
            pf = 0.0 if d < 0.0 else flow
            nf = flow if d < 0.0 else 0.0
            state[k, ps] = pf
            state[k, ns] = nf
            pos += pf
            neg += nf
            if flow == 0.0:
                null += 1
            else:
                null = 0
            if null >= n:
                null = n
                pos = 0.0
                neg = 0.0
            if c >= n:
                s = pos + neg
                pc = 0.0 if pos < 0.0 else (s if pos > s else pos)
                out[i] = 0.0 if s <= 0.0 else 100.0 * (pc / s)
            else:
                out[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
        state[k, 1] = pos
        state[k, 2] = neg
        state[k, 3] = prev
        state[k, 4] = null
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


# ------------------------------------------------------------------------------------ ULTOSC
@njit(cache=True)
def ultosc_run(high, low, close, offsets, p1, p2, p3, state_in, state, out):  # type: ignore[no-untyped-def]
    """Ultimate oscillator (TA-Lib 0.8's ta_ULTOSC.c) with p1 <= p2 <= p3 (the wrapper sorts, as
    TA-Lib does).

    Per bar from bar 1: cm = close - min(low, prev close) (C ``a < b ? a : b``, so a NaN low
    gives the previous close), tr = true range. Running sums per period are primed over the
    p3-1 bars before bar p3; then each bar adds its terms, counts a run of bars with tr == 0
    and cm == 0 (a run of at least a period zeroes that period's sums exactly), outputs
    ``100 * ((4*a1/b1 + 2*a2/b2 + a3/b3) / 7)`` with a term only where its b > 0, and subtracts
    the terms of each window's oldest bar.

    State: [count, prev close, a1, b1, a2, b2, a3, b3, null run, cm ring[p3], tr ring[p3]]
    (slot = bar % p3).
    """
    m = high.size
    if low.size != m or close.size != m:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, m, state_in, state, 9 + 2 * p3)
    if bad != 0:
        return bad
    rc = 9
    rt = 9 + p3
    lb = p3
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out)
        if i >= end:
            continue
        pc = state[k, 1]
        a1 = state[k, 2]
        b1 = state[k, 3]
        a2 = state[k, 4]
        b2 = state[k, 5]
        a3 = state[k, 6]
        b3 = state[k, 7]
        null: int | np.int64 = np.int64(state[k, 8])
        if c == 0:
            pc = close[i]
            out[i] = np.nan
            c = 1
            i += 1
        while i < end:
            lo = low[i]
            cm = close[i] - (lo if lo < pc else pc)
            tr = _true_range(high[i], lo, pc)
            pc = close[i]
            state[k, rc + c % p3] = cm
            state[k, rt + c % p3] = tr
            if tr == 0.0 and cm == 0.0:
                null += 1
            else:
                null = 0
            if c < lb:
                if c >= lb - p1 + 1:
                    a1 += cm
                    b1 += tr
                if c >= lb - p2 + 1:
                    a2 += cm
                    b2 += tr
                a3 += cm
                b3 += tr
                out[i] = np.nan
            else:
                a1 += cm
                a2 += cm
                a3 += cm
                b1 += tr
                b2 += tr
                b3 += tr
                if null >= p1:
                    a1 = 0.0
                    b1 = 0.0
                    if null >= p2:
                        a2 = 0.0
                        b2 = 0.0
                        if null >= p3:
                            null = p3
                            a3 = 0.0
                            b3 = 0.0
                o = 0.0
                if b1 > 0.0:
                    o += 4.0 * (a1 / b1)
                if b2 > 0.0:
                    o += 2.0 * (a2 / b2)
                if b3 > 0.0:
                    o += a3 / b3
                s = (c - p1 + 1) % p3
                a1 -= state[k, rc + s]
                b1 -= state[k, rt + s]
                s = (c - p2 + 1) % p3
                a2 -= state[k, rc + s]
                b2 -= state[k, rt + s]
                s = (c - p3 + 1) % p3
                a3 -= state[k, rc + s]
                b3 -= state[k, rt + s]
                out[i] = 100.0 * (o / 7.0)
            c += 1
            i += 1
        state[k, 0] = c
        state[k, 1] = pc
        state[k, 2] = a1
        state[k, 3] = b1
        state[k, 4] = a2
        state[k, 5] = b2
        state[k, 6] = a3
        state[k, 7] = b3
        state[k, 8] = null
    return 0


# ----------------------------------------------------------------------------- STOCHF, STOCH
@njit(cache=True)
def stochf_run(high, low, close, offsets, fastk, fastd, fastd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
    """Fast stochastic (ta_STOCHF.c): %K over fastk bars (``_ext_both``, ``_stoch_k``) from bar
    fastk-1, %D = TA_MA(fastd, fastd_matype) of %K; both output from bar fastk-1 + the MA's
    lookback. MAMA (7) is not supported (the wrapper refuses it).

    State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk],
    %D ``ma_step`` block].
    """
    n = fastk
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 5 + 2 * n + ma_width(fastd_matype, fastd))
    if bad != 0:
        return bad
    rl = 5
    rh = 5 + n
    db = 5 + 2 * n
    lb = n - 1 + ma_lookback(fastd_matype, fastd, 0)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out_k)
            for j in range(start, i):
                out_d[j] = np.nan
        while i < end:
            slot = c % n
            state[k, rl + slot] = low[i]
            state[k, rh + slot] = high[i]
            kv = np.nan
            dv = np.nan
            if c >= n - 1:
                lowest, highest = _ext_both(state, k, 1, rl, rh, n, c)
                kv = _stoch_k(close[i], lowest, highest)
                dv = ma_step(fastd_matype, fastd, 0, _T3_VFACTOR, state[k], db, kv)
            if c >= lb:
                out_k[i] = kv
                out_d[i] = dv
            else:
                out_k[i] = np.nan
                out_d[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
    return 0


@njit(cache=True)
def stoch_run(high, low, close, offsets, fastk, slowk, slowk_matype, slowd, slowd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
    """Slow stochastic (ta_STOCH.c): %K as in ``stochf_run``, slow %K = TA_MA(slowk,
    slowk_matype) of %K, slow %D = TA_MA(slowd, slowd_matype) of slow %K from its first value;
    both output from bar fastk-1 + both MA lookbacks. MAMA (7) is not supported (the wrapper
    refuses it).

    State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk],
    slow %K ``ma_step`` block, slow %D ``ma_step`` block].
    """
    n = fastk
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    kw = ma_width(slowk_matype, slowk)
    bad = _check(offsets, high.size, state_in, state, 5 + 2 * n + kw + ma_width(slowd_matype, slowd))
    if bad != 0:
        return bad
    rl = 5
    rh = 5 + n
    kb = 5 + 2 * n
    db = kb + kw
    k_lb = n - 1 + ma_lookback(slowk_matype, slowk, 0)
    lb = k_lb + ma_lookback(slowd_matype, slowd, 0)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1`
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out_k)
            for j in range(start, i):
                out_d[j] = np.nan
        while i < end:
            slot = c % n
            state[k, rl + slot] = low[i]
            state[k, rh + slot] = high[i]
            sk = np.nan
            sd = np.nan
            if c >= n - 1:
                lowest, highest = _ext_both(state, k, 1, rl, rh, n, c)
                kv = _stoch_k(close[i], lowest, highest)
                sk = ma_step(slowk_matype, slowk, 0, _T3_VFACTOR, state[k], kb, kv)
                if c >= k_lb:
                    sd = ma_step(slowd_matype, slowd, 0, _T3_VFACTOR, state[k], db, sk)
            if c >= lb:
                out_k[i] = sk
                out_d[i] = sd
            else:
                out_k[i] = np.nan
                out_d[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
    return 0


# ---------------------------------------------------------------------------------- STOCHRSI
@njit(cache=True)
def stochrsi_run(x, offsets, period, fastk, fastd, fastd_matype, unstable, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
    """Stochastic RSI (ta_STOCHRSI.c): RSI(period) as in ``rsi_run``; from bar period + unstable
    (TA-Lib's RSI unstable period, which moves where the stochastic starts) the RSI values feed
    a fast stochastic with high = low = close = RSI (``stochf_run``). Outputs from bar
    period + unstable + fastk-1 + the %D MA's lookback. MAMA (7) is not supported.

    State: [count, avg gain, avg loss, previous input, lowest, its bar, highest, its bar,
    RSI ring[fastk], %D ``ma_step`` block].
    """
    n = period
    inv = 1.0 / period
    nm1 = float(period - 1)
    r0 = period + unstable
    rr = 8
    db = 8 + fastk
    lb = r0 + fastk - 1 + ma_lookback(fastd_matype, fastd, 0)
    bad = _check(offsets, x.size, state_in, state, 8 + fastk + ma_width(fastd_matype, fastd))
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
            i = _skip_leading_nan1(x, i, end, out_k)
            for j in range(start, i):
                out_d[j] = np.nan
        if i >= end:
            continue
        g_avg = state[k, 1]
        l_avg = state[k, 2]
        prev = state[k, 3]
        while i < end:
            v = x[i]
            kv = np.nan
            dv = np.nan
            if c == 0:
                prev = v
            else:
                d = v - prev
                prev = v
                g = d if d > 0 else 0.0
                if c <= n:
                    g_avg += g
                    l_avg += g - d
                    if c == n:
                        g_avg *= inv
                        l_avg *= inv
                else:
                    g_avg = (g_avg * nm1 + g) * inv
                    l_avg = ((g - d) + l_avg * nm1) * inv
                if c >= r0:
                    s = l_avg + g_avg
                    rsi = (g_avg / s) * 100.0 if s > 0 else 0.0
                    t = c - r0
                    state[k, rr + t % fastk] = rsi
                    if t >= fastk - 1:
                        lowest, highest = _ext_both(state, k, 4, rr, rr, fastk, t)
                        kv = _stoch_k(rsi, lowest, highest)
                        dv = ma_step(fastd_matype, fastd, 0, _T3_VFACTOR, state[k], db, kv)
            if c >= lb:
                out_k[i] = kv
                out_d[i] = dv
            else:
                out_k[i] = np.nan
                out_d[i] = np.nan
            c += 1
            i += 1
        state[k, 0] = c
        state[k, 1] = g_avg
        state[k, 2] = l_avg
        state[k, 3] = prev
    return 0

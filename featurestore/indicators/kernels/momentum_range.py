"""Momentum kernels on a window's highest high and lowest low: WILLR, STOCHF, STOCH, STOCHRSI
(part of the ``momentum`` family: ``kernels.momentum`` re-exports them, and definitions name
them ``"momentum.<kind>_run"``).

TA-Lib 0.8.1 finds the extremes in two different ways, and the difference shows on NaN input:

- STOCHF/STOCH/STOCHRSI (ta_STOCHF.c's loop): the tracked extreme and its bar; when that bar
  leaves the window, rescan from the window's oldest bar (strict ``<``/``>``: the first wins, so
  a NaN at the rescan start sticks until it leaves); otherwise take today's value on ``<=``/
  ``>=``. State: the extremes, their bars and rings of the last ``fastk`` inputs.
- WILLR (a Van Herk/Gil-Werman block scan): blocks of ``period`` bars from the first bar; when
  a block completes, its suffix extremes are built backward; a window is the older block's
  suffix from its offset combined with the newer block's forward prefix (``pre > suf`` wins).
  State: the prefix extremes, the current block's raw inputs and the last block's suffixes.

Both are pure functions of the bars seen, so incremental runs equal full ones bit for bit.
Rescans read this call's bars from the inputs and older ones from the state's rings, which are
refreshed once at the end of each symbol's call.
The %K/%D smoothing is TA_MA of any matype but MAMA: ``kernels.ma.ma_step`` blocks kept in the
state row, with TA-Lib's default (zero) unstable periods inside TA_MA and T3's volume factor
0.7 as TA_MA uses.
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
)
from featurestore.indicators.kernels.ma import MatypeKernel, ma_lookback, ma_step, ma_width, variant

#: T3's volume factor inside TA_MA (%K/%D smoothing with matype 8).
_T3_VFACTOR = 0.7


@njit(cache=True)
def _rescan_low(src, i0, j0, ring, n, trailing, today):  # type: ignore[no-untyped-def]
    """Lowest of bars trailing..today (strict <: the first of equal values wins). Bar j is
    ``src[i0 + j - j0]`` from this call's first bar j0 on, else the state ring (slot j % n)."""
    idx = trailing
    ext = src[i0 + trailing - j0] if trailing >= j0 else ring[trailing % n]
    j = trailing + 1
    while j <= today and j < j0:
        v = ring[j % n]
        if v < ext:
            idx = j
            ext = v
        j += 1
    while j <= today:
        v = src[i0 + j - j0]
        if v < ext:
            idx = j
            ext = v
        j += 1
    return ext, idx


@njit(cache=True)
def _rescan_high(src, i0, j0, ring, n, trailing, today):  # type: ignore[no-untyped-def]
    """Highest of bars trailing..today (mirror of ``_rescan_low``)."""
    idx = trailing
    ext = src[i0 + trailing - j0] if trailing >= j0 else ring[trailing % n]
    j = trailing + 1
    while j <= today and j < j0:
        v = ring[j % n]
        if v > ext:
            idx = j
            ext = v
        j += 1
    while j <= today:
        v = src[i0 + j - j0]
        if v > ext:
            idx = j
            ext = v
        j += 1
    return ext, idx


@njit(cache=True)
def _save_ring(src, i0, j0, jend, ring, n):  # type: ignore[no-untyped-def]
    """Keep this call's last (up to n) bars j0..jend-1 in the ring (slot j % n)."""
    for j in range(max(j0, jend - n), jend):
        ring[j % n] = src[i0 + j - j0]


@njit(cache=True, inline="always")
def _stoch_k(cl, lowest, highest):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8.1's %K: ``((c - L) / (H - L)) * 100`` (no clamp), 0.0 where H - L is zero
    relative to |H| + |L| (TA_IS_ZERO_SCALED)."""
    r = highest - lowest
    if abs(r) <= 1e-14 * (abs(highest) + abs(lowest)):
        return 0.0
    return ((cl - lowest) / r) * 100.0


@njit(cache=True, inline="always")
def _ma(row, o, matype, period, x):  # type: ignore[no-untyped-def]
    """``ma_step(matype, period, 0, 0.7, row, o, x)``, ``matype`` a compile-time constant (the
    kernels' ``MatypeKernel`` variants): only that block is compiled, without a per-bar branch."""
    return ma_step(matype, period, 0, _T3_VFACTOR, row, o, x)


# ------------------------------------------------------------------------------------- WILLR
@njit(cache=True, inline="always")
def _willr_value(hh, ll, cl):  # type: ignore[no-untyped-def]
    """``((H - c) / (H - L)) * -100`` clamped to [-100, 0]; 0.0 where H - L is zero relative
    to |H| + |L| (TA_IS_ZERO_SCALED)."""
    r = hh - ll
    if abs(r) <= 1e-14 * (abs(hh) + abs(ll)):
        return 0.0
    v = ((hh - cl) / r) * -100.0
    if v > 0.0:
        return 0.0
    if v < -100.0:
        return -100.0
    return v


@njit(cache=True)
def willr_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Williams' %R (TA-Lib 0.8.1's ta_WILLR.c): ``((H - c) / (H - L)) * -100`` clamped to
    [-100, 0], 0.0 where H - L is zero relative to |H| + |L| (TA_IS_ZERO_SCALED); H and L from
    the block scan (module doc).

    State: [count, prefix high, prefix low, raw highs[n], raw lows[n], suffix highs[n],
    suffix lows[n]] (slot = bar % n = position in its block).
    """
    n = period
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 3 + 4 * n)
    if bad != 0:
        return bad
    rh = 3
    rl = rh + n
    sh = rl + n
    sl = sh + n
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
        row = state[k]
        raw_h = row[rh : rh + n]
        raw_l = row[rl : rl + n]
        pre_h = row[1]
        pre_l = row[2]
        i0 = i
        j0 = c
        q = c % n
        for i in range(i0, end):
            t = j0 + (i - i0)
            vh = high[i]
            vl = low[i]
            if q == 0:
                pre_h = vh
                pre_l = vl
            else:
                if vh > pre_h:
                    pre_h = vh
                if vl < pre_l:
                    pre_l = vl
            if q == n - 1:  # a block completes: its suffix extremes, built backward
                hh = vh
                ll = vl
                row[sh + q] = hh
                row[sl + q] = ll
                for j in range(q - 1, -1, -1):
                    bar = t - q + j  # bar of block position j: from the inputs or the ring
                    if bar >= j0:
                        v = high[i0 + bar - j0]
                        w = low[i0 + bar - j0]
                    else:
                        v = raw_h[j]
                        w = raw_l[j]
                    if v > hh:
                        hh = v
                    if w < ll:
                        ll = w
                    row[sh + j] = hh
                    row[sl + j] = ll
                out[i] = _willr_value(hh, ll, close[i])
            elif t >= n:
                hh = row[sh + q + 1]
                if pre_h > hh:
                    hh = pre_h
                ll = row[sl + q + 1]
                if pre_l < ll:
                    ll = pre_l
                out[i] = _willr_value(hh, ll, close[i])
            else:
                out[i] = np.nan
            q += 1
            if q == n:
                q = 0
        c = j0 + (end - i0)
        for j in range(max(j0, c - n), c):  # the current block's raw inputs, for its suffixes
            raw_h[j % n] = high[i0 + j - j0]
            raw_l[j % n] = low[i0 + j - j0]
        state[k, 0] = c
        state[k, 1] = pre_h
        state[k, 2] = pre_l
    return 0


# ----------------------------------------------------------------------------- STOCHF, STOCH
@njit(cache=True)
def _stoch_fastk(high, low, close, i0, end, j0, n, row, ks):  # type: ignore[no-untyped-def]
    """One symbol's %K for bars ``i0..end-1`` (``j0`` the count at ``i0``) into ``ks[:end-i0]``
    (NaN before bar n-1), advancing the extremes ``row[1..4]`` and saving the rings."""
    rl = 5
    rh = 5 + n
    ring_l = row[rl : rl + n]
    ring_h = row[rh : rh + n]
    lowest = row[1]
    li = np.int64(row[2])
    highest = row[3]
    hi = np.int64(row[4])
    warm = min(end, i0 + max(n - 1 - j0, 0))  # bars before the first %K
    for j in range(i0, warm):
        ks[j - i0] = np.nan
    for i in range(warm, end):
        t = j0 + (i - i0)
        tr = t - n + 1
        vl = low[i]
        vh = high[i]
        if t == n - 1:  # the first window: TA-Lib starts from index -1, i.e. a rescan
            li = np.int64(-1)
            hi = np.int64(-1)
        if li < tr:
            lowest, li = _rescan_low(low, i0, j0, ring_l, n, tr, t)
        elif vl <= lowest:
            li = t
            lowest = vl
        if hi < tr:
            highest, hi = _rescan_high(high, i0, j0, ring_h, n, tr, t)
        elif vh >= highest:
            hi = t
            highest = vh
        ks[i - i0] = _stoch_k(close[i], lowest, highest)
    c = j0 + (end - i0)
    _save_ring(low, i0, j0, c, ring_l, n)
    _save_ring(high, i0, j0, c, ring_h, n)
    row[1] = lowest
    row[2] = li
    row[3] = highest
    row[4] = hi


@njit(cache=True, inline="always")
def _stoch_core(high, low, close, offsets, n, mt1, p1, mt2, p2, two, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
    """%K over n bars from bar n-1 (``_stoch_fastk``), then one MA (STOCHF: %D) or two chained
    MAs (STOCH: slow %K, then slow %D from slow %K's first value). Outputs (%K or slow %K, %D)
    from the total lookback. State: [count, lowest, its bar, highest, its bar, low ring[n],
    high ring[n], MA block 1, MA block 2 (STOCH)]. Inlined into per-matype variants: kept to
    the MA part (numba copies an inlined body per block, so a large one compiles slowly)."""
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    w1 = ma_width(mt1, p1)
    width = 5 + 2 * n + w1 + (ma_width(mt2, p2) if two else 0)
    bad = _check(offsets, high.size, state_in, state, width)
    if bad != 0:
        return bad
    b1 = 5 + 2 * n
    b2 = b1 + w1
    lb1 = n - 1 + ma_lookback(mt1, p1, 0)
    lb = lb1 + (ma_lookback(mt2, p2, 0) if two else 0)
    longest = 0
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    ks = np.empty(longest)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c = np.int64(state[k, 0])
        i = start
        if c == 0:
            i = _skip_leading_nan3(high, low, close, i, end, out_k)
            for j in range(start, i):
                out_d[j] = np.nan
        if i >= end:
            continue
        row = state[k]
        i0 = i
        j0 = c
        _stoch_fastk(high, low, close, i0, end, j0, n, row, ks)
        warm = min(end, i0 + max(n - 1 - j0, 0))
        for j in range(i0, warm):
            out_k[j] = np.nan
            out_d[j] = np.nan
        for i in range(warm, end):
            t = j0 + (i - i0)
            kv = ks[i - i0]
            m1 = _ma(row, b1, mt1, p1, kv)
            if two:
                a = m1
                b = _ma(row, b2, mt2, p2, m1) if t >= lb1 else np.nan
            else:
                a = kv
                b = m1
            if t >= lb:
                out_k[i] = a
                out_d[i] = b
            else:
                out_k[i] = np.nan
                out_d[i] = np.nan
        state[k, 0] = j0 + (end - i0)
    return 0


def _stochf_variant(mt: int) -> object:
    def stochf_run(high, low, close, offsets, fastk, fastd, fastd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        return _stoch_core(high, low, close, offsets, fastk, mt, fastd, 0, 1, False, state_in, state, out_k, out_d)

    return variant(stochf_run, "stochf_run", (mt,))


def _stoch_variant(mt1: int, mt2: int) -> object:
    def stoch_run(high, low, close, offsets, fastk, slowk, slowk_matype, slowd, slowd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        return _stoch_core(high, low, close, offsets, fastk, mt1, slowk, mt2, slowd, True, state_in, state, out_k, out_d)

    return variant(stoch_run, "stoch_run", (mt1, mt2))


#: Fast stochastic (ta_STOCHF.c): %K over fastk bars from bar fastk-1 (``_stoch_k``, the
#: rescan extremes), %D = TA_MA(fastd, fastd_matype) of %K; both output from bar fastk-1 + the
#: MA's lookback. MAMA (7) is not supported (the definition refuses it). One variant per matype.
#: State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk], %D
#: ``ma_step`` block].
stochf_run = MatypeKernel("stochf_run", _stochf_variant, (6,))
#: Slow stochastic (ta_STOCH.c): %K as in ``stochf_run``, slow %K = TA_MA(slowk, slowk_matype)
#: of %K, slow %D = TA_MA(slowd, slowd_matype) of slow %K from its first value; both output
#: from bar fastk-1 + both MA lookbacks. MAMA (7) is not supported. One variant per matype pair.
#: State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk], slow %K
#: ``ma_step`` block, slow %D ``ma_step`` block].
stoch_run = MatypeKernel("stoch_run", _stoch_variant, (6, 8))


# ---------------------------------------------------------------------------------- STOCHRSI
def _stochrsi_variant(mt: int) -> object:
    def stochrsi_run(x, offsets, period, fastk, fastd, fastd_matype, unstable, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        return _stochrsi_core(x, offsets, period, fastk, fastd, mt, unstable, state_in, state, out_k, out_d)

    return variant(stochrsi_run, "stochrsi_run", (mt,))


#: Stochastic RSI (ta_STOCHRSI.c); see ``_stochrsi_core``. One variant per %D matype.
stochrsi_run = MatypeKernel("stochrsi_run", _stochrsi_variant, (5,))


@njit(cache=True, inline="always")
def _stochrsi_core(x, offsets, period, fastk, fastd, fastd_matype, unstable, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
    """Stochastic RSI (ta_STOCHRSI.c): RSI(period) exactly as ``momentum.rsi_run``; from bar
    period + unstable (TA-Lib's RSI unstable period, which moves where the stochastic starts)
    the RSI values feed a fast stochastic with high = low = close = RSI (``stochf_run``).
    Outputs from bar period + unstable + fastk-1 + the %D MA's lookback. MAMA is not supported.

    State: [count, avg gain, avg loss, previous input, lowest, its bar, highest, its bar,
    ring of the last fastk RSI values (slot = stochastic bar % fastk), %D ``ma_step`` block].
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
    longest = 0
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    rsis = np.empty(longest)  # this call's RSI values of one symbol, read by the rescans
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c = np.int64(state[k, 0])
        i = start
        if c == 0:
            i = _skip_leading_nan1(x, i, end, out_k)
            for j in range(start, i):
                out_d[j] = np.nan
        if i >= end:
            continue
        row = state[k]
        ring = row[rr : rr + fastk]
        g_avg = state[k, 1]
        l_avg = state[k, 2]
        prev = state[k, 3]
        lowest = state[k, 4]
        li = np.int64(state[k, 5])
        highest = state[k, 6]
        hi = np.int64(state[k, 7])
        j0 = max(c - r0, 0)  # stochastic bar of this call's first RSI value
        ns = 0
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
                    rsis[ns] = rsi
                    ns += 1
                    if t >= fastk - 1:
                        tr = t - fastk + 1
                        if t == fastk - 1:
                            li = np.int64(-1)
                            hi = np.int64(-1)
                        if li < tr:
                            lowest, li = _rescan_low(rsis, 0, j0, ring, fastk, tr, t)
                        elif rsi <= lowest:
                            li = t
                            lowest = rsi
                        if hi < tr:
                            highest, hi = _rescan_high(rsis, 0, j0, ring, fastk, tr, t)
                        elif rsi >= highest:
                            hi = t
                            highest = rsi
                        kv = _stoch_k(rsi, lowest, highest)
                        dv = _ma(row, db, fastd_matype, fastd, kv)
            if c >= lb:
                out_k[i] = kv
                out_d[i] = dv
            else:
                out_k[i] = np.nan
                out_d[i] = np.nan
            c += 1
            i += 1
        _save_ring(rsis, 0, j0, j0 + ns, ring, fastk)
        state[k, 0] = c
        state[k, 1] = g_avg
        state[k, 2] = l_avg
        state[k, 3] = prev
        state[k, 4] = lowest
        state[k, 5] = li
        state[k, 6] = highest
        state[k, 7] = hi
    return 0

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
from featurestore.indicators.kernels.ma import MatypeKernel, _njit_no_rc, ma_lookback, ma_pass, ma_width, variant

#: T3's volume factor inside TA_MA (%K/%D smoothing with matype 8).
_T3_VFACTOR = 0.7


@njit(cache=True, inline="always")
def _stoch_k(cl, lowest, highest):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8.1's %K: ``((c - L) / (H - L)) * 100`` (no clamp), 0.0 where H - L is zero
    relative to |H| + |L| (TA_IS_ZERO_SCALED)."""
    r = highest - lowest
    if abs(r) <= 1e-14 * (abs(highest) + abs(lowest)):
        return 0.0
    return ((cl - lowest) / r) * 100.0


@njit(cache=True, inline="always")
def _ma(st, k, o, matype, period, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``ma.ma_pass`` with TA_MA's settings inside STOCH* (unstable 0, T3's 0.7), ``matype`` a
    compile-time constant (the kernels' ``MatypeKernel`` variants): one call, that matype's."""
    return ma_pass(matype, period, 0, _T3_VFACTOR, st, k, o, src, dst, a, b)


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
        pre_h = state[k, 1]
        pre_l = state[k, 2]
        i0 = i
        j0 = c
        q = c % n
        for i in range(i0, end):
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
                state[k, sh + q] = hh
                state[k, sl + q] = ll
                # block position j is bar t - q + j: this call's input from j = jc on, else the ring
                jc = max(q - (i - i0), 0)
                for j in range(q - 1, jc - 1, -1):
                    v = high[i - q + j]
                    w = low[i - q + j]
                    if v > hh:
                        hh = v
                    if w < ll:
                        ll = w
                    state[k, sh + j] = hh
                    state[k, sl + j] = ll
                for j in range(min(jc, q) - 1, -1, -1):
                    v = state[k, rh + j]
                    w = state[k, rl + j]
                    if v > hh:
                        hh = v
                    if w < ll:
                        ll = w
                    state[k, sh + j] = hh
                    state[k, sl + j] = ll
                out[i] = _willr_value(hh, ll, close[i])
            elif j0 + (i - i0) >= n:
                hh = state[k, sh + q + 1]
                if pre_h > hh:
                    hh = pre_h
                ll = state[k, sl + q + 1]
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
            state[k, rh + j % n] = high[i0 + j - j0]
            state[k, rl + j % n] = low[i0 + j - j0]
        state[k, 0] = c
        state[k, 1] = pre_h
        state[k, 2] = pre_l
    return 0


# ----------------------------------------------------------------------------- STOCHF, STOCH
# Per symbol: the %K values into a buffer (``_stoch_fastk``, out of line), then the MA passes
# over buffers (``ma.ma_pass``, one call per block), then the outputs (``_stoch_emit``). The
# variants hold only these calls: numba copies an inlined body into every caller, which made
# their first compile slow.
@njit(cache=True)
def _begin(x, y, z, offsets, state_in, state, width, rows, extra):  # type: ignore[no-untyped-def]
    """The call's validation (``_check``, equal input lengths): ``(0, scratch)`` with ``rows``
    scratch rows of the longest symbol's length + ``extra``, or ``(error code, empty)``."""
    if y.size != x.size or z.size != x.size:
        return BAD_INPUT_LENGTHS, np.empty((0, 0))
    bad = _check(offsets, x.size, state_in, state, width)
    if bad != 0:
        return bad, np.empty((0, 0))
    longest = 0
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    return 0, np.empty((rows, longest + extra))


@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _stoch_fastk(high, low, close, offsets, k, n, state_in, state, copy, out_k, out_d, ks, lw, hw):  # type: ignore[no-untyped-def]
    """Symbol k's start (row copy, leading NaN bars skipped with NaN outputs), then its %K for
    bars ``i0..end-1`` into ``ks[i - i0]`` from bar n-1 on (TA-Lib's loop: the tracked extreme,
    a rescan from the window's oldest bar when it leaves), advancing the extremes
    ``state[k, 1..4]``, the rings and the count. The rescans read ``lw``/``hw``: the rings'
    bars before this call, then this call's. Returns ``(i0, j0)``: the first bar computed and
    the count there (``i0 == end``: nothing to compute)."""
    _copy_row(state_in, state, k, copy)
    start = offsets[k]
    end = offsets[k + 1]
    j0 = np.int64(state[k, 0])
    i0 = start
    if j0 == 0:
        i0 = _skip_leading_nan3(high, low, close, start, end, out_k)
        for j in range(start, i0):
            out_d[j] = np.nan
    if i0 >= end:
        return i0, j0
    rl = 5
    rh = 5 + n
    nb = end - i0
    h = min(j0, n - 1)  # bars before this call that a window can reach
    base = j0 - h  # the bar at lw[0]
    slot = base % n
    for q in range(h):
        lw[q] = state[k, rl + slot]
        hw[q] = state[k, rh + slot]
        slot += 1
        if slot == n:
            slot = 0
    for q in range(nb):
        lw[h + q] = low[i0 + q]
        hw[h + q] = high[i0 + q]
    lowest = state[k, 1]
    li = int(state[k, 2])
    highest = state[k, 3]
    hi = int(state[k, 4])
    c = j0 + nb
    for t in range(max(j0, n - 1), c):
        tr = t - n + 1
        if t == n - 1:  # the first window: TA-Lib starts from index -1, i.e. a rescan
            li = -1
            hi = -1
        v = lw[t - base]
        if li < tr:  # rescan, strict <: the first of equal values wins
            li = tr
            lowest = lw[tr - base]
            for j in range(tr + 1, t + 1):
                v = lw[j - base]
                if v < lowest:
                    li = j
                    lowest = v
        elif v <= lowest:
            li = t
            lowest = v
        v = hw[t - base]
        if hi < tr:
            hi = tr
            highest = hw[tr - base]
            for j in range(tr + 1, t + 1):
                v = hw[j - base]
                if v > highest:
                    hi = j
                    highest = v
        elif v >= highest:
            hi = t
            highest = v
        ks[t - j0] = _stoch_k(close[i0 + (t - j0)], lowest, highest)
    for j in range(max(j0, c - n), c):  # this call's last (up to n) bars into the rings
        state[k, rl + j % n] = lw[j - base]
        state[k, rh + j % n] = hw[j - base]
    state[k, 0] = c
    state[k, 1] = lowest
    state[k, 2] = li
    state[k, 3] = highest
    state[k, 4] = hi
    return i0, j0


@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _stoch_emit(out_a, out_b, i0, j0, nb, lb, a, b):  # type: ignore[no-untyped-def]
    """``out_a/out_b[i0 + q] = a[q]/b[q]`` from count ``lb`` on (the count at ``i0`` is ``j0``),
    NaN before, for q in 0..nb-1."""
    w = min(nb, max(lb - j0, 0))
    for q in range(w):
        out_a[i0 + q] = np.nan
        out_b[i0 + q] = np.nan
    for q in range(w, nb):
        out_a[i0 + q] = a[q]
        out_b[i0 + q] = b[q]
    return 0


def _stochf_variant(mt: int) -> object:
    def stochf_run(high, low, close, offsets, fastk, fastd, fastd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        n = fastk
        b1 = 5 + 2 * n
        bad, buf = _begin(high, low, close, offsets, state_in, state, b1 + ma_width(mt, fastd), 4, n)
        if bad != 0:
            return bad
        lb = n - 1 + ma_lookback(mt, fastd, 0)
        ks = buf[0]
        m1 = buf[1]
        lw = buf[2]
        hw = buf[3]
        copy = state_in.ctypes.data != state.ctypes.data
        for k in range(offsets.size - 1):
            i0, j0 = _stoch_fastk(high, low, close, offsets, k, n, state_in, state, copy, out_k, out_d, ks, lw, hw)
            nb = offsets[k + 1] - i0
            if nb > 0:
                _ma(state, k, b1, mt, fastd, ks, m1, min(nb, max(n - 1 - j0, 0)), nb)
                _stoch_emit(out_k, out_d, i0, j0, nb, lb, ks, m1)
        return 0

    return variant(stochf_run, "stochf_run", (mt,))


def _stoch_variant(mt1: int, mt2: int) -> object:
    def stoch_run(high, low, close, offsets, fastk, slowk, slowk_matype, slowd, slowd_matype, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        n = fastk
        b1 = 5 + 2 * n
        b2 = b1 + ma_width(mt1, slowk)
        bad, buf = _begin(high, low, close, offsets, state_in, state, b2 + ma_width(mt2, slowd), 5, n)
        if bad != 0:
            return bad
        lb1 = n - 1 + ma_lookback(mt1, slowk, 0)
        lb = lb1 + ma_lookback(mt2, slowd, 0)
        ks = buf[0]
        m1 = buf[1]
        m2 = buf[2]
        lw = buf[3]
        hw = buf[4]
        copy = state_in.ctypes.data != state.ctypes.data
        for k in range(offsets.size - 1):
            i0, j0 = _stoch_fastk(high, low, close, offsets, k, n, state_in, state, copy, out_k, out_d, ks, lw, hw)
            nb = offsets[k + 1] - i0
            if nb > 0:
                _ma(state, k, b1, mt1, slowk, ks, m1, min(nb, max(n - 1 - j0, 0)), nb)
                _ma(state, k, b2, mt2, slowd, m1, m2, min(nb, max(lb1 - j0, 0)), nb)
                _stoch_emit(out_k, out_d, i0, j0, nb, lb, m1, m2)
        return 0

    return variant(stoch_run, "stoch_run", (mt1, mt2))


#: Fast stochastic (ta_STOCHF.c): %K over fastk bars from bar fastk-1 (``_stoch_k``, the
#: rescan extremes), %D = TA_MA(fastd, fastd_matype) of %K; both output from bar fastk-1 + the
#: MA's lookback. One variant per matype.
#: State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk], %D
#: ``ma_step`` block].
stochf_run = MatypeKernel("stochf_run", _stochf_variant, (6,))
#: Slow stochastic (ta_STOCH.c): %K as in ``stochf_run``, slow %K = TA_MA(slowk, slowk_matype)
#: of %K, slow %D = TA_MA(slowd, slowd_matype) of slow %K from its first value; both output
#: from bar fastk-1 + both MA lookbacks. One variant per matype pair.
#: State: [count, lowest, its bar, highest, its bar, low ring[fastk], high ring[fastk], slow %K
#: ``ma_step`` block, slow %D ``ma_step`` block].
stoch_run = MatypeKernel("stoch_run", _stoch_variant, (6, 8))


# ---------------------------------------------------------------------------------- STOCHRSI
@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _stochrsi_fastk(x, offsets, k, period, fastk, unstable, state_in, state, copy, out_k, out_d, ks, rsis):  # type: ignore[no-untyped-def]
    """Symbol k's start (row copy, leading NaN bars skipped with NaN outputs), then RSI (as
    ``momentum.rsi_run``) and the fast stochastic's %K of it for bars ``i0..end-1`` into
    ``ks[i - i0]`` (where a %K exists: from count period + unstable + fastk - 1 on), advancing
    ``state[k, 0..7]`` and the ring. Returns ``(i0, c0)``: the first bar and the count there."""
    _copy_row(state_in, state, k, copy)
    start = offsets[k]
    end = offsets[k + 1]
    c = np.int64(state[k, 0])
    i = start
    if c == 0:
        i = _skip_leading_nan1(x, i, end, out_k)
        for j in range(start, i):
            out_d[j] = np.nan
    i0 = i
    c0 = c
    if i >= end:
        return i0, c0
    n = period
    inv = 1.0 / period
    nm1 = float(period - 1)
    r0 = period + unstable
    rr = 8
    g_avg = state[k, 1]
    l_avg = state[k, 2]
    prev = state[k, 3]
    lowest = state[k, 4]
    li = int(state[k, 5])
    highest = state[k, 6]
    hi = int(state[k, 7])
    j0 = max(c - r0, 0)  # stochastic bar of this call's first RSI value
    h = min(j0, fastk - 1)  # RSI values before this call that a window can reach
    base = j0 - h  # the stochastic bar at rsis[0]
    slot = base % fastk
    for q in range(h):
        rsis[q] = state[k, rr + slot]
        slot += 1
        if slot == fastk:
            slot = 0
    t = j0 - 1
    while i < end:
        v = x[i]
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
                rsis[t - base] = rsi
                if t >= fastk - 1:
                    tr = t - fastk + 1
                    if t == fastk - 1:
                        li = -1
                        hi = -1
                    if li < tr:  # rescan, strict <: the first of equal values wins
                        li = tr
                        lowest = rsis[tr - base]
                        for j in range(tr + 1, t + 1):
                            w = rsis[j - base]
                            if w < lowest:
                                li = j
                                lowest = w
                    elif rsi <= lowest:
                        li = t
                        lowest = rsi
                    if hi < tr:
                        hi = tr
                        highest = rsis[tr - base]
                        for j in range(tr + 1, t + 1):
                            w = rsis[j - base]
                            if w > highest:
                                hi = j
                                highest = w
                    elif rsi >= highest:
                        hi = t
                        highest = rsi
                    ks[i - i0] = _stoch_k(rsi, lowest, highest)
        c += 1
        i += 1
    for j in range(max(j0, t + 1 - fastk), t + 1):  # this call's last (up to fastk) RSI values
        state[k, rr + j % fastk] = rsis[j - base]
    state[k, 0] = c
    state[k, 1] = g_avg
    state[k, 2] = l_avg
    state[k, 3] = prev
    state[k, 4] = lowest
    state[k, 5] = li
    state[k, 6] = highest
    state[k, 7] = hi
    return i0, c0


def _stochrsi_variant(mt: int) -> object:
    def stochrsi_run(x, offsets, period, fastk, fastd, fastd_matype, unstable, state_in, state, out_k, out_d):  # type: ignore[no-untyped-def]
        """Stochastic RSI (ta_STOCHRSI.c): RSI(period) exactly as ``momentum.rsi_run``; from bar
        period + unstable (TA-Lib's RSI unstable period, which moves where the stochastic
        starts) the RSI values feed a fast stochastic with high = low = close = RSI
        (``stochf_run``). Outputs from bar period + unstable + fastk-1 + the %D MA's lookback.

        State: [count, avg gain, avg loss, previous input, lowest, its bar, highest, its bar,
        ring of the last fastk RSI values (slot = stochastic bar % fastk), %D ``ma_step`` block].
        """
        db = 8 + fastk
        bad, buf = _begin(x, x, x, offsets, state_in, state, db + ma_width(mt, fastd), 3, fastk)
        if bad != 0:
            return bad
        k0 = period + unstable + fastk - 1  # count of the first %K
        lb = k0 + ma_lookback(mt, fastd, 0)
        ks = buf[0]
        m1 = buf[1]
        rsis = buf[2]  # one symbol's RSI values (after the ring's), read by the rescans
        copy = state_in.ctypes.data != state.ctypes.data
        for k in range(offsets.size - 1):
            i0, c0 = _stochrsi_fastk(x, offsets, k, period, fastk, unstable, state_in, state, copy, out_k, out_d,
                                     ks, rsis)
            nb = offsets[k + 1] - i0
            if nb > 0:
                _ma(state, k, db, mt, fastd, ks, m1, min(nb, max(k0 - c0, 0)), nb)
                _stoch_emit(out_k, out_d, i0, c0, nb, lb, ks, m1)
        return 0

    return variant(stochrsi_run, "stochrsi_run", (mt,))


#: Stochastic RSI (ta_STOCHRSI.c); see the variants' docstring. One variant per %D matype.
stochrsi_run = MatypeKernel("stochrsi_run", _stochrsi_variant, (5,))

"""MESA adaptive moving average (TA-Lib's MAMA): a reusable one-value-at-a-time block and the
``mama_run`` kernel.

TA-Lib 0.8.x (ta_MAMA.c) smooths the price with a 4-bar WMA, runs Ehlers' Hilbert transform
on it (detrender, Q1, jI, jQ, each with an odd-bar and an even-bar copy of its 3-slot circular
buffer and its previous value/input), derives a phase and a period, and adapts the EMA factor
alpha = fastlimit / delta-phase (clamped to [slowlimit, fastlimit]); MAMA = EMA(price, alpha),
FAMA = EMA(MAMA, alpha / 2). The lookback is 32 + TA-Lib's MAMA unstable period; the
computation always starts at the first (begidx) bar, the unstable period only masks output.

Bit-exactness: TA-Lib 0.8.x's build of TA_MAMA (the ``ta-lib`` wheel's C core) uses a fused
multiply-add at these points (its generic build calls libm's ``fma``, its FMA-CPU build emits the
instruction; both give the same bits; read from the library's disassembly, checked on 1e5 bars):
``adjusted = fma(0.075, period, 0.54)``, ``Q2 = fma(0.2, Q1 + jI, 0.8 * prevQ2)``,
``I2 = fma(0.2, I1 - jQ, 0.8 * prevI2)``, ``mama = fma(1 - a, mama, a * x)``,
``fama = fma(1 - a/2, fama, a/2 * mama)``, ``Re = fma(0.8, Re, 0.2 * fma(I2, pI2, Q2 * pQ2))``,
``Im = fma(0.8, Im, 0.2 * (I2 * pQ2 - Q2 * pI2))`` (that difference is not fused) and
``period = fma(0.2, period, 0.8 * previous period)``; every other operation is the C source's,
in its order. ``atan`` is the C library's (numba calls libm's, as TA-Lib does).

API (``@njit``; ``s`` is ONE state row, ``s[o : o + WIDTH]`` the block, all zero to start)::

    mama_step(fast, slow, unstable, s, o, x) -> float   # MAMA, NaN while count < 32 + unstable
    s[o + FAMA]                                          # FAMA after the step (unmasked)

Feed it from the first bar TA-Lib would give TA_MAMA (the begidx bar); the block's parity
(TA-Lib's odd/even buffers) is its own count, so it is a pure function of the values fed.
TA_MA with matype 7 is this block with fast 0.5, slow 0.05 (its period is ignored except 1,
which TA_MA copies).

Layout (offsets relative to ``o``): 0 count; 1 wma_sub, 2 wma_sum, 3 trailing, 4..6 ring of
the last 3 inputs (slot count % 3); 7 hilbert index; 8 period, 9 prev_q2, 10 prev_i2, 11 re,
12 im, 13 prev_phase, 14 mama, 15 fama; 16 i1_odd_prev2, 17 i1_odd_prev3, 18 i1_even_prev2,
19 i1_even_prev3; 20..39 the even-bar filters, 40..59 the odd-bar ones: per filter
(detrender, q1, ji, jq) five columns ``[buf0, buf1, buf2, prev, prev_input]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import _check, _copy_row, _skip_leading_nan1, fma

WIDTH = 60
LOOKBACK = 32
_SUB, _SUM, _TRAIL, _RING = 1, 2, 3, 4
_HIDX, _PERIOD, _PQ2, _PI2, _RE, _IM, _PHASE, MAMA, FAMA = 7, 8, 9, 10, 11, 12, 13, 14, 15
_I1O2, _I1O3, _I1E2, _I1E3 = 16, 17, 18, 19
_EVEN, _ODD = 20, 40
_A = 0.0962
_B = 0.5769
_RAD2DEG = 180.0 / (4.0 * math.atan(1.0))


@njit(cache=True, inline="always")
def _filter(s, b, idx, value, adj):  # type: ignore[no-untyped-def]
    """One of TA-Lib's Hilbert filters on its 3-slot buffer ``s[b:b+3]`` (slot ``idx``),
    previous value ``s[b+3]`` and previous input ``s[b+4]``, in ta_MAMA.c's order."""
    h = _A * value
    r = 0.0 - s[b + idx]
    s[b + idx] = h
    r += h
    r -= s[b + 3]
    prev = _B * s[b + 4]
    s[b + 3] = prev
    r += prev
    s[b + 4] = value
    return r * adj


@njit(cache=True, inline="always")
def mama_step(fast, slow, unstable, s, o, x):  # type: ignore[no-untyped-def]
    """Advance the MAMA block at ``s[o:o+WIDTH]`` by one value ``x``: MAMA, or NaN while the
    block's count (before the call) is below ``32 + unstable``; FAMA is then ``s[o + FAMA]``."""
    c = np.int64(s[o])
    s[o] = c + 1
    ring = o + _RING + c % 3
    if c < 3:  # the WMA's first three values
        if c == 0:
            s[o + _SUB] = x
            s[o + _SUM] = x
        elif c == 1:
            s[o + _SUB] = s[o + _SUB] + x
            s[o + _SUM] = s[o + _SUM] + x * 2.0
        else:
            s[o + _SUB] = s[o + _SUB] + x
            s[o + _SUM] = s[o + _SUM] + x * 3.0
            s[o + _TRAIL] = 0.0
        s[ring] = x
        return np.nan
    adj = fma(0.075, s[o + _PERIOD], 0.54)
    sub = s[o + _SUB] + x
    sub -= s[o + _TRAIL]
    wsum = s[o + _SUM] + x * 4.0
    s[o + _TRAIL] = s[ring]  # x[c - 3]
    s[ring] = x
    smoothed = wsum * 0.1
    s[o + _SUM] = wsum - sub
    s[o + _SUB] = sub
    if c < 12:  # still the WMA's warm-up
        return np.nan
    idx = int(s[o + _HIDX])
    if c % 2 == 0:
        b = o + _EVEN
        i1 = s[o + _I1E3]
    else:
        b = o + _ODD
        i1 = s[o + _I1O3]
    det = _filter(s, b, idx, smoothed, adj)
    q1 = _filter(s, b + 5, idx, det, adj)
    ji = _filter(s, b + 10, idx, i1, adj)
    jq = _filter(s, b + 15, idx, q1, adj)
    pq2 = s[o + _PQ2]
    pi2 = s[o + _PI2]
    q2 = fma(0.2, q1 + ji, 0.8 * pq2)
    i2 = fma(0.2, i1 - jq, 0.8 * pi2)
    if c % 2 == 0:
        idx += 1
        if idx == 3:
            idx = 0
        s[o + _HIDX] = idx
        s[o + _I1O3] = s[o + _I1O2]
        s[o + _I1O2] = det
    else:
        s[o + _I1E3] = s[o + _I1E2]
        s[o + _I1E2] = det
    if i1 != 0.0:
        phase = math.atan(q1 / i1) * _RAD2DEG
    else:
        phase = 0.0
    t = s[o + _PHASE] - phase
    s[o + _PHASE] = phase
    if t < 1.0:
        t = 1.0
    if t > 1.0:
        t = fast / t
        if t < slow:
            t = slow
    else:
        t = fast
    mama = fma(1.0 - t, s[o + MAMA], t * x)
    t *= 0.5
    fama = fma(1.0 - t, s[o + FAMA], t * mama)
    s[o + MAMA] = mama
    s[o + FAMA] = fama
    re = fma(0.8, s[o + _RE], 0.2 * fma(i2, pi2, q2 * pq2))
    im = fma(0.8, s[o + _IM], 0.2 * (i2 * pq2 - q2 * pi2))
    s[o + _RE] = re
    s[o + _IM] = im
    s[o + _PQ2] = q2
    s[o + _PI2] = i2
    prev = s[o + _PERIOD]
    period = prev
    if im != 0.0 and re != 0.0:
        period = 360.0 / (math.atan(im / re) * _RAD2DEG)
    lim = 1.5 * prev
    if period > lim:
        period = lim
    lim = 0.67 * prev
    if period < lim:
        period = lim
    if period < 6.0:
        period = 6.0
    elif period > 50.0:
        period = 50.0
    s[o + _PERIOD] = fma(0.2, period, 0.8 * prev)
    if c < LOOKBACK + unstable:
        return np.nan
    return mama


@njit(cache=True)
def mama_run(x, offsets, fast, slow, unstable, state_in, state, out_mama, out_fama):  # type: ignore[no-untyped-def]
    """MAMA and FAMA (TA-Lib's MAMA with its unstable period). State: one ``mama_step`` block."""
    bad = _check(offsets, x.size, state_in, state, WIDTH)
    if bad != 0:
        return bad
    lb = LOOKBACK + unstable
    copy = state_in.ctypes.data != state.ctypes.data
    # One flat view of the (C-contiguous) state for the whole call: symbol k's block starts at
    # k * WIDTH. A row view per symbol would cost reference counting on every symbol.
    flat = state.reshape(state.size)
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        o = k * WIDTH
        i = start
        if flat[o] == 0:
            i = _skip_leading_nan1(x, i, end, out_mama)
            for j in range(start, i):
                out_fama[j] = np.nan
        while i < end:
            c = flat[o]
            v = mama_step(fast, slow, unstable, flat, o, x[i])
            out_mama[i] = v
            out_fama[i] = np.nan if c < lb else flat[o + FAMA]
            i += 1
    return 0


@njit(cache=True)
def ma_mama_run(x, offsets, state_in, state, out):  # type: ignore[no-untyped-def]
    """TA_MA(period >= 2, matype 7): MAMA with TA_MA's fixed limits 0.5/0.05 and no unstable
    period, FAMA dropped (``averages._ma_into``'s MAMA branch: no per-bar matype dispatch).
    State: one ``mama_step`` block per row (C-contiguous)."""
    bad = _check(offsets, x.size, state_in, state, WIDTH)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    flat = state.reshape(state.size)
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        o = k * WIDTH
        i = start
        if flat[o] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        while i < end:
            out[i] = mama_step(0.5, 0.05, 0, flat, o, x[i])
            i += 1
    return 0

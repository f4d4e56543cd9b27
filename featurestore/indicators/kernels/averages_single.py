"""The single moving-average kernels (WMA, DEMA, TEMA, TRIMA, KAMA, T3) and TRIX: one kernel per kind
that runs only its own block of ``kernels/ma.py`` (no per-bar matype dispatch), re-exported by
``averages`` (the family's kernels are all reached as ``averages.<kind>_run``).

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import _check, _copy_row, _skip_leading_nan1, fma
from featurestore.indicators.kernels.ma import (
    _KAMA_DIFF,
    _KAMA_MAX,
    DEMA,
    KAMA,
    TEMA,
    TRIMA,
    WMA,
    _kama_flat,
    _t3,
    copy_step,
    dema_block,
    ema_block,
    kama_block,
    ma_width,
    tema_block,
    trima_block,
)


@njit(cache=True)
def wma_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """WMA (TA-Lib 0.8.1: running sums re-anchored every 8*period outputs).

    ``ma._wma``'s block unrolled over a symbol's bars: the same operations and state row, with
    the sums in locals and the ring slot and re-anchor phase advanced instead of divided."""
    bad = _check(offsets, x.size, state_in, state, ma_width(WMA, period))
    if bad != 0:
        return bad
    m = period - 1
    p8 = 8 * period
    fp = float(period)
    denom = float((period * (period + 1)) >> 1)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if period == 1:
            row = state[k]  # a row view only off the hot path (views cost reference counting)
            while i < end:
                out[i] = copy_step(0, row, 0, x[i])
                i += 1
            continue
        if i >= end:
            continue
        c = np.int64(state[k, 0])
        c0 = c
        p0 = i
        sub = state[k, 1]
        tot = state[k, 2]
        tv = state[k, 3]
        slot = c % m
        phase = (c - m + 1) % p8  # outputs since the last re-anchor (0: re-anchor now)
        while i < end and c < m:
            v = x[i]
            sub += v
            tot += v * float(c + 1)
            state[k, 4 + slot] = v
            out[i] = np.nan
            slot += 1
            if slot == m:
                slot = 0
            phase += 1
            if phase == p8:
                phase = 0
            c += 1
            i += 1
        a_end = min(end, p0 + m)  # from here the value leaving the window is x[i - m]
        while i < a_end:
            v = x[i]
            if phase == 0:
                sub = 0.0
                tot = 0.0
                r = slot
                for j in range(m):
                    w = state[k, 4 + r]
                    sub += w
                    tot += w * float(j + 1)
                    r += 1
                    if r == m:
                        r = 0
                tv = 0.0
            sub += v
            sub -= tv
            tot += v * fp
            tv = state[k, 4 + slot]
            out[i] = tot / denom
            tot = tot - sub
            state[k, 4 + slot] = v
            slot += 1
            if slot == m:
                slot = 0
            phase += 1
            if phase == p8:
                phase = 0
            i += 1
        while i < end:
            v = x[i]
            if phase == 0:
                sub = 0.0
                tot = 0.0
                for j in range(m):
                    w = x[i - m + j]
                    sub += w
                    tot += w * float(j + 1)
                tv = 0.0
            sub += v
            sub -= tv
            tot += v * fp
            tv = x[i - m]
            out[i] = tot / denom
            tot = tot - sub
            phase += 1
            if phase == p8:
                phase = 0
            i += 1
        if end - p0 > m:
            for j in range(end - m, end):
                state[k, 4 + (c0 + j - p0) % m] = x[j]
        state[k, 0] = c0 + (end - p0)
        state[k, 1] = sub
        state[k, 2] = tot
        state[k, 3] = tv
    return 0


@njit(cache=True)
def dema_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """DEMA = 2*EMA1 - EMA2.

    ``ma._dema``'s block while its EMAs seed; once all are seeded, the same operations with
    the EMAs in locals."""
    bad = _check(offsets, x.size, state_in, state, ma_width(DEMA, period))
    if bad != 0:
        return bad
    kk = 2.0 / (period + 1)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if period == 1:
            row = state[k]  # a row view only off the hot path (views cost reference counting)
            while i < end:
                out[i] = copy_step(0, row, 0, x[i])
                i += 1
            continue
        if i < end and state[k, 3] < period:
            row = state[k]
            while i < end and state[k, 3] < period:
                out[i] = dema_block(period, 0, row, 0, x[i])
                i += 1
        if i >= end:
            continue
        p0 = i
        e1 = state[k, 2]
        e2 = state[k, 4]
        while i < end:
            e1 = fma(x[i] - e1, kk, e1)
            e2 = fma(e1 - e2, kk, e2)
            out[i] = 2.0 * e1 - e2
            i += 1
        n = end - p0
        state[k, 0] += n
        state[k, 2] = e1
        state[k, 1] += n
        state[k, 4] = e2
        state[k, 3] += n
    return 0


@njit(cache=True)
def tema_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """TEMA = EMA3 + (3*EMA1 - 3*EMA2).

    ``ma._tema``'s block while its EMAs seed; once all are seeded, the same operations with
    the EMAs in locals."""
    bad = _check(offsets, x.size, state_in, state, ma_width(TEMA, period))
    if bad != 0:
        return bad
    kk = 2.0 / (period + 1)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if period == 1:
            row = state[k]  # a row view only off the hot path (views cost reference counting)
            while i < end:
                out[i] = copy_step(0, row, 0, x[i])
                i += 1
            continue
        if i < end and state[k, 5] < period:
            row = state[k]
            while i < end and state[k, 5] < period:
                out[i] = tema_block(period, 0, row, 0, x[i])
                i += 1
        if i >= end:
            continue
        p0 = i
        e1 = state[k, 2]
        e2 = state[k, 4]
        e3 = state[k, 6]
        while i < end:
            e1 = fma(x[i] - e1, kk, e1)
            e2 = fma(e1 - e2, kk, e2)
            e3 = fma(e2 - e3, kk, e3)
            out[i] = e3 + (3.0 * e1 - 3.0 * e2)
            i += 1
        n = end - p0
        state[k, 0] += n
        state[k, 2] = e1
        state[k, 1] += n
        state[k, 4] = e2
        state[k, 3] += n
        state[k, 6] = e3
        state[k, 5] += n
    return 0


@njit(cache=True)
def trima_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Triangular MA (TA-Lib's odd/even period forms; TA_TRIMA(1) runs its sums, no copy).

    ``ma._trima``'s block up to its first value; after it, the same operations with the sums
    in locals and the ring slots advanced instead of divided."""
    bad = _check(offsets, x.size, state_in, state, ma_width(TRIMA, period))
    if bad != 0:
        return bad
    h = period >> 1
    odd = (period & 1) == 1
    if odd:
        factor = 1.0 / float((h + 1) * (h + 1))
    else:
        factor = 1.0 / float(h * (h + 1))
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if i < end and (period == 1 or state[k, 0] < period):
            row = state[k]
            while i < end and (period == 1 or state[k, 0] < period):
                out[i] = trima_block(period, row, 0, x[i])
                i += 1
        if i >= end:
            continue
        c = np.int64(state[k, 0])
        p0 = i
        num = state[k, 1]
        sub = state[k, 2]
        add = state[k, 3]
        slot = c % period
        mslot = slot - h
        if mslot < 0:
            mslot += period
        # The call's first period bars find x[c - period] and x[c - h] in the ring, later ones in x.
        a_end = min(end, p0 + period)
        while i < a_end:
            v = x[i]
            xo = state[k, 4 + slot]  # x[c - period]
            xm = state[k, 4 + mslot]  # x[c - h]
            num -= sub
            sub -= xo
            sub += xm
            if odd:
                num += add
                add -= xm
            else:
                add -= xm
                num += add
            add += v
            num += v
            state[k, 4 + slot] = v
            out[i] = num * factor
            slot += 1
            if slot == period:
                slot = 0
            mslot += 1
            if mslot == period:
                mslot = 0
            i += 1
        while i < end:
            v = x[i]
            xo = x[i - period]
            xm = x[i - h]
            num -= sub
            sub -= xo
            sub += xm
            if odd:
                num += add
                add -= xm
            else:
                add -= xm
                num += add
            add += v
            num += v
            out[i] = num * factor
            i += 1
        if end - p0 > period:
            for j in range(end - period, end):
                state[k, 4 + (c + j - p0) % period] = x[j]
        state[k, 0] = c + (end - p0)
        state[k, 1] = num
        state[k, 2] = sub
        state[k, 3] = add
    return 0


@njit(cache=True)
def _flat_moves(x, i, p):  # type: ignore[no-untyped-def]
    """``ma._kama_flat`` over x instead of the ring: all p moves x[i-p+1] - x[i-p] .. x[i] -
    x[i-1] exactly zero (a NaN move is not)."""
    for j in range(i, i - p, -1):
        if abs(x[j] - x[j - 1]) != 0.0:
            return False
    return True


@njit(cache=True)
def kama_run(x, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Kaufman adaptive MA with TA-Lib's KAMA unstable period.

    ``ma._kama``'s block up to its first value; after it, the same operations with the sums in
    locals and the ring slot advanced instead of divided."""
    bad = _check(offsets, x.size, state_in, state, ma_width(KAMA, period))
    if bad != 0:
        return bad
    lb = period + unstable
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if period == 1:
            row = state[k]  # a row view only off the hot path (views cost reference counting)
            while i < end:
                out[i] = copy_step(unstable, row, 0, x[i])
                i += 1
            continue
        if i < end and state[k, 0] <= period:
            row = state[k]
            while i < end and state[k, 0] <= period:
                out[i] = kama_block(period, unstable, row, 0, x[i])
                i += 1
        if i >= end:
            continue
        c = np.int64(state[k, 0])
        c0 = c
        p0 = i
        sm = state[k, 1]
        kama = state[k, 2]
        tv = state[k, 3]
        slot = c % period
        px = state[k, 4 + (slot - 1 if slot > 0 else period - 1)]
        # The call's first period bars find x[c - period] in the ring, later ones in x.
        a_end = min(end, p0 + period)
        while i < a_end:
            v = x[i]
            xo = state[k, 4 + slot]  # x[c - period]
            sm = sm - abs(tv - xo)
            d = abs(v - px)
            sm += d
            if sm != 0.0 and d == 0.0 and _kama_flat(state[k], 4, period, c, v, xo):
                sm = 0.0
            tv = xo
            roc = v - xo
            if sm <= abs(roc):
                er = 1.0
            else:
                er = abs(roc / sm)
            sc = fma(er, _KAMA_DIFF, _KAMA_MAX)
            sc *= sc
            kama = fma(v - kama, sc, kama)
            out[i] = np.nan if c < lb else kama
            state[k, 4 + slot] = v
            px = v
            slot += 1
            if slot == period:
                slot = 0
            c += 1
            i += 1
        while i < end:
            v = x[i]
            xo = x[np.uint64(i - period)]  # unsigned (never negative): no wraparound code
            sm = sm - abs(tv - xo)
            d = abs(v - px)
            sm += d
            if sm != 0.0 and d == 0.0 and _flat_moves(x, i, period):
                sm = 0.0
            tv = xo
            roc = v - xo
            if sm <= abs(roc):
                er = 1.0
            else:
                er = abs(roc / sm)
            sc = fma(er, _KAMA_DIFF, _KAMA_MAX)
            sc *= sc
            kama = fma(v - kama, sc, kama)
            out[i] = np.nan if c < lb else kama
            px = v
            c += 1
            i += 1
        if end - p0 > period:
            for j in range(end - period, end):
                state[k, 4 + (c0 + j - p0) % period] = x[j]
        state[k, 0] = c0 + (end - p0)
        state[k, 1] = sm
        state[k, 2] = kama
        state[k, 3] = tv
    return 0


@njit(cache=True)
def t3_run(x, offsets, period, vfactor, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Tillson T3 with TA-Lib's T3 unstable period.

    ``ma._t3``'s block while its EMAs seed; once all six are seeded, the same operations
    with the six EMAs in locals."""
    bad = _check(offsets, x.size, state_in, state, 7)  # ma_width(T3, period)
    if bad != 0:
        return bad
    m6 = 6 * (period - 1)
    k = 2.0 / (period + 1.0)
    omk = 1.0 - k
    t = vfactor * vfactor
    c1 = 0 - t * vfactor
    c2 = 3.0 * (t - c1)
    c3 = fma(-6.0, t, -(3.0 * (vfactor - c1)))
    c4 = fma(3.0, t, fma(3.0, vfactor, 1.0) - c1)
    copy = state_in.ctypes.data != state.ctypes.data
    for kk in range(offsets.size - 1):
        _copy_row(state_in, state, kk, copy)
        start = offsets[kk]
        end = offsets[kk + 1]
        i = start
        if state[kk, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if period == 1:
            row = state[kk]  # a row view only off the hot path (views cost reference counting)
            while i < end:
                out[i] = copy_step(unstable, row, 0, x[i])
                i += 1
            continue
        if i < end and state[kk, 0] <= m6:
            row = state[kk]
            while i < end and state[kk, 0] <= m6:
                out[i] = _t3(period, unstable, vfactor, row, 0, x[i])  # out of line: a smaller first compile
                i += 1
        if i >= end:
            continue
        c = np.int64(state[kk, 0])
        c0 = c
        p0 = i
        e1 = state[kk, 1]
        e2 = state[kk, 2]
        e3 = state[kk, 3]
        e4 = state[kk, 4]
        e5 = state[kk, 5]
        e6 = state[kk, 6]
        lb = m6 + unstable
        while i < end:
            e1 = fma(omk, e1, k * x[i])
            e2 = fma(omk, e2, k * e1)
            e3 = fma(omk, e3, k * e2)
            e4 = fma(omk, e4, k * e3)
            e5 = fma(omk, e5, k * e4)
            e6 = fma(omk, e6, k * e5)
            if c < lb:
                out[i] = np.nan
            else:
                out[i] = fma(c4, e3, fma(c3, e4, fma(c1, e6, c2 * e5)))
            c += 1
            i += 1
        state[kk, 0] = c0 + (end - p0)
        state[kk, 1] = e1
        state[kk, 2] = e2
        state[kk, 3] = e3
        state[kk, 4] = e4
        state[kk, 5] = e5
        state[kk, 6] = e6
    return 0



@njit(cache=True)
def trix_run(x, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """TRIX (ta_TRIX.c): triple EMA chain (each EMA seeded with the mean of its first period
    inputs, fed from the previous EMA's first value, as TEMA's), output from bar 3*(period-1)+1:
    ``(e3 / previous e3 - 1) * 100``, 0.0 where the previous e3 is exactly 0.
    State: [count, ema1 block, ema2 block, ema3 block, previous e3]."""
    bad = _check(offsets, x.size, state_in, state, 8)
    if bad != 0:
        return bad
    lb = period - 1
    kk = 2.0 / (period + 1)
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        if i < end and (period == 1 or state[k, 5] < period):
            row = state[k]
            while i < end and (period == 1 or state[k, 5] < period):
                c = np.int64(state[k, 0])
                state[k, 0] = c + 1
                out[i] = np.nan
                e1 = ema_block(period, 0, row, 1, x[i])
                if c >= lb:
                    e2 = ema_block(period, 0, row, 3, e1)
                    if c >= 2 * lb:
                        e3 = ema_block(period, 0, row, 5, e2)
                        if c > 3 * lb:
                            prev = state[k, 7]
                            out[i] = (e3 / prev - 1.0) * 100.0 if prev != 0.0 else 0.0
                        if c >= 3 * lb:
                            state[k, 7] = e3
                i += 1
        if i >= end:
            continue
        # All three EMAs seeded: the same operations with the EMAs in locals.
        p0 = i
        e1 = state[k, 2]
        e2 = state[k, 4]
        e3 = state[k, 6]
        prev = state[k, 7]
        while i < end:
            e1 = fma(x[i] - e1, kk, e1)
            e2 = fma(e1 - e2, kk, e2)
            e3 = fma(e2 - e3, kk, e3)
            out[i] = (e3 / prev - 1.0) * 100.0 if prev != 0.0 else 0.0
            prev = e3
            i += 1
        n = end - p0
        state[k, 0] += n
        state[k, 1] += n
        state[k, 2] = e1
        state[k, 3] += n
        state[k, 4] = e2
        state[k, 5] += n
        state[k, 6] = e3
        state[k, 7] = prev
    return 0

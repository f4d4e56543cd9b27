"""Momentum kernels on running window sums: CCI, MFI, ULTOSC (part of the ``momentum``
family: ``kernels.momentum`` re-exports them, and definitions name them
``"momentum.<kind>_run"``).

Operation order, zero tests and NaN behaviour are TA-Lib 0.8.1's (ta_CCI.c, ta_MFI.c,
ta_ULTOSC.c of the build the ``ta-lib`` 0.8.2 wheel ships): CCI and MFI test "zero" relative to
the operands' magnitude (TA_IS_ZERO_SCALED: ``|v| <= 1e-14 * scale``), MFI and ULTOSC reset
their sums to exactly 0 after a full window of bars that contribute nothing. Rings are indexed
by slot counters advanced without a division per bar.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan3,
    _skip_leading_nan4,
    _true_range,
)


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
        slot = c % n
        while i < end:
            tp = (high[i] + low[i] + close[i]) / 3.0
            state[k, 1 + slot] = tp
            slot += 1
            if slot == n:
                slot = 0
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
        slot = (c - 1) % n
        while i < end:
            ps = 5 + slot
            ns = ps + n
            slot += 1
            if slot == n:
                slot = 0
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


# ------------------------------------------------------------------------------------ ULTOSC
@njit(cache=True, inline="always")
def _ultosc_add(c, lb, p1, p2, p3, cm, tr, null, a1, b1, a2, b2, a3, b3):  # type: ignore[no-untyped-def]
    """Bar c's terms into ULTOSC's sums (priming before bar lb), the zero-run rule and the
    output (NaN before lb). The caller then subtracts each window's oldest terms (from bar lb)."""
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
        return np.nan, null, a1, b1, a2, b2, a3, b3
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
    return 100.0 * (o / 7.0), null, a1, b1, a2, b2, a3, b3


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
    (slot = bar % p3). A symbol with more than p3 bars in the call runs on linear buffers of
    its terms (the ring copied in front, the last p3 terms copied back), fewer on the ring.
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
    longest = 0
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    nb = longest + p3 if longest > p3 else 0
    cmb = np.empty(nb)
    trb = np.empty(nb)
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
        if end - i > p3:
            # linear buffers: bar b's terms at b - c1 + p3, the ring's bars in front
            c1 = c
            for j in range(p3):
                b = c1 - p3 + j
                if b >= 1:
                    cmb[j] = state[k, rc + b % p3]
                    trb[j] = state[k, rt + b % p3]
            t = p3
            while i < end:
                lo = low[i]
                cm = close[i] - (lo if lo < pc else pc)
                tr = _true_range(high[i], lo, pc)
                pc = close[i]
                cmb[t] = cm
                trb[t] = tr
                o, null, a1, b1, a2, b2, a3, b3 = _ultosc_add(
                    c, lb, p1, p2, p3, cm, tr, null, a1, b1, a2, b2, a3, b3
                )
                if c >= lb:
                    # unsigned positions (never negative here): no negative-index wraparound code
                    j1 = np.uint64(t - p1 + 1)
                    j2 = np.uint64(t - p2 + 1)
                    j3 = np.uint64(t - p3 + 1)
                    a1 -= cmb[j1]
                    b1 -= trb[j1]
                    a2 -= cmb[j2]
                    b2 -= trb[j2]
                    a3 -= cmb[j3]
                    b3 -= trb[j3]
                out[i] = o
                c += 1
                i += 1
                t += 1
            for b in range(c - p3, c):
                state[k, rc + b % p3] = cmb[b - c1 + p3]
                state[k, rt + b % p3] = trb[b - c1 + p3]
        else:
            s0 = c % p3  # today's slot, then the slots of the bars leaving each window
            s1 = (c - p1 + 1) % p3
            s2 = (c - p2 + 1) % p3
            s3 = (c - p3 + 1) % p3
            while i < end:
                lo = low[i]
                cm = close[i] - (lo if lo < pc else pc)
                tr = _true_range(high[i], lo, pc)
                pc = close[i]
                state[k, rc + s0] = cm
                state[k, rt + s0] = tr
                o, null, a1, b1, a2, b2, a3, b3 = _ultosc_add(
                    c, lb, p1, p2, p3, cm, tr, null, a1, b1, a2, b2, a3, b3
                )
                if c >= lb:
                    a1 -= state[k, rc + s1]
                    b1 -= state[k, rt + s1]
                    a2 -= state[k, rc + s2]
                    b2 -= state[k, rt + s2]
                    a3 -= state[k, rc + s3]
                    b3 -= state[k, rt + s3]
                out[i] = o
                s0 = s0 + 1 if s0 + 1 < p3 else 0
                s1 = s1 + 1 if s1 + 1 < p3 else 0
                s2 = s2 + 1 if s2 + 1 < p3 else 0
                s3 = s3 + 1 if s3 + 1 < p3 else 0
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

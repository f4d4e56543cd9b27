"""Directional-movement kernels: ADX, ADXR, DX, PLUS_DI, MINUS_DI (Wilder), AROON, AROONOSC.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
The Wilder family shares ``_dm_tr`` (one bar of the directional-movement and true-range sums)
and ``_dx``; ADX/ADXR/DX/+DI/-DI all keep TA-Lib's sums of period-1 terms and no fma.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    _TA_EPS,
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _true_range,
)


# ------------------------------------------------------------------------ shared Wilder steps
@njit(cache=True, inline="always")
def _dm_tr(hv, lv, ph, pl, pc, mdm, pdm, trs, period, smooth):  # type: ignore[no-untyped-def]
    """One bar of TA-Lib's -DM, +DM and TR sums.

    DM rule: ``dp = h - prev h``, ``dm = prev l - l``; -DM = dm if dm > 0 and dp < dm, else +DM
    = dp if dp > 0 and dp > dm (ties and NaN: neither). While ``smooth`` is false (bars
    1..period-1) the sums just add; after, each sum S becomes ``S - S/period + x``.
    Returns (-DM sum, +DM sum, TR sum).
    """
    dp = hv - ph
    dm = pl - lv
    if smooth:
        mdm -= mdm / period
        pdm -= pdm / period
    if dm > 0 and dp < dm:
        mdm += dm
    elif dp > 0 and dp > dm:
        pdm += dp
    tr = _true_range(hv, lv, pc)
    if smooth:
        trs = trs - (trs / period) + tr
    else:
        trs += tr
    return mdm, pdm, trs


@njit(cache=True, inline="always")
def _tr_ok(trs):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8's ``!TA_IS_ZERO(TRs)`` as measured: false when |TRs| < 1e-14 *or NaN*."""
    return trs >= _TA_EPS or trs <= -_TA_EPS


@njit(cache=True, inline="always")
def _dx(mdm, pdm, trs, prev):  # type: ignore[no-untyped-def]
    """DX from the sums, or ``prev`` when TRs is ~0/NaN or the DI sum is ~0 (TA-Lib repeats the
    previous value there; NaN DI sums give NaN, measured)."""
    if _tr_ok(trs):
        mdi = 100.0 * (mdm / trs)
        pdi = 100.0 * (pdm / trs)
        sdi = mdi + pdi
        if not (-_TA_EPS < sdi and sdi < _TA_EPS):
            return 100.0 * (abs(mdi - pdi) / sdi)
    return prev


# --------------------------------------------------------------------------------------- ADX
@njit(cache=True, inline="always")
def _adx(high, low, close, offsets, period, unstable, state_in, state, out, ring, out_adxr):  # type: ignore[no-untyped-def]
    """ADX, and ADXR when ``ring`` (ring of ADX values) is true: see ``adx_run``/``adxr_run``."""
    nm1 = float(period - 1)
    lb = 2 * period - 1
    mask = lb + unstable
    width = 8 + (period - 1 if ring else 0)
    if low.size != high.size or close.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, width)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    m = period - 1
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c: int | np.int64 = np.int64(state[k, 0])  # int64 in numba; the union lets mypy accept `c = 1` below
        i = start
        if c == 0:
            while i < end and (np.isnan(high[i]) or np.isnan(low[i]) or np.isnan(close[i])):
                out[i] = np.nan
                if ring:
                    out_adxr[i] = np.nan
                i += 1
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
        slot = c % m
        if c == 0:
            ph = high[i]
            pl = low[i]
            pc = close[i]
            out[i] = np.nan
            if ring:
                out_adxr[i] = np.nan
                state[k, 8 + slot] = np.nan
                slot = 1 % m
            c = 1
            i += 1
        # Warm-up: bars 1..period-1 sum DM and TR, bars period..2*period-1 sum DX (a skipped bar
        # adds nothing).
        while i < end and c <= lb:
            hv = high[i]
            lv = low[i]
            mdm, pdm, trs = _dm_tr(hv, lv, ph, pl, pc, mdm, pdm, trs, period, c >= period)
            ph = hv
            pl = lv
            pc = close[i]
            cur = np.nan
            if c >= period:
                adx += _dx(mdm, pdm, trs, 0.0)
                if c == lb:
                    adx = adx / period
                    cur = adx
            out[i] = cur
            if ring:
                # ring slot t % m holds ADX's output at bar t - m (NaN before its first value)
                out_adxr[i] = np.nan
                state[k, 8 + slot] = cur
                slot += 1
                if slot == m:
                    slot = 0
            c += 1
            i += 1
        # Steady state: Wilder smoothing of DX; a skipped bar repeats the last ADX.
        while i < end:
            iu = np.uint64(i)  # unsigned (never negative): no wraparound code per read
            hv = high[iu]
            lv = low[iu]
            mdm, pdm, trs = _dm_tr(hv, lv, ph, pl, pc, mdm, pdm, trs, period, True)
            ph = hv
            pl = lv
            pc = close[iu]
            if _tr_ok(trs):
                mdi = 100.0 * (mdm / trs)
                pdi = 100.0 * (pdm / trs)
                sdi = mdi + pdi
                if not (-_TA_EPS < sdi and sdi < _TA_EPS):
                    adx = ((adx * nm1) + 100.0 * (abs(mdi - pdi) / sdi)) / period
            out[i] = adx
            if ring:
                # ADXR = (ADX[t] + ADX[t - m]) / 2 (may share ``out``: it overwrites ADX's value)
                if c >= mask + m:
                    out_adxr[i] = (adx + state[k, 8 + slot]) / 2.0
                else:
                    out_adxr[i] = np.nan
                state[k, 8 + slot] = adx
                slot += 1
                if slot == m:
                    slot = 0
                c += 1
            i += 1
        # TA-Lib's unstable period (ADX's setting) only masks: NaN before bar lb + unstable.
        for j in range(p, min(end, p + max(mask - c0, 0))):
            out[j] = np.nan
        state[k, 0] = c0 + (end - p)
        state[k, 1] = ph
        state[k, 2] = pl
        state[k, 3] = pc
        state[k, 4] = mdm
        state[k, 5] = pdm
        state[k, 6] = trs
        state[k, 7] = adx
    return 0


@njit(cache=True)
def adx_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Wilder ADX, TA-Lib's sums of period-1 DM/TR terms, no fma (unchanged since TA-Lib 0.4).

    ``unstable`` is TA-Lib's unstable period for ADX: same values, output from bar
    ``2*period - 1 + unstable``. State: [count, prev high, prev low, prev close, -DM sum,
    +DM sum, TR sum, DX sum (warm-up) or ADX].
    """
    return _adx(high, low, close, offsets, period, unstable, state_in, state, out, False, out)


@njit(cache=True)
def adxr_run(high, low, close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """ADXR = (ADX[t] + ADX[t - (period-1)]) / 2, from bar 3*period - 2.

    State: ADX's 8 columns, then a ring of the last period-1 ADX outputs (slot = bar % (period-1),
    NaN before ADX's first value).
    """
    return _adx(high, low, close, offsets, period, 0, state_in, state, out, True, out)


# ------------------------------------------------------------------------ DX, PLUS_DI, MINUS_DI
@njit(cache=True, inline="always")
def _dmi(high, low, close, offsets, period, unstable, state_in, state, out, mode):  # type: ignore[no-untyped-def]
    """+DI (mode 1), -DI (mode 2) or DX (mode 0), TA-Lib 0.8's ta_PLUS_DI.c/ta_MINUS_DI.c/ta_DX.c.

    Period > 1: the sums of ``_dm_tr`` over bars 1..period-1, smoothed from bar ``period`` on,
    output from bar ``period + unstable`` (the unstable bars run the same recursion).
    +DI = 100 * (+DM / TR), 0.0 when |TR| < 1e-14; DX as in ``_dx``, where the first output bar
    falls back to 0.0 and later ones repeat the previous DX. Period 1 (DI only; TA-Lib's own
    branch, no unstable period): the bar's own DM / TR, NOT times 100, 0.0 when that bar has
    no such DM or TR is ~0.

    State: [count, prev high, prev low, prev close, -DM sum, +DM sum, TR sum, last output].
    """
    lb = period + unstable
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
            while i < end and (np.isnan(high[i]) or np.isnan(low[i]) or np.isnan(close[i])):
                out[i] = np.nan
                i += 1
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
        last = state[k, 7]
        while i < end and (c < lb or period == 1):
            hv = high[i]
            lv = low[i]
            if c == 0:
                out[i] = np.nan
            elif period == 1:
                dp = hv - ph
                dm = pl - lv
                tr = _true_range(hv, lv, pc)
                v = 0.0
                if mode == 1:
                    if dp > 0 and dp > dm and not (-_TA_EPS < tr and tr < _TA_EPS):
                        v = dp / tr
                elif dm > 0 and dp < dm and not (-_TA_EPS < tr and tr < _TA_EPS):
                    v = dm / tr
                out[i] = v
            else:
                mdm, pdm, trs = _dm_tr(hv, lv, ph, pl, pc, mdm, pdm, trs, period, c >= period)
                if c < lb:
                    out[i] = np.nan
                elif mode == 0:
                    last = _dx(mdm, pdm, trs, last)
                    out[i] = last
                elif not _tr_ok(trs):
                    out[i] = 0.0
                elif mode == 1:
                    out[i] = 100.0 * (pdm / trs)
                else:
                    out[i] = 100.0 * (mdm / trs)
            ph = hv
            pl = lv
            pc = close[i]
            c += 1
            i += 1
        # Steady state (period > 1, bar >= period + unstable): the same operations, no warm-up
        # branches in the loop.
        while i < end:
            iu = np.uint64(i)  # unsigned (never negative): no wraparound code per read
            hv = high[iu]
            lv = low[iu]
            mdm, pdm, trs = _dm_tr(hv, lv, ph, pl, pc, mdm, pdm, trs, period, True)
            if mode == 0:
                last = _dx(mdm, pdm, trs, last)
                v = last
            elif not _tr_ok(trs):
                v = 0.0
            elif mode == 1:
                v = 100.0 * (pdm / trs)
            else:
                v = 100.0 * (mdm / trs)
            out[iu] = v
            ph = hv
            pl = lv
            pc = close[iu]
            i += 1
        state[k, 0] = c0 + (end - p)
        state[k, 1] = ph
        state[k, 2] = pl
        state[k, 3] = pc
        state[k, 4] = mdm
        state[k, 5] = pdm
        state[k, 6] = trs
        state[k, 7] = last
    return 0


@njit(cache=True)
def dx_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Directional movement index; see ``_dmi``."""
    return _dmi(high, low, close, offsets, period, unstable, state_in, state, out, 0)


@njit(cache=True)
def plus_di_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Plus directional indicator; see ``_dmi``."""
    return _dmi(high, low, close, offsets, period, unstable, state_in, state, out, 1)


@njit(cache=True)
def minus_di_run(high, low, close, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """Minus directional indicator; see ``_dmi``."""
    return _dmi(high, low, close, offsets, period, unstable, state_in, state, out, 2)


# ---------------------------------------------------------------------------- AROON, AROONOSC
@njit(cache=True, inline="always")
def _aroon(high, low, offsets, period, state_in, state, out_a, out_b, osc):  # type: ignore[no-untyped-def]
    """Aroon over the window of period+1 bars ending at each bar, TA-Lib's ta_AROON.c scan.

    The lowest low / highest high of the window and their bar indices are kept; a new bar
    replaces them when ``<=`` / ``>=`` (ties go to the latest bar, NaN never wins), and when the
    kept one leaves the window the window is rescanned from its oldest bar. Outputs
    ``down = f*(period - (t - low idx))``, ``up = f*(period - (t - high idx))`` with
    ``f = 100/period``, or (``osc``) ``f*(high idx - low idx)``, from bar ``period``.

    State: [count, low idx, low, high idx, high, ring of the last period lows, then highs].
    """
    n = period
    f = 100.0 / period
    if low.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 5 + 2 * n)
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
            while i < end and (np.isnan(high[i]) or np.isnan(low[i])):
                out_a[i] = np.nan
                if not osc:
                    out_b[i] = np.nan
                i += 1
            state[k, 1] = -1.0
            state[k, 3] = -1.0
        if i >= end:
            continue
        # int64 in numba; the union lets mypy accept the int indices assigned below
        lo_i: int | np.int64 = np.int64(state[k, 1])
        lo = state[k, 2]
        hi_i: int | np.int64 = np.int64(state[k, 3])
        hi = state[k, 4]
        p = i
        c0 = c
        slot = c % n  # ring slot of bar c, and of bar c - n (the window's oldest)
        while i < end:
            lv = low[i]
            hv = high[i]
            if c >= n:
                tr = c - n
                # a bar before this call is in the ring, a later one in the input (j - c0 bars after p)
                if lo_i < tr:
                    lo_i = tr
                    lo = state[k, 5 + slot] if tr < c0 else low[p + (tr - c0)]
                    j = tr + 1
                    while j < c and j < c0:
                        t = state[k, 5 + j % n]
                        if t <= lo:
                            lo_i = j
                            lo = t
                        j += 1
                    while j < c:
                        t = low[p + (j - c0)]
                        if t <= lo:
                            lo_i = j
                            lo = t
                        j += 1
                    if lv <= lo:
                        lo_i = c
                        lo = lv
                elif lv <= lo:
                    lo_i = c
                    lo = lv
                if hi_i < tr:
                    hi_i = tr
                    hi = state[k, 5 + n + slot] if tr < c0 else high[p + (tr - c0)]
                    j = tr + 1
                    while j < c and j < c0:
                        t = state[k, 5 + n + j % n]
                        if t >= hi:
                            hi_i = j
                            hi = t
                        j += 1
                    while j < c:
                        t = high[p + (j - c0)]
                        if t >= hi:
                            hi_i = j
                            hi = t
                        j += 1
                    if hv >= hi:
                        hi_i = c
                        hi = hv
                elif hv >= hi:
                    hi_i = c
                    hi = hv
                if osc:
                    out_a[i] = f * (hi_i - lo_i)
                else:
                    out_a[i] = f * (n - (c - lo_i))
                    out_b[i] = f * (n - (c - hi_i))
            else:
                out_a[i] = np.nan
                if not osc:
                    out_b[i] = np.nan
            slot += 1
            if slot == n:
                slot = 0
            c += 1
            i += 1
        for j in range(max(p, end - n), end):  # the ring keeps the last n bars
            s = (c0 + (j - p)) % n
            state[k, 5 + s] = low[j]
            state[k, 5 + n + s] = high[j]
        state[k, 0] = c
        state[k, 1] = lo_i
        state[k, 2] = lo
        state[k, 3] = hi_i
        state[k, 4] = hi
    return 0


@njit(cache=True)
def aroon_run(high, low, offsets, period, state_in, state, out_down, out_up):  # type: ignore[no-untyped-def]
    """Aroon down and up; see ``_aroon``."""
    return _aroon(high, low, offsets, period, state_in, state, out_down, out_up, False)


@njit(cache=True)
def aroonosc_run(high, low, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Aroon oscillator (up - down); see ``_aroon``."""
    return _aroon(high, low, offsets, period, state_in, state, out, out, True)

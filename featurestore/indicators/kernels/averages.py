"""Moving-average kernels: SMA, EMA (with TA-Lib's unstable period), BBANDS, and the MA family
(WMA, DEMA, TEMA, TRIMA, KAMA, T3, MA by matype) and APO, PPO, TRIX built on the blocks of
``kernels/ma.py``.

The kernels with a ``matype`` parameter (MA, APO, PPO, BBANDS) are ``ma.MatypeKernel``s: one
variant per matype, compiled on first use of that matype, which runs that matype's own kernel
(``sma_run``, ``wma_run``, ... on the MA's block of the state row: same layout, same bits).

Kernels follow the contract in ``common`` and ``defs/__init__.py``; operation order is TA-Lib 0.8's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.averages_single import (
    dema_run,
    kama_run,
    t3_run,
    tema_run,
    trima_run,
    trix_run,
    wma_run,
)
from featurestore.indicators.kernels.common import _check, _copy_row, _skip_leading_nan1, fma
from featurestore.indicators.kernels.ma import (
    DEMA,
    EMA,
    KAMA,
    MAMA,
    SMA,
    T3,
    TEMA,
    TRIMA,
    WMA,
    MatypeKernel,
    ma_lookback,
    ma_step,
    ma_width,
    twin,
    variant,
)
from featurestore.indicators.kernels.mama import ma_mama_run


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
def ema_run(x, offsets, period, unstable, state_in, state, out):  # type: ignore[no-untyped-def]
    """EMA seeded by the SMA of the first period bars. State: [count, sum (warm-up) or EMA].

    ``unstable`` is TA-Lib's unstable period (``TA_SetUnstablePeriod(TA_FUNC_UNST_EMA, u)``):
    ta_EMA.c's lookback becomes ``period - 1 + u`` and it still seeds at bar period-1 and runs
    the same recursion over the unstable bars, so the values are those of u = 0, NaN before
    bar ``period - 1 + u``.
    """
    kk = 2.0 / (period + 1)
    lb = period - 1 + unstable
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
        # The unstable period: bars p.. with bar index c0 + (i - p) < lb give NaN.
        for j in range(p, min(end, p + max(lb - c0, 0))):
            out[j] = np.nan
        state[k, 0] = c0 + (end - p)
        state[k, 1] = s
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
def _cols_out(state, c0, block):  # type: ignore[no-untyped-def]
    """``block[:] = state[:, c0:]`` as loops (numba's slice assignment compiles its shape-error
    message formatting, seconds of first-use compile)."""
    for k in range(block.shape[0]):
        for j in range(block.shape[1]):
            block[k, j] = state[k, c0 + j]


@njit(cache=True)
def _cols_in(block, state, c0):  # type: ignore[no-untyped-def]
    """``state[:, c0:] = block`` as loops (see ``_cols_out``)."""
    for k in range(block.shape[0]):
        for j in range(block.shape[1]):
            state[k, c0 + j] = block[k, j]


@njit(cache=True)
def _begin(x, offsets, width, state_in, state):  # type: ignore[no-untyped-def]
    """``_check`` the call, then start every symbol's row from ``state_in`` (for the kernels that
    run a whole pass per MA block before their own)."""
    bad = _check(offsets, x.size, state_in, state, width)
    if bad == 0:
        copy = state_in.ctypes.data != state.ctypes.data
        for k in range(offsets.size - 1):
            _copy_row(state_in, state, k, copy)
    return bad


@njit(cache=True)
def _bbands_std(x, offsets, period, nbdevup, nbdevdn, lb, state, out_upper, out_middle, out_lower):  # type: ignore[no-untyped-def]
    """BBANDS with a non-SMA middle band, after the MA (lookback ``lb``) wrote ``out_middle``:
    TA-Lib runs TA_STDDEV over the MA's output range, so the std's sums start at bar lb -
    (period - 1) of the first valid bar (its own stream index ``cs = count - b0``). The sums of
    ``_bbands_sma`` (same state columns 2..5 and ring, slot = cs % (period-1)), in locals per
    symbol; after a call's first period-1 std bars the value leaving the window is read from x."""
    m = period - 1
    inv = 1.0 / period
    reset = 32 * period
    win = np.empty(period)
    b0 = lb - m
    for k in range(offsets.size - 1):
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        c = np.int64(state[k, 0])
        if c == 0:
            i = _skip_leading_nan1(x, i, end, out_middle)
            for j in range(start, i):
                out_upper[j] = np.nan
                out_lower[j] = np.nan
        while i < end and c < b0:
            out_upper[i] = np.nan
            out_middle[i] = np.nan
            out_lower[i] = np.nan
            c += 1
            i += 1
        if i >= end:
            state[k, 0] = c
            continue
        p = i  # the call's first bar in the std's stream
        cs0 = c - b0
        s1 = state[k, 2]
        s2 = state[k, 3]
        kk = state[k, 4]
        cnt = np.int64(state[k, 5])
        if cs0 == 0:
            kk = x[i]
            cnt = reset
        slot = cs0 % m
        a_end = min(end, p + m)
        while i < end:
            v = x[i]
            d = v - kk
            s1 += d
            s2 += d * d
            in_ring = i < a_end
            sd = np.nan
            if c - b0 >= m:
                mean = inv * s1
                var = inv * s2 - mean * mean
                if in_ring:
                    xo = state[k, 6 + slot]
                else:
                    xo = x[i - m]
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
                        for j in range(period):  # one argument type: one compile
                            win[j] = x[i - m + j]
                        kk, s1, s2 = _bb_recentre(win, inv)
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
                sd = 0.0 if zero or var == 0.0 else math.sqrt(var)
            if in_ring:
                state[k, 6 + slot] = v
                slot += 1
                if slot == m:
                    slot = 0
            if c >= lb:
                _bb_bands(out_middle[i], sd, nbdevup, nbdevdn, i, out_upper, out_middle, out_lower)
            else:
                out_upper[i] = np.nan
                out_middle[i] = np.nan
                out_lower[i] = np.nan
            c += 1
            i += 1
        if end - p > m:
            for j in range(end - m, end):
                state[k, 6 + (cs0 + j - p) % m] = x[j]
        state[k, 0] = c
        state[k, 2] = s1
        state[k, 3] = s2
        state[k, 4] = kk
        state[k, 5] = cnt
    return 0


@njit(cache=True)
def _bbands_sma(x, offsets, period, nbdevup, nbdevdn, state_in, state, out_upper, out_middle, out_lower):  # type: ignore[no-untyped-def]
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
                        for j in range(period):  # one argument type: one compile
                            win[j] = x[i - m + j]
                        kk, s1, s2 = _bb_recentre(win, inv)
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


def _bbands_variant(mt: int) -> object:
    def bbands_run(x, offsets, period, nbdevup, nbdevdn, matype, state_in, state, out_upper, out_middle, out_lower):  # type: ignore[no-untyped-def]
        if mt == SMA:
            return _bbands_sma(x, offsets, period, nbdevup, nbdevdn, state_in, state, out_upper, out_middle, out_lower)
        bad = _begin(x, offsets, period + 5 + ma_width(mt, period), state_in, state)
        if bad != 0:
            return bad
        block = np.empty((state.shape[0], state.shape[1] - period - 5))
        _cols_out(state, period + 5, block)  # a copy (never a view of ``state``): contiguous
        _ma_into(mt, x, offsets, period, block, block, out_middle, False)  # period >= 2
        _cols_in(block, state, period + 5)
        lb = max(ma_lookback(mt, period, 0), period - 1)  # MAMA's 32 < period - 1: TA-Lib's max
        return _bbands_std(x, offsets, period, nbdevup, nbdevdn, lb, state, out_upper, out_middle, out_lower)

    return variant(bbands_run, "bbands_run", (mt,))


#: Bollinger bands: middle = TA_MA(period, matype), population std with TA-Lib 0.8's shifted,
#: re-centred sums (``_bbands_sma`` for matype 0; else ``_ma_into`` then ``_bbands_std``).
#: State (matype 0): [count, T, S1, S2, K, re-centre countdown, ring of the last period-1
#: inputs]; other matypes append the MA block (``T`` unused).
bbands_run = MatypeKernel("bbands_run", _bbands_variant, (5,))


# ------------------------------------------------------- MA family (blocks in kernels/ma.py)
@njit(cache=True)
def _ma_copy(x, offsets, width, state_in, state, out):  # type: ignore[no-untyped-def]
    """TA_MA's period-1 copy of the input (``ma.copy_step`` with unstable 0 on a block of
    ``width`` columns: its count, the rest unused)."""
    bad = _check(offsets, x.size, state_in, state, width)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        state[k, 0] += end - i
        while i < end:
            out[i] = x[i]
            i += 1
    return 0


@njit(cache=True)
def _ma_blocks(x, offsets, matype, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """One ``ma.ma_step`` block per symbol at state column 0 (its count is the row's count);
    ``matype`` at run time (every block compiled): the matypes without a kernel of their own."""
    bad = _check(offsets, x.size, state_in, state, ma_width(matype, period))
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        i = start
        if state[k, 0] == 0:
            i = _skip_leading_nan1(x, i, end, out)
        row = state[k]
        while i < end:
            out[i] = ma_step(matype, period, 0, 0.7, row, 0, x[i])
            i += 1
    return 0


# The matypes' own kernels, callable with any state layout (see ``ma.twin``).
_sma_k = twin(sma_run)
_ema_k = twin(ema_run)
_wma_k = twin(wma_run)
_dema_k = twin(dema_run)
_tema_k = twin(tema_run)
_trima_k = twin(trima_run)
_kama_k = twin(kama_run)
_t3_k = twin(t3_run)


# Kept small (calls only): numba's inlining copies the callee's IR once per block, so a large
# inlined body makes the compile slow.
@njit(inline="always")
def _ma_into(matype, x, offsets, period, state_in, state, out, period1):  # type: ignore[no-untyped-def]
    """TA_MA(period, matype) with TA-Lib's default unstable periods (and T3's 0.7) into ``out``;
    state: one ``kernels/ma.py`` block per row. ``matype`` must be a compile-time constant (a
    ``MatypeKernel`` variant's): only its branch is compiled. Period >= 2 runs the matype's own
    kernel (the same block layout and bits, the sums in locals); period 1 is TA_MA's copy."""
    if period1 and period == 1:  # a literal False (callers whose period is >= 2) compiles no copy
        return _ma_copy(x, offsets, ma_width(matype, 1), state_in, state, out)
    if matype == SMA:
        return _sma_k(x, offsets, period, state_in, state, out)
    if matype == EMA:
        return _ema_k(x, offsets, period, 0, state_in, state, out)
    if matype == WMA:
        return _wma_k(x, offsets, period, state_in, state, out)
    if matype == DEMA:
        return _dema_k(x, offsets, period, state_in, state, out)
    if matype == TEMA:
        return _tema_k(x, offsets, period, state_in, state, out)
    if matype == TRIMA:
        return _trima_k(x, offsets, period, state_in, state, out)
    if matype == KAMA:
        return _kama_k(x, offsets, period, 0, state_in, state, out)
    if matype == T3:
        return _t3_k(x, offsets, period, 0.7, 0, state_in, state, out)
    if matype == MAMA:  # kernels/mama.py's block in a loop of its own
        return ma_mama_run(x, offsets, state_in, state, out)
    return _ma_blocks(x, offsets, matype, period, state_in, state, out)


def _ma_variant(mt: int) -> object:
    def ma_run(x, offsets, period, matype, state_in, state, out):  # type: ignore[no-untyped-def]
        return _ma_into(mt, x, offsets, period, state_in, state, out, True)

    return variant(ma_run, "ma_run", (mt,))


#: TA_MA(period, matype): the matype's own kernel (``_ma_into``). State: one ``kernels/ma.py`` block.
ma_run = MatypeKernel("ma_run", _ma_variant, (3,))


# --------------------------------------------------------------------------- APO, PPO, TRIX
@njit(cache=True)
def _po_combine(out, start, slow, n, pct):  # type: ignore[no-untyped-def]
    """One symbol's ``out[start:start+n]`` (the fast MA) becomes APO = fast - slow, or PPO =
    (fast - slow) / slow * 100 with 0.0 where the slow MA is within TA_IS_ZERO (|slow| < 1e-14)."""
    if pct:
        for j in range(n):
            s = slow[j]
            if -1e-14 < s and s < 1e-14:
                out[start + j] = 0.0
            else:
                out[start + j] = (out[start + j] - s) / s * 100.0
    else:
        for j in range(n):
            out[start + j] = out[start + j] - slow[j]
    return 0


def _po_variant(name: str, mt: int, pct: bool) -> object:
    """TA-Lib's APO/PPO (fast <= slow, swapped by the definition as TA-Lib does): two TA_MA
    (``_ma_into``) fed from the first valid bar, each on a copy of its blocks of the state rows,
    the slow one into a buffer, then ``_po_combine``. Long calls run symbol by symbol (the
    buffer stays in cache); short ones (a few bars per symbol, e.g. one new bar) run all
    symbols in one group, so the MA kernels are called twice per call, not per symbol.
    State: [count, fast MA block, slow MA block] (every count is the number of bars consumed)."""
    def po_run(x, offsets, fast, slow, matype, state_in, state, out):  # type: ignore[no-untyped-def]
        wf = ma_width(mt, fast)
        bad = _begin(x, offsets, 1 + wf + ma_width(mt, slow), state_in, state)
        if bad != 0:
            return bad
        ns = offsets.size - 1
        ws = state.shape[1] - 1 - wf
        per_symbol = x.size > 4 * ns
        if per_symbol:
            groups = ns
            rows = 1
            longest = 0
            for k in range(ns):
                longest = max(longest, offsets[k + 1] - offsets[k])
        else:
            groups = 1
            rows = ns
            longest = x.size
        buf = np.empty(longest)
        fb = np.empty((rows, wf))
        sb = np.empty((rows, ws))
        goff = np.empty(rows + 1, np.int64)
        for g in range(groups):
            k0 = g if per_symbol else 0
            start = offsets[k0]
            end = offsets[k0 + rows]
            for r in range(rows + 1):
                goff[r] = offsets[k0 + r] - start
            for r in range(rows):
                for j in range(wf):
                    fb[r, j] = state[k0 + r, 1 + j]
                for j in range(ws):
                    sb[r, j] = state[k0 + r, 1 + wf + j]
            _ma_into(mt, x[start:end], goff, fast, fb, fb, out[start:end], False)  # periods >= 2
            _ma_into(mt, x[start:end], goff, slow, sb, sb, buf, False)
            for r in range(rows):
                for j in range(wf):
                    state[k0 + r, 1 + j] = fb[r, j]
                for j in range(ws):
                    state[k0 + r, 1 + wf + j] = sb[r, j]
                state[k0 + r, 0] = fb[r, 0]
            _po_combine(out, start, buf, end - start, pct)
        return 0

    return variant(po_run, name, (mt,))


#: Absolute price oscillator: MA(fast) - MA(slow), one TA-Lib matype for both.
apo_run = MatypeKernel("apo_run", lambda mt: _po_variant("apo_run", mt, False), (4,))
#: Percentage price oscillator: (MA(fast) - MA(slow)) / MA(slow) * 100.
ppo_run = MatypeKernel("ppo_run", lambda mt: _po_variant("ppo_run", mt, True), (4,))

__all__ = ["apo_run", "bbands_run", "dema_run", "ema_run", "kama_run", "ma_run", "ppo_run", "sma_run", "t3_run",
           "tema_run", "trima_run", "trix_run", "wma_run"]

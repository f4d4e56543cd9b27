"""ML-transform kernels: logret, ret, zscore, rvol, vwap, mindist, maxdist, rank.

Kernels follow the contract in ``common`` and ``defs/__init__.py``; the formulas, ranges and
NaN rules are documented in ``defs/transforms.py``. Windowed transforms keep the window in a
ring in the state (slot ``bar_index % n``) and re-sum it every bar, sequentially from the
oldest bar to the newest, so there is no running sum to drift and an append executes exactly
the operations of a full recompute. Compiled with ``error_model="numpy"``: a division by zero
gives IEEE inf/NaN (documented in defs) instead of raising. ``clear_at`` (state column 1) is the bar count from which
no non-finite input is left in the window: outputs are NaN before it.

Reusable helpers for other families: ``ring_sum`` (chronological sum of a ring), ``ring_min``,
``ring_max``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import (
    BAD_INPUT_LENGTHS,
    _check,
    _copy_row,
    _skip_leading_nan1,
    _skip_leading_nan4,
)


# ------------------------------------------------------------------------------- ring helpers
@njit(cache=True, inline="always")
def ring_sum(row, base, n, oldest):  # type: ignore[no-untyped-def]
    """Sum of ``row[base:base+n]`` in chronological order (slot ``oldest`` first), sequentially."""
    acc = 0.0
    for j in range(base + oldest, base + n):
        acc += row[j]
    for j in range(base, base + oldest):
        acc += row[j]
    return acc


@njit(cache=True, inline="always")
def ring_min(row, base, n):  # type: ignore[no-untyped-def]
    """Smallest of ``row[base:base+n]`` (order does not matter: min is exact)."""
    m = row[base]
    for j in range(base + 1, base + n):
        if row[j] < m:
            m = row[j]
    return m


@njit(cache=True, inline="always")
def ring_max(row, base, n):  # type: ignore[no-untyped-def]
    """Largest of ``row[base:base+n]``."""
    m = row[base]
    for j in range(base + 1, base + n):
        if row[j] > m:
            m = row[j]
    return m


# ------------------------------------------------------------------------------ returns
@njit(cache=True, inline="always")
def _lag_run(close, offsets, k, state_in, state, out, log):  # type: ignore[no-untyped-def]
    """logret (``log``) or ret. State: [count, ring of the last k closes]."""
    bad = _check(offsets, close.size, state_in, state, k + 1)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for s in range(offsets.size - 1):
        _copy_row(state_in, state, s, copy)
        end = offsets[s + 1]
        row = state[s]
        c = np.int64(row[0])
        i = offsets[s]
        if c == 0:
            i = _skip_leading_nan1(close, i, end, out)
        slot = 1 + c % k
        while i < end:
            x = close[i]
            old = row[slot]
            row[slot] = x
            if c < k or not (math.isfinite(x) and math.isfinite(old)):
                out[i] = np.nan
            elif log:
                out[i] = math.log(x / old)
            else:
                out[i] = x / old - 1.0
            slot += 1
            if slot > k:
                slot = 1
            c += 1
            i += 1
        row[0] = c
    return 0


@njit(cache=True, error_model="numpy")
def logret_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """``log(c[t] / c[t-period])``; NaN unless both closes are finite."""
    return _lag_run(close, offsets, period, state_in, state, out, True)


@njit(cache=True, error_model="numpy")
def ret_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """``c[t] / c[t-period] - 1``; NaN unless both closes are finite."""
    return _lag_run(close, offsets, period, state_in, state, out, False)


# ------------------------------------------------------------------------- close windows
@njit(cache=True, inline="always")
def _zscore(row, n, x, oldest):  # type: ignore[no-untyped-def]
    """Population z-score of ``x`` (the newest value) in the ring ``row[2:2+n]``, shifted by x."""
    acc = 0.0
    for j in range(2 + oldest, 2 + n):
        acc += row[j] - x
    for j in range(2, 2 + oldest):
        acc += row[j] - x
    m = acc / n
    acc = 0.0
    for j in range(2 + oldest, 2 + n):
        d = (row[j] - x) - m
        acc += d * d
    for j in range(2, 2 + oldest):
        d = (row[j] - x) - m
        acc += d * d
    sd = math.sqrt(acc / n)
    if sd == 0.0:
        return np.nan
    return -m / sd


@njit(cache=True, inline="always")
def _rank(row, n, x):  # type: ignore[no-untyped-def]
    below = 0
    equal = 0
    for j in range(2, 2 + n):
        v = row[j]
        if v < x:
            below += 1
        elif v == x:
            equal += 1
    return (below + 0.5 * (equal - 1)) / (n - 1)


@njit(cache=True, inline="always")
def _window_run(close, offsets, n, state_in, state, out, what):  # type: ignore[no-untyped-def]
    """A transform of the last n closes: ``what`` 0 zscore, 1 mindist, 2 maxdist, 3 rank.

    State: [count, clear_at, ring of the last n closes]."""
    bad = _check(offsets, close.size, state_in, state, n + 2)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for s in range(offsets.size - 1):
        _copy_row(state_in, state, s, copy)
        end = offsets[s + 1]
        row = state[s]
        c = np.int64(row[0])
        clear = np.int64(row[1])
        i = offsets[s]
        if c == 0:
            i = _skip_leading_nan1(close, i, end, out)
        slot = c % n
        while i < end:
            x = close[i]
            row[2 + slot] = x
            slot += 1
            if slot == n:
                slot = 0
            if not math.isfinite(x):
                clear = c + n
            if c < n - 1 or c < clear:
                out[i] = np.nan
            elif what == 0:
                out[i] = _zscore(row, n, x, slot)  # slot now points at the oldest value
            elif what == 1:
                out[i] = x / ring_min(row, 2, n) - 1.0
            elif what == 2:
                out[i] = x / ring_max(row, 2, n) - 1.0
            else:
                out[i] = _rank(row, n, x)
            c += 1
            i += 1
        row[0] = c
        row[1] = clear
    return 0


@njit(cache=True, error_model="numpy")
def zscore_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Population z-score of close over the last ``period`` closes (see defs for the form)."""
    return _window_run(close, offsets, period, state_in, state, out, 0)


@njit(cache=True, error_model="numpy")
def mindist_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """``c[t] / min(last period closes) - 1``."""
    return _window_run(close, offsets, period, state_in, state, out, 1)


@njit(cache=True, error_model="numpy")
def maxdist_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """``c[t] / max(last period closes) - 1``."""
    return _window_run(close, offsets, period, state_in, state, out, 2)


@njit(cache=True, error_model="numpy")
def rank_run(close, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Average-rank of c[t] among the last ``period`` closes, scaled to [0, 1]."""
    return _window_run(close, offsets, period, state_in, state, out, 3)


# ------------------------------------------------------------------------------------ rvol
@njit(cache=True, error_model="numpy")
def rvol_run(close, offsets, period, annualisation, state_in, state, out):  # type: ignore[no-untyped-def]
    """Sample std (ddof=1) of the last ``period`` log returns, times sqrt(annualisation).

    State: [count, clear_at, previous close, ring of the last period returns (slot
    ``bar_index % period``; bar 0 has no return)]."""
    n = period
    bad = _check(offsets, close.size, state_in, state, n + 3)
    if bad != 0:
        return bad
    scale = math.sqrt(annualisation)
    copy = state_in.ctypes.data != state.ctypes.data
    for s in range(offsets.size - 1):
        _copy_row(state_in, state, s, copy)
        end = offsets[s + 1]
        row = state[s]
        c = np.int64(row[0])
        clear = np.int64(row[1])
        pc = row[2]
        i = offsets[s]
        if c == 0:
            i = _skip_leading_nan1(close, i, end, out)
        slot = c % n
        while i < end:
            x = close[i]
            if c > 0:
                row[3 + slot] = math.log(x / pc)
            pc = x
            slot += 1
            if slot == n:
                slot = 0
            if not math.isfinite(x):
                clear = c + n + 1
            if c < n or c < clear:
                out[i] = np.nan
            else:
                m = ring_sum(row, 3, n, slot) / n
                acc = 0.0
                for j in range(3 + slot, 3 + n):
                    d = row[j] - m
                    acc += d * d
                for j in range(3, 3 + slot):
                    d = row[j] - m
                    acc += d * d
                out[i] = math.sqrt(acc / (n - 1)) * scale
            c += 1
            i += 1
        row[0] = c
        row[1] = clear
        row[2] = pc
    return 0


# ------------------------------------------------------------------------------------ vwap
@njit(cache=True, error_model="numpy")
def vwap_run(high, low, close, volume, offsets, period, state_in, state, out):  # type: ignore[no-untyped-def]
    """Rolling VWAP with the typical price (h + l + c) / 3; NaN when the window's volume is 0.

    State: [count, clear_at, ring of price * volume, ring of volume] (n slots each)."""
    n = period
    if low.size != high.size or close.size != high.size or volume.size != high.size:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, high.size, state_in, state, 2 * n + 2)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    for s in range(offsets.size - 1):
        _copy_row(state_in, state, s, copy)
        end = offsets[s + 1]
        row = state[s]
        c = np.int64(row[0])
        clear = np.int64(row[1])
        i = offsets[s]
        if c == 0:
            i = _skip_leading_nan4(high, low, close, volume, i, end, out)
        slot = c % n
        while i < end:
            h = high[i]
            lo = low[i]
            x = close[i]
            v = volume[i]
            row[2 + slot] = (h + lo + x) / 3.0 * v
            row[2 + n + slot] = v
            slot += 1
            if slot == n:
                slot = 0
            if not (math.isfinite(h) and math.isfinite(lo) and math.isfinite(x) and math.isfinite(v)):
                clear = c + n
            if c < n - 1 or c < clear:
                out[i] = np.nan
            else:
                vol = ring_sum(row, 2 + n, n, slot)
                if vol == 0.0:
                    out[i] = np.nan
                else:
                    out[i] = ring_sum(row, 2, n, slot) / vol
            c += 1
            i += 1
        row[0] = c
        row[1] = clear
    return 0

"""Generic moving-average building blocks by TA-Lib ``matype``, one bar at a time.

Any kernel that needs "an MA of type ``matype``" (MA, BBANDS, APO/PPO, STOCH's slowk/slowd,
STOCHRSI's fastd, ...) keeps that MA's state as a contiguous slice of its own state row and
advances it one bar per call. Each block reproduces TA-Lib 0.8's ``TA_MA(period, matype)``
bit for bit (operation order, seeds and ``fma`` exactly as TA-Lib's C code).

API (all ``@njit``; ``s`` is ONE state row, a 1-D float64 array such as ``state[k]``)::

    ma_width(matype, period) -> int          # columns the block occupies (its own count first)
    ma_lookback(matype, period, unstable) -> int   # TA-Lib's TA_MA lookback (+ unstable)
    ma_step(matype, period, unstable, vfactor, s, o, x) -> float
    ma_step_raw(...)   # the same without TA_MA's period-1 copy (TA_TRIMA(1) is not a copy)
    ma_pass(matype, period, unstable, vfactor, st, k, o, src, dst, a, b)  # ma_step over src[a:b]
    MatypeKernel(name, build, at)   # a kernel compiled per matype value (see its docstring)

``ma_step`` is inlined into its caller: call it with ``matype`` a compile-time constant (a
closure constant of a ``MatypeKernel`` variant), so only that matype's block is compiled and
the per-bar loop has no matype branch.

- ``matype``: 0 SMA, 1 EMA, 2 WMA, 3 DEMA, 4 TEMA, 5 TRIMA, 6 KAMA, 7 MAMA, 8 T3 (TA-Lib's
  ``TA_MAType``). MAMA (7) is ``kernels/mama.py``'s block with TA_MA's fixed limits 0.5 and
  0.05 (TA_MA ignores ``period`` for it, except that period 1 is the copy below).
- ``period`` >= 1. ``period == 1`` is TA_MA's copy of the input (lookback ``unstable``, i.e. 0
  for TA_MA itself), for every matype.
- ``unstable``: TA-Lib's unstable period of the matype's own function id (EMA for 1/3/4 --
  TA-Lib's DEMA/TEMA use EMA's --, KAMA for 6, T3 for 8); pass 0 to get exactly ``TA_MA``
  with TA-Lib's default settings. ``vfactor`` is T3's volume factor (TA_MA uses 0.7).
- ``s[o : o + ma_width(matype, period)]`` is the block; ``s[o]`` is the number of values the
  block has consumed (start from an all-zero slice). ``ma_step`` consumes ``x``, updates the
  slice and returns the MA at this bar, or NaN while ``s[o]`` (before the call) is below
  ``ma_lookback``. Feed it from the first bar the TA-Lib function would give TA_MA (e.g. the
  first valid fast-k for STOCH's slowk): TA_MA starts its own begidx there. Interior NaN or
  inf inputs are processed like TA-Lib processes them (they propagate the same way).
- The block state is a pure function of the values fed: feeding in any number of calls gives
  the same bits, so the host kernel's incremental == full property holds.

Layouts (offsets relative to ``o``; ``ring[n]`` = the last n inputs at slot ``count % n``):
SMA ``[count, total, ring[p-1]]``; EMA ``[count, ema_or_seed_sum]``; WMA ``[count, sub, sum,
trailing, ring[p-1]]``; DEMA ``[count, EMA block, EMA block]``; TEMA ``[count, 3 EMA blocks]``;
TRIMA ``[count, numerator, num_sub, num_add, ring[p]]``; KAMA ``[count, sum_roc1, kama,
trailing, ring[p]]``; T3 ``[count, e1..e6]`` (each e_j holds its seed sum while seeding);
MAMA the 60 columns of ``kernels/mama.py``'s block.
Period 1 uses the same widths (unused columns stay 0).

The pure-Python twins of ``ma_width``/``ma_lookback`` for definitions (which must not import
numba) are ``defs.averages.ma_width``/``ma_lookback``; a test checks they agree.
"""

from __future__ import annotations

import math
import operator
import threading
import types
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import fma, load_cached
from featurestore.indicators.kernels.mama import WIDTH as MAMA_WIDTH
from featurestore.indicators.kernels.mama import mama_step

#: numba's njit, for ``_nrt=False`` (an option its type stubs do not list): helpers that allocate
#: nothing skip reference counting of their array arguments (an atomic add per array per call).
_njit_no_rc: Any = njit

SMA, EMA, WMA, DEMA, TEMA, TRIMA, KAMA, MAMA, T3 = 0, 1, 2, 3, 4, 5, 6, 7, 8

_KAMA_MAX = 2.0 / (30.0 + 1.0)
_KAMA_DIFF = 2.0 / (2.0 + 1.0) - _KAMA_MAX


@njit(cache=True)
def ma_width(matype, period):  # type: ignore[no-untyped-def]
    """Columns of one block of ``matype`` (its count included)."""
    if matype == SMA:
        return period + 1
    if matype == EMA:
        return 2
    if matype == WMA:
        return period + 3
    if matype == DEMA:
        return 5
    if matype == TEMA:
        return 7
    if matype == TRIMA or matype == KAMA:
        return period + 4
    if matype == T3:
        return 7
    if matype == MAMA:
        return MAMA_WIDTH
    return 1


@njit(cache=True)
def ma_lookback(matype, period, unstable):  # type: ignore[no-untyped-def]
    """TA-Lib's lookback of TA_MA(period, matype) with the matype's unstable period."""
    if period == 1:
        return unstable
    if matype == EMA:
        return period - 1 + unstable
    if matype == DEMA:
        return 2 * (period - 1 + unstable)
    if matype == TEMA:
        return 3 * (period - 1 + unstable)
    if matype == KAMA:
        return period + unstable
    if matype == MAMA:
        return 32 + unstable
    if matype == T3:
        return 6 * (period - 1) + unstable
    return period - 1  # SMA, WMA, TRIMA


# ------------------------------------------------------------------------------- blocks
@njit(cache=True, inline="always")
def _sma(p, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib's running-sum SMA (ta_SMA.c): T += x; out = T/p; T -= x[i-p+1]."""
    m = p - 1
    c = np.int64(s[o])
    s[o] = c + 1
    total = s[o + 1] + x
    slot = o + 2 + c % m
    out = np.nan
    if c >= m:
        out = total / p
        total -= s[slot]
    s[o + 1] = total
    s[slot] = x
    return out


@njit(cache=True, inline="always")
def _ema(p, u, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8's EMA: SMA seed of the first p values, then fma(x - prev, k, prev)."""
    c = np.int64(s[o])
    s[o] = c + 1
    if c < p:
        v = s[o + 1] + x
        if c < p - 1:
            s[o + 1] = v
            return np.nan
        v = v / p
    else:
        prev = s[o + 1]
        v = fma(x - prev, 2.0 / (p + 1), prev)
    s[o + 1] = v
    if c < p - 1 + u:
        return np.nan
    return v


@njit(cache=True)
def _wma(p, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8.1's WMA: running sub-sum and weighted sum (ta_WMA.c's operation order),
    rebuilt from the window every 8*period outputs (on outputs 8p-1, 16p-1, ...; measured
    against talib: TA-Lib re-anchors the running sums so their error stays bounded)."""
    m = p - 1
    c = np.int64(s[o])
    s[o] = c + 1
    ring = o + 4
    slot = ring + c % m
    if c < m:
        s[o + 1] = s[o + 1] + x
        s[o + 2] = s[o + 2] + x * float(c + 1)
        s[slot] = x
        return np.nan
    if (c - m + 1) % (8 * p) == 0:
        # Rebuild from x[c-m .. c-1] (the ring, oldest at this slot) as the warm-up does.
        sub = 0.0
        tot = 0.0
        for j in range(m):
            v = s[ring + (c + j) % m]
            sub += v
            tot += v * float(j + 1)
        tv = 0.0
    else:
        sub = s[o + 1]
        tot = s[o + 2]
        tv = s[o + 3]
    sub += x
    sub -= tv
    tot += x * float(p)
    s[o + 3] = s[slot]
    out = tot / float((p * (p + 1)) >> 1)
    s[o + 1] = sub
    s[o + 2] = tot - sub
    s[slot] = x
    return out


@njit(cache=True)
def _dema(p, u, s, o, x):  # type: ignore[no-untyped-def]
    """DEMA = 2*EMA1 - EMA2; EMA2 is fed EMA1's values from EMA1's first output bar."""
    c = np.int64(s[o])
    s[o] = c + 1
    lb = p - 1 + u
    e1 = _ema(p, u, s, o + 1, x)
    if c < lb:
        return np.nan
    e2 = _ema(p, u, s, o + 3, e1)
    if c < 2 * lb:
        return np.nan
    return 2.0 * e1 - e2


@njit(cache=True)
def _tema(p, u, s, o, x):  # type: ignore[no-untyped-def]
    """TEMA = EMA3 + (3*EMA1 - 3*EMA2), each EMA fed from the previous one's first output."""
    c = np.int64(s[o])
    s[o] = c + 1
    lb = p - 1 + u
    e1 = _ema(p, u, s, o + 1, x)
    if c < lb:
        return np.nan
    e2 = _ema(p, u, s, o + 3, e1)
    if c < 2 * lb:
        return np.nan
    e3 = _ema(p, u, s, o + 5, e2)
    if c < 3 * lb:
        return np.nan
    return e3 + (3.0 * e1 - 3.0 * e2)


@njit(cache=True)
def _trima(p, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib's TRIMA (ta_TRIMA.c): odd and even period forms, first value from the window."""
    c = np.int64(s[o])
    s[o] = c + 1
    ring = o + 4
    slot = ring + c % p
    h = p >> 1
    odd = (p & 1) == 1
    if odd:
        factor = 1.0 / float((h + 1) * (h + 1))
    else:
        factor = 1.0 / float(h * (h + 1))
    if c < p - 1:
        s[slot] = x
        return np.nan
    if c == p - 1:
        # The window is x[0..p-1]: x[j] sits in slot j (this block started at count 0).
        s[slot] = x
        middle = h if odd else h - 1
        num = 0.0
        sub = 0.0
        for j in range(middle, -1, -1):
            sub += s[ring + j]
            num += sub
        add = 0.0
        for j in range(middle + 1, p):
            add += s[ring + j]
            num += add
        s[o + 1] = num
        s[o + 2] = sub
        s[o + 3] = add
        return num * factor
    num = s[o + 1]
    sub = s[o + 2]
    add = s[o + 3]
    xo = s[slot]  # x[c - p]
    xm = s[ring + (c - h) % p] if h > 0 else x  # x[c - h]
    num -= sub
    sub -= xo
    sub += xm
    if odd:
        num += add
        add -= xm
    else:
        add -= xm
        num += add
    add += x
    num += x
    s[o + 1] = num
    s[o + 2] = sub
    s[o + 3] = add
    s[slot] = x
    return num * factor


@njit(cache=True)
def _kama_flat(s, ring, p, c, x, xo):  # type: ignore[no-untyped-def]
    """True when all p moves of bar c's window (x[c-p] .. x[c]) are exactly zero; ``xo`` is
    x[c-p] (still in its ring slot). Scans the ring newest first, stopping at the first move."""
    if abs(x - s[ring + (c - 1) % p]) != 0.0:
        return False
    if abs(s[ring + (c + 1) % p] - xo) != 0.0:  # the oldest move, x[c-p+1] - x[c-p]
        return False
    for j in range(c - 1, c - p + 1, -1):
        if abs(s[ring + j % p] - s[ring + (j - 1) % p]) != 0.0:
            return False
    return True


@njit(cache=True)
def _kama(p, u, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8.1's KAMA (measured against talib): running sum of |dx| over the last p moves
    (subtract the oldest, then add the newest), reset to exactly 0.0 when all p moves of the
    window are exactly zero; efficiency ratio 1 when sum <= |roc|, else |roc / sum| (no
    TA_IS_ZERO test); sc = fma(er, diff, max)^2; KAMA = fma(x - prev, sc, prev)."""
    c = np.int64(s[o])
    s[o] = c + 1
    ring = o + 4
    cs = c % p
    slot = ring + cs
    if c == 0:
        s[slot] = x
        return np.nan
    px = s[ring + (cs - 1 if cs > 0 else p - 1)]  # x[c - 1]
    if c < p:
        s[o + 1] = s[o + 1] + abs(px - x)
        s[slot] = x
        return np.nan
    xo = s[slot]  # x[c - p]
    if c == p:
        sm = s[o + 1] + abs(px - x)
        prev = px
    else:
        sm = s[o + 1] - abs(s[o + 3] - xo)
        sm += abs(x - px)
        prev = s[o + 2]
    if sm != 0.0 and abs(x - px) == 0.0 and _kama_flat(s, ring, p, c, x, xo):
        sm = 0.0
    s[o + 3] = xo
    roc = x - xo
    if sm <= abs(roc):
        er = 1.0
    else:
        er = abs(roc / sm)
    sc = fma(er, _KAMA_DIFF, _KAMA_MAX)
    sc *= sc
    v = fma(x - prev, sc, prev)
    s[o + 1] = sm
    s[o + 2] = v
    s[slot] = x
    if c < p + u:
        return np.nan
    return v


@njit(cache=True)
def _t3(p, u, vf, s, o, x):  # type: ignore[no-untyped-def]
    """TA-Lib 0.8.1's T3: six chained EMAs e = fma(1-k, e, k*x), each seeded with the mean of
    its first p inputs (the first one's sum starts from that input, not 0.0); output
    fma(c4, e3, fma(c3, e4, fma(c1, e6, c2*e5))) (ta_T3.c's formula as TA-Lib 0.8.1's build
    contracts it, measured against talib)."""
    c = np.int64(s[o])
    s[o] = c + 1
    m = p - 1
    k = 2.0 / (p + 1.0)
    omk = 1.0 - k
    v = x
    for j in range(1, 7):
        begin = (j - 1) * m
        seeded = j * m
        if c < begin:
            return np.nan
        col = o + j
        if c == begin:
            s[col] = v
        elif c <= seeded:
            s[col] = s[col] + v
        else:
            s[col] = fma(omk, s[col], k * v)
        if c == seeded:
            s[col] = s[col] / p
        if c < seeded:
            return np.nan
        v = s[col]
    if c < 6 * m + u:
        return np.nan
    t = vf * vf
    c1 = 0 - t * vf
    c2 = 3.0 * (t - c1)
    c3 = fma(-6.0, t, -(3.0 * (vf - c1)))
    c4 = fma(3.0, t, fma(3.0, vf, 1.0) - c1)
    return fma(c4, s[o + 3], fma(c3, s[o + 4], fma(c1, s[o + 6], c2 * s[o + 5])))


@njit(cache=True, inline="always")
def copy_step(unstable, s, o, x):  # type: ignore[no-untyped-def]
    """TA_MA's period-1 copy of ``x`` (NaN while the block's count is below ``unstable``)."""
    c = np.int64(s[o])
    s[o] = c + 1
    if c < unstable:
        return np.nan
    return x


@njit(cache=True, inline="always")
def ma_step(matype, period, unstable, vfactor, s, o, x):  # type: ignore[no-untyped-def]
    """Advance the ``matype`` block at ``s[o:]`` by one value ``x``; the MA or NaN (see module doc).

    Inlined: with ``matype`` a compile-time constant in the caller (a ``MatypeKernel`` variant)
    numba drops the other matypes' branches, so only that block is compiled and the per-bar
    loop has no matype branch."""
    if period == 1:  # TA_MA copies its input at period 1, whatever the matype
        return copy_step(unstable, s, o, x)
    return ma_step_raw(matype, period, unstable, vfactor, s, o, x)


@njit(cache=True, inline="always")
def ma_step_raw(matype, period, unstable, vfactor, s, o, x):  # type: ignore[no-untyped-def]
    """``ma_step`` without TA_MA's period-1 copy: the matype's own TA-Lib function at period 1
    (only TRIMA differs: TA_TRIMA(1) runs its sums, so a NaN input stays in them)."""
    if matype == SMA:
        return _sma(period, s, o, x)
    if matype == EMA:
        return _ema(period, unstable, s, o, x)
    if matype == WMA:
        return _wma(period, s, o, x)
    if matype == DEMA:
        return _dema(period, unstable, s, o, x)
    if matype == TEMA:
        return _tema(period, unstable, s, o, x)
    if matype == TRIMA:
        return _trima(period, s, o, x)
    if matype == KAMA:
        return _kama(period, unstable, s, o, x)
    if matype == T3:
        return _t3(period, unstable, vfactor, s, o, x)
    if matype == MAMA:  # TA_MA's MAMA: fixed limits, its own unstable period
        return _mama(0.5, 0.05, unstable, s, o, x)
    return math.nan


# ------------------------------------------------------------------------ passes over a buffer
# ``ma_pass`` runs a block over a whole buffer: what ``ma_step`` gives value by value, the same
# bits, with the block's sums in locals and the state row indexed directly (``st[k, o + j]``,
# no per-symbol row views). Each matype's pass is its own out-of-line function, so a caller
# compiles only a call (numba copies an inlined body into each caller).
@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _pass_copy(u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``copy_step`` over ``src[a:b]``."""
    c0 = np.int64(st[k, o])
    for i in range(a, b):
        dst[i] = src[i] if c0 + (i - a) >= u else np.nan
    st[k, o] = c0 + (b - a)
    return 0


@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _pass_sma(p, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_sma`` over ``src[a:b]``: the value leaving the window comes from ``src`` once this
    pass has seen ``p - 1`` values, else from the ring, which is refreshed at the end."""
    m = p - 1
    c0 = np.int64(st[k, o])
    total = st[k, o + 1]
    r = o + 2
    i = a
    w = min(b, a + max(m - c0, 0))  # values before the block's first output
    while i < w:
        total = total + src[i]
        dst[i] = np.nan
        i += 1
    ring_end = min(b, a + m)  # the leaving value is in the ring before this
    slot = (c0 + (i - a)) % m
    while i < ring_end:
        total = total + src[i]
        dst[i] = total / p
        total -= st[k, r + slot]
        slot += 1
        if slot == m:
            slot = 0
        i += 1
    while i < b:
        total = total + src[i]
        dst[i] = total / p
        total -= src[i - m]
        i += 1
    for i in range(max(a, b - m), b):
        st[k, r + (c0 + (i - a)) % m] = src[i]
    st[k, o] = c0 + (b - a)
    st[k, o + 1] = total
    return 0


@_njit_no_rc(cache=True, _nrt=False)  # no reference counting: allocates nothing
def _pass_ema(p, u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_ema`` over ``src[a:b]``."""
    c0 = np.int64(st[k, o])
    v = st[k, o + 1]
    kk = 2.0 / (p + 1)
    i = a
    c = c0
    while i < b and c < p:
        v = v + src[i]
        if c == p - 1:
            v = v / p
        dst[i] = v if c >= p - 1 + u else np.nan
        c += 1
        i += 1
    while i < b:
        v = fma(src[i] - v, kk, v)
        dst[i] = v if c >= p - 1 + u else np.nan
        c += 1
        i += 1
    st[k, o] = c
    st[k, o + 1] = v
    return 0


@njit(cache=True)
def _pass_wma(p, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_wma`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _wma(p, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_dema(p, u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_dema`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _dema(p, u, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_tema(p, u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_tema`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _tema(p, u, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_trima(p, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_trima`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _trima(p, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_kama(p, u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_kama`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _kama(p, u, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_t3(p, u, vf, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``_t3`` over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _t3(p, u, vf, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_mama(u, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """TA_MA's MAMA block (limits 0.5, 0.05) over ``src[a:b]``."""
    row = st[k]
    for i in range(a, b):
        dst[i] = _mama(0.5, 0.05, u, row, o, src[i])
    return 0


@njit(cache=True)
def _pass_nan(dst, a, b):  # type: ignore[no-untyped-def]
    """A matype without a block: NaN, as ``ma_step_raw`` gives."""
    for i in range(a, b):
        dst[i] = np.nan
    return 0


@njit(cache=True, inline="always")
def ma_pass(matype, period, unstable, vfactor, st, k, o, src, dst, a, b):  # type: ignore[no-untyped-def]
    """``dst[i] = ma_step(matype, period, unstable, vfactor, st[k], o, src[i])`` for i in
    ``a..b-1`` (same bits and block state). ``dst`` must not overlap ``src``. Inlined, with
    ``matype`` a compile-time constant: only that matype's pass is compiled (one call)."""
    if period == 1:
        return _pass_copy(unstable, st, k, o, src, dst, a, b)
    if matype == SMA:
        return _pass_sma(period, st, k, o, src, dst, a, b)
    if matype == EMA:
        return _pass_ema(period, unstable, st, k, o, src, dst, a, b)
    if matype == WMA:
        return _pass_wma(period, st, k, o, src, dst, a, b)
    if matype == DEMA:
        return _pass_dema(period, unstable, st, k, o, src, dst, a, b)
    if matype == TEMA:
        return _pass_tema(period, unstable, st, k, o, src, dst, a, b)
    if matype == TRIMA:
        return _pass_trima(period, st, k, o, src, dst, a, b)
    if matype == KAMA:
        return _pass_kama(period, unstable, st, k, o, src, dst, a, b)
    if matype == T3:
        return _pass_t3(period, unstable, vfactor, st, k, o, src, dst, a, b)
    if matype == MAMA:
        return _pass_mama(unstable, st, k, o, src, dst, a, b)
    return _pass_nan(dst, a, b)


# ------------------------------------------------------------------- per-matype compilation
#: The matype keys a ``MatypeKernel`` compiles a variant for; any other value shares ``OTHER``.
MATYPES = (SMA, EMA, WMA, DEMA, TEMA, TRIMA, KAMA, MAMA, T3)
OTHER = -1


class CompileStats(NamedTuple):
    """``MatypeKernel.stats``: as a numba dispatcher's ``stats`` (cache hits and misses)."""

    cache_hits: Counter[Any]
    cache_misses: Counter[Any]


def variant(py_func: Callable[..., Any], name: str, key: tuple[int, ...]) -> Any:
    """``@njit(cache=True)`` of a kernel body built for one key of matypes (closure constants):
    named ``<name>__<key>`` so each variant has its own entry in numba's disk cache."""
    tag = "_".join("x" if k == OTHER else str(k) for k in key)
    py_func.__name__ = f"{name}__{tag}"
    py_func.__qualname__ = f"{name}__{tag}"
    return njit(cache=True)(py_func)


def twin(kernel: Any) -> Any:
    """A second ``@njit(cache=True)`` dispatcher of ``kernel``'s code (named ``<name>__twin``) for
    other kernels to call: ``specialize`` bars the kind's own dispatcher from compiling any
    signature but the api's, and a caller may pass other array types (state column slices)."""
    f = kernel.py_func
    g = types.FunctionType(f.__code__, f.__globals__, f"{f.__name__}__twin", f.__defaults__, f.__closure__)
    g.__qualname__ = f"{f.__qualname__}__twin"
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return njit(cache=True)(g)


#: MAMA's block out of line: ``ma_step_raw`` is inlined into every MA kernel, and numba copies an
#: inlined body (with everything inlined into it, before the constant matype prunes it) into each
#: caller, so inlining MAMA's large block there slows the first compile of every matype.
_mama = twin(mama_step)


class MatypeKernel:
    """A kernel whose matype parameter(s) pick one of several loops, each specialised for its
    matype(s) and compiled (or loaded from numba's disk cache) on the first call with them.

    ``build(*key)`` returns the ``@njit(cache=True)`` kernel (see ``variant``) for one key: the
    kernel call's arguments at positions ``at`` (its matype parameters) as ints, values outside
    ``MATYPES`` as ``OTHER``. Inside, the matypes are closure constants, so numba keeps only their
    blocks: the per-bar loop has no matype branch and a first use compiles only what it runs.

    Stands in for the numba dispatcher where ``kernels.common.specialize`` uses one:
    ``compile(sig)`` records the api's one signature, and each variant is compiled for exactly
    that signature and then barred from compiling others (so, as with a dispatcher, arguments
    of other types raise TypeError); ``disable_compile`` and ``_cache`` (numba's disk cache of
    this module, shared by the variants) as on a dispatcher. Calls are thread-safe.
    """

    def __init__(self, name: str, build: Callable[..., Any], at: tuple[int, ...]) -> None:
        self.__name__ = name
        self._build = build
        self._at = at
        self._key = operator.itemgetter(*at)
        self._sig: Any = None
        self._ready: dict[Any, Any] = {}
        self._built: dict[tuple[int, ...], Any] = {}
        self._compiled: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MatypeKernel {self.__name__}>"

    def compile(self, sig: Any) -> None:
        """Record the one signature every variant is compiled for (nothing compiles yet)."""
        self._sig = sig

    def disable_compile(self, val: bool = True) -> None:
        """No-op: each variant is barred from compiling once compiled for ``sig``."""

    @property
    def _cache(self) -> Any:
        return self._variant((SMA,) * len(self._at))._cache

    @property
    def stats(self) -> CompileStats:
        """numba's disk-cache hits and misses, summed over the variants built so far."""
        hits: Counter[Any] = Counter()
        misses: Counter[Any] = Counter()
        for fn in list(self._built.values()):
            hits.update(fn.stats.cache_hits)
            misses.update(fn.stats.cache_misses)
        return CompileStats(hits, misses)

    def _variant(self, key: tuple[int, ...]) -> Any:
        fn = self._built.get(key)
        if fn is None:
            fn = self._built[key] = self._build(*key)
        return fn

    def _prepare(self, raw: Any) -> Any:
        """The compiled variant for the matype value(s) ``raw`` (first call with them): loaded
        from numba's disk cache without its compile set-up when cached (``load_cached``)."""
        vals = raw if len(self._at) > 1 else (raw,)
        key = tuple(v if v in MATYPES else OTHER for v in map(operator.index, vals))
        with self._lock:
            fn = self._variant(key)
            if self._sig is not None and key not in self._compiled:
                if self._sig not in fn.signatures and not load_cached(fn, self._sig):
                    fn.compile(self._sig)
                fn.disable_compile()
                self._compiled.add(key)
            self._ready[raw] = fn
        return fn

    def __call__(self, *args: Any) -> Any:
        try:
            raw = self._key(args)
        except IndexError:
            raise TypeError(f"{self.__name__}: too few arguments") from None
        fn = self._ready.get(raw)
        if fn is None:
            fn = self._prepare(raw)
        return fn(*args)


# The blocks of the single-MA kernels (wma_run, ...): each such kernel inlines and optimizes
# only its own block.
ema_block = _ema
dema_block = njit(inline="always")(_dema.py_func)
tema_block = njit(inline="always")(_tema.py_func)
trima_block = njit(inline="always")(_trima.py_func)
kama_block = njit(inline="always")(_kama.py_func)
t3_block = njit(inline="always")(_t3.py_func)

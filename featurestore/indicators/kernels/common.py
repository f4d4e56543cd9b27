"""Shared numba building blocks of the kernels: validation, state copy, NaN skipping, exact fma,
TA-Lib's true range and smoothing steps, and ``specialize`` (lazy, thread-safe compile).

Every kernel has the same shape:
``<name>_run(inputs..., offsets, params..., state_in, state, out...) -> int``.
``offsets[k]..offsets[k+1]`` is symbol k's slice of the concatenated inputs, in time order;
``state_in[k]`` is symbol k's state row at the start and ``state[k]`` receives it at the end
(``state_in`` may be ``state`` itself: an in-place run), so a full computation is simply a run
from a zeroed state and an append is a run from the saved one. That makes
``run(x[:k]) then run(x[k:]) == run(x)`` hold by construction, bar for bar, including inside the
warm-up. A kernel first validates its call (``_check``: offsets, state shapes, bar counts and,
for several inputs, equal lengths) and returns a non-zero code without writing anything if it
is invalid. ``specialize`` pins each kernel to the one signature the api uses. The operation
order, seeds and ``fma`` calls follow TA-Lib 0.8 exactly (TA-Lib's C sources,
``ta_func/ta_*.c``); ``fastmath`` must never be used, as it reorders floating-point operations
and breaks bit-for-bit equality.

Column 0 of every state row is the number of bars consumed since the symbol's first bar with
all inputs non-NaN (TA-Lib's ``begidx`` rule: leading bars with any NaN input are skipped and
give NaN). The rest of each layout is documented on its kernel and in ``defs``' STATE_LAYOUTS.

Building blocks for family kernels (all ``inline="always"``; exact TA-Lib 0.8 operation order):
``fma``, ``_true_range``, ``sma_step``, ``ema_seed``/``ema_step``, ``wilder_step``,
``_skip_leading_nan1/3/4``, ``_check``, ``_copy_row``. Not provided (build in the family, then
consider moving here): a ring buffer helper beyond the pattern in ``averages.sma_run``, rolling
min/max (monotonic deque, needed by WILLR/STOCH/AROON), WMA's running weighted sum, T3/KAMA
chains. MA-type dispatch (``matype`` 0..8) belongs to the averages family.

This module imports numba at the top: import it only when a kernel is needed (``api`` does).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# TA-Lib's TA_IS_ZERO bound (ta_func.h): -1e-14 < v < 1e-14.
_TA_EPS = 1e-14


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``llvm.fma.f64``: a*b + c with one rounding (unlike ``llvm.fmuladd``, never split)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        dbl = ir.DoubleType()
        fnty = ir.FunctionType(dbl, [dbl, dbl, dbl])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always")
def fma(a: float, b: float, c: float) -> float:
    """Exact fused multiply-add, as TA-Lib 0.8 calls C ``fma()`` in EMA, MACD, ATR and BBANDS."""
    # the @intrinsic call site omits typingctx, which numba supplies; its stub signature does not know
    return _fma_intrinsic(a, b, c)  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def _skip_leading_nan1(x, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars whose input is NaN (only called before the first valid bar)."""
    while i < end and math.isnan(x[i]):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def _skip_leading_nan3(h, l, c, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars where any of high/low/close is NaN (TA-Lib's check_begidx3)."""
    while i < end and (math.isnan(h[i]) or math.isnan(l[i]) or math.isnan(c[i])):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def _true_range(h: float, l: float, yc: float) -> float:
    """TA-Lib's TRUE_RANGE: comparisons in this order, so NaN falls back like TA-Lib's."""
    out = h - l
    t = abs(yc - h)
    if t > out:
        out = t
    t = abs(l - yc)
    if t > out:
        out = t
    return out


#: Codes a kernel returns instead of 0 when the call is invalid (besides ``1 + j`` for a bad
#: ``offsets[j]`` and ``-(1 + k)`` for a bad bar count in state row k); see ``_check``.
BAD_STATE_SHAPE = -(2**62)
BAD_INPUT_LENGTHS = 2**62


@njit(cache=True, inline="always")  # inlined: no separate compile per literal width
def _check(offsets, n, state_in, state, width):  # type: ignore[no-untyped-def]
    """Validate a call before anything is written: 0 if it is valid, else the first problem.

    ``1 + j`` if ``offsets[j]`` breaks "starts at 0, never decreases, ends at n";
    ``BAD_STATE_SHAPE`` unless both states are [n_symbols, width]; ``-(1 + k)`` if state row k's
    bar count (column 0) is not a non-negative integer. Doing this inside the kernel call costs
    one pass over data that the kernel reads anyway, instead of more dispatches from Python.
    """
    ns = offsets.size - 1
    if ns < 0 or offsets[0] != 0:
        return 1
    for k in range(ns):
        if offsets[k + 1] < offsets[k]:
            return k + 2
    if offsets[ns] != n:
        return ns + 1
    if (
        state_in.shape[0] != ns or state_in.shape[1] != width
        or state.shape[0] != ns or state.shape[1] != width
    ):
        return BAD_STATE_SHAPE
    for k in range(ns):
        c = state_in[k, 0]
        if not (c >= 0.0 and c == math.floor(c)):
            return -(k + 1)
    return 0


@njit(cache=True, inline="always")
def _copy_row(state_in, state, k, copy):  # type: ignore[no-untyped-def]
    """Start symbol k from ``state_in[k]`` when the result goes to another array (the copy of
    ``update_batch``'s new state, made row by row while the row is in cache anyway)."""
    if copy:
        for j in range(state.shape[1]):
            state[k, j] = state_in[k, j]


@njit(cache=True, inline="always")
def _skip_leading_nan4(a, b, c, d, i, end, out):  # type: ignore[no-untyped-def]
    """Advance past bars where any of four inputs is NaN (e.g. open/high/low/close or
    high/low/close/volume; TA-Lib's begidx over all inputs)."""
    while i < end and (math.isnan(a[i]) or math.isnan(b[i]) or math.isnan(c[i]) or math.isnan(d[i])):
        out[i] = np.nan
        i += 1
    return i


@njit(cache=True, inline="always")
def sma_step(total, x_in, x_out, period):  # type: ignore[no-untyped-def]
    """One step of TA-Lib's running-sum SMA, for a bar at or after the warm-up.

    TA-Lib (ta_SMA.c, TA_INT_SMA): ``T`` = sequential sum of the first period-1 inputs; then per
    bar ``T += x[i]; out = T / period; T -= x[i-period+1]`` (no compensation, never
    re-synchronised). Returns ``(out, new T)``; ``x_out`` is the value leaving the window
    (``x[i-period+1]``), which the caller keeps in a ring of period-1 inputs in its state
    while the call has not seen period-1 bars (see ``averages.sma_run``). State: T and the ring.
    """
    total += x_in
    out = total / period
    return out, total - x_out


@njit(cache=True, inline="always")
def ema_seed(seed_sum, period):  # type: ignore[no-untyped-def]
    """TA-Lib's EMA seed (default compatibility): the sequential sum of the first ``period``
    inputs divided by period. State during the warm-up: that running sum (and the bar count)."""
    return seed_sum / period


@njit(cache=True, inline="always")
def ema_step(x, prev, k):  # type: ignore[no-untyped-def]
    """One EMA step exactly as TA-Lib 0.8 (ta_EMA.c): ``fma(x - prev, k, prev)`` with
    ``k = 2.0 / (period + 1)`` computed once in double (pass ``k`` precomputed). TA-Lib's
    EMA(1) copies the input instead (the fma would not always give x): handle period 1 in the
    caller. Unstable period u: identical values, output NaN before bar ``period - 1 + u``.
    MACD/APO/PPO/TRIX/DEMA/TEMA/T3 reuse this step but each seeds differently (see the
    reference doc for MACD: both EMAs seeded at bar slow-1)."""
    return fma(x - prev, k, prev)


@njit(cache=True, inline="always")
def wilder_step(prev, x, period):  # type: ignore[no-untyped-def]
    """Wilder smoothing as RSI does in TA-Lib 0.8: ``(prev * (period-1) + x) * (1/period)``,
    where ``1/period`` is computed in double first. ATR uses a DIFFERENT form,
    ``fma(a, prev, x * b)`` with ``a = (period-1)/period``, ``b = 1 - a`` (see
    ``volatility.atr_run``), and ADX/DX/+DI/-DI use running sums ``S - S/period + x`` with no
    fma (see ``directional.adx_run``): pick the form of the TA-Lib function you reproduce."""
    return (prev * (period - 1.0) + x) * (1.0 / period)


# ------------------------------------------------------------------------------ dispatch
_RO_F8 = types.Array(types.float64, 1, "C", readonly=True)
_RO_I8 = types.Array(types.int64, 1, "C", readonly=True)
_RO_STATE = types.Array(types.float64, 2, "A", readonly=True)
_specialized: set[str] = set()
# Serializes first use: compile() then disable_compile() is two steps, and a second thread
# calling compile() after the first disabled compilation would get "compilation disabled".
_specialize_lock = threading.Lock()


def _resolve(name: str) -> Any:
    """``"averages.sma_run"`` -> the dispatcher, importing its family module on first use."""
    module, _, func = name.rpartition(".")
    if not module:
        raise KeyError(f"kernel name {name!r} must be '<family>.<function>'")
    return getattr(importlib.import_module(f"featurestore.indicators.kernels.{module}"), func)


_disk_cache_checked = False
CACHE_MARKER = "featurestore-kernels.sha256"


def _sources_digest() -> str:
    """A digest of every kernel module's source (this package's ``*.py`` files)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _check_disk_cache(kernel: Any) -> None:
    """Drop numba's cached machine code of these kernels when any kernel module changed.

    numba keys a kernel's disk cache on its own source file only, so a kernel that calls a
    helper from another module (``common.py``, ``ma.py``) would keep running the helper's old
    code after an edit or an upgrade that changed only the helper. A digest of all kernel
    sources, kept beside the cache files, catches that: on a mismatch the kernels' cache files
    go and each kernel compiles once more. Runs once per process, under the specialise lock.
    """
    global _disk_cache_checked
    _disk_cache_checked = True
    try:
        cache_dir = Path(kernel._cache._cache_path)
    except AttributeError:  # no disk cache (NUMBA_DISABLE_JIT, or a kernel without cache=True)
        return
    digest = _sources_digest()
    marker = cache_dir / CACHE_MARKER
    try:
        if marker.read_text(encoding="ascii") == digest:
            return
    except OSError:
        pass
    modules = {path.stem for path in Path(__file__).parent.glob("*.py")}
    try:
        for path in cache_dir.iterdir():
            if path.suffix in (".nbi", ".nbc") and path.name.split(".", 1)[0] in modules:
                path.unlink(missing_ok=True)
        marker.write_text(digest, encoding="ascii")
    except OSError:  # a read-only cache dir: numba then falls back to compiling in memory
        pass


def load_cached(kernel: Any, sig: tuple[Any, ...]) -> bool:
    """Load ``kernel``'s machine code for ``sig`` from numba's disk cache; False on a miss.

    What ``Dispatcher.compile`` does on a cache hit, minus its ``target_context.refresh()``:
    that refresh imports and installs every typing and lowering registry of numba (needed to
    compile, not to load machine code) and is most of a process's first kernel load. Loading
    needs only the NRT (kernels allocate). A later compile in the process refreshes as usual.
    Not a numba dispatcher (``NUMBA_DISABLE_JIT``, a wrapper), a cache miss or any failure of
    these numba internals returns False, and the caller compiles as numba would.
    """
    try:
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.dispatcher import Dispatcher
        from numba.core.runtime import rtsys

        if not isinstance(kernel, Dispatcher):
            return False
        disp: Any = kernel  # numba's private attributes below
        if disp._cache is None:
            return False
        with global_compiler_lock:
            if tuple(sig) in disp.overloads:
                return True
            ctx = disp.targetctx
            rtsys.initialize(ctx)
            cres = disp._cache._load_overload(sig, ctx)
            if cres is None or cres.objectmode:
                return False
            ctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            disp.add_overload(cres)
            disp._cache_hits[sig] += 1
        return True
    except Exception:  # numba's internals moved: take numba's own path
        return False


def specialize(name: str, n_inputs: int, param_types: tuple[type, ...], n_outputs: int) -> object:
    """The kernel ``name`` (``"<family>.<function>"``), compiled (or loaded from numba's disk cache) for the one signature
    the api calls it with, and barred from compiling any other.

    That signature takes inputs, offsets and the input state read-only (so read-only arrays
    need no copy), the input state in any layout (so a column slice of a wider state matrix
    needs no copy either), params as int64/float64, and the new state and outputs as writable
    C-contiguous arrays. Arguments of any other type make the call raise TypeError at once,
    instead of compiling a new specialization for a second or more; the api then converts them.
    """
    kernel = _resolve(name)
    if name in _specialized:  # warm path: no lock
        return kernel
    with _specialize_lock:
        if name not in _specialized:  # checked again: another thread may have finished it
            if not _disk_cache_checked:
                _check_disk_cache(kernel)
            sig = (
                (_RO_F8,) * n_inputs
                + (_RO_I8,)
                + tuple(types.int64 if t is int else types.float64 for t in param_types)
                + (_RO_STATE, types.float64[:, ::1])
                + (types.float64[::1],) * n_outputs
            )
            if not load_cached(kernel, sig):
                kernel.compile(sig)
            kernel.disable_compile()
            _specialized.add(name)  # only after disable_compile: readers see a finished kernel
    return kernel

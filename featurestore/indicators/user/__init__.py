"""User-defined indicators: register a numba function, get what the built-ins get.

A registered kind is parsed, named, batched over symbols, continued from state on append,
recomputed on corrections and stored in views exactly like ``sma_20``. Two forms; pick one:

WINDOWED (``window=``): the output at a bar is a pure function of the last ``window`` bars.
The engine slides the window and keeps the last ``window - 1`` bars of each input in the state
(a ring), so an incremental update equals a full recompute by construction::

    import numpy as np
    from featurestore.indicators import register

    @register("spread_z", inputs=("high", "low", "close"), params={"period": 20}, window="period")
    def spread_z(high, low, close, period):
        # high, low, close: read-only float64 arrays of the last `period` bars, oldest first
        s = high - low
        m = s.mean()
        sd = s.std()
        return (s[-1] - m) / sd if sd > 0.0 else 0.0

    store.create_view("mine", ["spread_z_20", "rsi_14"])

RECURSIVE (``state=``): the engine keeps a float64 state vector of the declared width per
symbol and calls ``step`` once per bar, in time order::

    from featurestore.indicators.kernels import fma

    @register("my_ema", params={"period": 30}, state=1, lookback=lambda period: period - 1)
    def my_ema(state, n, close, period):
        # state: this symbol's float64[1] (zeros, or what `init` wrote, before the first bar)
        # n: bars consumed before this one (0 at the first bar)
        if n < period:
            state[0] += close
            if n == period - 1:
                state[0] = state[0] / period
            return state[0]
        state[0] = fma(close - state[0], 2.0 / (period + 1), state[0])
        return state[0]

THE CONTRACT (``CONTRACT_VERSION`` 1)

- The decorated function (and ``init``) must compile with ``numba.njit`` (pass a plain function
  or an ``@njit`` one); parameters arrive positionally in ``params`` order as int64 (int
  defaults) or float64 (float defaults). It returns one float for one output, a tuple of
  ``len(outputs)`` floats otherwise.
- ``inputs``: bar columns (``open``, ``high``, ``low``, ``close``, ``volume``), in the order the
  function takes them. ``outputs``: ``("",)`` for one main output (default), or output keys
  (``("", "signal")``, ``("upper", "lower")``) named as for built-ins (``band_upper_20``).
- ``params``: name -> default (int or float; range 0..MAX_PERIOD for ints, 0..1e15 for floats)
  or a ``ParamDef`` for another range, aliases or a tag (``ParamDef("unstable", int, 0, 0,
  MAX_PERIOD, tag="u")`` is written ``my_ema_30_u5``).
- ``window`` (windowed), ``state`` and ``lookback`` (recursive): an int, the name of an int
  parameter, or a function of the parameters (positionally, numba-compilable, e.g.
  ``lambda period: period + 1``). Windowed: output bar i sees bars i-window+1..i, so the first
  ``window - 1`` bars are NaN (the lookback). Recursive: ``step`` runs on every bar; its
  outputs are replaced by NaN on the first ``lookback`` bars. ``init(state, *params)``
  (optional) fills the state before the first bar; without it the state starts at zeros.
- Leading bars where any input is NaN are skipped (output NaN) as TA-Lib does; the state row is
  ``[count, ...]`` (windowed: ``count``, then each input's ring of window-1 bars; recursive:
  ``count``, ``nonfinite_seen``, then the user's state).
- Outputs after the lookback must be finite whenever the inputs they depend on are finite
  (windowed: the window; recursive: every bar so far). A NaN or inf there is an error at
  compute time (nothing is stored) unless the kind declares ``allow_nan=True``.
- Registration compiles eagerly and runs the kernel on a short synthetic series: a function
  that does not compile, returns the wrong arity, writes past its declared state width or
  breaks the NaN rule, or (recursive) whose incremental run differs from the full run at any
  split point, fails registration with a ``UserKernelError`` and nothing is registered.
- Names: a kind is lower-case tokens ``[a-z][a-z0-9]*`` joined by ``_``; it may not be a
  built-in kind, extend one (``sma_fast``) or be the start of one (``plus`` for ``plus_di``).
  Registering the same kind again in one process replaces it.
- A view records each user kind's code hash (``code_hash``: the function's source, that of
  numba functions and constants it references, the declaration and ``CONTRACT_VERSION``).
  ``create_view`` with changed code makes a new view version; writing or reading a view whose
  user kind is not registered, or is registered with other code, raises ``UserKernelError``
  naming it (drop the old version or register the old code).

COMPILATION AND THE DISK CACHE

Registration generates the kernel (the engine's batched loop around the function, which is
inlined into it unless it was compiled with options such as ``fastmath`` or ``error_model``)
as a module file ``<kind>_<digest>.py`` under ``$NUMBA_CACHE_DIR/featurestore_user_kernels``
(or ``~/.cache/featurestore/user_kernels``) and imports it, so numba's disk cache applies:
another process registering the same kernel loads its machine code instead of compiling. The
digest covers the generated text, the code hash, the contents of arrays the functions read,
the engine's kernel sources and the numba, numpy and Python versions, so changed code never
meets an old entry. A function that reads something the digest cannot cover (a function or
constant of another module of the user's) is compiled in memory, uncached. Files are created
atomically and never rewritten, so concurrent registrations share them safely. The function
is compiled once, inside its kernel; only when that fails (or the kernel raises during the
self-test) is it also called on its own, to name the fault. The incremental == full self-test
runs at every registration, cached or not.

Modules: ``declare`` (names, parameters, sizes, code hash), ``codegen`` (the generated kernel
source), ``build`` (compiling it; the disk cache), ``checks`` (what registration runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from featurestore.indicators.base import (
    Arrays,
    IndicatorDef,
    Number,
    ParamDef,
    UserKernelError,
)
from featurestore.indicators.user.build import _build, _compile_kernel
from featurestore.indicators.user.checks import _probe, _self_test, _synthetic
from featurestore.indicators.user.declare import (
    CONTRACT_VERSION,
    NAN_CODE,
    SizeLike,
    _check_names,
    _compile_error,
    _eval_size,
    _fn_source,
    _jit,
    _param_defs,
    _size,
    code_hash,
)

__all__ = ["CONTRACT_VERSION", "NAN_CODE", "USER_LAYOUTS", "UserKernelError", "code_hash", "kernel_for", "register", "unregister"]

_lock = threading.Lock()
#: kind -> (code hash, compiled kernel)
_KERNELS: dict[str, tuple[str, Any]] = {}
#: What each registered user kind's state columns hold (``api.STATE_LAYOUTS`` has the built-ins).
USER_LAYOUTS: dict[str, tuple[str, ...]] = {}


def kernel_for(defn: IndicatorDef) -> Any:
    """The compiled kernel of a registered user kind (checked against ``defn.code_hash``)."""
    hit = _KERNELS.get(defn.kind)
    if hit is None or hit[0] != defn.code_hash:
        raise UserKernelError(f"user kernel {defn.kind!r} (code hash {defn.code_hash}) is not registered")
    return hit[1]


def unregister(kind: str) -> None:
    """Remove a user kind from this process (views that need it then fail to write or read)."""
    from featurestore.indicators import api, registry

    with _lock:
        defn = registry.KINDS.get(kind)
        if defn is None or not defn.code_hash:
            raise UserKernelError(f"{kind!r} is not a registered user kernel")
        del registry.KINDS[kind]
        USER_LAYOUTS.pop(kind, None)
        _KERNELS.pop(kind, None)
        api._PLANS.clear()


def register(
    kind: str,
    *,
    inputs: Sequence[str] = ("close",),
    params: Mapping[str, Number | ParamDef] | Sequence[ParamDef] = (),
    outputs: Sequence[str] = ("",),
    window: SizeLike | None = None,
    state: SizeLike | None = None,
    lookback: SizeLike = 0,
    init: Callable[..., Any] | None = None,
    allow_nan: bool = False,
    title: str = "",
) -> Callable[[Any], Any]:
    """Decorator: register the function as indicator ``kind`` (see the module docstring).

    Give ``window`` for the windowed form (the function is ``f(*windows, *params)``), or
    ``state`` (and optionally ``lookback``, ``init``) for the recursive form (the function is
    ``step(state, n, *bar_values, *params)``). Returns the function unchanged. Raises
    UserKernelError, with nothing registered, when the declaration or the kernel is invalid.
    """

    def deco(fn: Any) -> Any:
        _register(kind, fn, inputs, params, outputs, window, state, lookback, init, allow_nan, title)
        return fn

    return deco


def _register(
    kind: str, fn: Any, inputs: Sequence[str], params: Mapping[str, Number | ParamDef] | Sequence[ParamDef],
    outputs: Sequence[str], window: SizeLike | None, state: SizeLike | None, lookback: SizeLike,
    init: Callable[..., Any] | None, allow_nan: bool, title: str,
) -> None:
    from featurestore.indicators import api, registry

    inputs = tuple(inputs) if not isinstance(inputs, str) else (inputs,)
    outputs = tuple(outputs) if not isinstance(outputs, str) else (outputs,)
    pdefs = _param_defs(str(kind), params)
    _check_names(kind, inputs, outputs, pdefs)
    if (window is None) == (state is None):
        raise UserKernelError(f"{kind}: give exactly one of window= (windowed form) or state= (recursive form)")
    form = "windowed" if window is not None else "recursive"
    if form == "windowed" and (init is not None or lookback != 0):
        raise UserKernelError(f"{kind}: init= and lookback= belong to the recursive form (state=); a window's lookback is window-1")
    if not callable(fn) or (init is not None and not callable(init)):
        raise UserKernelError(f"{kind}: the decorated object and init must be functions")
    try:
        nfn = _jit(fn)
        ninit = _jit(init) if init is not None else None
    except Exception as exc:
        raise _compile_error(kind, "the function", exc) from exc
    sizes = (
        {"window": _size(kind, "window", window, pdefs)} if window is not None  # type: ignore[arg-type]
        else {"state": _size(kind, "state", state, pdefs), "lookback": _size(kind, "lookback", lookback, pdefs)}  # type: ignore[arg-type]
    )
    n_in, n_out = len(inputs), len(outputs)

    def shape(p: Mapping[str, Number]) -> tuple[int, int]:
        """(lookback, state length) for parameters p."""
        values = tuple(p[q.name] for q in pdefs)
        if form == "windowed":
            w = _eval_size(kind, sizes["window"], values, 1)
            return w - 1, 1 + n_in * (w - 1)
        return _eval_size(kind, sizes["lookback"], values, 0), 2 + _eval_size(kind, sizes["state"], values, 0)

    decl = {
        "kind": kind, "form": form, "inputs": list(inputs), "outputs": list(outputs), "allow_nan": bool(allow_nan),
        "params": [[p.name, p.type.__name__, p.default, p.lo, p.hi, list(p.aliases), p.tag] for p in pdefs],
        "sizes": {k: s.source for k, s in sizes.items()},
        "fn": _fn_source(fn, set()), "init": _fn_source(init, set()) if init is not None else "",
    }
    h = code_hash(decl)

    def no_ref(a: Arrays, p: Mapping[str, Number]) -> tuple[np.ndarray, ...]:
        raise UserKernelError(f"{kind} is a user kernel: it has no TA-Lib reference")

    defn = IndicatorDef(
        kind, title or f"user kernel {kind} ({form})", inputs, pdefs, outputs, f"user:{kind}", "",
        lookback=lambda p: shape(p)[0], state_len=lambda p: shape(p)[1], talib_ref=no_ref, code_hash=h,
    )
    defaults = {p.name: p.default for p in pdefs}
    values = tuple(defaults[p.name] for p in pdefs)
    lb, width = shape(defaults)
    data = _synthetic(lb + 30, inputs)
    build = _build(kind, h, form, fn, init, n_in, len(pdefs), n_out, sizes, allow_nan)

    def diagnose() -> None:
        """Call the function alone (compiling it on its own): a clear message when it is at fault."""
        _probe(kind, form, nfn, ninit, data, inputs, values, lb + 1, width - 2, n_out)

    try:
        kernel = _compile_kernel(kind, build, nfn, ninit, pdefs, n_in, n_out, sizes)
    except UserKernelError:
        diagnose()  # only on failure: a valid function is compiled once, inside its kernel
        raise
    _self_test(kind, kernel, data, inputs, values, width, lb, n_out, outputs, diagnose)
    layout = (
        ("count", *(f"{k}_ring[window-1]" for k in inputs)) if form == "windowed"
        else ("count", "nonfinite_seen", "user_state[state]")
    )
    with _lock:
        registry.install_user_def(defn)
        _KERNELS[kind] = (h, kernel)
        USER_LAYOUTS[kind] = layout
        api._PLANS.clear()

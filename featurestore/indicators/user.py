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
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import marshal
import math
import os
import re
import sys
import textwrap
import threading
import types as pytypes
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.indicators.base import (
    MAX_PERIOD,
    Arrays,
    IndicatorDef,
    Number,
    ParamDef,
    UserKernelError,
)

__all__ = ["CONTRACT_VERSION", "NAN_CODE", "USER_LAYOUTS", "UserKernelError", "code_hash", "kernel_for", "register", "unregister"]

#: Part of every code hash: bump when the meaning of the contract changes.
CONTRACT_VERSION = 1
#: Kernel return codes ``NAN_CODE + bar * 64 + output``: a forbidden NaN/inf (see api).
NAN_CODE = 2**61
MAX_OUTPUTS = 64
INPUTS = ("open", "high", "low", "close", "volume")
_TOKEN = re.compile(r"[a-z][a-z0-9]*")
_KIND = re.compile(r"[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*")
_PARAM = re.compile(r"[a-z][a-z0-9_]*")
_FLOAT_HI = 1e15

SizeLike = int | str | Callable[..., int]

_lock = threading.Lock()
#: kind -> (code hash, compiled kernel)
_KERNELS: dict[str, tuple[str, Any]] = {}
#: What each registered user kind's state columns hold (``api.STATE_LAYOUTS`` has the built-ins).
USER_LAYOUTS: dict[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class _Size:
    """``window``/``state``/``lookback``: a constant, a parameter or a function of the parameters."""

    what: str
    py: Callable[..., int]
    source: str  # for the code hash
    nb_src: str  # expression in the generated kernel ("" = call the compiled function)
    fn: Any = None


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


# ------------------------------------------------------------------------------ declaration
def _check_names(kind: str, inputs: Sequence[str], outputs: Sequence[str], pdefs: tuple[ParamDef, ...]) -> None:
    from featurestore.indicators.registry import BUILTIN_KINDS, KINDS

    if not isinstance(kind, str) or not _KIND.fullmatch(kind) or len(kind) > 40:
        raise UserKernelError(
            f"user kernel name {kind!r} must be lower-case tokens [a-z][a-z0-9]* joined by '_' (at most 40 characters)"
        )
    for b in sorted(BUILTIN_KINDS):
        if kind == b or kind.startswith(b + "_") or b.startswith(kind + "_"):
            raise UserKernelError(
                f"user kernel {kind!r} would shadow the built-in indicator {b!r} in spec names: choose another name"
            )
    for other, d in KINDS.items():
        if d.code_hash and other != kind and (kind.startswith(other + "_") or other.startswith(kind + "_")):
            raise UserKernelError(f"user kernel {kind!r} would be ambiguous with user kernel {other!r} in spec names")
    if not inputs or len(set(inputs)) != len(inputs) or any(i not in INPUTS for i in inputs):
        raise UserKernelError(f"{kind}: inputs must be distinct names among {', '.join(INPUTS)}, got {list(inputs)!r}")
    if not outputs or len(set(outputs)) != len(outputs) or len(outputs) > MAX_OUTPUTS:
        raise UserKernelError(f"{kind}: outputs must be 1..{MAX_OUTPUTS} distinct keys, got {list(outputs)!r}")
    tags = [p.tag for p in pdefs if p.tag]
    for o in outputs:
        if o and (not _TOKEN.fullmatch(o) or any(re.fullmatch(re.escape(t) + r"[0-9]+", o) for t in tags)):
            raise UserKernelError(f"{kind}: output key {o!r} must be '' or one token [a-z][a-z0-9]* (not a tag value)")
    names = [p.name for p in pdefs]
    if len(set(names)) != len(names) or len(set(tags)) != len(tags):
        raise UserKernelError(f"{kind}: parameter names and tags must be distinct, got {names!r}")
    for p in pdefs:
        if not _PARAM.fullmatch(p.name) or p.type not in (int, float) or (p.tag and not _TOKEN.fullmatch(p.tag)):
            raise UserKernelError(
                f"{kind}: parameter {p.name!r} needs a name [a-z][a-z0-9_]*, type int or float and a tag [a-z][a-z0-9]*"
            )
        if not (0 <= p.lo <= p.default <= p.hi):
            raise UserKernelError(
                f"{kind}: parameter {p.name!r} default {p.default!r} must lie in its range {p.lo!r}..{p.hi!r} (lo >= 0: "
                "names carry no sign)"
            )


def _param_defs(kind: str, params: Mapping[str, Number | ParamDef] | Sequence[ParamDef]) -> tuple[ParamDef, ...]:
    out: list[ParamDef] = []
    items: list[tuple[str, Any]] = (
        list(params.items()) if isinstance(params, Mapping) else [(getattr(p, "name", "?"), p) for p in params]
    )
    for name, v in items:
        if isinstance(v, ParamDef):
            if v.name != name:
                raise UserKernelError(f"{kind}: params[{name!r}] is ParamDef {v.name!r}")
            out.append(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserKernelError(f"{kind}: parameter {name!r} default must be an int or a float, got {v!r}")
        elif isinstance(v, int):
            out.append(ParamDef(str(name), int, v, 0, MAX_PERIOD))
        else:
            if not math.isfinite(v):
                raise UserKernelError(f"{kind}: parameter {name!r} default must be finite, got {v!r}")
            out.append(ParamDef(str(name), float, float(v), 0.0, _FLOAT_HI))
    return tuple(out)


def _size(kind: str, what: str, value: SizeLike, pdefs: tuple[ParamDef, ...]) -> _Size:
    names = [p.name for p in pdefs]
    if isinstance(value, bool):
        raise UserKernelError(f"{kind}: {what} must be an int, a parameter name or a function, got {value!r}")
    if isinstance(value, int):
        v = int(value)
        return _Size(what, lambda *a: v, repr(v), repr(v))
    if isinstance(value, str):
        if value not in names or next(p for p in pdefs if p.name == value).type is not int:
            raise UserKernelError(f"{kind}: {what}={value!r} names no int parameter (parameters: {names})")
        j = names.index(value)
        return _Size(what, lambda *a: int(a[j]), f"param:{value}", f"P{j}")
    if callable(value):
        try:
            nfn = _jit(value)
        except Exception as exc:
            raise _compile_error(kind, what, exc) from exc
        return _Size(what, lambda *a: int(value(*a)), _fn_source(value, set()), "", nfn)
    raise UserKernelError(f"{kind}: {what} must be an int, a parameter name or a function, got {value!r}")


def _eval_size(kind: str, size: _Size, values: Sequence[Number], lo: int) -> int:
    try:
        n = size.py(*values)
    except Exception as exc:
        raise UserKernelError(f"{kind}: {size.what}{tuple(values)!r} failed: {exc}") from exc
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (lo <= int(n) <= 10 * MAX_PERIOD):
        raise UserKernelError(f"{kind}: {size.what} must be an integer >= {lo}, got {n!r} for parameters {tuple(values)!r}")
    return int(n)


# ------------------------------------------------------------------------------ code hash
def _py_func(fn: Any) -> Any:
    return getattr(fn, "py_func", fn)


def _fn_source(fn: Any, seen: set[int]) -> str:
    """The source of ``fn`` plus that of the functions and constants it references (once each)."""
    f = _py_func(fn)
    if id(f) in seen:
        return ""
    seen.add(id(f))
    code = getattr(f, "__code__", None)
    if code is None:
        return repr(f)
    try:
        text = textwrap.dedent(inspect.getsource(f))
    except (OSError, TypeError):
        text = marshal.dumps(code).hex()
    parts = [text]
    glb = getattr(f, "__globals__", {})
    refs = [(n, glb[n]) for n in _names(code) if n in glb]
    for i, cell in enumerate(getattr(f, "__closure__", None) or ()):
        try:
            refs.append((code.co_freevars[i], cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    for name, obj in refs:
        if isinstance(obj, (bool, int, float, str, tuple)):
            parts.append(f"{name}={obj!r}")
        elif isinstance(getattr(obj, "py_func", None), pytypes.FunctionType) or isinstance(obj, pytypes.FunctionType):
            parts.append(f"{name}:" + _fn_source(obj, seen))
        elif isinstance(obj, np.ndarray) and obj.size <= 10_000:
            parts.append(f"{name}=" + hashlib.sha256(obj.tobytes()).hexdigest())
    return "\n".join(parts)


def _names(code: pytypes.CodeType) -> list[str]:
    out = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, pytypes.CodeType):  # nested functions and lambdas
            out.extend(_names(c))
    return out


def code_hash(decl: Mapping[str, Any]) -> str:
    """20 hex digits of SHA-256 over a canonical JSON of the declaration and sources."""
    text = json.dumps({"contract": CONTRACT_VERSION, **decl}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------ kernels
def _jit(fn: Any) -> Any:
    from numba.core.registry import CPUDispatcher

    if isinstance(fn, CPUDispatcher):
        return fn
    from numba import njit

    return njit(fn)


def _is_numba_error(exc: BaseException) -> bool:
    from numba.core.errors import NumbaError

    return isinstance(exc, NumbaError)


def _compile_error(kind: str, what: str, exc: BaseException) -> UserKernelError:
    lines = str(exc).strip().splitlines()
    text = "\n".join(lines[:25]) + ("\n..." if len(lines) > 25 else "")
    return UserKernelError(f"{kind}: {what} does not compile with numba ({type(exc).__name__}):\n{text}")


def _sub(template: str, **subs: str) -> str:
    """Fill ``{KEY}`` markers: a line holding only a marker takes the (multi-line) text at that
    line's indentation; other occurrences are replaced inline (single-line texts)."""
    out: list[str] = []
    for line in textwrap.dedent(template).strip("\n").splitlines():
        key = line.strip()
        if key.startswith("{") and key.endswith("}") and key[1:-1] in subs:
            pad = line[: len(line) - len(line.lstrip())]
            out.extend(pad + t for t in subs[key[1:-1]].splitlines() if t.strip())
            continue
        for k, v in subs.items():
            line = line.replace("{" + k + "}", v)
        out.append(line)
    return "\n".join(out) + "\n"


_HEAD = """
def _run({ARGS}):
    {SIZES}
    n = I0.size
    if {LENGTHS}:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, n, state_in, state, width)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    {PRE}
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c0 = np.int64(state[k, 0])
        i = start
        if c0 == 0:
            while i < end and ({ANYNAN}):
                {NAN_OUT}
                i += 1
        if i >= end:
            continue
        p = i
        {BODY}
    return 0
"""

_WINDOWED = """
a_end = p + m
if a_end > end:
    a_end = end
while i < a_end:
    g = c0 + (i - p)
    if g < m:
        {NAN_OUT}
    else:
        lo = g - m
        for t in range(W):
            gg = lo + t
            if gg < c0:
                s = 1 + gg % m
                {FILL_RING}
            else:
                jj = p + (gg - c0)
                {FILL_IN}
        r = _FN({TMPS}{PS})
        {STORE}
        {CHECK_RING}
    i += 1
while i < end:
    a = i - m
    r = _FN({SLICES}{PS})
    {STORE}
    {CHECK_IN}
    i += 1
if m > 0:
    j0 = end - m
    if j0 < p:
        j0 = p
    for j in range(j0, end):
        s = 1 + (c0 + j - p) % m
        {SAVE}
state[k, 0] = c0 + (end - p)
"""

# Phase 1 (the first m bars of a call: the window reaches into the saved ring, copied into T*).
_WINDOW_CHECK_RING = """
bad_o = -1
{WHICH}
if bad_o >= 0:
    ok = True
    for t in range(W):
        gg = lo + t
        if gg < c0:
            s = 1 + gg % m
            if not ({RING_FINITE}):
                ok = False
                break
        else:
            jj = p + (gg - c0)
            if not ({IN_FINITE}):
                ok = False
                break
    if ok:
        return NAN_CODE + i * 64 + bad_o
"""

# Phase 2 (the window lies in this call's inputs: the function gets views of them, no copy;
# ``_view`` builds the view without the bounds normalisation of a slice, which the loop's
# indices make redundant).
_WINDOW_CHECK_IN = """
bad_o = -1
{WHICH}
if bad_o >= 0:
    ok = True
    for jj in range(a, i + 1):
        if not ({IN_FINITE}):
            ok = False
            break
    if ok:
        return NAN_CODE + i * 64 + bad_o
"""

_RECURSIVE = """
c = c0
taint = state[k, 1] != 0.0
u = state[k, 2:]
{INIT}
while i < end:
    if not ({FINITE}):
        taint = True
    r = _FN(u, c, {XS}{PS})
    if c < lb:
        {NAN_OUT}
    else:
        {STORE}
        {CHECK}
    c += 1
    i += 1
state[k, 0] = c
state[k, 1] = 1.0 if taint else 0.0
"""


def _kernel_source(
    form: str, n_in: int, n_p: int, n_out: int, sizes: dict[str, _Size], allow_nan: bool, has_init: bool
) -> str:
    """The Python source of the kernel (standard calling convention) for one declaration."""
    ins = [f"I{j}" for j in range(n_in)]
    outs = [f"O{j}" for j in range(n_out)]
    pars = [f"P{j}" for j in range(n_p)]
    ps = "".join(", " + q for q in pars)

    def size(name: str) -> str:
        s = sizes[name]
        return s.nb_src or f"_{name.upper()}({', '.join(pars)})"

    nan_out = "\n".join(f"{o}[i] = np.nan" for o in outs)
    # _out accepts an int or float only and unpacking checks the tuple's length, so a function of
    # the wrong arity fails to compile here (registration then asks the function for the reason).
    store = "O0[i] = _out(r)" if n_out == 1 else "\n".join(
        [", ".join(f"r{j}" for j in range(n_out)) + " = r", *(f"{o}[i] = _out(r{j})" for j, o in enumerate(outs))]
    )
    if form == "windowed":
        sizes_src = f"W = {size('window')}\nm = W - 1\nwidth = 1 + {n_in} * m"
        pre = "\n".join(f"T{j} = np.empty(W)" for j in range(n_in))
        which = "\n".join(
            ("if" if j == 0 else "elif") + f" not math.isfinite({o}[i]):\n    bad_o = {j}" for j, o in enumerate(outs)
        )
        in_finite = " and ".join(f"math.isfinite(I{j}[jj])" for j in range(n_in))
        check_ring = "" if allow_nan else _sub(
            _WINDOW_CHECK_RING, WHICH=which, IN_FINITE=in_finite,
            RING_FINITE=" and ".join(f"math.isfinite(state[k, s + {j} * m])" for j in range(n_in)),
        )
        check_in = "" if allow_nan else _sub(_WINDOW_CHECK_IN, WHICH=which, IN_FINITE=in_finite)
        body = _sub(
            _WINDOWED, NAN_OUT=nan_out, STORE=store, CHECK_RING=check_ring, CHECK_IN=check_in, PS=ps,
            SLICES=", ".join(f"_view({x}, a, W)" for x in ins),
            TMPS=", ".join(f"T{j}" for j in range(n_in)),
            FILL_RING="\n".join(f"T{j}[t] = state[k, s + {j} * m]" for j in range(n_in)),
            FILL_IN="\n".join(f"T{j}[t] = I{j}[jj]" for j in range(n_in)),
            SAVE="\n".join(f"state[k, s + {j} * m] = I{j}[j]" for j in range(n_in)),
        )
    else:
        sizes_src = f"wid = {size('state')}\nlb = {size('lookback')}\nwidth = 2 + wid"
        pre = ""
        check = "" if allow_nan else "\n".join(
            f"if not taint and not math.isfinite({o}[i]):\n    return NAN_CODE + i * 64 + {j}" for j, o in enumerate(outs)
        )
        body = _sub(
            _RECURSIVE, NAN_OUT=nan_out, STORE=store, CHECK=check, PS=ps,
            INIT=f"if c0 == 0:\n    _INIT(u{ps})" if has_init else "",
            FINITE=" and ".join(f"math.isfinite({x}[i])" for x in ins),
            XS=", ".join(f"{x}[i]" for x in ins),
        )
    return _sub(
        _HEAD, ARGS=", ".join([*ins, "offsets", *pars, "state_in", "state", *outs]), SIZES=sizes_src,
        LENGTHS=" or ".join(f"{x}.size != n" for x in ins[1:]) or "False", PRE=pre,
        ANYNAN=" or ".join(f"math.isnan({x}[i])" for x in ins), NAN_OUT=nan_out, BODY=body,
    )


_MODULE = '''"""Generated by featurestore.indicators.user: the kernel of user kind {KIND} (code hash {HASH}).

Do not edit. The file name is a digest of this text, of the values the user's functions
read and of the engine's kernel sources, so numba's disk cache of ``_run`` (keyed on this
file) never serves another kernel's machine code. ``_FN`` ({INLINE}), ``_INIT`` and the size
functions are set by featurestore.indicators.user before this module runs.
"""

import math

import numpy as np
from numba import njit

from featurestore.indicators.kernels.common import BAD_INPUT_LENGTHS, _check, _copy_row

NAN_CODE = {NAN_CODE}


@njit(cache={CACHE})
'''

#: Modules whose functions and constants a cached kernel may read: their code is fixed by the
#: installed versions (part of the cache key), not by the user's files.
_SAFE_MODULES = ("numpy", "math", "cmath", "numba", "featurestore")
_INLINE_OK = {"nopython", "cache", "boundscheck", "nogil", "inline"}


def _safe_module(name: object) -> bool:
    return isinstance(name, str) and any(name == m or name.startswith(m + ".") for m in _SAFE_MODULES)


def _value_key(fn: Any, seen: set[int]) -> str | None:
    """What ``code_hash`` does not see of ``fn``'s inputs: full digests of the arrays it reads.

    None when ``fn`` reads an object whose value cannot be keyed (a module of the user's, an
    arbitrary object, a tuple holding such): its kernel is then compiled in memory, never
    cached, so an edit the key cannot see never runs stale machine code.
    """
    f = _py_func(fn)
    if id(f) in seen:
        return ""
    seen.add(id(f))
    code = getattr(f, "__code__", None)
    if code is None:
        return None
    glb = getattr(f, "__globals__", {})
    refs: list[Any] = [glb[n] for n in _names(code) if n in glb]
    for cell in getattr(f, "__closure__", None) or ():
        try:
            refs.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    parts: list[str] = []
    scalar = (bool, int, float, complex, str, bytes, type(None))
    for obj in refs:
        if isinstance(obj, scalar) or (isinstance(obj, tuple) and all(isinstance(v, scalar) for v in obj)):
            continue  # in code_hash by value
        if isinstance(obj, np.ndarray):
            digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
            parts.append(f"{obj.dtype.str}{obj.shape}{digest}")
        elif isinstance(obj, pytypes.ModuleType):
            if not _safe_module(obj.__name__):
                return None
        elif isinstance(obj, pytypes.FunctionType) or isinstance(getattr(obj, "py_func", None), pytypes.FunctionType):
            if _safe_module(getattr(_py_func(obj), "__module__", None)):
                continue
            sub = _value_key(obj, seen)
            if sub is None:
                return None
            parts.append(sub)
        elif not _safe_module(getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None)):
            return None
    return ";".join(parts)


def _kernel_dir() -> Path | None:
    """Where generated kernel modules live: ``$NUMBA_CACHE_DIR/featurestore_user_kernels`` when
    numba's cache directory is set, else ``$XDG_CACHE_HOME`` (``~/.cache``)``/featurestore/user_kernels``.
    None when it cannot be created or written (kernels then compile in memory)."""
    from numba.core import config

    numba_dir = getattr(config, "CACHE_DIR", "")
    path = (
        Path(numba_dir) / "featurestore_user_kernels" if numba_dir
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "featurestore" / "user_kernels"
    )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


_engine_key_memo: list[str] = []


def _engine_key() -> str:
    """The engine's part of a cache key: kernel sources and the compiler's versions."""
    if not _engine_key_memo:
        import numba

        from featurestore.indicators.kernels import common

        _engine_key_memo.append(
            f"{common._sources_digest()}|numba {numba.__version__}|numpy {np.__version__}|{sys.version}|{CONTRACT_VERSION}"
        )
    return _engine_key_memo[0]


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` atomically, never replacing an identical file.

    Concurrent registrations each write a private temporary file and hard-link it into place
    (which fails, harmlessly, when another process got there first): readers never see a
    partial file, and the file's stamp, which numba's cache index checks, never changes.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.read_text(encoding="utf-8") != text:  # a foreign or damaged file: replace it whole
                os.replace(tmp, path)
        except OSError:  # no hard links on this file system
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Build:
    """One kernel's generated module: its text, and its file when it can be cached on disk."""

    text: str
    path: Path | None
    inline: bool


def _inlinable(fn: Any) -> bool:
    """Inline the user's function into the kernel unless it asked for options that inlining
    would drop (``fastmath``, ``error_model``...): then it is called as compiled."""
    opts = getattr(fn, "targetoptions", None)
    return opts is None or set(opts) <= _INLINE_OK


def _build(
    kind: str, h: str, form: str, fn: Any, init: Any, n_in: int, n_p: int, n_out: int, sizes: dict[str, _Size],
    allow_nan: bool,
) -> _Build:
    """The generated module of one declaration, and its file name: a digest of everything the
    machine code depends on (text, code hash, array values, engine sources and versions)."""
    inline = _inlinable(fn) and (init is None or _inlinable(init))
    src = _kernel_source(form, n_in, n_p, n_out, sizes, allow_nan, init is not None)
    text = _sub(
        _MODULE, KIND=kind, HASH=h, NAN_CODE=str(NAN_CODE), CACHE="True",
        INLINE="inlined" if inline else "called, not inlined",
    ) + src
    seen: set[int] = set()
    keys = [_value_key(f, seen) for f in (fn, init, *(s.fn for s in sizes.values())) if f is not None]
    folder = _kernel_dir() if all(k is not None for k in keys) else None
    if folder is None:
        return _Build(text, None, inline)
    digest = hashlib.sha256("\0".join([text, h, *(k or "" for k in keys), _engine_key()]).encode()).hexdigest()[:32]
    return _Build(text, folder / f"{kind}_{digest}.py", inline)


def _load(build: _Build, ns: dict[str, Any]) -> Any:
    """The module's ``_run`` dispatcher: imported from its file (so numba's disk cache applies),
    or executed in memory when it cannot be cached."""
    if build.path is not None:
        try:
            _write_once(build.path, build.text)
            # In sys.modules under its own name: numba's cached code finds its globals by module name.
            name = "featurestore_user_kernel_" + build.path.stem
            spec = importlib.util.spec_from_file_location(name, build.path)
            if spec is None or spec.loader is None:
                raise OSError(f"cannot import {build.path}")
            module = importlib.util.module_from_spec(spec)
            module.__dict__.update(ns)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            return module._run
        except OSError:
            pass  # an unwritable or vanished cache directory: compile in memory
    glb = dict(ns)
    text = build.text.replace("@njit(cache=True)", "@njit(cache=False)")
    exec(compile(text, "<user kernel>", "exec"), glb)
    return glb["_run"]


_nb_memo: dict[str, Any] = {}


def _nb_helpers() -> dict[str, Any]:
    """The generated kernels' numba intrinsics (built once per process, numba imported lazily).

    ``_view(a, start, length)``: the C-contiguous view ``a[start:start + length]`` (same dtype
    and read-only flag) for indices the caller keeps in bounds. ``_out(r)``: ``r`` as float64
    when it is an int or a float, a typing error otherwise (a bool, an array, a tuple).
    """
    if _nb_memo:
        return _nb_memo
    from numba.core import cgutils, types
    from numba.core.imputils import impl_ret_borrowed
    from numba.extending import intrinsic

    @intrinsic  # type: ignore[misc]
    def _view(typingctx: Any, arr: Any, start: Any, length: Any) -> Any:
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
            return None
        rty = types.Array(arr.dtype, 1, "C", readonly=not arr.mutable)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            src = context.make_array(sig.args[0])(context, builder, args[0])
            out = context.make_array(sig.return_type)(context, builder)
            itemsize = context.get_constant(
                types.intp, context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
            )
            context.populate_array(
                out, data=cgutils.gep_inbounds(builder, src.data, args[1]),
                shape=cgutils.pack_array(builder, [args[2]]), strides=cgutils.pack_array(builder, [itemsize]),
                itemsize=itemsize, meminfo=src.meminfo, parent=src.parent,
            )
            return impl_ret_borrowed(context, builder, sig.return_type, out._getvalue())

        return rty(arr, types.intp, types.intp), codegen

    @intrinsic  # type: ignore[misc]
    def _out(typingctx: Any, r: Any) -> Any:
        if not isinstance(r, (types.Float, types.Integer)):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return context.cast(builder, args[0], sig.args[0], types.float64)

        return types.float64(r), codegen

    _nb_memo.update(_view=_view, _out=_out)
    return _nb_memo


def _compile_kernel(
    kind: str, build: _Build, fn: Any, init: Any, pdefs: tuple[ParamDef, ...], n_in: int, n_out: int,
    sizes: dict[str, _Size],
) -> Any:
    """Load (numba's disk cache) or compile the kernel of ``build`` for the api's one signature."""
    from numba import njit, types

    from featurestore.indicators.kernels import common

    def inlined(f: Any) -> Any:
        return njit(inline="always")(_py_func(f)) if build.inline else f

    ns: dict[str, Any] = {
        "_FN": inlined(fn), "_INIT": inlined(init) if init is not None else None, **_nb_helpers(),
    }
    for name, s in sizes.items():
        if s.fn is not None:
            ns["_" + name.upper()] = s.fn
    disp = _load(build, ns)
    sig = (
        (common._RO_F8,) * n_in
        + (common._RO_I8,)
        + tuple(types.int64 if p.type is int else types.float64 for p in pdefs)
        + (common._RO_STATE, types.float64[:, ::1])
        + (types.float64[::1],) * n_out
    )
    # A cache hit loads without numba's compile set-up (common.load_cached), like the built-ins.
    load_cached = getattr(common, "load_cached", None)
    try:
        if load_cached is None or not load_cached(disp, sig):
            disp.compile(sig)
    except Exception as exc:
        raise _compile_error(kind, "the kernel", exc) from exc
    disp.disable_compile()
    return disp


# ------------------------------------------------------------------------------ checks
def _synthetic(n: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """A small deterministic OHLCV random walk (valid bars, 0.01 ticks, some ties)."""
    rng = np.random.default_rng(20240612)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    open_ = np.round(close * (1 + rng.normal(0, 0.003, n)), 2)
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    low = np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.3, n)), 2)
    vol = rng.integers(100, 10_000, n).astype(float)
    cols = {"open": open_, "high": high, "low": low, "close": close, "volume": vol}
    out = {}
    for k in names:
        a = np.ascontiguousarray(cols[k])
        a.setflags(write=False)
        out[k] = a
    return out


def _check_arity(kind: str, result: Any, n_out: int, what: str) -> None:
    scalar = (float, int, np.floating, np.integer)
    if n_out == 1:
        if isinstance(result, bool) or not isinstance(result, scalar):
            raise UserKernelError(f"{kind}: {what} must return one float (outputs has 1 entry), got {result!r}")
    elif not (
        isinstance(result, tuple) and len(result) == n_out
        and all(isinstance(v, scalar) and not isinstance(v, bool) for v in result)
    ):
        raise UserKernelError(f"{kind}: {what} must return a tuple of {n_out} floats (one per output), got {result!r}")


def _probe(kind: str, form: str, fn: Any, init: Any, data: Arrays, inputs: Sequence[str],
           values: tuple[Number, ...], window: int, width: int, n_out: int) -> None:
    """Call the user's functions once from Python: compile errors and arity, with clear messages."""
    try:
        if form == "windowed":
            res = fn(*(data[k][:window] for k in inputs), *values)
        else:
            u = np.zeros(max(width, 0))
            if init is not None:
                init(u, *values)
            res = fn(u, 0, *(float(data[k][0]) for k in inputs), *values)
    except UserKernelError:
        raise
    except Exception as exc:
        what = "the function" if form == "windowed" else "step/init"
        if _is_numba_error(exc):
            raise _compile_error(kind, what, exc) from exc
        raise UserKernelError(
            f"{kind}: {what} raised {type(exc).__name__}: {exc} on a synthetic series (parameters {values!r}); "
            "numba raises on a float division by zero: guard it, or return np.nan with allow_nan=True"
        ) from exc
    _check_arity(kind, res, n_out, "the window function" if form == "windowed" else "step")


def _self_test(kind: str, kernel: Any, data: Arrays, inputs: Sequence[str], values: tuple[Number, ...],
               width: int, lookback: int, n_out: int, outputs: Sequence[str], diagnose: Callable[[], None]) -> None:
    """Full run == every two-chunk split == bar by bar, bit for bit, with guard cells after the
    state row (a step writing past its declared width is caught); NaN contract on finite data.
    ``diagnose`` names the user's function when the kernel raises."""
    n = data[inputs[0]].size
    arrays = [data[k] for k in inputs]

    def run(lo: int, hi: int, st_in: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        buf = np.full(width + 8, 7.25e300)
        st = buf[:width].reshape(1, width)
        outs = [np.empty(hi - lo) for _ in range(n_out)]
        off = np.array([0, hi - lo], dtype=np.int64)
        try:
            bad = kernel(*(a[lo:hi] for a in arrays), off, *values, st_in, st, *outs)
        except Exception as exc:
            diagnose()
            raise UserKernelError(
                f"{kind}: the kernel raised {type(exc).__name__}: {exc} on a synthetic series (parameters "
                f"{values!r}); numba raises on a float division by zero: guard it"
            ) from exc
        if bad >= NAN_CODE and bad < 2 * NAN_CODE:
            bar, o = divmod(bad - NAN_CODE, 64)
            raise UserKernelError(
                f"{kind}: output {outputs[o] or 'main'!r} is NaN or inf at bar {lo + bar} of a finite synthetic series "
                f"(parameters {values!r}, lookback {lookback}); outputs after the lookback must be finite, or "
                "register with allow_nan=True"
            )
        if bad != 0:
            raise UserKernelError(f"{kind}: the kernel returned code {bad} on a valid synthetic call")
        if not np.all(buf[width:] == 7.25e300):
            raise UserKernelError(f"{kind}: the function writes past the end of its declared state (width {width - 2})")
        return outs, st.copy()

    zero = np.zeros((1, width))
    full, st_full = run(0, n, zero)
    for o, out in enumerate(full):
        if not np.all(np.isnan(out[: min(lookback, n)])):
            raise AssertionError(f"{kind}: engine wrote a value inside the lookback")  # engine bug, not user's
        del o
    splits = list(range(1, n)) if n <= 64 else sorted({*range(1, 16), *range(n - 31, n), *np.linspace(1, n - 1, 20).astype(int).tolist()})
    for k in splits:
        a, st = run(0, k, zero)
        b, st2 = run(k, n, st)
        for o in range(n_out):
            if not np.array_equal(np.concatenate([a[o], b[o]]), full[o], equal_nan=True):
                j = int(np.flatnonzero(~((np.concatenate([a[o], b[o]]) == full[o]) | (np.isnan(full[o]) & np.isnan(np.concatenate([a[o], b[o]])))))[0])
                raise UserKernelError(
                    f"{kind}: incremental != full: run on bars [0, {k}) then [{k}, {n}) gives output "
                    f"{outputs[o] or 'main'!r} {np.concatenate([a[o], b[o]])[j]!r} at bar {j}, a full run "
                    f"{full[o][j]!r}: the state does not hold everything the next bars depend on"
                )
        if not np.array_equal(st2, st_full):
            raise UserKernelError(
                f"{kind}: the state after bars [0, {k}) then [{k}, {n}) differs from the state after one run: "
                "it must depend only on the bars seen"
            )


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

"""User kernels: the declaration (names, parameters, sizes) and the code hash that versions it."""

from __future__ import annotations

import hashlib
import inspect
import json
import marshal
import math
import re
import textwrap
import types as pytypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurestore.indicators.base import (
    MAX_PERIOD,
    Number,
    ParamDef,
    UserKernelError,
)

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


@dataclass(frozen=True)
class _Size:
    """``window``/``state``/``lookback``: a constant, a parameter or a function of the parameters."""

    what: str
    py: Callable[..., int]
    source: str  # for the code hash
    nb_src: str  # expression in the generated kernel ("" = call the compiled function)
    fn: Any = None



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
        if isinstance(obj, (bool, int, float, complex, str, bytes, tuple, np.generic)):  # frozen into the code by numba
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


"""Typed wrappers over the kernels: validation, conversion, batching and resumable state.

Use ``compute`` for one series (an array, a dict of arrays or a DataFrame). Use
``compute_batch`` for many symbols at once: the values of all symbols concatenated in time order
plus int64 ``offsets`` (``offsets[k]..offsets[k+1]`` is symbol k), which runs one kernel call
for all of them and returns the state to continue from. ``update_batch`` continues from that
state over new bars only: ``compute_batch(x[:k])`` then ``update_batch(x[k:])`` gives exactly
``compute_batch(x)``, bit for bit, for any k, including k inside the warm-up.
``update_batch_inplace`` does the same but advances the caller's state array in place.

Call cost: with a dict of float64 arrays and int64 offsets (what the write path passes), a call
is O(1) Python (a cached per-spec plan, two ``np.empty``) plus one kernel dispatch; the kernel
validates offsets, state shape and bar counts in the same call, before writing anything. Other
argument types take a checked path that converts them (the kernels never compile a second
signature). For a view's per-bar updates, ``prepare_update`` (``featurestore.indicators.prepared``)
loads every kernel and checks every state once, when the view opens, and then advances all
its specs with one check of the new bars and one kernel call per spec.

Results are TA-Lib 0.8's, bit for bit, with TA-Lib's defaults, including its handling of NaN:
leading bars where any input is NaN are skipped (output NaN, the indicator starts at the first
bar with every input present). An *interior* NaN is not skipped, exactly as in TA-Lib: SMA,
EMA, MACD and BBANDS are NaN from that bar on, RSI is 0.0 from that bar on, ATR and ADX go on
with finite values (a NaN comparison is false, so TR falls back to high-low and DM to 0) or
NaN, depending on which input was missing. The store rejects NaN prices on load, so none of
this arises from stored bars.

State contract: one float64 row per symbol (``spec.state_len`` values, layouts in
``STATE_LAYOUTS``), a 2-D array for a batch (C-contiguous when returned; any layout is accepted,
e.g. a column slice of a wider matrix). Column 0 counts the bars consumed since
the first bar with all inputs present. ``state_to_bytes`` / ``state_from_bytes`` give a
versioned byte form (a 24-byte header, then the rows as little-endian float64) that checks the
spec, the row length and the layout version on the way back.

Kernels compile on first use (``cache=True``: later processes load them from numba's on-disk
cache); importing this module imports neither numba nor pandas.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from featurestore.errors import IndicatorError
from featurestore.indicators.base import UserKernelError
from featurestore.indicators.defs import STATE_LAYOUTS as _DEF_LAYOUTS
from featurestore.indicators.registry import REGISTRY, IndicatorSpec, parse_indicator

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STATE_LAYOUTS",
    "STATE_VERSION",
    "compute",
    "compute_batch",
    "new_state",
    "resolve_spec",
    "state_from_bytes",
    "state_to_bytes",
    "update_batch",
    "update_batch_inplace",
    "warmup",
]

SpecLike = IndicatorSpec | str
Inputs = Mapping[str, npt.ArrayLike]

#: Bumped whenever a state layout below changes; ``state_from_bytes`` refuses other versions.
STATE_VERSION = 1

#: What each state column holds, by kind (each family's ``defs`` module documents its own).
STATE_LAYOUTS: dict[str, tuple[str, ...]] = dict(_DEF_LAYOUTS)

_HEADER = struct.Struct("<4sHHIIQ")  # magic, version, reserved, crc32(spec name), row len, rows
_MAGIC = b"FSIS"

_kernels: ModuleType | None = None
_F8 = np.dtype(np.float64)
_I8 = np.dtype(np.int64)


def _kernel_module() -> ModuleType:
    """Import the kernels package (numba and ``kernels.common``) on first use, not at import
    time; ``specialize`` imports each family module when one of its kernels is first used."""
    global _kernels
    if _kernels is None:
        from featurestore.indicators import kernels

        _kernels = kernels
    return _kernels


def resolve_spec(spec: SpecLike, params: Mapping[str, Any] | None = None) -> IndicatorSpec:
    """A spec from a spec object, a short string (``"sma_20"``) or a kind plus ``params``."""
    if isinstance(spec, IndicatorSpec):
        base = spec
    elif isinstance(spec, str):
        base = parse_indicator(spec)
    else:
        raise IndicatorError(f"expected an IndicatorSpec or a spec string, got {spec!r}")
    if params:
        merged: dict[str, Any] = dict(base.p)
        defn = base.definition
        for key, value in params.items():
            name = str(key).lower()
            canonical = next((p.name for p in defn.params if name == p.name or name in p.aliases), name)
            merged[canonical] = value  # unknown names are rejected by IndicatorSpec
        return IndicatorSpec(base.kind, merged)  # type: ignore[arg-type]
    return base


def _as_float_array(name: str, values: Any) -> np.ndarray:
    if (
        type(values) is np.ndarray
        and values.dtype == np.float64
        and values.ndim == 1
        and values.flags.c_contiguous
    ):
        return values  # the common case, without numpy's conversion overhead
    try:
        arr = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise IndicatorError(f"input {name!r} cannot be converted to float64: {exc}") from None
    if arr.ndim != 1:
        raise IndicatorError(f"input {name!r} must be 1-D, got shape {arr.shape}")
    return arr


def _inputs_tuple(spec: IndicatorSpec, inputs: Inputs | npt.ArrayLike) -> list[np.ndarray]:
    if not isinstance(inputs, Mapping):
        if spec.inputs != ("close",):
            raise IndicatorError(
                f"{spec.name} needs inputs {', '.join(spec.inputs)}: pass a dict or a DataFrame"
            )
        inputs = {"close": inputs}
    arrays = []
    lowered: dict[str, Any] | None = None
    for name in spec.inputs:
        value = inputs.get(name)
        if value is None:  # accept "Close", "HIGH", ...
            if lowered is None:
                lowered = {str(k).lower(): v for k, v in inputs.items()}
            value = lowered.get(name)
            if value is None:
                missing = [n for n in spec.inputs if n not in lowered]
                raise IndicatorError(
                    f"{spec.name} needs input(s) {', '.join(missing)}; "
                    f"got {', '.join(map(str, inputs)) or 'none'}"
                )
        arrays.append(_as_float_array(name, value))
    n0 = arrays[0].size
    for name, arr in zip(spec.inputs, arrays):
        if arr.size != n0:
            raise IndicatorError(
                f"{spec.name}: inputs differ in length ({spec.inputs[0]}={n0}, {name}={arr.size})"
            )
    return arrays


def _offsets(offsets: npt.ArrayLike | None, n: int) -> np.ndarray:
    """offsets as a 1-D int64 C-contiguous array; the kernel checks the values."""
    if offsets is None:
        return np.array([0, n], dtype=np.int64)
    off = offsets
    if not (type(off) is np.ndarray and off.dtype is _I8 and off.ndim == 1 and off.flags.c_contiguous):
        off = np.asarray(offsets)
        if off.ndim != 1:
            raise IndicatorError(f"offsets must be a 1-D array of n_symbols+1 integers, got shape {off.shape}")
        if off.size and off.dtype.kind not in "iu":
            raise IndicatorError(f"offsets must be integers, got dtype {off.dtype}")
        off = np.ascontiguousarray(off, dtype=np.int64)
    if off.size == 0:
        raise IndicatorError("offsets must have n_symbols+1 entries, got none")
    return off


# Kernel return codes (kernels.common.BAD_*; repeated so that this module need not import numba).
_BAD_STATE_SHAPE = -(2**62)
_BAD_INPUT_LENGTHS = 2**62
_NAN_CODE = 2**61  # user.NAN_CODE: + bar * 64 + output, a user kernel broke the NaN contract


class _Plan:
    """What a call needs from a spec, resolved once: the kernel, its parameters and the shapes.

    ``kernel`` accepts only its one compiled signature (``kernels.specialize``) and raises
    TypeError for anything else, which the fast paths below rely on.
    """

    __slots__ = ("spec", "name", "kernel", "params", "inputs", "outputs", "n_out", "state_len", "user")

    def __init__(self, spec: IndicatorSpec) -> None:
        defn = spec.definition
        self.spec = spec
        self.name = spec.name
        self.user = bool(defn.code_hash)
        if self.user:  # compiled at registration (featurestore.indicators.user)
            from featurestore.indicators.user import kernel_for

            self.kernel = kernel_for(defn)
        else:
            self.kernel = _kernel_module().specialize(
                defn.kernel, len(defn.inputs), tuple(p.type for p in defn.params), len(defn.outputs)
            )
        self.params = tuple(v for _, v in spec.params)
        self.inputs = spec.inputs
        self.outputs = spec.outputs
        self.n_out = len(spec.outputs)
        self.state_len = spec.state_len


#: Plans by spec object or spec string (both hash cheaply: strings and specs cache their hash).
_PLANS: dict[Any, _Plan] = {}


def _plan(spec: SpecLike) -> _Plan:
    try:
        return _PLANS[spec]
    except (KeyError, TypeError):  # TypeError: unhashable, which resolve_spec reports
        pass
    s = resolve_spec(spec)
    plan = _PLANS.get(s)
    if plan is None:
        plan = _Plan(s)
    if len(_PLANS) >= 1024:
        _PLANS.clear()
    _PLANS[s] = plan
    if isinstance(spec, str):
        _PLANS[spec] = plan
    return plan


def _arrays(plan: _Plan, inputs: Inputs | npt.ArrayLike) -> tuple[np.ndarray, ...]:
    """The kernel's input arrays (converted to 1-D C-contiguous float64 where needed)."""
    if type(inputs) is dict and len(plan.inputs) == 1:
        a = inputs.get(plan.inputs[0])
        if type(a) is np.ndarray and a.dtype is _F8 and a.ndim == 1 and a.flags.c_contiguous:
            return (a,)
    return tuple(_inputs_tuple(plan.spec, inputs))


def _new_outputs(plan: _Plan, n: int) -> tuple[np.ndarray, ...]:
    if plan.n_out == 1:
        return (np.empty(n),)
    return tuple(np.empty((plan.n_out, n)))  # one allocation; each output is a contiguous row


def _given_outputs(plan: _Plan, n: int, out: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    outs = []
    for name in plan.outputs:
        buf = out.get(name) if isinstance(out, Mapping) else None
        if (
            not isinstance(buf, np.ndarray) or buf.dtype != np.float64 or buf.ndim != 1
            or buf.size != n or not buf.flags.c_contiguous or not buf.flags.writeable
        ):
            raise IndicatorError(
                f"out[{name!r}] must be a writable C-contiguous 1-D float64 array of length {n}"
            )
        outs.append(buf)
    return tuple(outs)


def _result(
    plan: _Plan, bad: int, outs: tuple[np.ndarray, ...], arrays: tuple[np.ndarray, ...],
    off: np.ndarray, state_in: np.ndarray,
) -> dict[str, np.ndarray]:
    """The outputs by name, or the error that the kernel's return code stands for."""
    if bad == 0:
        if plan.n_out == 1:
            return {plan.outputs[0]: outs[0]}
        return dict(zip(plan.outputs, outs))
    n = arrays[0].size
    if bad == _BAD_INPUT_LENGTHS:
        sizes = ", ".join(f"{k}={a.size}" for k, a in zip(plan.inputs, arrays))
        raise IndicatorError(f"{plan.name}: inputs differ in length ({sizes})")
    if bad == _BAD_STATE_SHAPE:
        ns = off.size - 1
        raise IndicatorError(
            f"{plan.name}: state has shape {state_in.shape}, expected ({ns}, {plan.state_len}) "
            "(one row per symbol in offsets, spec.state_len columns)"
        )
    if _NAN_CODE <= bad < 2 * _NAN_CODE:
        i, o = divmod(bad - _NAN_CODE, 64)
        sym = int(np.searchsorted(off, i, side="right")) - 1
        raise UserKernelError(
            f"{plan.name}: user kernel output {plan.outputs[o]!r} is NaN or inf at bar {i - int(off[sym])} of "
            f"symbol {sym} of this call although every input it depends on is finite; the contract forbids "
            "that after the lookback (register with allow_nan=True if it is intended); nothing was stored"
        )
    if bad > 0:
        j = bad - 1
        if off.size == 0:
            raise IndicatorError("offsets must have n_symbols+1 entries, got none")
        raise IndicatorError(
            f"offsets must start at 0, never decrease and end at the number of values ({n}); "
            f"offsets[{j}] = {int(off[j])} breaks that"
        )
    k = -bad - 1
    raise IndicatorError(
        f"{plan.name}: state row {k}: column 0 (bar count) must be a non-negative integer, "
        f"got {state_in[k, 0]!r}"
    )


def _checked_run(
    plan: _Plan,
    inputs: Inputs | npt.ArrayLike,
    offsets: npt.ArrayLike | None,
    state: Any,
    out: Mapping[str, np.ndarray] | None,
    mode: str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The general path: converts and checks everything, then one kernel call.

    ``mode``: "new" starts from a zero state, "copy" continues ``state`` into a new array,
    "inplace" continues ``state`` in place.
    """
    arrays = _arrays(plan, inputs)
    n = arrays[0].size
    off = _offsets(offsets, n)
    ns = off.size - 1
    outs = _new_outputs(plan, n) if out is None else _given_outputs(plan, n, out)
    if mode == "new":
        st = st_in = np.zeros((ns, plan.state_len))
    elif mode == "inplace":
        if not (
            type(state) is np.ndarray and state.dtype is _F8 and state.ndim == 2
            and state.flags.c_contiguous and state.flags.writeable
        ):
            raise IndicatorError(
                f"{plan.name}: update_batch_inplace needs the state as a writable C-contiguous "
                "2-D float64 array"
            )
        st = st_in = state
    else:
        if type(state) is np.ndarray and state.dtype is _F8 and state.ndim == 2:
            st_in = state  # any layout: the kernel copies it row by row
        else:
            st_in = np.asarray(state, dtype=np.float64)  # read only: no copy needed
            if st_in.ndim == 1:
                st_in = st_in.reshape(1, -1)
            if st_in.ndim != 2:
                raise IndicatorError(
                    f"{plan.name}: state has shape {st_in.shape}, expected "
                    f"({ns}, {plan.state_len})"
                )
        st = np.empty((ns, plan.state_len))
    bad = plan.kernel(*arrays, off, *plan.params, st_in, st, *outs)
    return _result(plan, bad, outs, arrays, off, st_in), st


def _fast_run(
    plan: _Plan, inputs: dict[str, Any], offsets: Any, state_in: Any, st: np.ndarray | None
) -> tuple[int, tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
    """The O(1) path for the usual call: a dict of float64 arrays and int64 offsets.

    Raises KeyError/TypeError/ValueError, before anything is written, for anything else
    (missing or other-typed inputs, None or other-typed offsets, state of another dtype or
    ndim); the caller then takes ``_checked_run``. Everything else is checked in the kernel.
    """
    names = plan.inputs
    if len(names) == 1:
        arrays: tuple[np.ndarray, ...] = (inputs[names[0]],)
    elif len(names) == 3:
        arrays = (inputs[names[0]], inputs[names[1]], inputs[names[2]])
    else:
        arrays = tuple(inputs[k] for k in names)
    n = len(arrays[0])
    if st is None:
        st = np.empty((len(offsets) - 1, plan.state_len))  # ValueError for empty offsets
    outs = (np.empty(n),) if plan.n_out == 1 else tuple(np.empty((plan.n_out, n)))
    bad = plan.kernel(*arrays, offsets, *plan.params, state_in, st, *outs)  # TypeError
    return bad, outs, arrays, st


def compute_batch(
    spec: SpecLike,
    inputs: Inputs | npt.ArrayLike,
    offsets: npt.ArrayLike | None = None,
    *,
    out: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Compute ``spec`` for many symbols in one kernel call; return (outputs, state).

    ``inputs`` maps input names (``close``, or ``high``/``low``/``close``) to the concatenated
    values of all symbols; ``offsets`` (n_symbols+1 int64, from 0 to the length; ``None`` means
    one symbol) delimits them. Outputs are keyed by column name (``spec.outputs``); ``state`` is
    ``[n_symbols, spec.state_len]`` and feeds ``update_batch``. The outputs of a multi-output
    indicator are the rows of one ``[n_outputs, n]`` block (each row C-contiguous).

    ``out`` optionally maps each output name to a preallocated float64 array to write into
    (for instance a column of a Fortran-ordered feature block, or a buffer reused across
    calls): a fresh 40 MB array costs ~8 ms of page faults here, more than some kernels.
    """
    plan = _plan(spec)
    if out is None and type(inputs) is dict and type(offsets) is np.ndarray:
        try:
            st = np.zeros((len(offsets) - 1, plan.state_len))
            bad, outs, arrays, st = _fast_run(plan, inputs, offsets, st, st)
        except (KeyError, TypeError, ValueError):
            pass
        else:
            return _result(plan, bad, outs, arrays, offsets, st), st
    return _checked_run(plan, inputs, offsets, None, out, "new")


def update_batch(
    spec: SpecLike,
    state: npt.ArrayLike,
    inputs: Inputs | npt.ArrayLike,
    offsets: npt.ArrayLike | None = None,
    *,
    out: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Continue ``spec`` from ``state`` over new bars only; return (outputs for them, new state).

    ``state`` is what ``compute_batch``/``update_batch`` returned (or ``state_from_bytes``), one
    row per symbol in ``offsets`` order, in any memory layout (a column slice of a wider state
    matrix is fine); a symbol with no new bars keeps its row. The input state is not modified.
    ``out`` is as for ``compute_batch``.

    Cost: one kernel call, which checks offsets and state, copies each state row into the new
    state as it continues it, and computes. Python adds O(1) work when ``inputs`` is a dict of
    float64 arrays and ``offsets`` an int64 array. ``update_batch_inplace`` saves the copy.
    """
    plan = _plan(spec)
    if out is None and type(inputs) is dict:
        try:
            bad, outs, arrays, st = _fast_run(plan, inputs, offsets, state, None)
        except (KeyError, TypeError, ValueError):
            pass
        else:  # the kernel accepted offsets and state, so they are arrays
            return _result(plan, bad, outs, arrays, cast(np.ndarray, offsets), cast(np.ndarray, state)), st
    return _checked_run(plan, inputs, offsets, state, out, "copy")


def update_batch_inplace(
    spec: SpecLike,
    state: np.ndarray,
    inputs: Inputs | npt.ArrayLike,
    offsets: npt.ArrayLike | None = None,
    *,
    out: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """``update_batch`` that advances ``state`` in place and returns only the outputs.

    For a caller that owns the state and does not need the old one (the write path stores the
    new state and drops the old): it saves allocating and writing a second state array, which
    is most of the cost of a one-bar update of SMA or BBANDS (rows of period+1 and period+5
    values). ``state`` must be a writable C-contiguous float64 ``[n_symbols, spec.state_len]``
    array. Offsets and state are checked before anything is written, so after an
    IndicatorError ``state`` is unchanged. With ``out=`` buffers reused across calls the call
    allocates nothing but the result dict.
    """
    plan = _plan(spec)
    if plan.user:
        # A user kernel may stop half-way (NaN contract): continue into a copy, keep it on success.
        if not (
            type(state) is np.ndarray and state.dtype is _F8 and state.ndim == 2
            and state.flags.c_contiguous and state.flags.writeable
        ):
            raise IndicatorError(
                f"{plan.name}: update_batch_inplace needs the state as a writable C-contiguous 2-D float64 array"
            )
        result, st = _checked_run(plan, inputs, offsets, state, out, "copy")
        state[...] = st
        return result
    if (
        out is None and type(inputs) is dict and type(state) is np.ndarray
        and state.flags.c_contiguous and state.flags.writeable
    ):
        try:
            bad, outs, arrays, st = _fast_run(plan, inputs, offsets, state, state)
        except (KeyError, TypeError, ValueError):
            pass
        else:  # the kernel accepted offsets, so it is an array
            return _result(plan, bad, outs, arrays, cast(np.ndarray, offsets), state)
    return _checked_run(plan, inputs, offsets, state, out, "inplace")[0]


def new_state(spec: SpecLike, n_symbols: int) -> np.ndarray:
    """The state of ``n_symbols`` symbols that have seen no bar (what ``compute_batch`` starts from)."""
    s = resolve_spec(spec)
    return np.zeros((int(n_symbols), s.state_len), dtype=np.float64)


def compute(
    spec: SpecLike, data: Any, /, **params: Any
) -> dict[str, np.ndarray] | pd.DataFrame:
    """Compute one indicator over one series.

    ``data`` is a DataFrame (columns ``close``/``high``/``low``, any case), a dict of arrays, or a
    single array for close-only indicators. Returns ``{column name: array}``, or a DataFrame
    with the same index when given a DataFrame. ``compute("sma", x, period=20)`` equals
    ``compute("sma_20", x)``.
    """
    s = resolve_spec(spec, params)
    pd_mod = sys.modules.get("pandas")
    if pd_mod is not None and isinstance(data, pd_mod.DataFrame):
        cols = {str(c).lower(): data[c].to_numpy() for c in data.columns}
        outs, _ = compute_batch(s, {k: cols[k] for k in s.inputs if k in cols}, None)
        return pd_mod.DataFrame(outs, index=data.index)
    if pd_mod is not None and isinstance(data, pd_mod.Series):
        data = data.to_numpy()
    outs, _ = compute_batch(s, data, None)
    return outs


def state_to_bytes(spec: SpecLike, state: npt.ArrayLike) -> bytes:
    """Versioned bytes of a state (one row or ``[n_symbols, state_len]``), for storage."""
    s = resolve_spec(spec)
    st = np.asarray(state, dtype=np.float64)
    if st.ndim == 1:
        st = st.reshape(1, -1)
    if st.ndim != 2 or st.shape[1] != s.state_len:
        raise IndicatorError(f"{s.name}: state rows must have {s.state_len} values, got shape {st.shape}")
    header = _HEADER.pack(_MAGIC, STATE_VERSION, 0, _spec_crc(s), s.state_len, st.shape[0])
    return header + np.ascontiguousarray(st, dtype="<f8").tobytes()


def state_from_bytes(spec: SpecLike, data: bytes | bytearray | memoryview) -> np.ndarray:
    """Inverse of ``state_to_bytes``: a writable ``[n_symbols, state_len]`` float64 array.

    Raises IndicatorError if the bytes are not a state, were written for another spec or
    layout version, or are truncated.
    """
    s = resolve_spec(spec)
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise IndicatorError(f"{s.name}: state bytes too short ({len(buf)} bytes)")
    magic, version, _, crc, row_len, rows = _HEADER.unpack_from(buf)
    if magic != _MAGIC:
        raise IndicatorError(f"{s.name}: not an indicator state (bad magic {magic!r})")
    if version != STATE_VERSION:
        raise IndicatorError(
            f"{s.name}: state layout version {version}, this library reads {STATE_VERSION}; "
            "recompute the indicator from the first bar"
        )
    if crc != _spec_crc(s) or row_len != s.state_len:
        raise IndicatorError(f"state was saved for another indicator spec than {s.name}")
    expected = _HEADER.size + rows * row_len * 8
    if len(buf) != expected:
        raise IndicatorError(f"{s.name}: state bytes have length {len(buf)}, expected {expected}")
    arr = np.frombuffer(buf, dtype="<f8", offset=_HEADER.size).reshape(rows, row_len)
    return arr.astype(np.float64, copy=True)


def _spec_crc(spec: IndicatorSpec) -> int:
    code = spec.definition.code_hash  # a user kernel's state is tied to its code
    return zlib.crc32((spec.name + ("|" + code if code else "")).encode())


def warmup(specs: Iterable[SpecLike] | None = None) -> None:
    """Compile (or load from numba's disk cache) the kernels now instead of on first use."""
    todo = [resolve_spec(s) for s in specs] if specs is not None else [
        IndicatorSpec(kind) for kind in REGISTRY
    ]
    for s in todo:
        x = np.linspace(1.0, 2.0, 8)
        compute_batch(s, {n: x for n in s.inputs}, np.array([0, 8], dtype=np.int64))

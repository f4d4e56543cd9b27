"""A prepared updater: several specs over the same symbols, kernels loaded and states checked once.

``update_batch_inplace`` resolves its spec and, on the first call of a process, loads the kernel
(from numba's disk cache, or compiles it), so the first call of a view's bar pays for importing
numba, numba's target set-up and one cache load per kernel. ``prepare_update`` pays all of that
when a view is opened instead: it resolves every spec, loads every kernel, checks the states and
runs each kernel once on zero symbols. ``BatchUpdater.update`` then does, per call, a handful of
checks on the new bars (once for all specs) and one kernel call per spec, each advancing the
updater's own state in place. Results are exactly those of ``update_batch`` per spec.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from featurestore.errors import IndicatorError
from featurestore.indicators.api import (
    _F8,
    _I8,
    SpecLike,
    _offsets,
    _Plan,
    _plan,
    _result,
)
from featurestore.indicators.registry import IndicatorSpec

__all__ = ["BatchUpdater", "prepare_update"]


def _entry_point(kernel: Any) -> Any:
    """The compiled function behind a built-in kernel's dispatcher (``kernels.specialize`` leaves
    exactly one), called without the dispatcher's per-argument type matching. Only for arguments
    this module has checked to have the signature's types: the entry point unboxes without
    checking them. The dispatcher itself where there is none (``NUMBA_DISABLE_JIT``)."""
    overloads = getattr(kernel, "overloads", None)
    if overloads and len(overloads) == 1:
        return next(iter(overloads.values())).entry_point
    return kernel


def _own_state(plan: _Plan, state: npt.ArrayLike, n_symbols: int) -> np.ndarray:
    """A C-contiguous float64 copy of ``state``, checked so that no kernel can refuse it later."""
    try:
        st = np.array(state, dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise IndicatorError(f"{plan.name}: state cannot be converted to float64: {exc}") from None
    if st.ndim == 1 and n_symbols == 1:
        st = st.reshape(1, -1)
    if st.shape != (n_symbols, plan.state_len):
        raise IndicatorError(
            f"{plan.name}: state has shape {st.shape}, expected ({n_symbols}, {plan.state_len}) "
            "(one row per symbol, spec.state_len columns)"
        )
    count = st[:, 0]
    bad = np.flatnonzero(~((count >= 0.0) & (count == np.floor(count))))
    if bad.size:
        k = int(bad[0])
        raise IndicatorError(
            f"{plan.name}: state row {k}: column 0 (bar count) must be a non-negative integer, "
            f"got {count[k]!r}"
        )
    return st


class BatchUpdater:
    """Advance several indicator specs over the same symbols, one call per batch of new bars.

    Build it with ``prepare_update``. It owns one state array per spec (``states``, in spec
    order, each ``[n_symbols, spec.state_len]``, advanced in place by ``update``); to persist
    them (``state_to_bytes``) take ``snapshot()``, a consistent copy. Calls are serialized by a
    lock, so one updater may be shared by threads; different updaters run independently.
    """

    __slots__ = ("_calls", "_inputs", "_lock", "_names", "_one", "_plans", "_states", "_user", "n_symbols")

    def __init__(self, specs: Sequence[SpecLike], states: Sequence[npt.ArrayLike] | None, n_symbols: int) -> None:
        if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
            raise IndicatorError("prepare_update needs a sequence of specs (e.g. ['sma_20', 'rsi_14'])")
        if not specs:
            raise IndicatorError("prepare_update needs at least one spec")
        n = int(n_symbols)
        if n < 0 or n != n_symbols:
            raise IndicatorError(f"n_symbols must be a non-negative integer, got {n_symbols!r}")
        plans = [_plan(s) for s in specs]  # loads (or compiles) each kernel now
        seen: dict[str, str] = {}
        for p in plans:
            for col in p.outputs:
                if col in seen:
                    raise IndicatorError(f"output column {col!r} is produced twice (by {seen[col]} and {p.name})")
                seen[col] = p.name
        if states is None:
            owned = [np.zeros((n, p.state_len)) for p in plans]
        else:
            if len(states) != len(plans):
                raise IndicatorError(f"got {len(states)} states for {len(plans)} specs (one per spec, in order)")
            owned = [_own_state(p, s, n) for p, s in zip(plans, states)]
        self.n_symbols = n
        self._states: tuple[np.ndarray, ...] = tuple(owned)
        self._plans = tuple(plans)
        self._names = tuple(col for p in plans for col in p.outputs)
        # every input any spec reads, in first-use order
        self._inputs = tuple(dict.fromkeys(name for p in plans for name in p.inputs))
        self._one = np.arange(n + 1, dtype=np.int64)  # one bar per symbol
        self._user = any(p.user for p in plans)
        bounds = np.cumsum([0] + [p.n_out for p in plans]).tolist()
        self._calls = tuple(
            (p.kernel if p.user else _entry_point(p.kernel), tuple(self._inputs.index(name) for name in p.inputs),
             p.params, st, bounds[j], bounds[j + 1])
            for j, (p, st) in enumerate(zip(plans, owned))
        )
        self._lock = threading.Lock()
        # One call per kernel on zero symbols: the first real call then pays no first-use cost.
        empty = np.empty(0)
        zero = np.zeros(1, dtype=np.int64)
        for p, call in zip(plans, self._calls):
            st0 = np.empty((0, p.state_len))
            outs = tuple(np.empty((p.n_out, 0)))
            bad = call[0](*(empty,) * len(p.inputs), zero, *p.params, st0, st0, *outs)
            _result(p, bad, outs, (empty,) * len(p.inputs), zero, st0)

    @property
    def specs(self) -> tuple[IndicatorSpec, ...]:
        """The resolved specs, in the order given."""
        return tuple(p.spec for p in self._plans)

    @property
    def states(self) -> tuple[np.ndarray, ...]:
        """The live state arrays, one per spec (advanced in place by ``update``)."""
        return self._states

    def snapshot(self) -> tuple[np.ndarray, ...]:
        """Copies of the states taken between two updates (what to persist)."""
        with self._lock:
            return tuple(st.copy() for st in self._states)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The output column names ``update`` returns, spec by spec."""
        return self._names

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input names ``update`` needs (the union over the specs)."""
        return self._inputs

    def update(
        self, inputs: Mapping[str, npt.ArrayLike], offsets: npt.ArrayLike | None = None
    ) -> dict[str, np.ndarray]:
        """Continue every spec over new bars; return ``{output column: values}`` for them.

        ``inputs`` maps each name in ``self.inputs`` to the new bars of all symbols,
        concatenated in symbol order. ``offsets=None`` means exactly one new bar per symbol
        (each input has ``n_symbols`` values, symbol k's at index k); otherwise ``offsets`` is
        as for ``update_batch`` (``n_symbols + 1`` int64 bounds). Bad input raises
        IndicatorError before any state changes. The returned arrays are fresh (rows of one
        block), never reused by a later call.
        """
        arrays = []
        for name in self._inputs:
            try:
                a = inputs[name]
            except (KeyError, TypeError):
                a = self._lookup(inputs, name)
            if not (type(a) is np.ndarray and a.dtype is _F8 and a.ndim == 1 and a.flags.c_contiguous):
                a = self._convert(name, a)
            arrays.append(a)
        n = arrays[0].size
        for name, a in zip(self._inputs, arrays):
            if a.size != n:
                raise IndicatorError(
                    f"inputs differ in length ({self._inputs[0]}={n}, {name}={a.size})"
                )
        if offsets is None:
            if n != self.n_symbols:
                raise IndicatorError(
                    f"offsets=None means one new bar per symbol: inputs have {n} values, "
                    f"expected n_symbols={self.n_symbols}"
                )
            off = self._one
        else:
            off = offsets if type(offsets) is np.ndarray and offsets.dtype is _I8 else _offsets(offsets, n)
            if off.ndim != 1 or off.size != self.n_symbols + 1:
                raise IndicatorError(
                    f"offsets must have n_symbols+1 = {self.n_symbols + 1} entries, got shape {off.shape}"
                )
            if not off.flags.c_contiguous:
                off = np.ascontiguousarray(off)
        block = np.empty((len(self._names), n))
        with self._lock:
            if self._user:
                return self._update_with_user(arrays, off, block)
            rows = list(block)
            for kernel, idx, params, st, r0, r1 in self._calls:
                bad = kernel(*[arrays[i] for i in idx], off, *params, st, st, *rows[r0:r1])
                if bad:  # inputs and states are checked: only bad offsets fail, in the first call
                    self._fail(bad, arrays, off)
        return dict(zip(self._names, rows))

    def _fail(self, bad: int, arrays: list[np.ndarray], off: np.ndarray) -> None:
        """Raise the error of the first kernel's return code ``bad`` (nothing was written)."""
        p = self._plans[0]
        st = self._states[0]
        ins = tuple(arrays[i] for i in self._calls[0][1])
        _result(p, bad, tuple(np.empty((p.n_out, ins[0].size))), ins, off, st)
        raise IndicatorError(f"{p.name}: kernel refused the call (code {bad})")  # not reached

    def _update_with_user(self, arrays: list[np.ndarray], off: np.ndarray, block: np.ndarray) -> dict[str, np.ndarray]:
        """User kernels may refuse a call half-way (NaN contract): run them first into copies,
        then the built-ins in place, then keep the copies, so a refusal changes no state."""
        new_user: dict[int, np.ndarray] = {}
        for i, (p, call) in enumerate(zip(self._plans, self._calls)):
            if not p.user:
                continue
            kernel, idx, params, st, r0, r1 = call
            outs = tuple(block[r0:r1])
            ins = tuple(arrays[j] for j in idx)
            new = np.empty_like(st)
            bad = kernel(*ins, off, *params, st, new, *outs)
            _result(p, bad, outs, ins, off, st)
            new_user[i] = new
        for p, call in zip(self._plans, self._calls):
            if p.user:
                continue
            kernel, idx, params, st, r0, r1 = call
            outs = tuple(block[r0:r1])
            ins = tuple(arrays[j] for j in idx)
            bad = kernel(*ins, off, *params, st, st, *outs)
            _result(p, bad, outs, ins, off, st)
        for i, new in new_user.items():
            self._states[i][...] = new
        return dict(zip(self._names, block))

    @staticmethod
    def _lookup(inputs: Mapping[str, npt.ArrayLike], name: str) -> Any:
        if not isinstance(inputs, Mapping):
            raise IndicatorError(f"inputs must be a mapping of input name to array, got {type(inputs).__name__}")
        lowered = {str(k).lower(): v for k, v in inputs.items()}
        if name not in lowered:
            raise IndicatorError(f"input {name!r} is missing; got {', '.join(map(str, inputs)) or 'none'}")
        return lowered[name]

    @staticmethod
    def _convert(name: str, values: Any) -> np.ndarray:
        try:
            arr = np.ascontiguousarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise IndicatorError(f"input {name!r} cannot be converted to float64: {exc}") from None
        if arr.ndim != 1:
            raise IndicatorError(f"input {name!r} must be 1-D, got shape {arr.shape}")
        return arr


def prepare_update(
    specs: Sequence[SpecLike],
    states: Sequence[npt.ArrayLike] | None = None,
    *,
    n_symbols: int | None = None,
) -> BatchUpdater:
    """A ``BatchUpdater`` for ``specs`` over one set of symbols, ready for per-bar ``update`` calls.

    ``states`` holds one state per spec, in spec order (what ``compute_batch``/``update_batch``
    returned, or ``state_from_bytes``); the updater copies and checks them. Without ``states``
    every symbol starts from no bars (``n_symbols`` is then required). Loads every kernel now
    (numba import, disk-cache load or compile), so open the updater when the view opens, not
    on the first bar.
    """
    if states is None:
        if n_symbols is None:
            raise IndicatorError("prepare_update needs states or n_symbols")
        n = n_symbols
    else:
        if isinstance(states, np.ndarray) or not isinstance(states, Sequence) or not states:
            raise IndicatorError("states must be a non-empty sequence of arrays, one per spec")
        first = np.shape(states[0])
        n = first[0] if len(first) == 2 else 1
        if n_symbols is not None and n_symbols != n:
            raise IndicatorError(f"n_symbols={n_symbols} but the first state has {n} rows")
    return BatchUpdater(specs, states, n)
